"""Lesson 01's exercises: HTTP/1.1 from the client's side and a keep-alive server, checked against real servers.

Every socket a case opens has a timeout and is closed by the case, so a wrong answer fails with a message instead of
hanging the check. Servers are started under names beginning with "check-01" and stopped before the case returns.
"""

import contextlib
import io
import json
import socket
import struct
import threading
import time

import h11

from gatewaylab import http1
from gatewaylab.grading import CaseFailed, Exercise, expect_equal
from gatewaylab.servers import serve_asgi, serve_socket, serve_wsgi
from gatewaylab.wire import Connection

SOCKET_TIMEOUT = 2.0  # seconds a case waits for bytes before deciding they will never come


# --- helpers shared by the cases --------------------------------------------------------------------------------------

async def _echo_app(scope, receive, send):
    """An ASGI app that answers with JSON describing the request it received, as uvicorn parsed it."""
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        event = await receive()
        body, more = body + event.get("body", b""), event.get("more_body", False)
    seen = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1")}
    text = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


class _ResponseReader:
    """Reads the responses arriving on one connection with the course's strict client (gatewaylab.wire, h11), and
    turns what goes wrong into advice for the learner."""

    def __init__(self, sock, silence_advice: str):
        self.connection = Connection.around(sock, deadline=0.0)
        self.silence_advice = silence_advice  # what to tell the learner when no complete response arrives

    def read(self, what: str) -> tuple[int, dict, bytes]:
        """The next response: (status, headers with lower-case names, body)."""
        self.connection.deadline = time.monotonic() + SOCKET_TIMEOUT
        try:
            reply = self.connection.read_response()
        except h11.RemoteProtocolError as error:
            raise CaseFailed(f"{what}: the response is not valid HTTP/1.1 ({error})") from None
        except TimeoutError:
            raise CaseFailed(f"{what}: no complete response within {SOCKET_TIMEOUT:g} s ({self.silence_advice})") \
                from None
        except ConnectionError:
            raise CaseFailed(f"{what}: the connection was closed without a response (did your server stop after the "
                             "first request on this connection, or crash?)") from None
        return reply.status, reply.headers, reply.body


def _lines_end_with_crlf(raw: bytes) -> None:
    head = raw.partition(b"\r\n\r\n")[0]
    if b"\n" in head.replace(b"\r\n", b""):
        raise CaseFailed('every line of the head must end with "\\r\\n" (CR LF); yours has a line ending with a bare '
                         '"\\n"', got=raw)


EMPTY_LINE_ADVICE = 'after the last header line comes one more "\\r\\n", so the head ends with "\\r\\n\\r\\n"'


def _parse_request_bytes(raw: bytes, what: str, body: bytes = b"") -> tuple[http1.Request, bytes]:
    """Parse a learner's request with gatewaylab.http1 (strict); the request and what follows the head.

    `body` is the body the request should end with: when the empty line before it is missing, the first empty line is
    one inside the body, and the parser's complaint about a body line would not name the real mistake.
    """
    if not isinstance(raw, bytes):
        raise CaseFailed(f"{what} must return bytes (what a socket sends), not {type(raw).__name__}; "
                         'a str becomes bytes with .encode("latin-1")', got=raw)
    _lines_end_with_crlf(raw)
    if body and raw.endswith(body) and not raw[:len(raw) - len(body)].endswith(b"\r\n\r\n"):
        raise CaseFailed(f"the head must end with an empty line before the body: {EMPTY_LINE_ADVICE}, and the body "
                         "follows it", got=raw)
    if b"\r\n\r\n" not in raw:
        raise CaseFailed(f"the head must end with an empty line: {EMPTY_LINE_ADVICE}", got=raw)
    rfile = io.BytesIO(raw)
    try:
        request = http1.parse_request(rfile)
    except http1.HTTPError as error:
        raise CaseFailed(f"a server would answer {error.status} {error.reason}: {error.message}", got=raw) from None
    return request, rfile.read()


def _request_line_and_host(raw: bytes, request: http1.Request, method: str, target: str, host: str) -> None:
    expected_start = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
    if not raw.startswith(expected_start):
        raise CaseFailed("the request line must be the method, the target and HTTP/1.1, separated by single spaces, "
                         'and end with "\\r\\n"', expected=expected_start, got=raw[:len(expected_start) + 20])
    if not request.headers or request.headers[0][0].lower() != "host":
        raise CaseFailed("the first header line must be Host (RFC 9110 7.2: clients send it first)",
                         expected=[("Host", host)], got=request.headers[:1])
    expect_equal(request.header("Host"), host, "the Host header's value")


# --- 01.1 build_request -----------------------------------------------------------------------------------------------

build_request = Exercise(
    "01.1", "Write a request by hand",
    points=3,
    answer='a function build_request(method, target, host, headers=(), body=b"") returning the request as bytes',
    params=3,
    hints=[
        "A request is: the request line (method, target, HTTP/1.1), the header lines (Host first, then the given "
        "headers in order), an empty line, the body. Every line ends with \"\\r\\n\".",
        "Collect the lines as strings in a list, join them with \"\\r\\n\", add \"\\r\\n\\r\\n\" to end the last "
        "line and the head, encode with .encode(\"latin-1\"), then append the body (already bytes). When the body "
        "is not empty, add a line Content-Length: len(body).",
        "lines = [f\"{method} {target} HTTP/1.1\", f\"Host: {host}\"] + [f\"{n}: {v}\" for n, v in headers]; "
        "if body: lines.append(f\"Content-Length: {len(body)}\"); "
        "return (\"\\r\\n\".join(lines) + \"\\r\\n\\r\\n\").encode(\"latin-1\") + body",
    ],
)


@build_request.case("a GET: request line, Host, CRLF line endings, the final empty line")
def _(answer):
    raw = answer("GET", "/index.html", "example.org")
    request, rest = _parse_request_bytes(raw, "build_request")
    _request_line_and_host(raw, request, "GET", "/index.html", "example.org")
    if rest:
        raise CaseFailed("a request without a body ends right after the empty line; yours has bytes after it",
                         got=rest)
    if request.header("Content-Length") is not None:
        raise CaseFailed("a request without a body gets no Content-Length, as the task says: RFC 9110 section 8.6 "
                         "says a client SHOULD NOT send one when there is no content and the method (GET here) does "
                         "not anticipate any. Add the line only when body is not empty", got=request.headers)


@build_request.case("extra headers come after Host, in the order given")
def _(answer):
    extra = [("Accept", "text/plain"), ("X-Trace", "42"), ("Accept", "text/html")]
    raw = answer("GET", "/search?q=wsgi", "localhost:8000", extra)
    request, _ = _parse_request_bytes(raw, "build_request")
    _request_line_and_host(raw, request, "GET", "/search?q=wsgi", "localhost:8000")
    given = [header for header in request.headers[1:] if header[0].lower() in ("accept", "x-trace")]
    expect_equal(given, extra, "the headers after Host")


@build_request.case("a body is announced with Content-Length and follows the empty line")
def _(answer):
    body = '{"name": "café"}\r\n\r\n'.encode()  # CRLFs inside a body are just bytes; é is 2 bytes in UTF-8
    raw = answer("POST", "/items", "example.org", [("Content-Type", "application/json")], body)
    request, rest = _parse_request_bytes(raw, "build_request", body)
    length = request.header("Content-Length")
    if length is None:
        raise CaseFailed("a request with a body needs a Content-Length header, or the server cannot tell where the "
                         "body ends", expected=f"Content-Length: {len(body)}", got=request.headers)
    expect_equal(length, str(len(body)), "the Content-Length value (the body's length in bytes)")
    expect_equal(rest, body, "what follows the empty line (the body, unchanged)")


@build_request.case("uvicorn (whose parser, h11, is strict) receives exactly that request")
def _(answer):
    body = b"name=ada&lang=python"
    raw = answer("POST", "/submit?debug=1", "127.0.0.1", [("Content-Type", "application/x-www-form-urlencoded")],
                 body)
    if not isinstance(raw, bytes):
        raise CaseFailed(f"build_request must return bytes, not {type(raw).__name__}", got=raw)
    with serve_asgi(_echo_app, name="check-01.1", lifespan="off", log_level="critical") as server, \
            socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(raw)
        advice = "uvicorn is still waiting for the rest of your request: is the empty line missing at the end of " \
                 "the head, or is Content-Length larger than the body?"
        status, _, answered = _ResponseReader(sock, advice).read("uvicorn's answer to your request")
    if status != 200:
        raise CaseFailed(f"uvicorn refused your request with status {status} ({answered.decode('latin-1')!r}): "
                         "check the request line, the header lines and the empty line", got=raw)
    seen = json.loads(answered)
    expect_equal([seen["method"], seen["path"], seen["query"]], ["POST", "/submit", "debug=1"],
                 "the method, path and query string uvicorn saw")
    expect_equal(seen["body"].encode("latin-1"), body, "the body uvicorn received")
    content_type = [v for k, v in seen["headers"] if k == "content-type"]
    expect_equal(content_type, ["application/x-www-form-urlencoded"], "the Content-Type header(s) uvicorn saw")


# --- 01.2 parse_status_line -------------------------------------------------------------------------------------------

parse_status_line = Exercise(
    "01.2", "Parse a status line",
    points=2,
    answer="a function parse_status_line(line: bytes) returning (version: str, status: int, reason: str)",
    params=1,
    hints=[
        "A status line is HTTP-version SP status-code SP reason-phrase (RFC 9112 4). The version is HTTP/ digit . "
        "digit, the code exactly three digits, and the reason is everything after the second space: it may contain "
        "spaces, or be empty.",
        "Decode with .decode(\"latin-1\"), then split at most twice: text.split(\" \", 2). Check each part with "
        "re.fullmatch before converting: int() alone accepts \"+20\", \" 200\" and \"1_00\".",
        "version, code, reason = parts (after checking len(parts) == 3); "
        "if not re.fullmatch(r\"HTTP/[0-9]\\.[0-9]\", version) or not re.fullmatch(r\"[0-9]{3}\", code): "
        "raise ValueError(...); return version, int(code), reason",
    ],
)


@parse_status_line.case("HTTP/1.1 200 OK")
def _(answer):
    expect_equal(answer(b"HTTP/1.1 200 OK"), ("HTTP/1.1", 200, "OK"), "parse_status_line(b'HTTP/1.1 200 OK')")


@parse_status_line.case("reason phrases with spaces, and empty ones")
def _(answer):
    for line, expected in [(b"HTTP/1.0 404 Not Found", ("HTTP/1.0", 404, "Not Found")),
                           (b"HTTP/1.1 418 I'm a teapot", ("HTTP/1.1", 418, "I'm a teapot")),
                           (b"HTTP/1.1 204 ", ("HTTP/1.1", 204, "")),
                           (b"HTTP/1.1 200 \xff", ("HTTP/1.1", 200, "\xff"))]:  # obs-text: latin-1 ÿ
        try:
            result = answer(line)
        except ValueError as error:
            why = ("a reason phrase may hold any byte above 0x7F (obs-text, RFC 9112 section 4), which UTF-8 "
                   "cannot always decode: decode with .decode(\"latin-1\"), one byte to one character, never an "
                   "error" if isinstance(error, UnicodeDecodeError) else
                   "a reason phrase may contain spaces, or be empty after the second space")
            raise CaseFailed(f"{line!r} is a valid status line ({why}), but your function raised "
                             f"{type(error).__name__}: {error}", expected=expected) from None
        expect_equal(result, expected, f"parse_status_line({line!r})")


@parse_status_line.case("malformed lines raise ValueError")
def _(answer):
    malformed = [b"", b"HTTP/1.1 2000 OK", b"HTTP/1.1 20 OK", b"200 OK", b"HTTP/1.1 OK", b"HTTP/1.1 abc OK",
                 b"HTTP/1.1  200 OK", b"FTP/1.1 200 OK", b"HTTP/1.1 +20 OK", b"HTTP/1.1 1_0 OK", b"HTTP/11 200 OK",
                 "HTTP/1.1 ٢٠٠ OK".encode(), "HTTP/١.1 200 OK".encode()]  # Arabic-Indic digits, in UTF-8
    for line in malformed:
        try:
            result = answer(line)
        except ValueError:
            continue
        except Exception as error:  # the learner's exception, reported with what should have been raised instead
            raise CaseFailed(f"for the malformed line {line!r}, raise ValueError (with a message saying what is "
                             f"wrong); yours raised {type(error).__name__}: {error}") from None
        why = ""
        if not line.isascii():
            why = (" (its digits are not ASCII: str.isdigit(), \\d in a regular expression and int() all take "
                   "other scripts' digits, so check with re.fullmatch(r\"[0-9]{3}\", ...); RFC 9112 DIGIT is 0-9 "
                   "only)")
        raise CaseFailed(f"{line!r} is not a valid status line{why}, so parse_status_line must raise ValueError, "
                         "not return a result", expected="ValueError", got=result)


# --- 01.3 read_response -----------------------------------------------------------------------------------------------

read_response = Exercise(
    "01.3", "Read a whole response from a socket",
    points=4,
    answer="a function read_response(sock) returning (status: int, headers: list of (name, value), body: bytes)",
    params=1,
    timeout=8.0,
    hints=[
        "recv() returns whatever bytes have arrived: maybe half a line, maybe the head and part of the body. Keep "
        "calling it and adding to a buffer until the buffer contains b\"\\r\\n\\r\\n\", the end of the head. recv() "
        "returning b\"\" means the server closed: if the response is not complete by then, raise ConnectionError.",
        "Split the buffer once, at the first b\"\\r\\n\\r\\n\" (a body may hold an empty line too): the head becomes "
        "the status line and header lines (split each at the first \":\", strip the value, compare names with "
        ".lower()); all the rest is the start of the body. With Content-Length, keep receiving until the body has "
        "that many bytes, and no longer: a keep-alive server will not close. Without it, receive until recv() "
        "returns b\"\" (the server closed).",
        "data = b\"\"; while b\"\\r\\n\\r\\n\" not in data: chunk = sock.recv(4096); if not chunk: raise "
        "ConnectionError(\"closed in the head\"); data += chunk. Then head, _, body = "
        "data.partition(b\"\\r\\n\\r\\n\"); status_line, *lines = head.decode(\"latin-1\").split(\"\\r\\n\"); "
        "status = int(status_line.split(\" \")[1]). "
        "With the content-length value checked (value.isascii() and value.isdigit(), else raise ValueError), "
        "length = int(value): while len(body) < length: chunk = sock.recv(length - "
        "len(body)); if not chunk: raise ConnectionError(\"closed in the body\"); body += chunk",
    ],
)

WAITED_ADVICE = ("stop reading when the body has Content-Length bytes (a keep-alive server does not close the "
                 "connection), and stop when recv() returns b\"\" (the server closed)")
# Once the other end has closed, recv() returns b"" at once, every time: a loop still waiting for bytes spins
# instead of blocking, so no socket timeout ends it. Counting the empty reads tells it from a slow answer.
EMPTY_READS_ALLOWED = 100


def _hello_wsgi(environ, start_response):
    body = b"Hello from wsgiref\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("X-Lesson", "01")])
    return [body]


def _call_read_response(answer, sock, waited_advice: str = WAITED_ADVICE) -> tuple[int, list, bytes]:
    try:
        result = answer(sock)
    except TimeoutError:
        raise CaseFailed(f"read_response waited {SOCKET_TIMEOUT:g} s for bytes that never came: {waited_advice}") \
            from None
    if not (isinstance(result, tuple) and len(result) == 3):
        raise CaseFailed("read_response must return a tuple (status, headers, body)", got=result)
    status, headers, body = result
    if type(status) is not int:
        raise CaseFailed(f"the status must be an int such as 200, not {type(status).__name__}", got=status)
    if not isinstance(body, bytes):
        raise CaseFailed(f"the body must be bytes, not {type(body).__name__}", got=body)
    if not (isinstance(headers, list) and all(isinstance(h, tuple) and len(h) == 2 for h in headers)):
        raise CaseFailed("the headers must be a list of (name, value) tuples", got=headers)
    return status, headers, body


def _header(headers, name):
    values = [value for key, value in headers if str(key).lower() == name.lower()]
    return values[0] if len(values) == 1 else values or None


@read_response.case("wsgiref: HTTP/1.0, closes the connection after the response")
def _(answer):
    with serve_wsgi(_hello_wsgi, name="check-01.3-wsgiref") as server, \
            socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, body = _call_read_response(answer, sock)
    expect_equal(status, 200, "the status")
    expect_equal(body, b"Hello from wsgiref\n", "the body")
    expect_equal(_header(headers, "X-Lesson"), "01", "the value of the X-Lesson header (names as sent, values "
                                                     "without the space after the colon)")


@read_response.case("uvicorn keeps the connection open: stop after Content-Length bytes", timeout=8.0)
def _(answer):
    request = b"POST /echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc"  # no Connection: close
    # The usual cause of a wait here is a lookup of "Content-Length" as written: uvicorn writes "content-length".
    advice = ("uvicorn keeps the connection open, so stop reading when the body has Content-Length bytes. Header "
              "names are case-insensitive; uvicorn sends them lower-case (content-length), so compare names with "
              ".lower()")
    with serve_asgi(_echo_app, name="check-01.3-uvicorn", lifespan="off", log_level="critical") as server, \
            socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        status, headers, body = _call_read_response(answer, sock, advice)
    expect_equal(status, 200, "the status")
    expect_equal(_header(headers, "content-type"), "application/json", "the content-type header")
    try:
        seen = json.loads(body)
    except ValueError:
        raise CaseFailed("the body should be the JSON document uvicorn sent, exactly Content-Length bytes",
                         got=body) from None
    expect_equal(seen["body"], "abc", "the request body uvicorn reports in its answer")


class _WatchedSocket(socket.socket):
    """The answer's end of a scripted connection: fails the case when the answer keeps reading after the close."""

    def __init__(self, sock: socket.socket, after_close: str):
        super().__init__(fileno=sock.detach())
        self.after_close = after_close  # what the answer should do when recv() returns b""
        self.empty_reads = 0

    def _count(self, received: int) -> None:
        if received == 0:
            self.empty_reads += 1
        if self.empty_reads > EMPTY_READS_ALLOWED:
            raise CaseFailed(f"your code called recv() again and again after it returned b\"\": once the server has "
                             "closed the connection, recv() returns b\"\" at once, every time, so a loop waiting "
                             f"for more bytes never ends. {self.after_close}")

    def recv(self, *args):
        data = super().recv(*args)
        self._count(len(data))
        return data

    def recv_into(self, *args):  # what sock.makefile() reads with
        received = super().recv_into(*args)
        self._count(received)
        return received


@contextlib.contextmanager
def _scripted(pieces: list[bytes], close: bool, after_close: str = "When recv() returns b\"\", stop reading."):
    """A connected socket for the answer; a thread sends `pieces` into the other end with short pauses, then
    closes that end if `close`."""
    ours, theirs = socket.socketpair()
    theirs = _WatchedSocket(theirs, after_close)
    theirs.settimeout(SOCKET_TIMEOUT)

    def send() -> None:
        try:
            for piece in pieces:
                ours.sendall(piece)
                time.sleep(0.005)  # each piece arrives on its own, as on a slow network
            if close:
                ours.shutdown(socket.SHUT_WR)  # what the answer sees as the server closing the connection
        except OSError:
            pass  # the answer closed its end early: nothing left to send to

    sender = threading.Thread(target=send, name="check-01.3-script", daemon=True)
    sender.start()
    try:
        yield theirs
    finally:
        theirs.close()
        sender.join(SOCKET_TIMEOUT)
        ours.close()


def _in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@read_response.case("a response trickled in 3-byte pieces, CRLFs split across them")
def _(answer):
    body = b"line one\r\n\r\nline two"  # an empty line inside the body is not the end of the head
    raw = b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with _scripted(_in_pieces(raw, 3), close=False) as sock:
        status, headers, got = _call_read_response(answer, sock)
    expect_equal(status, 201, "the status")
    expect_equal(got, body, "the body (exactly Content-Length bytes, whatever pieces they came in)")
    expect_equal(_header(headers, "content-length"), str(len(body)), "the Content-Length header's value")


@read_response.case("head and body in one piece, with an empty line inside the body")
def _(answer):
    body = b"first paragraph\r\n\r\nsecond paragraph\r\n"
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    advice = ("the whole response arrived in one piece, and no more bytes come: the server keeps the connection "
              "open, so stop reading when the body has Content-Length bytes. Its body holds an empty line "
              "(b\"\\r\\n\\r\\n\") of its own: only the first one ends the head. Split once, at the first "
              "(data.partition(b\"\\r\\n\\r\\n\")), and keep everything after it as the start of the body")
    with _scripted([raw], close=False) as sock:
        status, _, got = _call_read_response(answer, sock, advice)
    if got == body.partition(b"\r\n\r\n")[0]:
        raise CaseFailed(f"the body stops at its own empty line: {advice}", expected=body, got=got)
    expect_equal(status, 200, "the status")
    expect_equal(got, body, "the body (exactly Content-Length bytes)")


@read_response.case("no Content-Length: the body ends when the server closes")
def _(answer):
    body = bytes(range(256)) * 4  # binary: every byte value, CR and LF included
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + body
    with _scripted(_in_pieces(raw, 100), close=True, after_close="Without Content-Length, b\"\" ends the body: "
                                                                  "stop there and return it.") as sock:
        status, _, got = _call_read_response(answer, sock)
    expect_equal(status, 200, "the status")
    if got != body:
        raise CaseFailed(f"without Content-Length, read until recv() returns b\"\" (the server closed); you returned "
                         f"{len(got)} of the {len(body)} body bytes", expected=body, got=got)


# Content-Length values int() accepts but HTTP does not (1*DIGIT, RFC 9110 section 8.6); with -1, a loop
# `while len(body) < length` never runs, and body[:length] cuts the last byte off.
MALFORMED_LENGTHS = ("-1", "+3", "1_0", "٣")


@read_response.case("a malformed Content-Length raises ValueError")
def _(answer):
    for value in MALFORMED_LENGTHS:
        raw = f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n".encode() + b"abcdefghij"
        shown = f"Content-Length: {value}"
        with _scripted([raw], close=True, after_close=f"{shown} is malformed: raise ValueError.") as sock:
            try:
                result = answer(sock)
            except ValueError:
                continue
            except CaseFailed:
                raise
            except Exception as error:  # the learner's exception, reported with the one the task asks for
                raise CaseFailed(f"{shown!r} is not a valid Content-Length: raise ValueError, as the task asks; yours "
                                 f"raised {type(error).__name__}: {error}") from None
        raise CaseFailed(f"{shown!r} is not a valid Content-Length (ASCII digits and nothing else, RFC 9110 section "
                         "8.6), so raise ValueError instead of returning a result: int() also accepts '-1', '+3', "
                         "'1_0' and other scripts' digits, so check value.isascii() and value.isdigit() first",
                         expected="ValueError", got=result)


@read_response.case("the server closes in the middle of the response: raise ConnectionError")
def _(answer):
    part = b"only part of the body"
    cut_off = {"in the middle of the head": b"HTTP/1.1 200 OK\r\nContent-Ty",
               f"after {len(part)} of the 100 body bytes Content-Length announced":
                   b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + part}
    for where, raw in cut_off.items():
        closed = f"the server closed the connection {where}"
        with _scripted([raw], close=True, after_close=f"Here {closed}: raise ConnectionError.") as sock:
            try:
                result = answer(sock)
            except ConnectionError:
                continue
            except CaseFailed:
                raise
            except Exception as error:  # the learner's exception, reported with the one the task asks for
                raise CaseFailed(f"{closed}: raise ConnectionError, as the task asks; yours raised "
                                 f"{type(error).__name__}: {error}") from None
        raise CaseFailed(f"{closed}, so the response is incomplete: raise ConnectionError instead of returning a "
                         "result", expected="ConnectionError", got=result)


# --- 01.4 serve_keep_alive --------------------------------------------------------------------------------------------

serve_keep_alive = Exercise(
    "01.4", "A keep-alive server",
    points=4,
    answer="a function serve_keep_alive(listener) that accepts connections in a loop and answers each request",
    params=1,
    timeout=8.0,
    hints=[
        "Two loops: the outer one accepts connections, the inner one answers requests on one connection until the "
        "client leaves (parse_request returns None), asks to close (request.keep_alive is False), or sends something "
        "malformed (HTTPError: answer with error_response, then close). Set conn.settimeout(1) first so a silent "
        "client cannot hold the server.",
        "Open one file per connection with `with conn, conn.makefile(\"rb\") as rfile:` and read every request on "
        "that connection from it: it holds bytes already received, and the with closes both (a file from "
        "conn.makefile() keeps the socket open until it is closed too). Before the next request, skip this one's "
        "body with rfile.read(int(request.header(\"Content-Length\", \"0\"))); refuse a Content-Length that is not "
        "ASCII digits with HTTPError(400, ...): int() alone also takes \"+3\", \"1_0\" and \"-1\". Catch OSError "
        "(TimeoutError is one) around the inner loop to close quietly.",
        "for each request: check length.isascii() and length.isdigit(); rfile.read(int(length)); "
        "headers = [(\"Content-Type\", "
        "\"text/plain\")] + ([] if request.keep_alive else [(\"Connection\", \"close\")]); "
        "conn.sendall(build_response(200, headers, request.path.encode(\"latin-1\"))); "
        "if not request.keep_alive: break",
    ],
)


# Closing conn alone leaves the connection open while a file made from it is still open.
MAKEFILE_NOTE = "(a file from conn.makefile() keeps the socket open until it is closed too)"
LOOP_ENDED = ("your server no longer accepts connections: its loop ended. Keep calling listener.accept() in a "
              "`while True` loop, and let no error from one connection end it")
KEEP_ALIVE_ADVICE = ("does every response have Content-Length? does the server answer every request on the "
                     "connection, reading each request head with one rfile kept for the whole connection?")


def _responses(sock) -> _ResponseReader:
    return _ResponseReader(sock, KEEP_ALIVE_ADVICE)


def _closed_by_server(sock) -> bool:
    """True if the server closes the connection (recv gives b"") promptly: well before its 1 s idle timeout would."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@contextlib.contextmanager
def _serve(answer):
    """Run the answer with serve_socket; when a case fails, say so if the server's thread crashed."""
    server = serve_socket(answer, name="check-01.4")
    try:
        yield server
    except CaseFailed as failure:
        server.thread.join(0.2)  # a loop that ended by itself (a `break`, a `return`) ends its thread at once
        ended_by_itself = not server.running
        server.stop()  # joins the thread, so a crash is recorded in server.error by now
        if server.error is None:
            if ended_by_itself and LOOP_ENDED not in failure.message:
                raise CaseFailed(f"{failure.message}\nWhy: {LOOP_ENDED}", expected=failure.expected,
                                 got=failure.got) from None
            raise
        crash = f"{type(server.error).__name__}: {server.error}"
        if isinstance(server.error, TimeoutError):  # a quiet client sent nothing wrong: it gets no 400
            advice = ("a client that stays silent past the timeout is not a bad request: catch TimeoutError (or "
                      "OSError, which includes it) around the loop that reads requests, close that connection "
                      "quietly, and accept the next")
        elif isinstance(server.error, ConnectionError):  # a client that left is not a bad request either
            advice = ("a client may go away at any moment, even with a reset (ConnectionResetError, "
                      "BrokenPipeError): catch OSError, which includes them, around the loop that serves one "
                      "connection, close it quietly, and accept the next")
        else:
            advice = "catch what a bad request can cause, answer 400, and keep serving"
        raise CaseFailed(f"{failure.message}\nYour server's thread crashed with {crash}: {advice}",
                         expected=failure.expected, got=failure.got) from None
    finally:
        server.stop()


def _connect(server, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    try:
        return socket.create_connection(server.address, timeout=timeout)
    except ConnectionRefusedError:
        raise CaseFailed(LOOP_ENDED) from None


def _send(sock, data: bytes, what: str) -> None:
    try:
        sock.sendall(data)
    except OSError as error:
        raise CaseFailed(f"{what}: could not send the request ({type(error).__name__}): your server had already "
                         "closed the connection") from None


def _expect_ok(got: tuple[int, dict, bytes], path: str, what: str) -> None:
    status, _, body = got
    expect_equal(status, 200, f"{what}: the status")
    expect_equal(body, path.encode(), f"{what}: the body (the request's path)")


@serve_keep_alive.case("httpx gets 200 with the path as the body")
def _(answer):
    import httpx

    with _serve(answer) as server, httpx.Client(timeout=SOCKET_TIMEOUT) as client:
        for path in ("/hello", "/a/b"):
            try:
                response = client.get(server.url + path + "?x=1")
            except httpx.HTTPError as error:
                raise CaseFailed(f"httpx could not get a response from your server for {path}: "
                                 f"{type(error).__name__}: {error}") from None
            expect_equal(response.status_code, 200, f"GET {path}?x=1: the status")
            expect_equal(response.content, path.encode(), f"GET {path}?x=1: the body (the path, without the query)")


@serve_keep_alive.case("two requests, one after the other, on one connection")
def _(answer):
    with _serve(answer) as server, _connect(server) as sock:
        responses = _responses(sock)
        for path in ("/first", "/second"):
            _send(sock, f"GET {path} HTTP/1.1\r\nHost: check\r\n\r\n".encode(), f"GET {path} on the same connection")
            _expect_ok(responses.read(f"GET {path}"), path, f"GET {path} on the same connection")


@serve_keep_alive.case("a POST's body is skipped using Content-Length; the next request still parses")
def _(answer):
    pipelined = (b"POST /upload HTTP/1.1\r\nHost: check\r\nContent-Length: 11\r\n\r\nhello world"
                 b"GET /next HTTP/1.1\r\nHost: check\r\n\r\n")
    with _serve(answer) as server, _connect(server) as sock:
        _send(sock, pipelined, "POST /upload then GET /next")
        responses = _responses(sock)
        _expect_ok(responses.read("POST /upload"), "/upload", "POST /upload")
        second = responses.read("GET /next, sent right after the POST's body")
        if second[0] == 400:
            raise CaseFailed("the request after the POST got 400: read and discard the POST's body "
                             "(Content-Length bytes) before reading the next request head", got=second[2])
        _expect_ok(second, "/next", "GET /next after the POST")


@serve_keep_alive.case("Connection: close, and HTTP/1.0 without keep-alive, end the connection")
def _(answer):
    with _serve(answer) as server:
        for request in (b"GET /bye HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n", b"GET /bye HTTP/1.0\r\n\r\n"):
            with _connect(server) as sock:
                _send(sock, request, "a request asking to close")
                what = request.split(b"\r\n")[0].decode() + (" with Connection: close" if b"close" in request else "")
                _expect_ok(_responses(sock).read(what), "/bye", what)
                if not _closed_by_server(sock):
                    raise CaseFailed(f"{what}: the client asked to close, so close the connection after the response "
                                     f"(request.keep_alive is False) {MAKEFILE_NOTE}")


# Content-Length values int() accepts but HTTP does not: the value is 1*DIGIT (RFC 9110 section 8.6).
BAD_LENGTHS = {"Content-Length: +3": b"POST / HTTP/1.1\r\nHost: check\r\nContent-Length: +3\r\n\r\nabc",
               "Content-Length: 1_0": b"POST / HTTP/1.1\r\nHost: check\r\nContent-Length: 1_0\r\n\r\n0123456789",
               "Content-Length: -1": b"POST / HTTP/1.1\r\nHost: check\r\nContent-Length: -1\r\n\r\nabc"}
LENGTH_ADVICE = ("a Content-Length is ASCII digits and nothing else (RFC 9110 section 8.6), but int() also accepts "
                 "'+3', '1_0' and '-1', and rfile.read(-1) waits for the client to close the connection. Check "
                 "length.isascii() and length.isdigit() before int(), and answer anything else with 400")


@serve_keep_alive.case("malformed requests get 400, then the server serves the next client")
def _(answer):
    bad = {"whitespace before the colon": b"GET / HTTP/1.1\r\nHost : check\r\n\r\n",
           "Content-Length: abc": b"POST / HTTP/1.1\r\nHost: check\r\nContent-Length: abc\r\n\r\n",
           "a missing Host": b"GET / HTTP/1.1\r\n\r\n"}
    with _serve(answer) as server:
        for name, request in {**bad, **BAD_LENGTHS}.items():
            with _connect(server) as sock:
                _send(sock, request, f"a request with {name}")
                try:
                    status, _, _ = _responses(sock).read(f"a request with {name}")
                except CaseFailed as failure:
                    if name not in BAD_LENGTHS:
                        raise
                    raise CaseFailed(f"{failure.message}\nWhy: {LENGTH_ADVICE}") from None
                if status != 400 and name in BAD_LENGTHS:
                    raise CaseFailed(f"a request with {name} got {status}: {LENGTH_ADVICE}", expected=400, got=status)
                expect_equal(status, 400, f"the status for a request with {name}")
                if not _closed_by_server(sock):
                    raise CaseFailed(f"after answering 400 to a request with {name}, close the connection: the "
                                     f"server cannot know where a next request would start {MAKEFILE_NOTE}")
        with _connect(server) as sock:
            _send(sock, b"GET /still-here HTTP/1.1\r\nHost: check\r\n\r\n", "GET /still-here")
            _expect_ok(_responses(sock).read("GET /still-here after the bad requests"), "/still-here",
                       "GET /still-here after the bad requests")


@serve_keep_alive.case("a client that resets its connection after a request does not stop the server")
def _(answer):
    with _serve(answer) as server:
        with _connect(server) as sock:
            _send(sock, b"GET /gone HTTP/1.1\r\nHost: check\r\n\r\n", "GET /gone")
            # SO_LINGER with a zero timeout: close() sends a reset (RST) instead of the usual goodbye (FIN), as a
            # client that crashes or gives up does; the server's next read or write raises ConnectionResetError
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.1)  # the reset reaches the server
        with _connect(server) as sock:
            _send(sock, b"GET /after-reset HTTP/1.1\r\nHost: check\r\n\r\n", "GET /after-reset")
            _expect_ok(_responses(sock).read("GET /after-reset, from a new client after the reset"),
                       "/after-reset", "GET /after-reset")


@serve_keep_alive.case("a client that connects and stays silent is dropped, so others get served", timeout=10.0)
def _(answer):
    with _serve(answer) as server, _connect(server):
        started = time.monotonic()  # the silent client above is connected: the server accepts it first
        with _connect(server, timeout=5.0) as sock:
            _send(sock, b"GET /patient HTTP/1.1\r\nHost: check\r\n\r\n", "GET /patient")
            try:
                got = _responses(sock).read("GET /patient while another client stays silent")
            except CaseFailed:
                raise CaseFailed("a client that connected and sent nothing kept your server from answering anyone "
                                 "else: set conn.settimeout(1) after accept() and close the connection on "
                                 "TimeoutError") from None
        waited = time.monotonic() - started
        _expect_ok(got, "/patient", "GET /patient")
        if waited > 3.5:
            raise CaseFailed(f"the second client waited {waited:.1f} s: drop a silent connection after about 1 s "
                             "(conn.settimeout(1))")
