"""HTTP/1.1 on the wire: read and parse a request head, write a response (lesson 01).

Lesson 01 builds this module cell by cell; the WSGI server of lesson 03 imports it. It follows RFC 9112 (message syntax)
and RFC 9110 (field values) closely enough to refuse what a careful server refuses. Reading a body (Content-Length,
chunked) is lesson 03's job and is not here.
"""
import http
import re
from dataclasses import dataclass, field

# Limits keep one client from making the server buffer without end.
MAX_LINE = 8192  # bytes in the request line, or in one header line
MAX_HEADERS = 100  # header lines in one request
MAX_HEAD = 65536  # bytes in the whole head, each line ending counted as CRLF

# The standard reason phrase of every status code Python knows: 200 "OK", 404 "Not Found", 431 ...
REASONS = {status.value: status.phrase for status in http.HTTPStatus}
# RFC 9110 renamed a few; Python 3.13 has the new names, 3.11 the old ones. The course uses the RFC's on every Python.
REASONS.update({413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
                422: "Unprocessable Content"})


class HTTPError(Exception):
    """A request the server refuses: the status to answer, and a message saying why."""

    def __init__(self, status: int, message: str):
        if type(status) is not int or status not in REASONS:
            raise ValueError(f"HTTPError needs a known HTTP status code such as 400 (an int), got {status!r}")
        super().__init__(f"{status} {REASONS[status]}: {message}")
        self.status = status
        self.reason = REASONS[status]
        self.message = message


def read_line(rfile, max_line: int, too_long: int) -> bytes | None:
    """Read one line and return it without its line ending; None if the connection closed before it started."""
    raw = rfile.readline(max_line + 2)  # +2: room for the CRLF after a line of exactly max_line bytes
    if isinstance(raw, str):
        raise TypeError("read a request from a file opened in binary mode, e.g. sock.makefile('rb')")
    if not raw:
        return None
    if not raw.endswith(b"\n") and len(raw) < max_line + 2:
        raise HTTPError(400, "incomplete request head")  # the connection closed in the middle of a line
    # RFC 9112 2.2 lets a server accept a bare LF as a line ending (h11 does); CRLF is the standard one.
    line = raw.removesuffix(b"\n").removesuffix(b"\r")
    if len(line) > max_line:
        raise HTTPError(too_long, f"line longer than {max_line} bytes")
    return line


def read_head(rfile, *, max_line=MAX_LINE, max_head=MAX_HEAD, max_headers=MAX_HEADERS) -> list[bytes] | None:
    """The lines of one request head, request line first; None if the client closed the connection before sending.

    rfile is a binary file such as sock.makefile("rb"): what follows the head (a body, the next request) stays buffered
    in it for the caller. A socket timeout set by the caller surfaces here as TimeoutError.
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
        # (an empty line before the request line is skipped: RFC 9112 2.2, some clients send CRLF after a body)
        if len(lines) > 1 + max_headers:
            raise HTTPError(431, f"more than {max_headers} header lines")


# The parser decodes bytes as latin-1 first (one byte, one character, never an error), then checks the strings.
# token = 1*tchar (RFC 9110 5.6.2): method names and header names are tokens.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), case-sensitive.
VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
# A request target is visible ASCII only (RFC 3986 characters; h11 enforces the same).
TARGET = re.compile(r"[\x21-\x7e]+")


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """Split b'GET /path?q=1 HTTP/1.1' into (method, target, version), as latin-1 native strings."""
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3:
        raise HTTPError(400, "request line must be: method, target, version, separated by single spaces")
    method, target, version = parts
    if not TOKEN.fullmatch(method):
        raise HTTPError(400, "invalid method")
    if not TARGET.fullmatch(target):
        raise HTTPError(400, "invalid request target")
    match = VERSION.fullmatch(version)
    if not match:
        raise HTTPError(400, "invalid HTTP version")
    if match[1] != "1":
        raise HTTPError(505, "only HTTP/1.x is supported")
    return method, target, version


def parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    """Turn header lines (name ":" OWS value OWS) into (name, value) pairs, in order, repeats kept."""
    headers = []
    for line in lines:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t"):
            # obs-fold: an old way to continue the previous value on a new line. RFC 9112 5.2 lets a server reject it,
            # and rejecting is safer than guessing how a proxy in front of us joined the lines.
            raise HTTPError(400, "header line starts with whitespace (obsolete line folding)")
        name, colon, value = text.partition(":")
        if not colon:
            raise HTTPError(400, "header line without a colon")
        if name.rstrip(" \t") != name:
            # RFC 9112 5.1: a server MUST reject whitespace between the name and the colon (request smuggling).
            raise HTTPError(400, "whitespace between header name and colon")
        if not TOKEN.fullmatch(name):
            raise HTTPError(400, "invalid header name")
        value = value.strip(" \t")
        if any(char in value for char in "\r\n\0"):
            # RFC 9110 5.5: CR, LF and NUL in a value are dangerous; a recipient must reject or replace them.
            raise HTTPError(400, "header value contains CR, LF or NUL")
        headers.append((name, value))
    return headers


@dataclass
class Request:
    """A parsed request head. Header names are kept as sent; header() compares them case-insensitively."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default=None):
        """The value of a header, repeated ones joined with ", " as RFC 9110 5.3 allows."""
        # (Set-Cookie is the one field that cannot be joined, but it only appears in responses.)
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else default

    @property
    def path(self) -> str:  # the target up to the first "?"
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:  # what follows the first "?", still percent-encoded
        return self.target.partition("?")[2]

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open after the response (RFC 9112 9.3)."""
        options = {option.strip().lower() for option in self.header("Connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in options and "close" not in options
        return "close" not in options


def parse_request(rfile) -> Request | None:
    """Read and parse one request head from rfile; None if the client closed the connection first."""
    lines = read_head(rfile)
    if lines is None:
        return None
    method, target, version = parse_request_line(lines[0])
    headers = parse_headers(lines[1:])
    hosts = [value for name, value in headers if name.lower() == "host"]
    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, or with more than one.
    if len(hosts) > 1:
        raise HTTPError(400, "more than one Host header")
    if not hosts and version != "HTTP/1.0":
        raise HTTPError(400, "missing Host header")
    return Request(method, target, version, headers)


# What a response header value may hold: tab, visible ASCII and latin-1 letters; no CR or LF to inject a line with.
FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def check_field(name: str, value: str) -> tuple[str, str]:
    """A response header, checked: a token for a name, a value without control characters."""
    if not (isinstance(name, str) and TOKEN.fullmatch(name)):
        raise ValueError(f"invalid header name {name!r}")
    if not (isinstance(value, str) and FIELD_VALUE.fullmatch(value)):
        raise ValueError(f"invalid value for header {name}: {value!r} (a str without control characters)")
    return name, value


def build_response(status: int, headers=(), body: bytes = b"", *, version="HTTP/1.1") -> bytes:
    """The bytes of a whole response: status line, headers, blank line, body; CRLF everywhere.

    Adds Content-Length unless the caller framed the body, so the client knows where the body ends; 1xx, 204 and
    304 responses never have a body, and get no Content-Length.
    """
    if type(status) is not int or status not in REASONS:
        raise ValueError(f"status must be a known HTTP status code such as 200 (an int), got {status!r}")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise ValueError(f"version must be 'HTTP/1.0' or 'HTTP/1.1', got {version!r}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    bodyless = status < 200 or status in (204, 304)
    if bodyless and body:
        raise ValueError(f"a {status} response cannot have a body")
    headers = [check_field(name, value) for name, value in headers]
    if not bodyless and not {name.lower() for name, _ in headers} & {"content-length", "transfer-encoding"}:
        headers.append(("Content-Length", str(len(body))))
    lines = [f"{version} {status} {REASONS[status]}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(error: HTTPError) -> bytes:
    """The response to a refused request: a plain-text explanation, then the server closes the connection."""
    body = f"{error.status} {error.reason}: {error.message}\n".encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
    return build_response(error.status, headers, body)
