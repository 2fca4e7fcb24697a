"""Lesson 03's exercises: the pieces of a WSGI server, then a whole one, checked by what they do.

* 03.1 ``make_environ`` is held to PEP 3333 key by key, then drives a real Flask app behind ``wsgiref.validate``; the
  expected answers are what Flask says with the environ of the course's own server (``gatewaylab.wsgi``).
* 03.2 ``Responder`` writes into one end of a socket pair; the check reads the other end after every step, so it sees
  exactly when the headers went on the wire.
* 03.3 ``send_body`` gets the check's own strict responder and bodies that stream, fail, or lose their client.
* 03.4 ``serve`` runs in the background (:func:`gatewaylab.servers.serve_socket`) and meets the conformance probe,
  httpx, a Flask app, malformed requests, failing apps and a silent client.

Every socket a case opens has a timeout and is closed by the case, so a wrong answer fails with a message instead of
hanging the check. Servers are started under the name "check-03.4" and stopped before the case returns.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import re
import socket
import sys
import time
from wsgiref.validate import validator

import h11

from gatewaylab import http1, wsgi
from gatewaylab.grading import CaseFailed, Exercise, expect_equal
from gatewaylab.grading import is_stub  # the same test run_check makes on the answer itself
from gatewaylab.grading import stop_thread  # how run_check stops an answer that overran
from gatewaylab.servers import serve_socket

SOCKET_TIMEOUT = 2.0  # seconds a case waits for bytes before deciding they will never come
SERVER_CASE_TIMEOUT = 12.0  # a case that starts the learner's server: several requests, each bounded by the above
SERVER_ADDRESS = ("127.0.0.1", 8000)  # where 03.1's requests pretend to have arrived
CLIENT_ADDRESS = ("127.0.0.1", 50123)
TEXT = ("Content-Type", "text/plain; charset=utf-8")


class AppCrash(Exception):
    """What the checks' own apps raise to play an app with a bug."""


# --- A real Flask app, the same for 03.1 and 03.4 ---------------------------------------------------------------------

@functools.cache
def flask_app():
    """A small Flask app whose answers show what Flask read from the environ: path, query, headers, form, URL."""
    from flask import Flask, request  # imported on first use: Flask takes a moment to import

    app = Flask("gatewaylab-check-03")
    app.config["PROPAGATE_EXCEPTIONS"] = True  # an exception reaches the check instead of becoming a logged 500

    @app.get("/hello/<name>")
    def hello(name):
        return {"name": name, "args": request.args.to_dict(), "url": request.url, "host": request.host,
                "tags": request.headers.get("X-Tag"), "agent": request.headers.get("User-Agent")}

    @app.post("/order")
    def order():
        return {"form": request.form.to_dict(), "length": request.content_length, "type": request.mimetype}

    return app


def call_validated(app, environ: dict) -> tuple[str, bytes]:
    """Call ``validator(app)`` with ``environ`` the way a server does; return (status, body)."""
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = status
        return lambda data: None

    body = validator(app)(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        body.close()
    return started["status"], data


# --- 03.1 make_environ ------------------------------------------------------------------------------------------------

environ_exercise = Exercise(
    "03.1", "Build the environ",
    points=3,
    answer="a function make_environ(request, body, server_address, client_address) that returns a dict",
    params=4,
    hints=[
        "Start from the request line: REQUEST_METHOD is request.method; PATH_INFO comes from request.path and "
        "QUERY_STRING is request.query, still percent-encoded; SCRIPT_NAME is ''. SERVER_NAME and SERVER_PORT come "
        "from server_address, SERVER_PROTOCOL is request.version. Every CGI value is a str, the port too.",
        "PATH_INFO is percent-decoded to bytes, then to a native string: unquote_to_bytes(request.path)"
        ".decode('latin-1') ('+' stays '+': only form-encoded query strings use it for a space). For each "
        "(name, value) in request.headers: the key is name.upper().replace('-', '_'); "
        "CONTENT_TYPE and CONTENT_LENGTH go in without HTTP_, every other header gets HTTP_ in front, and a repeated "
        "header is joined to the value already there with ',' (', ' is fine too). Compare the upper-cased name: "
        "clients may send header names in any case.",
        "Then the wsgi.* keys: 'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http', 'wsgi.input': body (the stream "
        "itself, unread), 'wsgi.errors': sys.stderr, and 'wsgi.multithread': False, 'wsgi.multiprocess': False, "
        "'wsgi.run_once': False. Return a plain dict.",
    ],
)

GET = (b"GET /hello/Jos%C3%A9?lang=pt&q=caf%C3%A9+cr%C3%A8me HTTP/1.1\r\nHost: example.org:8080\r\n"
       b"User-Agent: check/1.0\r\nX-Tag: red\r\nX-Tag: blue\r\nAccept-Language: pt, en;q=0.5\r\n\r\n")
POST_BODY = b"dish=cr%C3%A8me+br%C3%BBl%C3%A9e&qty=2"
POST = (b"POST /order HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nX-Request-Id: 42\r\n\r\n" % len(POST_BODY)) + POST_BODY
OLD = b"GET /hello/ada HTTP/1.0\r\nUser-Agent: check/0.9\r\n\r\n"  # HTTP/1.0: no Host, so the URL uses SERVER_*
# Header names in lower case (they are case-insensitive, and the parser keeps the client's spelling), and a path whose
# '+' is a plus sign: only form-encoded query strings use '+' for a space.
LOWER = (b"POST /x+y%%20z HTTP/1.1\r\nhost: shop.example\r\ncontent-type: application/x-www-form-urlencoded\r\n"
         b"content-length: %d\r\n\r\n" % len(POST_BODY)) + POST_BODY


def joined(value):
    """A joined header value with the optional whitespace after each comma removed (RFC 9110 5.3 allows ', ')."""
    return re.sub(r",[ \t]*", ",", value) if isinstance(value, str) else value


def _request(raw: bytes) -> tuple[http1.Request, bytes]:
    """The parsed request head and the body that follows it."""
    rfile = io.BytesIO(raw)
    request = http1.parse_request(rfile)
    return request, rfile.read()


def _environ_from(answer, raw: bytes) -> tuple[dict, io.BytesIO, http1.Request]:
    request, data = _request(raw)
    body = io.BytesIO(data)
    environ = answer(request, body, SERVER_ADDRESS, CLIENT_ADDRESS)
    if not isinstance(environ, dict):
        raise CaseFailed("make_environ must return the environ, a dict", got=environ)
    if type(environ) is not dict:  # PEP 3333: "a builtin Python dictionary", not a subclass
        raise CaseFailed(f"the environ must be a plain dict, not a {type(environ).__name__}")
    return environ, body, request


def _course_environ(raw: bytes) -> dict:
    """The environ the course's server (gatewaylab.wsgi) makes for the same request."""
    request, data = _request(raw)
    length = request.header("Content-Length")
    return wsgi.make_environ(request, io.BytesIO(data), None if length is None else int(length), SERVER_ADDRESS,
                             CLIENT_ADDRESS, False)


def _expect_key(environ: dict, key: str, expected, advice: str = "") -> None:
    """environ[key] must be ``expected``; ``advice`` says what the key should hold."""
    if key not in environ:
        raise CaseFailed(f"the environ has no {key!r} key{': ' + advice if advice else ''}", expected=expected)
    try:
        expect_equal(environ[key], expected, f"environ[{key!r}]")
    except CaseFailed as failure:
        if not advice:
            raise
        raise CaseFailed(f"{failure.message} ({advice})", expected=failure.expected, got=failure.got) from None


REQUIRED = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors", "wsgi.multithread",
            "wsgi.multiprocess", "wsgi.run_once"]


@environ_exercise.case("a GET: every key PEP 3333 requires, CGI values as str")
def _(answer):
    environ, body, _ = _environ_from(answer, GET)
    missing = [key for key in REQUIRED if key not in environ]
    if missing:
        raise CaseFailed(f"the environ lacks keys PEP 3333 requires: {', '.join(missing)}", got=sorted(environ))
    not_str = {key: value for key, value in environ.items() if "." not in key and type(value) is not str}
    if not_str:
        key, value = next(iter(not_str.items()))
        raise CaseFailed(f"every CGI value (a key without a dot) must be a str; {key} is of type "
                         f"{type(value).__name__}", expected=str(value), got=value)
    for key, expected in [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", ""), ("SERVER_NAME", SERVER_ADDRESS[0]),
                          ("SERVER_PORT", str(SERVER_ADDRESS[1])), ("SERVER_PROTOCOL", "HTTP/1.1")]:
        _expect_key(environ, key, expected)
    if environ.get("CONTENT_LENGTH", "") not in ("", "0"):
        raise CaseFailed("this GET has no body and no Content-Length header: leave CONTENT_LENGTH out (or empty)",
                         got=environ["CONTENT_LENGTH"])
    expect_equal(environ["wsgi.version"], (1, 0), "environ['wsgi.version']")
    expect_equal(environ["wsgi.url_scheme"], "http", "environ['wsgi.url_scheme']")
    if environ["wsgi.input"] is not body:
        raise CaseFailed("wsgi.input must be the body stream make_environ was given, unread: the app reads it",
                         got=environ["wsgi.input"])
    if not callable(getattr(environ["wsgi.errors"], "write", None)):
        raise CaseFailed("wsgi.errors must be a text stream the app can write() to, such as sys.stderr",
                         got=environ["wsgi.errors"])
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        expect_equal(environ[key], False, f"environ[{key!r}] (this server: one thread, one process, many requests)")


@environ_exercise.case("PATH_INFO percent-decoded to a latin-1 str, QUERY_STRING as sent")
def _(answer):
    environ, _, _ = _environ_from(answer, GET)
    path = environ.get("PATH_INFO")
    if path == "/hello/José":
        raise CaseFailed("PATH_INFO was decoded as UTF-8. A native string holds one character per byte: decode the "
                         "percent-escapes to bytes, then the bytes as latin-1 (the app re-encodes them to get UTF-8)",
                         expected="/hello/JosÃ©", got=path)
    if isinstance(path, str) and "?" in path:
        raise CaseFailed("PATH_INFO holds only the path: the query string, after '?', goes in QUERY_STRING",
                         expected="/hello/JosÃ©", got=path)
    _expect_key(environ, "PATH_INFO", "/hello/JosÃ©", "the percent-decoded path, as a latin-1 str")
    _expect_key(environ, "QUERY_STRING", "lang=pt&q=caf%C3%A9+cr%C3%A8me",
                "what follows '?' in the target, still percent-encoded (decoding it is the app's job)")
    plus, _, _ = _environ_from(answer, LOWER)
    if plus.get("PATH_INFO") == "/x y z":
        raise CaseFailed("a '+' in the path was turned into a space: that is form encoding, for query strings only. "
                         "In a path '+' is a plus sign; decode only the %XX escapes (unquote_to_bytes)",
                         expected="/x+y z", got=plus["PATH_INFO"])
    _expect_key(plus, "PATH_INFO", "/x+y z", "the target /x+y%20z: '+' stays, %20 becomes a space")
    old, _, _ = _environ_from(answer, OLD)
    _expect_key(old, "SERVER_PROTOCOL", "HTTP/1.0", "the version of the request, not the server's")
    _expect_key(old, "QUERY_STRING", "", "an empty str when the target has no '?'")


@environ_exercise.case("headers: HTTP_* keys; Content-Type and Content-Length only as CONTENT_TYPE, CONTENT_LENGTH")
def _(answer):
    environ, _, _ = _environ_from(answer, POST)
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        if key in environ:
            raise CaseFailed(f"{key} must not be in the environ: PEP 3333 puts that header only in {key[5:]}")
    _expect_key(environ, "CONTENT_TYPE", "application/x-www-form-urlencoded")
    _expect_key(environ, "CONTENT_LENGTH", str(len(POST_BODY)), "the Content-Length header's value, as a str")
    _expect_key(environ, "HTTP_HOST", "shop.example", "every other header becomes HTTP_ + its name in capitals, "
                                                      "with '-' turned into '_'")
    _expect_key(environ, "HTTP_X_REQUEST_ID", "42", "X-Request-Id becomes HTTP_X_REQUEST_ID")
    lower, _, _ = _environ_from(answer, LOWER)
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        if key in lower:
            raise CaseFailed(f"a client sent the header in lower case ({key[5:].lower().replace('_', '-')}) and your "
                             f"environ has {key}: header names are case-insensitive, so compare the upper-cased "
                             "name (CONTENT_TYPE, CONTENT_LENGTH), not the name as sent")
    _expect_key(lower, "CONTENT_TYPE", "application/x-www-form-urlencoded", "from the header content-type, sent in "
                                                                             "lower case: names are case-insensitive")
    _expect_key(lower, "CONTENT_LENGTH", str(len(POST_BODY)), "from the header content-length, sent in lower case")
    _expect_key(lower, "HTTP_HOST", "shop.example", "from the header host, sent in lower case")
    environ, _, _ = _environ_from(answer, GET)
    _expect_key(environ, "HTTP_ACCEPT_LANGUAGE", "pt, en;q=0.5")
    tags = environ.get("HTTP_X_TAG")
    if joined(tags) != "red,blue":
        raise CaseFailed("X-Tag came twice (red, then blue): a repeated header is one key, its values joined with "
                         "',' (or ', ') in the order they came", expected="red,blue", got=tags)


def _flask_answer(environ: dict, what: str) -> dict:
    """Flask's JSON answer to ``environ``; CaseFailed, saying why, when validate or Flask refuse it."""
    try:
        status, data = call_validated(flask_app(), environ)
    except AssertionError as error:
        raise CaseFailed(f"{what}: wsgiref.validate rejected the environ: {error or 'see the key checks above'}") \
            from None
    except Exception as error:  # an environ so broken that Werkzeug itself fails on it
        raise CaseFailed(f"{what}: Flask failed on the environ: {type(error).__name__}: {error}") from None
    if status.startswith(("404", "405")):
        raise CaseFailed(f"{what}: Flask answered {status}: it found no route for PATH_INFO "
                         f"{environ.get('PATH_INFO')!r} and REQUEST_METHOD {environ.get('REQUEST_METHOD')!r}",
                         expected="200 OK", got=status)
    if status.startswith("400"):
        raise CaseFailed(f"{what}: Flask answered {status}: it could not read the request body. Check "
                         f"CONTENT_LENGTH (got {environ.get('CONTENT_LENGTH')!r}), CONTENT_TYPE and wsgi.input (the "
                         "body stream, unread)", expected="200 OK", got=status)
    if status != "200 OK":
        raise CaseFailed(f"{what}: Flask answered {status}", expected="200 OK", got=status)
    return json.loads(data)


# What to look at when one field of Flask's answer differs from its answer under the course's server.
FLASK_ADVICE = {
    "name": "Flask's view argument comes from PATH_INFO: percent-decoded, as latin-1",
    "args": "request.args comes from QUERY_STRING",
    "url": "request.url is built from wsgi.url_scheme, HTTP_HOST (or, without one, SERVER_NAME and SERVER_PORT), "
           "SCRIPT_NAME, PATH_INFO and QUERY_STRING",
    "host": "request.host is HTTP_HOST, or SERVER_NAME:SERVER_PORT when the request had no Host header",
    "tags": "request.headers reads the HTTP_* keys",
    "agent": "request.headers reads the HTTP_* keys",
    "form": "request.form reads CONTENT_LENGTH bytes from wsgi.input, and needs CONTENT_TYPE to know it is a form",
    "length": "request.content_length is CONTENT_LENGTH",
    "type": "request.mimetype is CONTENT_TYPE",
}


@environ_exercise.case("a real Flask app behind wsgiref.validate answers as it does under the course's server")
def _(answer):
    for raw in (GET, OLD, POST):
        what = raw.split(b"\r\n", 1)[0].decode()
        environ, _, _ = _environ_from(answer, raw)
        got = _flask_answer(environ, what)
        expected = _flask_answer(_course_environ(raw), f"{what} under the course's server")
        for field, value in expected.items():
            if field == "tags":  # a repeated header: "red,blue" and "red, blue" are the same value
                got[field], value = joined(got.get(field)), joined(value)
            if got.get(field) != value:
                raise CaseFailed(f"{what}: Flask's request.{field} is not what it is under the course's server. "
                                 f"{FLASK_ADVICE[field]}", expected=value, got=got.get(field))


# --- 03.2 Responder -------------------------------------------------------------------------------------------------

responder_exercise = Exercise(
    "03.2", "start_response and the headers-sent rule",
    points=3,
    answer="a class Responder(sock) with methods start_response(status, headers, exc_info=None), write(data) and "
           "finish()",
    params=1,
    hints=[
        "start_response only stores: self.status, self.headers = status, headers, and returns self.write. Nothing "
        "goes on the wire until write() or finish(). write() sends the head first if self.headers_sent is False "
        "(then sets it), then the data; finish() sends the head if it has not gone yet.",
        "The head is f'HTTP/1.1 {status}\\r\\n', one f'{name}: {value}\\r\\n' per header, 'Connection: close\\r\\n' "
        "and a final '\\r\\n', encoded as latin-1. In start_response: with exc_info, if the headers were sent, "
        "re-raise the app's exception; if not, just replace status and headers. Without exc_info, a second call "
        "(self.status is not None) raises an error, and so does write() before any start_response.",
        "if exc_info is not None: if self.headers_sent: raise exc_info[1].with_traceback(exc_info[2]) -- elif "
        "self.status is not None: raise AssertionError('start_response() called twice without exc_info') -- then "
        "store and return self.write. write(data): if self.status is None: raise AssertionError(...); if not "
        "self.headers_sent: self.sock.sendall(self.head()); self.headers_sent = True; then self.sock.sendall(data).",
    ],
)


class Wire:
    """A socket pair: the answer writes into ``server``; the check reads, without waiting, what reached ``client``."""

    def __init__(self):
        self.server, self.client = socket.socketpair()
        self.server.settimeout(SOCKET_TIMEOUT)  # a write the check never reads could not block for ever
        self.client.setblocking(False)  # sendall() on a socket pair has delivered its bytes when it returns
        self.received = b""

    def new(self) -> bytes:
        """The bytes that arrived since the last call."""
        data = b""
        while True:
            try:
                piece = self.client.recv(65536)
            except BlockingIOError:
                break
            if not piece:
                break
            data += piece
        self.received += data
        return data

    def close(self) -> None:
        self.server.close()
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def parse_response(raw: bytes, what: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of one response that ends where the connection closes, parsed strictly."""
    head, blank, _ = raw.partition(b"\r\n\r\n")
    if not blank:
        raise CaseFailed(f"{what}: the head must end with an empty line, so the bytes b'\\r\\n\\r\\n'", got=raw)
    lines = head.split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise CaseFailed(f"{what}: every line of the head must end with CRLF (b'\\r\\n'), not a bare LF", got=head)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "check")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    client.receive_data(b"")  # the server closed the connection: the body ends here
    headers, body = None, b""
    try:
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.NEED_DATA:
                break
    except h11.RemoteProtocolError as error:
        raise CaseFailed(f"{what}: not a valid HTTP/1.1 response ({error})", got=raw) from None
    return lines[0].decode("latin-1"), headers, body


def _make(answer, wire: Wire):
    responder = answer(wire.server)
    for method in ("start_response", "write", "finish"):
        if not callable(getattr(responder, method, None)):
            raise CaseFailed(f"Responder(sock) must have a method {method}()")
    return responder


def _expect_silence(wire: Wire, after: str) -> None:
    sent = wire.new()
    if sent:
        raise CaseFailed(f"bytes went on the wire after {after}. PEP 3333: start_response only stores the status and "
                         "headers; they go out with the first write() or at finish(), so that until then the app can "
                         "still replace them", got=sent)


def _expect_response(wire: Wire, what: str, status: str, headers: list, body: bytes) -> None:
    """Everything that reached the client must be one response with this status, these headers and this body."""
    wire.new()
    status_line, got_headers, got_body = parse_response(wire.received, what)
    expect_equal(status_line, f"HTTP/1.1 {status}", f"{what}: the status line")
    names = [name.lower() for name, _ in got_headers]
    if names.count("connection") != 1 or dict((k.lower(), v) for k, v in got_headers)["connection"] != "close":
        raise CaseFailed(f"{what}: the head must end with the header Connection: close (this server closes the "
                         "connection after each response, which is how the client knows where the body ends)",
                         got=got_headers)
    app_headers = [(name, value) for name, value in got_headers if name.lower() not in ("connection", "date",
                                                                                        "server")]
    expect_equal(app_headers, headers, f"{what}: the app's headers, in order")
    expect_equal(got_body, body, f"{what}: the body")


@responder_exercise.case("start_response sends nothing; write() sends the head, then the data")
def _(answer):
    with Wire() as wire:
        responder = _make(answer, wire)
        responder.start_response("200 OK", [TEXT, ("X-Course", "gatewaylab")])
        _expect_silence(wire, "start_response()")
        responder.write(b"Hello, ")
        if not wire.new():
            raise CaseFailed("nothing arrived after the first write(b'Hello, '): write() sends the head (if it has "
                             "not gone yet) and the data at once")
        responder.write(b"world")
        responder.finish()
        if (wire.received + wire.new()).count(b"HTTP/1.1") != 1:
            raise CaseFailed("the head went out more than once: send it only with the first write() (or finish())",
                             got=wire.received)
        _expect_response(wire, "start_response, write(b'Hello, '), write(b'world'), finish()", "200 OK",
                         [TEXT, ("X-Course", "gatewaylab")], b"Hello, world")


@responder_exercise.case("start_response returns the write() callable; finish() sends the head of an empty body")
def _(answer):
    with Wire() as wire:
        responder = _make(answer, wire)
        write = responder.start_response("200 OK", [TEXT])
        if not callable(write):
            raise CaseFailed("start_response must return the write() callable (old apps send their body with it): "
                             "return self.write", got=write)
        write(b"written")
        responder.finish()
        _expect_response(wire, "write = start_response(...); write(b'written')", "200 OK", [TEXT],
                         b"written")
    with Wire() as wire:
        responder = _make(answer, wire)
        responder.start_response("404 Not Found", [TEXT])
        _expect_silence(wire, "start_response()")
        responder.finish()
        if not wire.new():
            raise CaseFailed("after start_response('404 Not Found', ...) and finish() nothing was sent: an empty "
                             "body still needs its status line and headers, so finish() sends them if no write() did")
        _expect_response(wire, "start_response('404 Not Found', ...); finish()", "404 Not Found", [TEXT],
                         b"")


@responder_exercise.case("exc_info before the headers went out replaces the status and headers")
def _(answer):
    with Wire() as wire:
        responder = _make(answer, wire)
        responder.start_response("200 OK", [TEXT, ("X-Page", "menu")])
        try:
            raise AppCrash("the template failed")
        except AppCrash:
            try:
                responder.start_response("500 Internal Server Error", [TEXT], sys.exc_info())
            except AppCrash:
                raise CaseFailed("start_response(..., exc_info) re-raised the app's error although nothing had been "
                                 "sent: before the headers go out, exc_info means 'replace the response'") from None
            except Exception as error:
                raise CaseFailed("a second start_response call WITH exc_info is allowed before the headers go out: "
                                 f"it replaces status and headers. Yours raised {type(error).__name__}: {error}") \
                    from None
        _expect_silence(wire, "the second start_response()")
        responder.write(b"sorry")
        responder.finish()
        _expect_response(wire, "200 replaced by 500 with exc_info, then write(b'sorry')",
                         "500 Internal Server Error", [TEXT], b"sorry")


@responder_exercise.case("exc_info after the headers went out re-raises the app's exception, and sends nothing")
def _(answer):
    with Wire() as wire:
        responder = _make(answer, wire)
        responder.start_response("200 OK", [TEXT])
        responder.write(b"partial")
        wire.new()  # the 200 and b"partial": what the client has now
        crash = AppCrash("the template failed half-way")
        try:
            raise crash
        except AppCrash:
            try:
                responder.start_response("500 Internal Server Error", [TEXT], sys.exc_info())
            except AppCrash as error:
                if error is not crash:
                    raise CaseFailed("start_response raised a new AppCrash: re-raise the app's own exception, "
                                     "exc_info[1] (raise exc_info[1].with_traceback(exc_info[2]))") from None
            except Exception as error:
                raise CaseFailed(f"start_response raised {type(error).__name__}: {error}. Once the headers are out, "
                                 "it must re-raise the app's own exception, exc_info[1], so the server sees the "
                                 "real error and closes the connection") from None
            else:
                raise CaseFailed("the 200 and b'partial' were already on the wire, and start_response(..., "
                                 "exc_info) returned: it must re-raise exc_info[1]. A 500 is impossible now; the "
                                 "server has to see the error to close the connection")
        sent = wire.new()
        if sent:
            raise CaseFailed("bytes went on the wire after the body had started, when start_response(..., exc_info) "
                             "should only have re-raised the error", got=sent)


@responder_exercise.case("a second start_response without exc_info, or write() before start_response, is an error")
def _(answer):
    with Wire() as wire:
        responder = _make(answer, wire)
        try:
            responder.write(b"too early")
        except Exception:
            pass
        else:
            raise CaseFailed("write() before start_response() must raise: there is no status line to send yet",
                             got=wire.new())
        _expect_silence(wire, "write() before start_response()")
    with Wire() as wire:
        responder = _make(answer, wire)
        responder.start_response("200 OK", [TEXT])
        try:
            responder.start_response("302 Found", [("Location", "/elsewhere")])
        except Exception:
            pass
        else:
            raise CaseFailed("start_response was called a second time without exc_info and did not raise. PEP 3333: "
                             "that is an error (only exc_info makes a second call legal)")
        responder.write(b"first")
        responder.finish()
        _expect_response(wire, "the response after the refused second call", "200 OK", [TEXT], b"first")


# --- 03.3 send_body -------------------------------------------------------------------------------------------------

body_exercise = Exercise(
    "03.3", "Stream the body, always close it",
    points=3,
    answer="a function send_body(result, responder) that sends the app's body through the responder",
    params=2,
    hints=[
        "Iterate over the result and hand each non-empty piece to responder.write() as soon as you get it; skip "
        "empty pieces (they must not make the headers go out). After the loop, responder.finish(). Wrap it all in "
        "try/finally and call result.close() in the finally, if the result has one.",
        "When iterating raises, two cases. Nothing sent yet (responder.headers_sent is False): answer "
        "responder.start_response('500 Internal Server Error', [('Content-Type', 'text/plain; charset=utf-8')], "
        "sys.exc_info()), write a short message, finish(). Headers already sent: a 500 is impossible, so let the "
        "exception go on (raise) and the server will close the connection. A client that disconnected shows up as "
        "an OSError from write(): let it go on too.",
        "try: for piece in result: if piece: responder.write(piece) -- then responder.finish() -- except Exception: "
        "if responder.headers_sent: raise -- responder.start_response('500 Internal Server Error', [...], "
        "sys.exc_info()); responder.write(b'Internal Server Error\\n'); responder.finish() -- finally: if "
        "hasattr(result, 'close'): result.close()",
    ],
)


class CheckResponder:
    """The responder the check gives send_body: exercise 03.2's rules, enforced, with what would go on the wire
    recorded in ``events``. With ``fail_on_write=n``, the n-th write() finds the client gone (BrokenPipeError)."""

    def __init__(self, fail_on_write: int | None = None):
        self.status = None
        self.headers = None
        self.headers_sent = False
        self.events: list[tuple] = []  # ("head", status), ("body", bytes), ("finish",); a Body adds ("close",)
        self.problems: list[str] = []  # rules broken, even if send_body caught the error we raised
        self.calls = 0  # of start_response: counted here, so that resetting self.status cannot hide a second call
        self.writes = 0
        self.fail_on_write = fail_on_write

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.calls:
            self._problem("start_response was called a second time without exc_info: to replace the response with a "
                          "500, pass the error, start_response(status, headers, sys.exc_info())")
        if not (isinstance(status, str) and re.fullmatch(r"\d{3} \S.*", status)):
            self._problem(f"start_response got the status {status!r}: a status is the code, a space and a reason "
                          "phrase, such as '500 Internal Server Error'")
        self.calls += 1
        self.status, self.headers = status, list(headers)
        return self.write

    def write(self, data):
        if not isinstance(data, bytes):
            self._problem(f"write() got a {type(data).__name__}: pieces of a body are bytes")
        if self.status is None:
            self._problem("write() was called before start_response(): nothing to send yet (did the body start "
                          "before the app called start_response?)")
        self.writes += 1
        if self.writes == self.fail_on_write:
            raise BrokenPipeError(32, "Broken pipe (the client closed the connection)")
        if not self.headers_sent:
            if not data:
                self.problems.append("an empty piece (b'') was passed to write(), which sent the headers: skip "
                                     "empty pieces, so that the app can still replace its response")
            self.events.append(("head", self.status))
            self.headers_sent = True
        if data:
            self.events.append(("body", data))

    def finish(self):
        if self.status is None:
            self._problem("finish() was called, but the app never called start_response()")
        if not self.headers_sent:
            self.events.append(("head", self.status))
            self.headers_sent = True
        self.events.append(("finish",))

    def _problem(self, message: str):
        self.problems.append(message)
        raise AssertionError(message)

    @property
    def body(self) -> bytes:
        return b"".join(event[1] for event in self.events if event[0] == "body")


class Body:
    """An app's body: yields ``pieces`` (an exception among them is raised there), counts its close() calls.

    ``on_resume(index)`` runs each time the server asks for piece ``index`` > 0, i.e. after it had piece index - 1.
    ``start`` (a function) runs at the first iteration, as a generator app's start_response call does.
    ``log``, a list (a CheckResponder's events), gets ("close",) when close() is called.
    """

    def __init__(self, pieces, on_resume=None, start=None, log=None):
        self.pieces = list(pieces)
        self.log = log  # a responder's events: close() is recorded among them, to see that it came after finish()
        self.on_resume = on_resume
        self.start = start
        self.closed = 0
        self.produced = 0

    def __iter__(self):
        if self.start:
            self.start()
        for index, piece in enumerate(self.pieces):
            if index and self.on_resume:
                self.on_resume(index)
            if isinstance(piece, BaseException):
                raise piece
            self.produced += 1
            yield piece

    def close(self):
        self.closed += 1
        if self.log is not None:
            self.log.append(("close",))


def _started(responder: CheckResponder) -> CheckResponder:
    responder.start_response("200 OK", [TEXT])
    return responder


def _expect_closed(body: Body, when: str) -> None:
    if not body.closed:
        raise CaseFailed(f"{when}, the body's close() was never called. PEP 3333: the server calls close() however "
                         "the response ends (it is where apps release files and database connections): call it in "
                         "a finally block")
    if body.closed > 1:
        raise CaseFailed(f"{when}, the body's close() was called {body.closed} times: call it exactly once, in the "
                         "finally block", expected=1, got=body.closed)
    events = body.log or []
    if ("finish",) in events and events.index(("close",)) < events.index(("finish",)):
        raise CaseFailed(f"{when}, close() was called before finish(): the app may still be needed until the "
                         "response is complete, so finish() first, then close() (in the finally block)", got=events)


def _expect_no_problems(responder: CheckResponder) -> None:
    if responder.problems:
        raise CaseFailed(responder.problems[0])


@body_exercise.case("writes each non-empty piece, then finish(), then close()")
def _(answer):
    responder = _started(CheckResponder())
    body = Body([b"one ", b"", b"two ", b"three"], log=responder.events)
    answer(body, responder)
    _expect_no_problems(responder)
    expect_equal(responder.body, b"one two three", "what went to write()")
    if ("finish",) not in responder.events:
        raise CaseFailed("responder.finish() was never called: after the last piece, finish() ends the response "
                         "(and sends the head of an empty body)")
    _expect_closed(body, "after a response that went well")
    expect_equal(body.closed, 1, "how many times close() was called")


@body_exercise.case("a plain list body (it has no close()) and an empty body")
def _(answer):
    responder = _started(CheckResponder())
    try:
        answer([b"a list, ", b"no close()"], responder)
    except AttributeError as error:
        raise CaseFailed(f"{error}: a body need not have close(); call it only if it has one "
                         "(hasattr(result, 'close'))") from None
    expect_equal(responder.body, b"a list, no close()", "what went to write()")
    responder = _started(CheckResponder())
    answer([b""], responder)
    _expect_no_problems(responder)
    if responder.events != [("head", "200 OK"), ("finish",)]:
        raise CaseFailed("a body of one empty piece: nothing to write(), then finish() sends the head",
                         expected=[("head", "200 OK"), ("finish",)], got=responder.events)


@body_exercise.case("streams: each piece goes out before the app produces the next")
def _(answer):
    responder = CheckResponder()
    late = []

    def on_resume(index):
        if responder.body != b"".join(body.pieces[:index]):
            late.append(index)

    # A generator app calls start_response only when first iterated: send_body must not need it earlier.
    body = Body([b"row 1\n", b"row 2\n", b"row 3\n"], on_resume, start=lambda: _started(responder),
                log=responder.events)
    answer(body, responder)
    _expect_no_problems(responder)
    if late:
        raise CaseFailed(f"the app was asked for piece {late[0] + 1} before piece {late[0]} had been written: "
                         "send each piece as soon as it comes (no list(result), no b''.join)")
    expect_equal(responder.body, b"row 1\nrow 2\nrow 3\n", "what went to write()")


@body_exercise.case("the app fails before any byte went out: a 500 replaces its response, close() is called")
def _(answer):
    responder = _started(CheckResponder())
    body = Body([b"", AppCrash("cannot reach the database")], log=responder.events)  # b"" first: nothing sent
    try:
        answer(body, responder)
    except AppCrash:
        _expect_no_problems(responder)
        raise CaseFailed("the app's error escaped send_body although nothing had been sent: answer a 500 instead, "
                         "start_response('500 Internal Server Error', headers, sys.exc_info())") from None
    except AssertionError:
        pass  # our responder refused something: the problem says what
    _expect_no_problems(responder)
    _expect_closed(body, "after the app failed")
    if not responder.status.startswith("500") or ("head", responder.status) not in responder.events:
        raise CaseFailed("the response should be a 500, sent in place of the 200", got=responder.events)
    if not any(name.lower() == "content-type" for name, _ in responder.headers):
        raise CaseFailed("the 500 has no Content-Type header: give it ('Content-Type', 'text/plain; charset=utf-8'), "
                         "so the client knows how to show the message", got=responder.headers)
    if not responder.body or ("finish",) not in responder.events:
        raise CaseFailed("write a short message for the 500 (e.g. b'Internal Server Error\\n'), then finish()",
                         got=responder.events)


@body_exercise.case("the app fails after the first piece: the error goes on to the server, close() is called")
def _(answer):
    responder = _started(CheckResponder())
    crash = AppCrash("the template failed half-way")
    body = Body([b"<html>partial", crash, b"never"], log=responder.events)
    try:
        answer(body, responder)
    except AppCrash as error:
        if error is not crash:
            raise CaseFailed("a new AppCrash reached the server: let the app's own exception go on") from None
    else:
        raise CaseFailed("the 200 and the first piece were on the wire when the app failed, and send_body returned "
                         "as if all went well: let the exception go on (raise), so the server knows to close the "
                         "connection and the client sees the body is cut short", got=responder.events)
    _expect_no_problems(responder)
    _expect_closed(body, "after the app failed")
    if ("finish",) in responder.events:
        raise CaseFailed("finish() was called after the app failed: the response must not look complete")


@body_exercise.case("the client disconnects: close() is called, the error goes on, the app is not asked for more")
def _(answer):
    responder = _started(CheckResponder(fail_on_write=2))
    body = Body([b"one", b"two", b"three", b"four"], log=responder.events)
    try:
        answer(body, responder)
    except OSError:
        pass
    else:
        raise CaseFailed("write() raised BrokenPipeError (the client left), and send_body returned normally: let "
                         "the error go on, so the server closes the connection")
    _expect_closed(body, "after the client disconnected")
    if body.produced > 2:
        raise CaseFailed(f"the app was asked for {body.produced} pieces, though the client was gone after the "
                         "second: stop iterating when write() fails")


# --- 03.4 serve ---------------------------------------------------------------------------------------------------

serve_exercise = Exercise(
    "03.4", "A whole WSGI server",
    points=4,
    answer="a function serve(listener, app) that accepts connections in a loop and answers each request with app",
    params=2,
    timeout=SERVER_CASE_TIMEOUT,
    hints=[
        "The loop of lesson 01's careful_server, one request per connection: conn, client_address = "
        "listener.accept(); conn.settimeout(1); then `with conn, conn.makefile('rb') as rfile:` parse_request(rfile) "
        "(None: the client left). Catch HTTPError (answer send_error(conn, error), then close_gently(conn)) and "
        "OSError (close quietly) around the work on one connection, never around accept().",
        "The body before the app: with Transfer-Encoding -> HTTPError(400) if Content-Length is there too or the "
        "last coding is not chunked (RFC 9112 6.3), else HTTPError(501) (chunked: a coding this server does not "
        "implement); a Content-Length that is not digits -> 400, above MAX_BODY -> 413; then "
        "body = io.BytesIO(rfile.read(length)), so wsgi.input ends where the body ends. Then environ = "
        "make_environ(request, body, listener.getsockname()[:2], client_address) and responder = Responder(conn).",
        "try: result = app(environ, responder.start_response) -- except Exception: "
        "send_error(conn, HTTPError(500, 'the application failed')) -- else: send_body(result, responder). "
        "An exception out of send_body means the headers went out and the response is cut short: no 500 now (it "
        "would land inside the 200's body). Catch Exception around the connection's work and do nothing, so the "
        "with block closes the connection and the loop accepts the next client.",
    ],
)

# The probe's checks a server that closes every connection after one response, reads only Content-Length bodies and
# refuses chunked ones with 501 must pass. (HEAD, chunked bodies and keep-alive are the course's server's extras.)
PROBE_CHECKS = ["GET /", "query string", "percent-encoded path", "POST with Content-Length", "bad request line",
                "whitespace before colon", "HTTP/1.1 without Host", "HTTP/2.0 request line", "invalid Content-Length",
                "Content-Length and Transfer-Encoding", "unknown transfer coding", "100 kB header", "100 kB target",
                "1,000 headers", "1 GB body announced", "Connection: close", "streaming"]
PROBE_ADVICE = {
    "percent-encoded path": "PATH_INFO: percent-decoded, then latin-1 (exercise 03.1)",
    "POST with Content-Length": "read Content-Length bytes into io.BytesIO and give that to make_environ",
    "invalid Content-Length": "a Content-Length that is not all digits is a 400",
    "Content-Length and Transfer-Encoding": "both headers: 400, then close",
    "unknown transfer coding": "Transfer-Encoding: gzip does not end with chunked, so the body's length is unknown: "
                               "400, then close (RFC 9112 6.3)",
    "1 GB body announced": "refuse a Content-Length above MAX_BODY with 413, before reading the body",
    "Connection: close": "close the connection after the response",
    "streaming": "send each piece as it comes (exercise 03.3)",
}


STOP_TIMEOUT = 2.0  # seconds the learner's server gets to end once its listening socket is closed


@contextlib.contextmanager
def _serve(answer, app):
    """Run ``answer(listener, app)`` with serve_socket; when a case fails, say so if the server's thread crashed."""
    server = serve_socket(lambda listener: answer(listener, app), name="check-03.4")
    try:
        yield server
    except CaseFailed as failure:
        _stop(server)  # joins the thread, so a crash is recorded in server.error by now
        if server.error is None:
            raise
        crash = f"{type(server.error).__name__}: {server.error}"
        if isinstance(server.error, NotImplementedError):
            advice = "finish exercises 03.1 to 03.3 first: serve uses them"
        elif isinstance(server.error, NameError):
            advice = "run the cells of exercises 03.1 to 03.3 first: serve uses make_environ, Responder, send_body"
        elif isinstance(server.error, TimeoutError):
            advice = ("a client that stays silent is not a bad request: catch OSError (TimeoutError is one) around "
                      "the work on one connection, close it quietly, and accept the next")
        else:
            advice = "catch what one connection can cause (HTTPError, OSError, an app's error) and keep serving"
        raise CaseFailed(f"{failure.message}\nYour server's thread crashed with {crash}: {advice}",
                         expected=failure.expected, got=failure.got) from None
    finally:
        _stop(server)


def _stop(server) -> None:
    """Stop the learner's server. A loop that survives its listening socket being closed (it catches the OSError
    of accept()) would spin for ever in the kernel: stop its thread, and say why."""
    server.stop(timeout=STOP_TIMEOUT)
    if server.thread.is_alive():
        stop_thread(server.thread)
        raise CaseFailed("your server did not stop when its listening socket was closed: listener.accept() raises "
                         "OSError then, and that must end the loop. Catch errors around the work on one connection, "
                         "not around accept()")


def _connect(server, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    try:
        return socket.create_connection(server.address, timeout=timeout)
    except ConnectionRefusedError:
        raise CaseFailed("your server no longer accepts connections: its loop ended. Keep calling listener.accept() "
                         "in a `while True` loop, and let no error from one connection end it") from None


class NoAnswerInTime(CaseFailed):
    """The server kept the connection open and sent no complete answer within SOCKET_TIMEOUT."""


def _exchange(server, raw: bytes, what: str) -> tuple[int, bytes]:
    """Send ``raw`` on a new connection; return the status and body of the answer, read until the server closes."""
    data = b""
    with _connect(server) as sock:
        try:
            sock.sendall(raw)
            while piece := sock.recv(65536):
                data += piece
        except TimeoutError:
            raise NoAnswerInTime(f"{what}: no complete answer within {SOCKET_TIMEOUT:g} s (does the server close "
                                 "the connection after the response?)", got=data) from None
        except ConnectionError as error:
            raise CaseFailed(f"{what}: the connection was reset ({error}) before a complete answer came", got=data) \
                from None
    if not data:
        raise CaseFailed(f"{what}: the server closed the connection without an answer")
    status_line, _, body = parse_response(data, what)
    try:
        return int(status_line.split(" ")[1]), body
    except (IndexError, ValueError):
        raise CaseFailed(f"{what}: the status line does not start with 'HTTP/1.1 <code>'", got=status_line) from None


def _probe_app():
    from gatewaylab.probe import probe_app  # imported on first use, like Flask
    return probe_app


PIECES = {"make_environ": "03.1", "Responder": "03.2", "send_body": "03.3"}


def _global_names(function) -> set[str]:
    """The global names a function's code (nested functions and lambdas included) refers to."""
    names, stack = set(), [function.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if inspect.iscode(const))
    return names


@serve_exercise.case("the pieces serve uses, from exercises 03.1 to 03.3, are defined and solved")
def _(answer):
    # The server's own except clauses would swallow a NameError or a stub's NotImplementedError, and every request
    # would just go unanswered: say so up front.
    used = _global_names(answer) if inspect.isfunction(answer) else set()
    for name, exercise_id in PIECES.items():
        if name not in used:
            continue  # this server does without that piece, or names it differently
        if name not in answer.__globals__:
            raise CaseFailed(f"serve uses {name}, which is not defined: run the cell of exercise {exercise_id} "
                             "before this one")
        if is_stub(answer.__globals__[name]):
            raise CaseFailed(f"serve uses your {name}, which is still the exercise stub: solve exercise "
                             f"{exercise_id} first")


@serve_exercise.case("the conformance probe: answers, refusals, limits, streaming",
                     timeout=len(PROBE_CHECKS) * SOCKET_TIMEOUT + 5)  # room for every check to wait its limit
def _(answer):
    from gatewaylab.probe import probe

    with _serve(answer, _probe_app()) as server:
        report = probe(server.url, checks=PROBE_CHECKS, timeout=SOCKET_TIMEOUT)
        failed = report.failed
        if failed:
            first = failed[0]
            names = ", ".join(f"'{r.name}'" for r in failed)
            advice = PROBE_ADVICE.get(first.name, "")
            raise CaseFailed(f"{len(failed)} of the probe's {len(report.results)} checks failed ({names}). The first, "
                             f"'{first.name}', " + (f"wants this: {advice}." if advice else
                                                    "got an answer other than the expected one, shown below."),
                             expected=first.expected, got=first.got)


class _Recorded:
    """An app behind wsgiref.validate whose errors (when called or iterated) are kept for the message, then raised
    on to the learner's server, which must answer them."""

    def __init__(self, app):
        self.app = validator(app)
        self.errors: list[BaseException] = []
        self.bodies = []  # what the validator returned, to close any the server left open

    def __call__(self, environ, start_response):
        try:
            body = self.app(environ, start_response)
        except Exception as error:
            self.errors.append(error)
            raise
        self.bodies.append(body)
        return self._iterate(body)

    def _iterate(self, body):
        try:
            yield from body
        except Exception as error:
            self.errors.append(error)
            raise
        finally:
            body.close()

    def close(self):
        """Close what the server did not: the validator asserts, when an unclosed body is collected, that close()
        was called, and would print that into the notebook from the garbage collector."""
        for body in self.bodies:
            body.close()


@serve_exercise.case("a Flask app, unmodified, behind wsgiref.validate, answers httpx", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    import httpx

    app = _Recorded(flask_app())
    with contextlib.closing(app), _serve(answer, app) as server, httpx.Client(timeout=SOCKET_TIMEOUT) as client:
        requests = [("GET", "/hello/Jos%C3%A9?lang=pt", {}, {"name": "José", "args": {"lang": "pt"}}),
                    ("POST", "/order", {"dish": "crème brûlée", "qty": "2"},
                     {"form": {"dish": "crème brûlée", "qty": "2"}, "type": "application/x-www-form-urlencoded"})]
        for method, path, form, expected in requests:
            what = f"{method} {path} with httpx"
            try:
                reply = client.request(method, server.url + path, data=form or None)
            except httpx.HTTPError as error:
                raise CaseFailed(f"{what}: httpx got no proper answer: {type(error).__name__}: {error}") from None
            if app.errors:
                error = app.errors[0]
                raise CaseFailed(f"{what}: the app failed under your server: {type(error).__name__}: {error}")
            expect_equal(reply.status_code, 200, f"{what}: the status")
            try:
                got = reply.json()
            except ValueError:
                raise CaseFailed(f"{what}: the body is not Flask's JSON", got=reply.content) from None
            for field, value in expected.items():
                if got.get(field) != value:
                    raise CaseFailed(f"{what}: Flask's request.{field} is wrong. {FLASK_ADVICE[field]}",
                                     expected=value, got=got.get(field))


def _crashes_when_called(environ, start_response):
    raise AppCrash("cannot reach the database")


def _crashes_when_iterated(environ, start_response):
    start_response("200 OK", [TEXT])
    yield b""
    raise AppCrash("cannot reach the database")


LATE_PIECE = b"the first rows of a report"


def _crashes_after_a_piece(environ, start_response):
    start_response("200 OK", [TEXT])
    yield LATE_PIECE
    raise AppCrash("cannot reach the database")


def _echo(environ, start_response):
    """Reads wsgi.input with no size, as many apps do: that must end where the body ends."""
    data = environ["wsgi.input"].read()
    start_response("200 OK", [TEXT])
    return [data]


def _hello(environ, start_response):
    start_response("200 OK", [TEXT])
    return [b"still here"]


def _router(environ, start_response):
    apps = {"/called": _crashes_when_called, "/iterated": _crashes_when_iterated, "/late": _crashes_after_a_piece,
            "/echo": _echo}
    return apps.get(environ["PATH_INFO"], _hello)(environ, start_response)


def _still_serving(server, after: str) -> None:
    """A plain GET must be answered: nothing that went before may have ended the server's loop."""
    try:
        status, body = _exchange(server, b"GET /ok HTTP/1.1\r\nHost: check\r\n\r\n", f"GET /ok after {after}")
    except CaseFailed as failure:  # refused, reset or unanswered, depending on when the loop died
        raise CaseFailed(f"after {after}, the next request got no answer ({failure.message}): your server stopped "
                         "serving. Catch Exception around the work on one connection, so that nothing a client or "
                         "an app does ends the loop") from None
    expect_equal((status, body), (200, b"still here"), f"GET /ok after {after}")


CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
# (what, request, status, why): RFC 9112 section 6, for a server that implements no transfer coding.
TRANSFER_CODINGS = [
    ("Transfer-Encoding: chunked",
     b"POST /echo HTTP/1.1\r\nHost: check\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED, 501,
     "chunked is a valid framing this server does not implement: 501 Not Implemented (RFC 9112 6.1), then close"),
    ("Transfer-Encoding: gzip",
     b"POST /echo HTTP/1.1\r\nHost: check\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400,
     "the last transfer coding is not chunked, so nobody can tell where the body ends: 400, then close "
     "(RFC 9112 6.3)"),
    ("Transfer-Encoding: chunked, gzip",
     b"POST /echo HTTP/1.1\r\nHost: check\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello", 400,
     "the LAST coding decides: it is gzip, not chunked, so the body's end is unknown: 400, then close "
     "(RFC 9112 6.3)"),
    ("both Content-Length and Transfer-Encoding",
     b"POST /echo HTTP/1.1\r\nHost: check\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED,
     400, "two framings that may disagree (request smuggling): 400, then close"),
]


@serve_exercise.case("malformed requests get 400, failing apps 500, and the server keeps serving",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    bad = {"a broken request line": b"HELLO\r\n\r\n",
           "whitespace before the colon": b"GET / HTTP/1.1\r\nHost : check\r\n\r\n",
           "Content-Length: abc": b"POST / HTTP/1.1\r\nHost: check\r\nContent-Length: abc\r\n\r\n"}
    with _serve(answer, _router) as server:
        for name, raw in bad.items():
            status, _ = _exchange(server, raw, f"a request with {name}")
            expect_equal(status, 400, f"the status for a request with {name}")
        for name, raw, expected, why in TRANSFER_CODINGS:
            status, _ = _exchange(server, raw, f"a request with {name}")
            if status != expected:
                raise CaseFailed(f"a request with {name}: {why}", expected=expected, got=status)
        for path, when in (("/called", "when called"), ("/iterated", "while its body was iterated")):
            advice = f"the app failed {when}, before any byte of its response was sent: the client should get a 500"
            try:
                status, _ = _exchange(server, f"GET {path} HTTP/1.1\r\nHost: check\r\n\r\n".encode(),
                                      f"GET {path}")
            except CaseFailed as failure:
                raise CaseFailed(f"{advice}. Instead: {failure.message}", got=failure.got) from None
            if status != 500:
                raise CaseFailed(advice, expected=500, got=status)
        _still_serving(server, "the bad requests and failing apps")


@serve_exercise.case("an app that fails after its first piece: the 200 and that piece, the connection closed, and "
                     "the next request served", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        status, body = _exchange(server, b"GET /late HTTP/1.1\r\nHost: check\r\n\r\n", "GET /late")
        if b"HTTP/1.1 500" in body:
            raise CaseFailed("GET /late: the app failed after its 200 and first piece were on the wire, and your "
                             "server then sent a 500, which the client reads as part of the 200's body. Once the "
                             "headers went out, an exception out of send_body must not become a 500: just close the "
                             "connection", expected=LATE_PIECE, got=body)
        expect_equal((status, body), (200, LATE_PIECE), "GET /late: the status and the piece sent before the app "
                                                         "failed, then the connection closed")
        _still_serving(server, "an app that failed half-way through its body")


@serve_exercise.case("wsgi.input ends at Content-Length: an app's read() with no size gets the body at once",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    data = b"name=ada&lang=en"
    raw = b"POST /echo HTTP/1.1\r\nHost: check\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
    with _serve(answer, _router) as server:
        started = time.monotonic()
        status, body = _exchange(server, raw, "POST /echo, whose app calls environ['wsgi.input'].read()")
        waited = time.monotonic() - started
        advice = ("wsgi.input must hold exactly the Content-Length bytes of the body: give make_environ "
                  "io.BytesIO(rfile.read(length)), not the connection's file, on which read() waits for more")
        if status != 200 or body != data:
            raise CaseFailed(f"POST /echo: the app read environ['wsgi.input'].read() and echoed it. {advice}",
                             expected=(200, data), got=(status, body))
        if waited > 0.8:
            raise CaseFailed(f"POST /echo took {waited:.1f} s: read() on wsgi.input waited for bytes that never "
                             f"came. {advice}")


@serve_exercise.case("a body too large gets its 413, though the client is still sending (close_gently)",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    head = b"POST /echo HTTP/1.1\r\nHost: check\r\nContent-Length: 2000000\r\n\r\n"
    with _serve(answer, _router) as server:
        data = b""
        with _connect(server) as sock:
            try:
                # The start of the body comes with the head: the server answers without reading it, and those bytes
                # are still unread in its socket when it is done.
                sock.sendall(head + b"x" * 32768)
                while piece := sock.recv(65536):
                    data += piece
            except ConnectionError as error:
                raise CaseFailed(f"the connection was reset ({error}) and the 413 was lost: closing a connection "
                                 "with unread bytes makes the kernel reset it. After send_error(conn, error), call "
                                 "close_gently(conn), which lets the client read the answer first",
                                 got=data) from None
            except TimeoutError:
                raise CaseFailed(f"no complete answer within {SOCKET_TIMEOUT:g} s to a request announcing a "
                                 "2 MB body: answer 413 at once, without reading the body", got=data) from None
        if not data:
            raise CaseFailed("the server closed the connection without an answer to a request announcing a 2 MB "
                             "body: answer 413, then close_gently(conn)")
        status_line, _, _ = parse_response(data, "POST with a 2 MB body announced")
        expect_equal(status_line.split(" ")[1], "413", "the status for a body above MAX_BODY")


@serve_exercise.case("a client that connects and stays silent is dropped, so others get served",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _hello) as server, _connect(server):
        started = time.monotonic()  # the silent client above is connected: the server accepts it first
        try:
            status, _ = _exchange(server, b"GET / HTTP/1.1\r\nHost: check\r\n\r\n", "GET / from a second client")
        except NoAnswerInTime:
            raise CaseFailed("a client that connected and sent nothing kept your server from answering anyone else: "
                             "conn.settimeout(1) after accept(), and close the connection on TimeoutError") from None
        waited = time.monotonic() - started
        expect_equal(status, 200, "the second client's status")
        if waited > 3.5:
            raise CaseFailed(f"the second client waited {waited:.1f} s: drop a silent connection after about 1 s "
                             "(conn.settimeout(1))")
