"""The course's HTTP/1.1 core:
every rule of the protocol that the course's servers follow, in one place.

    bytes -> read_head -> parse_request -> Request -> request_body_length / ChunkedBody
        (the request)
    app's status and headers -> choose_framing -> build_head -> bytes
        (the response)

Lesson 01 builds the first half (reading and parsing a request head, writing a response); lesson 03
adds the body and the response's framing. The WSGI server (gatewaylab.wsgi) and the ASGI server both
import it, so no rule exists twice.

The core does no I/O of its own. A head is parsed from a binary file: a socket's makefile("rb") in a
blocking server, or an io.BytesIO of the bytes an asyncio server has buffered. A chunked body is
decoded by ChunkedBody, which says what to read next (a line, or so many bytes) and is fed what was
read, so a blocking file and an asyncio stream drive the same decoder. It follows RFC 9112 (message
syntax) and RFC 9110 (semantics) closely enough to refuse what a careful server refuses.
"""
import email.utils
import functools
import http
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple

# Limits keep one client from making the server buffer without end.
MAX_LINE = 8192  # bytes in the request line, or in one header line
MAX_HEADERS = 100  # header lines in one request
MAX_HEAD = 65536  # bytes in the whole head, each line ending counted as CRLF

# The standard reason phrase of every status code Python knows: 200 "OK", 404 "Not Found", 431 ...
REASONS = {status.value: status.phrase for status in http.HTTPStatus}
# RFC 9110 renamed a few; Python 3.13 has the new names, 3.11 the old ones.
# The course uses the RFC's on every Python.
REASONS.update({413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
                422: "Unprocessable Content"})


class HTTPError(Exception):
    """A request the server refuses: the status to answer, and a message saying why."""

    def __init__(self, status: int, message: str):
        if type(status) is not int or status not in REASONS:
            raise ValueError("HTTPError needs a known HTTP status code such as 400 (an int), "
                             f"got {status!r}")
        super().__init__(f"{status} {REASONS[status]}: {message}")
        self.status = status
        self.reason = REASONS[status]
        self.message = message


def read_line(rfile, max_line: int, too_long: int) -> bytes | None:
    """Read one line and return it without its line ending;
    None if the connection closed before it started."""
    # +2: room for the CRLF after a line of exactly max_line bytes
    raw = rfile.readline(max_line + 2)
    if isinstance(raw, str):
        raise TypeError("read a request from a file opened in binary mode, "
                        "e.g. sock.makefile('rb')")
    if not raw:
        return None
    if not raw.endswith(b"\n") and len(raw) < max_line + 2:
        # the connection closed in the middle of a line
        raise HTTPError(400, "incomplete request head")
    # RFC 9112 2.2 lets a server accept a bare LF as a line ending (h11 does);
    # CRLF is the standard one.
    line = raw.removesuffix(b"\n").removesuffix(b"\r")
    if len(line) > max_line:
        raise HTTPError(too_long, f"line longer than {max_line} bytes")
    return line


def read_head(rfile, *, max_line=MAX_LINE, max_head=MAX_HEAD,
              max_headers=MAX_HEADERS) -> list[bytes] | None:
    """The lines of one request head, request line first;
    None if the client closed the connection before sending.

    rfile is a binary file such as sock.makefile("rb"): what follows the head (a body, the next
    request) stays buffered in it for the caller. A socket timeout set by the caller surfaces here
    as TimeoutError.
    """
    lines = []
    size = 0
    while True:
        line = read_line(rfile, max_line, too_long=431 if lines else 414)
        if line is None:
            if not lines:
                return None  # a clean close: no request started
            raise HTTPError(400, "incomplete request head")
        size += len(line) + 2  # every line ending counted as CRLF
        if size > max_head:
            raise HTTPError(431, f"request head larger than {max_head} bytes")
        if line:
            lines.append(line)
        elif lines:
            return lines  # the blank line that ends the head
        # (an empty line before the request line is skipped:
        # RFC 9112 2.2, some clients send CRLF after a body)
        if len(lines) > 1 + max_headers:
            raise HTTPError(431, f"more than {max_headers} header lines")


# The parser decodes bytes as latin-1 first (one byte, one character, never an error),
# then checks the strings.
# token = 1*tchar (RFC 9110 5.6.2): method names and header names are tokens.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), case-sensitive.
VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
# A request target is visible ASCII only (RFC 3986 characters; h11 enforces the same).
TARGET = re.compile(r"[\x21-\x7e]+")
# absolute-form (RFC 9112 3.2.2): scheme "://" authority,
# then the path and query (a proxy's form; servers accept it too).
ABSOLUTE_FORM = re.compile(r"(?i:https?)://([^/?#]+)([^#]*)")
# A field value (RFC 9110 5.5):
# tab, visible ASCII and obs-text bytes (shown as latin-1); no other control character.
FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """Split b'GET /path?q=1 HTTP/1.1' into (method, target, version), as latin-1 native strings."""
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3:
        raise HTTPError(400, "request line must be: method, target, version, "
                             "separated by single spaces")
    method, target, version = parts
    if not TOKEN.fullmatch(method):
        raise HTTPError(400, "invalid method")
    if not TARGET.fullmatch(target):
        raise HTTPError(400, "invalid request target")
    check_target_form(method, target)
    match = VERSION.fullmatch(version)
    if not match:
        raise HTTPError(400, "invalid HTTP version")
    if match[1] != "1":
        raise HTTPError(505, "only HTTP/1.x is supported")
    return method, target, version


# Host = uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2): an IP-literal in brackets (its
# characters checked, not the IPv6 grammar), or a reg-name, which an IPv4 address also is: letters,
# digits, "-._~", the sub-delims "!$&'()*+,;=" and %XX escapes. Then ":" and a port, *DIGIT.
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
                  r"(?::([0-9]*))?")


def check_host(value: str, what: str = "Host header") -> re.Match:
    """Refuse with 400 a value that is not uri-host [":" port];
    the match (host, port) if it is."""
    if "@" in value:
        # userinfo ("user@"): RFC 9110 4.2.4 says to treat it in an http(s) URI as an error;
        # http://bank.example@evil.example/ is for evil.example, whatever it looks like.
        raise HTTPError(400, f"userinfo (user@) in the {what}: {value!r}")
    match = HOST.fullmatch(value)
    if not match:
        raise HTTPError(400, f"invalid {what} {value!r}: it must be host or host:port")
    return match


def check_target_form(method: str, target: str) -> None:
    """The four forms of request-target (RFC 9112 3.2);
    anything else, a fragment included, is a 400."""
    if method == "CONNECT":  # authority-form "host:port", and only it, for CONNECT (RFC 9112 3.2.3)
        match = HOST.fullmatch(target)
        if not (match and match[1] and match[2]):  # "a:b:443" and "user@h:443" are neither
            raise HTTPError(400, f"CONNECT takes host:port, got {target!r}")
    elif "#" in target:
        raise HTTPError(400, "a request target has no fragment (#...)")
    elif absolute := ABSOLUTE_FORM.fullmatch(target):
        # an http(s) URI with an empty host is invalid (RFC 9110 4.2.1)
        if not check_host(absolute[1], "target's authority")[1]:
            raise HTTPError(400, f"no host in the request target {target!r}")
    elif not (target.startswith("/") or (target == "*" and method == "OPTIONS")):
        # origin-form "/path?query", absolute-form "http://host/path?query",
        # asterisk-form "*" for OPTIONS only
        raise HTTPError(400, f"invalid request target for {method}: {target!r}")


def parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    """Turn header lines (name ":" OWS value OWS) into (name, value) pairs,
    in order, repeats kept."""
    headers = []
    for line in lines:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t"):
            # obs-fold: an old way to continue the previous value on a new line. RFC 9112 5.2: a
            # server MUST either reject it with 400 or replace each fold with spaces. Rejecting is
            # safer than guessing how a proxy in front of us joined the lines.
            raise HTTPError(400, "header line starts with whitespace (obsolete line folding)")
        name, colon, value = text.partition(":")
        if not colon:
            raise HTTPError(400, "header line without a colon")
        if name.rstrip(" \t") != name:
            # RFC 9112 5.1: a server MUST reject whitespace
            # between the name and the colon (request smuggling).
            raise HTTPError(400, "whitespace between header name and colon")
        if not TOKEN.fullmatch(name):
            raise HTTPError(400, "invalid header name")
        value = value.strip(" \t")
        if not FIELD_VALUE.fullmatch(value):
            # RFC 9110 5.5: no control character but tab belongs in a value;
            # CR, LF and NUL are dangerous besides.
            raise HTTPError(400, "header value contains a control character")
        headers.append((name, value))
    return headers


def connection_options(value: str) -> set[str]:
    """The options a Connection header lists, lower-case: "Keep-Alive, Upgrade" -> {"keep-alive",
    "upgrade"}. Both servers read them: a request's, and an ASGI app's response header."""
    return {option.strip().lower() for option in value.split(",")}


@dataclass
class Request:
    """A parsed request head. Header names are kept as sent;
    header() compares them case-insensitively."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default=None):
        """The value of a header, repeated ones joined with ", " as RFC 9110 5.3 allows."""
        # (Set-Cookie is the one field that cannot be joined, but it only appears in responses.)
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        return ", ".join(values) if values else default

    @property
    def path(self) -> str:
        """The target's path, still percent-encoded: "/" or more;
        "" for "*" (OPTIONS) and "host:port" (CONNECT)."""
        if self.target.startswith("/"):  # origin-form, the usual case
            return self.target.partition("?")[0]
        absolute = ABSOLUTE_FORM.fullmatch(self.target)
        if absolute:
            # "http://host" and "http://host/" ask for the same
            return absolute[2].partition("?")[0] or "/"
        return ""

    @property
    def query(self) -> str:  # what follows the first "?", still percent-encoded
        return self.target.partition("?")[2]

    @property
    def host(self):
        """Which host the request is for: the authority of an absolute-form target, which a server
        MUST use in place of the Host header (RFC 9112 3.2.2), or else the Host header; None for
        HTTP/1.0 without one."""
        absolute = ABSOLUTE_FORM.fullmatch(self.target)
        return absolute[1] if absolute else self.header("Host")

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to
        stay open after the response (RFC 9112 9.3)."""
        options = connection_options(self.header("Connection", ""))
        if self.version == "HTTP/1.0":
            return "keep-alive" in options and "close" not in options
        return "close" not in options


def parse_request(rfile) -> Request | None:
    """Read and parse one request head from rfile;
    None if the client closed the connection first."""
    lines = read_head(rfile)
    if lines is None:
        return None
    method, target, version = parse_request_line(lines[0])
    headers = parse_headers(lines[1:])
    hosts = [value for name, value in headers if name.lower() == "host"]
    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host,
    # with more than one, or with an invalid value.
    if len(hosts) > 1:
        raise HTTPError(400, "more than one Host header")
    if not hosts and version != "HTTP/1.0":
        raise HTTPError(400, "missing Host header")
    if hosts:
        check_host(hosts[0])
    return Request(method, target, version, headers)


def check_field(name: str, value: str) -> tuple[str, str]:
    """A response header, checked: a token for a name, a value without control characters."""
    if not (isinstance(name, str) and TOKEN.fullmatch(name)):
        raise ValueError(f"invalid header name {name!r}")
    if not (isinstance(value, str) and FIELD_VALUE.fullmatch(value)):
        raise ValueError(f"invalid value for header {name}: {value!r} "
                         "(a str without control characters)")
    return name, value


def build_response(status: int, headers=(), body: bytes = b"", *, version="HTTP/1.1") -> bytes:
    """The bytes of a whole response: status line, headers, blank line, body; CRLF everywhere.

    Adds Content-Length unless the caller framed the body, so the client knows where the body ends;
    1xx, 204 and 304 responses never have a body, and get no Content-Length.
    """
    if type(status) is not int or status not in REASONS:
        raise ValueError("status must be a known HTTP status code such as 200 (an int), "
                         f"got {status!r}")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise ValueError(f"version must be 'HTTP/1.0' or 'HTTP/1.1', got {version!r}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    bodyless = status < 200 or status in (204, 304)
    if bodyless and body:
        raise ValueError(f"a {status} response cannot have a body")
    headers = [check_field(name, value) for name, value in headers]
    if not bodyless and not ({name.lower() for name, _ in headers}
                             & {"content-length", "transfer-encoding"}):
        headers.append(("Content-Length", str(len(body))))
    lines = ([f"{version} {status} {REASONS[status]}"]
             + [f"{name}: {value}" for name, value in headers])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(error: HTTPError) -> bytes:
    """The response to a refused request:
    a plain-text explanation, then the server closes the connection."""
    body = f"{error.status} {error.reason}: {error.message}\n".encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
    return build_response(error.status, headers, body)


# --- The request body (lesson 03) -----------------------------------------------------------------

MAX_BODY = 10 * 1024 * 1024  # bytes in a request body; a bigger one is refused with 413
# the interim response a client waits for after Expect: 100-continue
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def request_body_length(request: Request, max_body: int = MAX_BODY) -> int | None:
    """How the request body is framed (RFC 9112 section 6): its length in bytes (0 when it has
    none), or None when it comes chunked, to be read with ChunkedBody. Every other case is
    refused."""
    transfer_encoding = request.header("Transfer-Encoding")
    content_length = request.header("Content-Length")
    if transfer_encoding is not None and content_length is not None:
        # Two framings that may disagree: that is how request smuggling works, when a proxy in front
        # of us believed the other one. RFC 9112 6.3 allows decoding it as chunked; refusing is
        # simpler and just as safe, and the connection is closed after the answer either way.
        raise HTTPError(400, "both Content-Length and Transfer-Encoding")
    if transfer_encoding is not None:
        if request.version == "HTTP/1.0":
            # HTTP/1.0 has no transfer codings:
            # a proxy on the way may frame this body differently (RFC 9112 6.1).
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [coding.strip().lower() for coding in transfer_encoding.split(",")]
        if codings[-1] != "chunked" or "chunked" in codings[:-1]:
            # Only a final chunked says where the body ends (RFC 9112 6.3, item 4):
            # we must answer 400 and close.
            raise HTTPError(400, "chunked must be the final transfer coding, once: "
                                 f"got {transfer_encoding!r}")
        if codings != ["chunked"]:
            # e.g. "gzip, chunked"
            raise HTTPError(501, f"unsupported transfer coding {transfer_encoding!r}")
        return None
    if content_length is None:
        return 0  # a request without either has no body
    # Digits only (RFC 9110 8.6): int() would also take "+3", " 5", "1_0";
    # this refuses "-1" and "5, 5" (two headers).
    if not (content_length.isascii() and content_length.isdigit()):
        raise HTTPError(400, f"invalid Content-Length {content_length!r}")
    length = int(content_length)
    if length > max_body:
        raise HTTPError(413, f"request body larger than {max_body} bytes")
    return length


def wants_continue(request: Request) -> bool:
    """Does the client wait for 100 Continue before it
    sends its body (Expect: 100-continue, as curl does)?"""
    expect = request.header("Expect", "")
    return expect.lower() == "100-continue" and request.version == "HTTP/1.1"


# A chunk's size line (RFC 9112 section 7.1): hex digits, optional extensions (";name=value"), then
# CRLF exactly. No bare LF, no stray CR, no spaces around the size: a server that reads framing more
# leniently than the proxy in front of it can be smuggled a request. The RFC allows any number of
# digits; 16 (up to 2**64 - 1) is this server's own limit.
# (int(x, 16) alone would also accept "0x1f", "+1f", " 1f" or "1_f".)
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(;[\t\x20-\x7e\x80-\xff]*)?\r\n")
# A trailer field after the last chunk: a field name, a colon, a value without CR or LF, then CRLF.
TRAILER_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n")
LINE, DATA = "line", "data"  # what ChunkedBody.next_read() asks for
PIECE = 65536  # at most this many bytes of chunk data at a time, however large the chunk


class ChunkedBody:
    """Decodes a chunked request body (RFC 9112 section 7.1), without doing any I/O itself.

    next_read() says what to read next: (LINE, limit) for one line of at most `limit` bytes, or
    (DATA, n) for exactly n bytes. feed() takes what was read and returns the body bytes it held. A
    blocking server drives it with rfile.readline() and rfile.read(), an asyncio server with its
    stream: one grammar for both. Anything but the exact grammar is a 400; a connection that ends
    early shows up as a short read, also a 400.
    """

    def __init__(self, max_body: int = MAX_BODY):
        self.max_body = max_body
        self.received = 0  # body bytes so far
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.left = 0  # bytes of the current chunk's data not read yet
        self.trailers = 0

    @property
    def done(self) -> bool:
        return self.state == "done"

    def next_read(self) -> tuple[str, int]:
        if self.state == "data":
            return DATA, min(self.left, PIECE)
        if self.state == "crlf":
            return DATA, 2
        return LINE, MAX_LINE + 2  # a size line or a trailer line

    def feed(self, data: bytes) -> bytes:
        if self.state == "size":
            match = CHUNK_SIZE.fullmatch(data)
            if match is None:
                raise HTTPError(400, "invalid chunk size line")
            size = int(match[1], 16)  # a chunk extension, if any, is ignored: nobody uses them
            if self.received + size > self.max_body:
                raise HTTPError(413, f"request body larger than {self.max_body} bytes")
            self.state, self.left = ("data", size) if size else ("trailer", 0)
            return b""
        if self.state == "data":
            if len(data) < min(self.left, PIECE):
                raise HTTPError(400, "the connection ended in the middle of a chunk")
            self.left -= len(data)
            self.received += len(data)
            if not self.left:
                self.state = "crlf"
            return data
        if self.state == "crlf":
            if data != b"\r\n":
                raise HTTPError(400, "chunk data not followed by CRLF "
                                     "(shorter or longer than its size)")
            self.state = "size"
            return b""
        if self.state == "trailer":
            # Trailer fields may follow the last chunk;
            # RFC 9112 section 7.1.2 lets a server read and drop them.
            if data == b"\r\n":
                self.state = "done"
            elif not TRAILER_LINE.fullmatch(data):
                raise HTTPError(400, "invalid or incomplete trailer section")
            else:
                self.trailers += 1
                if self.trailers > MAX_HEADERS:
                    raise HTTPError(431, f"more than {MAX_HEADERS} trailer fields")
            return b""
        raise RuntimeError("the chunked body has ended: nothing more to feed")


def read_chunked(rfile, max_body: int = MAX_BODY) -> bytes:
    """A whole chunked body from a blocking binary file,
    decoded (ChunkedBody driven by readline and read)."""
    decoder, body = ChunkedBody(max_body), bytearray()
    while not decoder.done:
        kind, size = decoder.next_read()
        body += decoder.feed(rfile.readline(size) if kind == LINE else rfile.read(size))
    return bytes(body)


# --- The response's framing (lesson 03) -----------------------------------------------------------

# Headers about one connection rather than the message. The server owns the connection, so an
# application must not set them (PEP 3333). PEP 3333 points to RFC 2616 13.5.1, whose list names
# "Trailers"; the field is Trailer (RFC 9110 6.6.2).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade"}
LAST_CHUNK = b"0\r\n\r\n"  # ends a chunked body


class Framing(NamedTuple):
    """How one response's body goes on the wire; decided when its headers go out."""
    # what the server adds to the app's headers: Content-Length, Transfer-Encoding, Connection
    headers: list
    has_body: bool  # False for HEAD, 1xx, 204 and 304
    chunked: bool  # the body goes in chunks (HTTP/1.1, length unknown)
    limit: int | None  # the app's Content-Length: never send more; None: no limit
    keep_alive: bool  # may the connection carry another request after this response?


def choose_framing(method, version, code, headers, body_length, keep_alive):
    """How the client will know where the body ends (RFC 9112 section 6),
    and whether the connection stays open.
    code is the status as an int; headers the app's (name, value) str pairs; body_length the whole
    body's length, when the server knows it; keep_alive says whether the client and the server would
    both keep the connection."""
    declared = [value for name, value in headers if name.lower() == "content-length"]
    has_body = method != "HEAD" and code >= 200 and code not in (204, 304)
    added, chunked, limit = [], False, None
    if declared:
        if len(declared) > 1 or not (declared[0].isascii() and declared[0].isdigit()):
            raise ValueError(f"invalid Content-Length {declared}")
        limit = int(declared[0]) if has_body else None
    elif not has_body:
        pass  # nothing to measure
    elif body_length is not None:
        added.append(("Content-Length", str(body_length)))
    elif version == "HTTP/1.1":
        added.append(("Transfer-Encoding", "chunked"))
        chunked = True
    else:
        keep_alive = False  # HTTP/1.0 has no chunks: the body ends when the connection closes
    if not keep_alive:
        added.append(("Connection", "close"))
    elif version == "HTTP/1.0":
        added.append(("Connection", "keep-alive"))  # HTTP/1.0 closes unless told otherwise
    return Framing(added, has_body, chunked, limit, keep_alive)


def encode_chunk(data: bytes) -> bytes:
    """One piece of a chunked body: its size in hex, CRLF, the bytes, CRLF.
    (An empty chunk would end the body.)"""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


class ResponseBody:
    """A response body on its way to the wire, framed as choose_framing decided: nothing at all for
    HEAD, 1xx, 204 and 304; never more in all than the app's Content-Length; one chunk per piece
    when chunked, and the last chunk at the end. Both servers send their bodies through it."""

    def __init__(self, framing: Framing):
        self.framing = framing
        self.left = framing.limit  # bytes the app's Content-Length still allows; None: no limit

    def frame(self, data: bytes) -> bytes:
        """A piece of the body as it goes on the wire."""
        if not self.framing.has_body:
            return b""
        if self.left is not None:
            data = data[:self.left]  # never more than the app's Content-Length
            self.left -= len(data)
        return encode_chunk(data) if self.framing.chunked else data

    def end(self) -> bytes:
        """What ends the body on the wire: the last chunk, when it is chunked."""
        return LAST_CHUNK if self.framing.chunked else b""

    @property
    def cut_short(self) -> bool:
        """Fewer bytes went out than the app's Content-Length promised: the client waits for
        the rest, and only closing the connection ends that."""
        return bool(self.left)


@functools.lru_cache(maxsize=1)
def http_date(second):
    """The Date header's value (RFC 9110 5.6.7) for a time in whole seconds. Formatting a date costs
    as much as all the rest of a small response's head, so a server formats it once a second (as
    uvicorn does): call it with int(time.time()), and the cache answers the same second's calls."""
    return email.utils.formatdate(second, usegmt=True)


def build_head(status, headers):
    """The status line ("404 Not Found") and the header block,
    with Date and Server added unless the headers have them."""
    names = {name.lower() for name, _ in headers}
    if "date" not in names:
        # RFC 9110 6.6.1: a server with a clock sends one
        headers = headers + [("Date", http_date(int(time.time())))]
    if "server" not in names:
        headers = headers + [("Server", "gatewaylab")]
    lines = ([f"HTTP/1.1 {status}\r\n"] + [f"{name}: {value}\r\n" for name, value in headers]
             + ["\r\n"])
    return "".join(lines).encode("latin-1")


def with_date(response: bytes) -> bytes:
    """A whole response (from error_response, say) with a Date header after its status line.

    RFC 9110 6.6.1: an origin server with a clock MUST send Date on 2xx, 3xx and 4xx responses,
    and MAY on 1xx and 5xx.
    The course's servers send it on all of them."""
    status_line, _, rest = response.partition(b"\r\n")
    return (status_line + b"\r\nDate: " + http_date(int(time.time())).encode("latin-1")
            + b"\r\n" + rest)


def error_answer(error: HTTPError, method: str = "GET") -> bytes:
    """What a server sends for a refused request, or an app that failed before its response began:
    lesson 01's error_response, with a Date. A HEAD request gets the head alone (RFC 9110 9.3.2):
    a body after it would be read as the start of the next response."""
    response = with_date(error_response(error))
    if method == "HEAD":
        head, blank, _ = response.partition(b"\r\n\r\n")
        return head + blank
    return response
