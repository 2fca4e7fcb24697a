"""Lesson 03's exercises: the lesson's own pieces of its WSGI server, under the lesson's names and signatures, each
checked by what it does. The lesson's code (``gatewaylab.wsgi``) is a right answer to every one of them.

* 03.1 ``make_environ(request, body, length, server_address, client_address, multithread)`` gets its arguments made
  the way the server makes them (``parse_request``, ``open_body``); its environ is held to PEP 3333 key by key, then
  drives a real Flask app behind ``wsgiref.validate``, whose answers must be those it gives with the course's environ.
* 03.2 ``Response(sock, request, server_allows_keep_alive)`` writes into one end of a socket pair; the check reads the
  other end after every step and parses it with h11, so it sees when the head went out and how the body was framed.
* 03.3 ``run_app(app, environ, response)`` gets the course's own Response, which records the calls made on it, on a
  socket pair, and apps that stream, fail, or lose their client.
* 03.4 ``serve_connection(server, connection)``, with the learner's ``handle_request``, serves every connection of the
  lesson's own ``WSGIServer`` (:class:`YourServer`), which runs in the background and meets the conformance probe,
  httpx and Flask, pipelined and malformed requests, failing apps and clients that leave.

Every socket a case opens has a timeout and is closed by the case, so a wrong answer fails with a message instead of
hanging the check; servers are stopped before the case returns. :func:`serve_yours` runs the learner's server for the
exercises notebook's last cells, or says, once, why it cannot yet.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from wsgiref.validate import validator

import h11

from gatewaylab import http1, probe, servers, wsgi
from gatewaylab.wire import Connection as ClientConnection
from gatewaylab.wire import request as raw_request
from gatewaylab.grading import CaseFailed, Exercise, expect_equal
from gatewaylab.grading import is_stub  # the same test run_check makes on the answer itself
from gatewaylab.grading import stop_thread  # how run_check stops an answer that overran

SOCKET_TIMEOUT = 2.0  # seconds a case waits for bytes before deciding they will never come
SERVER_TIMEOUT = 1.0  # the timeout of 03.4's server: an idle or silent client is dropped after a second
SERVER_CASE_TIMEOUT = 15.0  # a case that starts the learner's server: several requests, each bounded by the above
SERVER_ADDRESS = ("127.0.0.1", 8000)  # where 03.1's requests pretend to have arrived
CLIENT_ADDRESS = ("127.0.0.1", 50123)
TEXT = ("Content-Type", "text/plain; charset=utf-8")


class AppCrash(Exception):
    """What the checks' own apps raise to play an app with a bug."""


def request_from(raw: bytes, sock=None):
    """(request, body, length) for the bytes of a request, made as the course's server makes them: parse_request,
    then open_body (which de-chunks a chunked body and measures it)."""
    rfile = io.BytesIO(raw)
    request = http1.parse_request(rfile)
    body, length = wsgi.open_body(request, rfile, sock, http1.MAX_BODY)
    return request, body, length


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
                "tags": request.headers.get("X-Tag"), "agent": request.headers.get("User-Agent"),
                "user": request.headers.get("X-User")}

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
    answer="a function make_environ(request, body, length, server_address, client_address, multithread) that "
           "returns a dict, the lesson's",
    params=6,
    hints=[
        "Start from the request line: REQUEST_METHOD is request.method; PATH_INFO comes from request.path and "
        "QUERY_STRING is request.query, still percent-encoded; SCRIPT_NAME is ''. SERVER_NAME and SERVER_PORT come "
        "from server_address, REMOTE_ADDR and REMOTE_PORT from client_address, SERVER_PROTOCOL is request.version. "
        "Every CGI value is a str, the ports too. CONTENT_LENGTH is str(length), and only when length is not None.",
        "PATH_INFO: unquote_to_bytes(request.path).decode('latin-1') ('+' stays '+'). For each (name, value) in "
        "request.headers: skip it if '_' is in the name; the key is name.upper().replace('-', '_'); CONTENT_TYPE "
        "goes in without HTTP_; CONTENT_LENGTH and TRANSFER_ENCODING go nowhere (length says it all); every other "
        "header gets HTTP_ in front, and a repeated one is joined to the value already there with ','. Last, "
        "HTTP_HOST is request.host when that is not None.",
        "environ = {'REQUEST_METHOD': request.method, ..., 'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http', "
        "'wsgi.input': body, 'wsgi.errors': sys.stderr, 'wsgi.multithread': multithread, 'wsgi.multiprocess': "
        "False, 'wsgi.run_once': False} -- if length is not None: environ['CONTENT_LENGTH'] = str(length) -- for "
        "name, value in request.headers: if '_' in name: continue; key = ...; if key == 'CONTENT_TYPE': ... elif "
        "key not in ('CONTENT_LENGTH', 'TRANSFER_ENCODING'): key = 'HTTP_' + key; environ[key] = environ[key] + ',' "
        "+ value if key in environ else value -- if request.host is not None: environ['HTTP_HOST'] = request.host",
    ],
)

GET = (b"GET /hello/Jos%C3%A9?lang=pt&q=caf%C3%A9+cr%C3%A8me HTTP/1.1\r\nHost: example.org:8080\r\n"
       b"User-Agent: check/1.0\r\nX-Tag: red\r\nX-Tag: blue\r\nAccept-Language: pt, en;q=0.5\r\n\r\n")
POST_BODY = b"dish=cr%C3%A8me+br%C3%BBl%C3%A9e&qty=2"
POST = (b"POST /order HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nX-Request-Id: 42\r\n\r\n" % len(POST_BODY)) + POST_BODY
# The same form, chunked: open_body de-chunks it and gives its length, which is all CONTENT_LENGTH may say.
CHUNKED_POST = (b"POST /order HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(POST_BODY), POST_BODY))
OLD = b"GET /hello/ada HTTP/1.0\r\nUser-Agent: check/0.9\r\n\r\n"  # HTTP/1.0: no Host, so the URL uses SERVER_*
# Header names in lower case (they are case-insensitive, and the parser keeps the client's spelling), and a path whose
# '+' is a plus sign: only form-encoded query strings use '+' for a space.
LOWER = (b"POST /x+y%%20z HTTP/1.1\r\nhost: shop.example\r\ncontent-type: application/x-www-form-urlencoded\r\n"
         b"content-length: %d\r\n\r\n" % len(POST_BODY)) + POST_BODY
# X_User would become HTTP_X_USER, like X-User: a client could pass it off as the header a proxy sets.
UNDERSCORE = (b"GET /hello/ada HTTP/1.1\r\nHost: shop.example\r\nX-User: alice\r\nX_User: admin\r\n"
              b"Accept_Language: xx\r\n\r\n")
# absolute-form: the target's host wins over the Host header (RFC 9112 3.2.2).
ABSOLUTE = b"GET http://shop.example:8080/hello/ada?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"


def joined(value):
    """A joined header value with the optional whitespace after each comma removed (RFC 9110 5.3 allows ', ')."""
    return re.sub(r",[ \t]*", ",", value) if isinstance(value, str) else value


def _environ_from(answer, raw: bytes, multithread: bool = False) -> tuple[dict, object, int | None]:
    """The answer's environ for a request; also the body and length it was given."""
    request, body, length = request_from(raw)
    environ = answer(request, body, length, SERVER_ADDRESS, CLIENT_ADDRESS, multithread)
    if not isinstance(environ, dict):
        raise CaseFailed("make_environ must return the environ, a dict", got=environ)
    if type(environ) is not dict:  # PEP 3333: "a builtin Python dictionary", not a subclass
        raise CaseFailed(f"the environ must be a plain dict, not a {type(environ).__name__}")
    return environ, body, length


def _course_environ(raw: bytes) -> dict:
    """The environ the course's server (gatewaylab.wsgi) makes for the same request."""
    request, body, length = request_from(raw)
    return wsgi.make_environ(request, body, length, SERVER_ADDRESS, CLIENT_ADDRESS, False)


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


def _expect_absent(environ: dict, key: str, why: str) -> None:
    if key in environ:
        raise CaseFailed(f"{key} must not be in the environ: {why}", got=environ[key])


REQUIRED = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors", "wsgi.multithread",
            "wsgi.multiprocess", "wsgi.run_once"]


@environ_exercise.case("a GET: every key PEP 3333 requires, CGI values as str, wsgi.multithread as given")
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
    for key, expected in (("REMOTE_ADDR", CLIENT_ADDRESS[0]), ("REMOTE_PORT", str(CLIENT_ADDRESS[1]))):
        # Not among PEP 3333's required keys, but CGI's, and the task's: apps log and rate-limit clients by them.
        _expect_key(environ, key, expected, "the client's address, from client_address: apps log clients by it")
    if environ.get("CONTENT_LENGTH", "") not in ("", "0"):
        raise CaseFailed("this GET has no body and no Content-Length header, and length was None: leave "
                         "CONTENT_LENGTH out", got=environ["CONTENT_LENGTH"])
    expect_equal(environ["wsgi.version"], (1, 0), "environ['wsgi.version']")
    expect_equal(environ["wsgi.url_scheme"], "http", "environ['wsgi.url_scheme']")
    if environ["wsgi.input"] is not body:
        raise CaseFailed("wsgi.input must be the body stream make_environ was given, unread: the app reads it",
                         got=environ["wsgi.input"])
    if environ["wsgi.errors"] is not sys.stderr:
        raise CaseFailed("wsgi.errors must be sys.stderr, the server's own error stream: what an app writes there "
                         "(warnings, tracebacks) must reach whoever runs the server, here the notebook; a stream of "
                         "its own, such as a fresh io.StringIO(), keeps it where nobody reads it",
                         got=environ["wsgi.errors"])
    for key in ("wsgi.multiprocess", "wsgi.run_once"):
        expect_equal(environ[key], False, f"environ[{key!r}] (this server: one process, many requests)")
    expect_equal(environ["wsgi.multithread"], False, "environ['wsgi.multithread'] when multithread is False")
    threaded, _, _ = _environ_from(answer, GET, multithread=True)
    if threaded.get("wsgi.multithread") is not True:
        raise CaseFailed("make_environ(..., multithread=True) must give wsgi.multithread True: it is the server's "
                         "to say (lesson 04's server runs apps in several threads)", expected=True,
                         got=threaded.get("wsgi.multithread"))


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


@environ_exercise.case("CONTENT_TYPE; CONTENT_LENGTH from length, also for a chunked body; no HTTP_ key for either")
def _(answer):
    environ, _, _ = _environ_from(answer, POST)
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        _expect_absent(environ, key, f"PEP 3333 puts that header only in {key[5:]}")
    _expect_key(environ, "CONTENT_TYPE", "application/x-www-form-urlencoded")
    _expect_key(environ, "CONTENT_LENGTH", str(len(POST_BODY)), "str(length)")
    lower, _, _ = _environ_from(answer, LOWER)
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        if key in lower:
            raise CaseFailed(f"a client sent the header in lower case ({key[5:].lower().replace('_', '-')}) and your "
                             f"environ has {key}: header names are case-insensitive, so compare the upper-cased "
                             "name (CONTENT_TYPE, CONTENT_LENGTH), not the name as sent")
    _expect_key(lower, "CONTENT_TYPE", "application/x-www-form-urlencoded", "from the header content-type, sent in "
                                                                             "lower case: names are case-insensitive")
    chunked, _, length = _environ_from(answer, CHUNKED_POST)
    _expect_key(chunked, "CONTENT_LENGTH", str(length),
                f"this body came chunked, without a Content-Length header; open_body de-chunked it, and length is "
                f"its size, {length} bytes: CONTENT_LENGTH is str(length), whatever the headers said")
    _expect_absent(chunked, "HTTP_TRANSFER_ENCODING",
                   "Transfer-Encoding describes the body as it came on the wire, and the app reads it de-chunked. "
                   "Left in, 'chunked' tells apps such as Flask that the length is unknown, and they read nothing")


@environ_exercise.case("headers: HTTP_* keys, repeats joined with ',', names with '_' dropped, HTTP_HOST from "
                       "request.host")
def _(answer):
    environ, _, _ = _environ_from(answer, POST)
    _expect_key(environ, "HTTP_HOST", "shop.example", "every other header becomes HTTP_ + its name in capitals, "
                                                      "with '-' turned into '_'")
    _expect_key(environ, "HTTP_X_REQUEST_ID", "42", "X-Request-Id becomes HTTP_X_REQUEST_ID")
    lower, _, _ = _environ_from(answer, LOWER)
    _expect_key(lower, "HTTP_HOST", "shop.example", "from the header host, sent in lower case")
    environ, _, _ = _environ_from(answer, GET)
    _expect_key(environ, "HTTP_ACCEPT_LANGUAGE", "pt, en;q=0.5", "the value as sent")
    tags = environ.get("HTTP_X_TAG")
    if joined(tags) != "red,blue":
        raise CaseFailed("X-Tag came twice (red, then blue): a repeated header is one key, its values joined with "
                         "',' in the order they came", expected="red,blue", got=tags)
    spoofed, _, _ = _environ_from(answer, UNDERSCORE)
    if joined(spoofed.get("HTTP_X_USER")) != "alice" or "HTTP_ACCEPT_LANGUAGE" in spoofed:
        raise CaseFailed("the request had X-User: alice and X_User: admin (and Accept_Language): a header with '_' "
                         "in its name must be dropped, as nginx and gunicorn do, or X_User becomes HTTP_X_USER like "
                         "X-User, and a client can pass one off as the other", expected="alice",
                         got=spoofed.get("HTTP_X_USER"))
    absolute, _, _ = _environ_from(answer, ABSOLUTE)
    _expect_key(absolute, "HTTP_HOST", "shop.example:8080",
                "the target was http://shop.example:8080/hello/ada, with Host: other.example. RFC 9112 3.2.2: the "
                "target's host wins over the Host header, and request.host says which it is")
    _expect_key(absolute, "PATH_INFO", "/hello/ada", "the path of an absolute-form target: request.path")


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
    "user": "request.headers reads the HTTP_* keys: the request had X-User: alice and X_User: admin, and a header "
            "with '_' in its name must be dropped",
    "form": "request.form reads CONTENT_LENGTH bytes from wsgi.input, and needs CONTENT_TYPE to know it is a form; "
            "it reads nothing when CONTENT_LENGTH is missing or HTTP_TRANSFER_ENCODING says chunked",
    "length": "request.content_length is CONTENT_LENGTH (None when HTTP_TRANSFER_ENCODING says chunked)",
    "type": "request.mimetype is CONTENT_TYPE",
}


@environ_exercise.case("a real Flask app behind wsgiref.validate answers as it does under the course's server")
def _(answer):
    for raw in (GET, OLD, POST, CHUNKED_POST, UNDERSCORE):
        what = raw.split(b"\r\n", 1)[0].decode() + (" (chunked)" if raw is CHUNKED_POST else "")
        environ, _, _ = _environ_from(answer, raw)
        got = _flask_answer(environ, what)
        expected = _flask_answer(_course_environ(raw), f"{what} under the course's server")
        for field, value in expected.items():
            if field == "tags":  # a repeated header: "red,blue" and "red, blue" are the same value
                got[field], value = joined(got.get(field)), joined(value)
            if got.get(field) != value:
                raise CaseFailed(f"{what}: Flask's request.{field} is not what it is under the course's server. "
                                 f"{FLASK_ADVICE[field]}", expected=value, got=got.get(field))


# --- 03.2 Response ----------------------------------------------------------------------------------------------------

response_exercise = Exercise(
    "03.2", "Response: start_response, the headers-sent rule, the framing",
    points=3,
    answer="a class Response(sock, request, server_allows_keep_alive), the lesson's, with start_response, write, "
           "send, finish",
    params=3,
    hints=[
        "start_response checks (check_status, check_headers), stores self.status and self.headers, and returns "
        "self.write: nothing goes on the wire. send(data, body_length=None) puts on the wire, in one send_bytes "
        "call, the head if it has not gone yet (self.head(body_length)) and self.body.frame(data). write(data) is "
        "self.send(data). finish() sends the head if nothing did (self.head(body_length=0)), then self.body.end().",
        "head(body_length) decides the framing once, when the headers go out: keep_alive = self.request.keep_alive "
        "and self.server_allows_keep_alive(), asked now; framing = choose_framing(method, version, int(status[:3]), "
        "self.headers, body_length, keep_alive) (a ValueError there is the app's broken Content-Length: raise "
        "AssertionError); self.framing, self.body = framing, ResponseBody(framing); return build_head(self.status, "
        "self.headers + framing.headers). finish() returns self.framing.keep_alive and not self.body.cut_short.",
        "start_response: if exc_info is not None: try: if self.headers_sent: raise exc_info[1].with_traceback("
        "exc_info[2]) finally: exc_info = None -- elif self.status is not None: raise AssertionError('start_response"
        "() called a second time without exc_info') -- then check_status(status); check_headers(headers); "
        "self.status, self.headers = status, headers; return self.write. send: if not isinstance(data, bytes) or "
        "self.status is None: raise AssertionError(...); head = b'' if self.headers_sent else self.head(body_length); "
        "send_bytes(self.sock, head + self.body.frame(data)).",
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


@dataclass
class Parsed:
    """One response as a strict client (h11) read it."""

    status_line: str
    headers: list  # (name, value) str pairs, in order
    body: bytes
    complete: bool  # the body ended where its framing said it would
    keep_alive: bool  # the response lets the connection carry another request
    extra: bytes  # bytes after the end of the response (there should be none)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def parse_response(raw: bytes, what: str, method: str = "GET", closed: bool = False) -> Parsed:
    """Parse one response strictly; ``closed``: the connection ended after ``raw`` (a body without a length ends
    there)."""
    head, blank, _ = raw.partition(b"\r\n\r\n")
    if not blank:
        raise CaseFailed(f"{what}: the head must end with an empty line, so the bytes b'\\r\\n\\r\\n'", got=raw)
    if any(b"\n" in line or b"\r" in line for line in head.split(b"\r\n")):
        raise CaseFailed(f"{what}: every line of the head must end with CRLF (b'\\r\\n'), not a bare LF", got=head)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "check")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    if closed:
        client.receive_data(b"")
    headers, body, complete = None, b"", False
    try:
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            else:  # NEED_DATA, or the connection closed
                break
    except h11.RemoteProtocolError as error:
        raise CaseFailed(f"{what}: not a valid HTTP/1.1 response ({error})", got=raw) from None
    if headers is None:
        raise CaseFailed(f"{what}: no complete response head", got=raw)
    keep_alive = complete and client.their_state is h11.DONE
    return Parsed(head.split(b"\r\n")[0].decode("latin-1"), headers, body, complete, keep_alive,
                  client.trailing_data[0])


class Allow:
    """server_allows_keep_alive for the check's Response: answers ``answer`` when asked, and counts the calls."""

    def __init__(self, answer: bool = True):
        self.answer, self.asked = answer, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answer


def _make(answer, wire: Wire, raw: bytes = b"GET / HTTP/1.1\r\nHost: check\r\n\r\n", allow: Allow | None = None):
    request = http1.parse_request(io.BytesIO(raw))
    response = answer(wire.server, request, allow or Allow())
    for method in ("start_response", "write", "send", "finish"):
        if not callable(getattr(response, method, None)):
            raise CaseFailed(f"Response(sock, request, server_allows_keep_alive) must have a method {method}()")
    return response


def _headers_sent(response, expected: bool, when: str) -> None:
    got = getattr(response, "headers_sent", None)
    if got is not expected:
        raise CaseFailed(f"response.headers_sent {when} should be {expected}: the server reads it to know whether a "
                         "500 is still possible", expected=expected, got=got)


def _expect_silence(wire: Wire, after: str) -> None:
    sent = wire.new()
    if sent:
        raise CaseFailed(f"bytes went on the wire after {after}. PEP 3333: start_response only stores the status and "
                         "headers; they go out with the first piece of the body or at finish(), so that until then "
                         "the app can still replace them", got=sent)


def _finish(response, what: str) -> bool:
    keep = response.finish()
    if not isinstance(keep, bool):
        raise CaseFailed(f"{what}: finish() must return True or False: may the connection carry another request?",
                         got=keep)
    return keep


def _on_wire(wire: Wire, what: str, method: str = "GET", closed: bool = False) -> Parsed:
    """Everything that reached the client, parsed as one response; it must be complete, with nothing after it."""
    wire.new()
    if closed:
        wire.server.close()  # as the server does after a response without a length: the body ends here
        wire.new()
    parsed = parse_response(wire.received, what, method, closed)
    if not parsed.complete:
        raise CaseFailed(f"{what}: the client is still waiting for the end of the body. A chunked body ends with "
                         "the last chunk (b'0\\r\\n\\r\\n'), which finish() sends after the head, if that had not gone "
                         "yet (the core's ResponseBody makes it)",
                         got=wire.received)
    if parsed.extra:
        raise CaseFailed(f"{what}: bytes came after the end of the response, which the client would read as the "
                         "start of the next one", got=parsed.extra)
    if wire.received.count(b"HTTP/1.1 ") != 1:
        raise CaseFailed(f"{what}: the head went out more than once: only with the first piece, or at finish()",
                         got=wire.received)
    return parsed


def _expect_app_headers(parsed: Parsed, headers: list, what: str) -> None:
    mine = [header for header in parsed.headers if header in headers]
    expect_equal(mine, headers, f"{what}: the app's headers, in order")
    if parsed.status_line.startswith("HTTP/1.1 2") and not parsed.values("Date"):
        raise CaseFailed(f"{what}: no Date header. RFC 9110 6.6.1: an origin server with a clock must send one on "
                         "2xx, 3xx and 4xx responses; the core's build_head adds it", got=parsed.headers)


def _expect_framing(parsed: Parsed, what: str, *, length: str | None = None, chunked: bool = False,
                    close: bool = False, advice: str = "") -> None:
    got = {"Content-Length": parsed.values("Content-Length"), "Transfer-Encoding": parsed.values("Transfer-Encoding"),
           "Connection": parsed.values("Connection")}
    expected = {"Content-Length": [length] if length is not None else [],
                "Transfer-Encoding": ["chunked"] if chunked else [],
                "Connection": ["close"] if close else [value for value in got["Connection"] if value != "close"]}
    if got != expected:
        raise CaseFailed(f"{what}: the framing headers are wrong. {advice}", expected=expected, got=got)


@response_exercise.case("start_response sends nothing; send() puts the head and each piece on the wire at once")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT, ("X-Course", "gatewaylab")])
        _expect_silence(wire, "start_response()")
        _headers_sent(response, False, "after start_response()")
        response.send(b"Hello, ")
        first = wire.new()
        if not first:
            raise CaseFailed("nothing arrived after the first send(b'Hello, '): send() puts the head (if it has not "
                             "gone yet) and the piece on the wire at once")
        _headers_sent(response, True, "after the first piece")
        if not first.endswith(b"7\r\nHello, \r\n"):
            raise CaseFailed("the app gave no length and the request is HTTP/1.1, so the body is chunked: each piece "
                             "goes out as one chunk, as soon as send() gets it: let the core's ResponseBody, "
                             "made in head(), frame every piece",
                             expected=b"...\r\n\r\n7\r\nHello, \r\n", got=first)
        response.send(b"world")
        keep = _finish(response, "an HTTP/1.1 request that keeps the connection")
        what = "start_response, send(b'Hello, '), send(b'world'), finish()"
        parsed = _on_wire(wire, what)
        expect_equal(parsed.status_line, "HTTP/1.1 200 OK", f"{what}: the status line")
        _expect_app_headers(parsed, [TEXT, ("X-Course", "gatewaylab")], what)
        _expect_framing(parsed, what, chunked=True, advice="No length given, HTTP/1.1: Transfer-Encoding: chunked, "
                                                           "as choose_framing decides")
        expect_equal(parsed.body, b"Hello, world", f"{what}: the body")
        if not keep:
            raise CaseFailed(f"{what}: finish() returned False, but the client (HTTP/1.1, no Connection: close) and "
                             "the server both keep the connection: finish() returns the keep-alive decision "
                             "choose_framing made when the headers went out", expected=True,
                             got=keep)


@response_exercise.case("start_response returns write(), which sends a piece as send() does")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        write = response.start_response("200 OK", [TEXT])
        if not callable(write):
            raise CaseFailed("start_response must return the write() callable (old apps send their body with it): "
                             "start_response returns the response's own write method", got=write)
        write(b"written")
        if not wire.new():
            raise CaseFailed("nothing arrived after write(b'written'): write(data) sends a piece at once, as "
                             "send(data) does")
        _finish(response, "write(b'written')")
        parsed = _on_wire(wire, "write = start_response(...); write(b'written'); finish()")
        expect_equal(parsed.body, b"written", "the body sent with write()")


@response_exercise.case("a known length: Content-Length; an empty body: Content-Length: 0; HTTP/1.0: close")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT])
        _expect_silence(wire, "start_response()")
        response.send(b"hello", body_length=5)
        keep = _finish(response, "send(b'hello', body_length=5)")
        what = "send(b'hello', body_length=5), the whole body"
        parsed = _on_wire(wire, what)
        _expect_framing(parsed, what, length="5", advice="body_length is the whole body's length: pass it to "
                                                         "choose_framing, which adds Content-Length")
        expect_equal((parsed.body, keep), (b"hello", True), f"{what}: the body, and what finish() returned")
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("404 Not Found", [TEXT])
        _expect_silence(wire, "start_response('404 Not Found', ...)")
        keep = _finish(response, "an empty body")
        if not wire.new() and not wire.received:
            raise CaseFailed("after start_response('404 Not Found', ...) and finish() nothing was sent: an empty "
                             "body still needs its head, so finish() sends it, for a body of length 0, if nothing did")
        what = "start_response('404 Not Found', ...); finish()"
        parsed = _on_wire(wire, what)
        expect_equal(parsed.status_line, "HTTP/1.1 404 Not Found", f"{what}: the status line")
        _expect_framing(parsed, what, length="0", advice="finish() with no body sent: the head, for a body of length 0")
        expect_equal(keep, True, f"{what}: what finish() returned")
    with Wire() as wire:
        response = _make(answer, wire, b"GET /old HTTP/1.0\r\n\r\n")
        response.start_response("200 OK", [TEXT])
        response.send(b"old ")
        response.send(b"client")
        keep = _finish(response, "an HTTP/1.0 request")
        what = "an HTTP/1.0 request, a body of unknown length"
        parsed = _on_wire(wire, what, closed=True)
        _expect_framing(parsed, what, close=True, advice="HTTP/1.0 has no chunks: the body ends when the connection "
                                                         "closes, so the head says Connection: close")
        expect_equal((parsed.body, keep), (b"old client", False), f"{what}: the body, and what finish() returned "
                                                                  "(the connection must close)")


@response_exercise.case("the app's own Content-Length: never more bytes, and a shorter body closes the connection")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT, ("Content-Length", "3")])
        response.send(b"hello")
        keep = _finish(response, "a body longer than its Content-Length")
        what = "Content-Length: 3 from the app, then send(b'hello')"
        wire.new()
        sent = wire.received.partition(b"\r\n\r\n")[2]
        if sent != b"hel":
            raise CaseFailed(f"{what}: never send more bytes than the app's Content-Length says (the core's "
                             "ResponseBody cuts each piece to it): the client would read the rest as the start of "
                             "the next response", expected=b"hel", got=sent)
        parsed = _on_wire(wire, what)
        _expect_framing(parsed, what, length="3", advice="the app's own Content-Length, and nothing added")
        expect_equal(keep, True, f"{what}: what finish() returned")
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT, ("Content-Length", "10")])
        response.send(b"hello")
        keep = _finish(response, "a body shorter than its Content-Length")
        if keep is not False:
            raise CaseFailed("Content-Length: 10, and only 5 bytes sent: the client waits for 5 more, and only "
                             "closing the connection ends that, so finish() returns False when the body came up "
                             "short of the app's Content-Length (the ResponseBody knows: cut_short), whatever the "
                             "framing said", expected=False, got=keep)


@response_exercise.case("HEAD and 304: the head, never a body")
def _(answer):
    for raw, status, what in ((b"HEAD / HTTP/1.1\r\nHost: check\r\n\r\n", "200 OK", "HEAD /"),
                              (b"GET / HTTP/1.1\r\nHost: check\r\n\r\n", "304 Not Modified", "a 304")):
        with Wire() as wire:
            response = _make(answer, wire, raw)
            response.start_response(status, [TEXT] if status == "200 OK" else [])
            response.send(b"hello", body_length=5)
            response.send(b" again")
            _finish(response, what)
            wire.new()
            after = wire.received.partition(b"\r\n\r\n")[2]
            if after:
                raise CaseFailed(f"{what}: bytes of body went out after the head. A response to HEAD, and a 1xx, 204 "
                                 "or 304, has no body (the framing says so): send every piece through the core's "
                                 "ResponseBody, which sends nothing then", got=after)
            parsed = _on_wire(wire, what, method="HEAD" if raw.startswith(b"HEAD") else "GET")
            expect_equal(parsed.status_line, f"HTTP/1.1 {status}", f"{what}: the status line")


@response_exercise.case("keep-alive: asked when the headers go out; Connection: close when either side says no")
def _(answer):
    with Wire() as wire:
        allow = Allow(True)
        response = _make(answer, wire, allow=allow)
        response.start_response("200 OK", [TEXT])
        _expect_silence(wire, "start_response()")
        allow.answer = False  # the server began to stop while the app was running
        response.send(b"bye", body_length=3)
        keep = _finish(response, "a response whose headers went out while the server was stopping")
        parsed = _on_wire(wire, "the server stopping before the headers went out")
        if parsed.values("Connection") != ["close"] or keep:
            raise CaseFailed("server_allows_keep_alive() said no when the headers went out (the server had begun to "
                             "stop since start_response), yet the response did not say Connection: close, or finish() "
                             "returned True. Ask it in head(), when the headers go out, not in start_response: the "
                             "connection stays open only if the request wants it and the server allows it then",
                             expected=(["close"], False), got=(parsed.values("Connection"), keep))
    for raw, connection, expected, why in (
            (b"GET / HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n", ["close"], False,
             "the client asked to close (Connection: close): say Connection: close, and finish() returns False"),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ["keep-alive"], True,
             "an HTTP/1.0 client that asked for keep-alive, and a known length: choose_framing says Connection: "
             "keep-alive (HTTP/1.0 closes unless told otherwise), and finish() returns True")):
        with Wire() as wire:
            response = _make(answer, wire, raw)
            response.start_response("200 OK", [TEXT])
            response.send(b"hi", body_length=2)
            keep = _finish(response, raw.split(b"\r\n")[0].decode())
            parsed = _on_wire(wire, raw.split(b"\r\n")[0].decode(), closed=not expected)
            if parsed.values("Connection") != connection or keep is not expected:
                raise CaseFailed(f"{why}. The client's wish (request.keep_alive) and the server's word together are "
                                 "what head() gives choose_framing, and finish() returns what the framing decided",
                                 expected=(connection, expected),
                                 got=(parsed.values("Connection"), keep))


@response_exercise.case("exc_info before the headers went out replaces the status and headers")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT, ("X-Page", "menu")])
        _expect_silence(wire, "start_response()")
        try:
            raise AppCrash("the template failed")
        except AppCrash:
            try:
                response.start_response("500 Internal Server Error", [TEXT], sys.exc_info())
            except AppCrash:
                raise CaseFailed("start_response(..., exc_info) re-raised the app's error although nothing had been "
                                 "sent: before the headers go out, exc_info means 'replace the response'") from None
            except Exception as error:
                raise CaseFailed("a second start_response call WITH exc_info is allowed before the headers go out: "
                                 f"it replaces status and headers. Yours raised {type(error).__name__}: {error}") \
                    from None
        _expect_silence(wire, "the second start_response()")
        response.send(b"sorry")
        _finish(response, "the replaced response")
        what = "200 replaced by 500 with exc_info, then send(b'sorry')"
        parsed = _on_wire(wire, what)
        expect_equal(parsed.status_line, "HTTP/1.1 500 Internal Server Error", f"{what}: the status line")
        _expect_app_headers(parsed, [TEXT], what)
        if parsed.values("X-Page"):
            raise CaseFailed(f"{what}: the 200's headers went out too: exc_info replaces them", got=parsed.headers)


@response_exercise.case("exc_info after the headers went out re-raises the app's exception, and sends nothing")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        response.start_response("200 OK", [TEXT])
        response.send(b"partial")
        wire.new()  # the 200 and b"partial": what the client has now
        crash = AppCrash("the template failed half-way")
        try:
            raise crash
        except AppCrash:
            try:
                response.start_response("500 Internal Server Error", [TEXT], sys.exc_info())
            except AppCrash as error:
                if error is not crash:
                    raise CaseFailed("start_response raised a new AppCrash: re-raise the app's own exception, "
                                     "exc_info[1], with its traceback (exc_info[2]), so the log shows where the app "
                                     "failed") from None
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


def _refused(call, what: str, wire: Wire, advice: str) -> None:
    try:
        call()
    except Exception:
        pass
    else:
        raise CaseFailed(f"{what} was accepted: {advice}. Raise AssertionError, as wsgiref does; the server answers "
                         "500", got=wire.new())
    _expect_silence(wire, what)


@response_exercise.case("errors, each an AssertionError with nothing sent: a second start_response without exc_info, "
                        "a body before start_response or not bytes, a bad status or header")
def _(answer):
    with Wire() as wire:
        response = _make(answer, wire)
        _refused(lambda: response.send(b"too early"), "send() before start_response()", wire,
                 "there is no status line to send yet")
        response.start_response("200 OK", [TEXT])
        _refused(lambda: response.start_response("302 Found", [("Location", "/elsewhere")]),
                 "a second start_response() without exc_info", wire,
                 "PEP 3333: that is an error (only exc_info makes a second call legal)")
        _refused(lambda: response.send("text"), "send('text'), a str", wire, "a body is bytes")
        response.send(b"first")
        _finish(response, "the response after the refused calls")
        parsed = _on_wire(wire, "the response after the refused calls")
        expect_equal((parsed.status_line, parsed.body), ("HTTP/1.1 200 OK", b"first"),
                     "the response after the refused calls: status line and body")
    for status, headers, advice in (
            ("200", [TEXT], "a status is a code, a space and a reason phrase: check_status"),
            (200, [TEXT], "a status is a str: check_status"),
            ("200 OK", ((TEXT),), "the headers are a list of (name, value) tuples: check_headers"),
            ("200 OK", [("Connection", "close")], "Connection is a hop-by-hop header, which the server manages, not "
                                                  "the app (PEP 3333): check_headers")):
        with Wire() as wire:
            response = _make(answer, wire)
            _refused(lambda: response.start_response(status, headers), f"start_response({status!r}, {headers!r})",
                     wire, advice)


# --- 03.3 run_app -----------------------------------------------------------------------------------------------------

run_app_exercise = Exercise(
    "03.3", "run_app: stream the body, always close it",
    points=3,
    answer="a function run_app(app, environ, response), the lesson's, that returns what response.finish() returns",
    params=3,
    hints=[
        "Call the app with the response's start_response: result = app(environ, response.start_response). Then, in "
        "a try, go through the result and hand each non-empty piece to response.send() as soon as you get it (an "
        "empty piece must not make the headers go out), and return response.finish(). In the finally, call "
        "result.close() if it has one.",
        "A body of one item (a list or a tuple of one, anything whose len() is 1) is that item: its first "
        "piece's length is the body's, so the server can send a Content-Length (PEP 3333; has_one_item(result), "
        "imported from the course's server, asks len() and says so). Ask before the loop, "
        "then pass body_length=len(data) to send() for such a body, and None otherwise. Do not catch the app's "
        "exceptions: handle_request (03.4) answers the 500, or closes the connection, as response.headers_sent says.",
        "result = app(environ, response.start_response) -- try: whole = has_one_item(result); for data in result: "
        "if data: response.send(data, body_length=len(data) if whole else None) -- then return response.finish() "
        "-- finally: if hasattr(result, 'close'): result.close()",
    ],
)


class RecordingResponse(wsgi.Response):
    """The course's Response, on a Wire, recording the calls run_app makes on it in ``events``: ("send", data,
    body_length) and ("finish", what it returned); a Body adds ("close",) to the same list."""

    def __init__(self, wire: Wire, raw: bytes = b"GET / HTTP/1.1\r\nHost: check\r\n\r\n"):
        super().__init__(wire.server, http1.parse_request(io.BytesIO(raw)), lambda: True)
        self.method = raw.split(b" ")[0].decode()
        self.events: list[tuple] = []

    def send(self, data, body_length=None):
        self.events.append(("send", data, body_length))
        super().send(data, body_length)

    def finish(self):
        keep = super().finish()
        self.events.append(("finish", keep))
        return keep

    @property
    def finished(self) -> bool:
        return any(event[0] == "finish" for event in self.events)


class Body:
    """An app's body: yields ``pieces`` (an exception among them is raised there), counts its close() calls.

    ``on_resume(index)`` runs each time the server asks for piece ``index`` > 0, i.e. after it had piece index - 1.
    ``log``, a list (a RecordingResponse's events), gets ("close",) when close() is called.
    """

    def __init__(self, pieces, on_resume=None, log=None):
        self.pieces = list(pieces)
        self.log = log  # a response's events: close() is recorded among them, to see that it came after finish()
        self.on_resume = on_resume
        self.closed = 0
        self.produced = 0

    def __iter__(self):
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


def _app(body, status: str = "200 OK"):
    """An app that starts its response, then returns ``body``."""
    def app(environ, start_response):
        start_response(status, [TEXT])
        return body
    return app


def _generator_app(*pieces):
    """An app written as a generator: it calls start_response only when first iterated; an exception among the
    pieces is raised there."""
    def app(environ, start_response):
        start_response("200 OK", [TEXT])
        for piece in pieces:
            if isinstance(piece, BaseException):
                raise piece
            yield piece
    return app


def _environ() -> dict:
    request, body, length = request_from(b"GET / HTTP/1.1\r\nHost: check\r\n\r\n")
    return wsgi.make_environ(request, body, length, SERVER_ADDRESS, CLIENT_ADDRESS, False)


def _expect_closed(body: Body, when: str) -> None:
    if not body.closed:
        raise CaseFailed(f"{when}, the body's close() was never called. PEP 3333: the server calls close() however "
                         "the response ends (it is where apps release files and database connections): call it in "
                         "a finally block")
    if body.closed > 1:
        raise CaseFailed(f"{when}, the body's close() was called {body.closed} times: call it exactly once, in the "
                         "finally block", expected=1, got=body.closed)
    events = [event[0] for event in body.log or []]
    if "finish" in events and events.index("close") < events.index("finish"):
        raise CaseFailed(f"{when}, close() was called before finish(): the response is not complete until finish(), "
                         "so finish() first, then close() (in the finally block)", got=events)


def _sends(response: RecordingResponse) -> list[tuple]:
    return [event for event in response.events if event[0] == "send"]


@run_app_exercise.case("calls the app, sends each non-empty piece, returns what finish() returns")
def _(answer):
    with Wire() as wire:
        response = RecordingResponse(wire)
        body = Body([b"one ", b"", b"two ", b"three"], log=response.events)
        keep = answer(_app(body), _environ(), response)
        empty = [event for event in _sends(response) if not event[1]]
        if empty:
            raise CaseFailed("an empty piece (b'') was passed to send(), which sends the headers: skip empty pieces, "
                             "so that the app can still replace its response", got=response.events)
        _expect_not_joined(_sends(response), [b"one ", b"two ", b"three"], "a body of four pieces, one empty")
        expect_equal([event[1] for event in _sends(response)], [b"one ", b"two ", b"three"], "the pieces sent")
        if not response.finished:
            raise CaseFailed("response.finish() was never called: after the last piece, finish() ends the response "
                             "(the last chunk of a chunked body, the head of an empty one)", got=response.events)
        _expect_closed(body, "after a response that went well")
        finished = next(event[1] for event in response.events if event[0] == "finish")
        if keep is not finished:
            raise CaseFailed("run_app must return what response.finish() returned: True if the connection may "
                             "carry another request", expected=finished, got=keep)
        parsed = _on_wire(wire, "the response run_app sent")
        expect_equal(parsed.body, b"one two three", "the body the client received")
    with Wire() as wire:
        response = RecordingResponse(wire, b"GET / HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
        keep = answer(_generator_app(b"bye"), _environ(), response)
        if keep is not False:
            raise CaseFailed("a request with Connection: close: finish() returned False, and run_app must return "
                             "that", expected=False, got=keep)


def _expect_not_joined(sends: list, pieces: list, what: str) -> None:
    """The pieces sent must be the app's, one by one: a single piece that is all of them joined is a buffered body."""
    sent = [event[1] for event in sends]
    if len(pieces) > 1 and sent == [b"".join(pieces)]:
        raise CaseFailed(f"{what}: the app's {len(pieces)} pieces were joined and sent as one. Buffer nothing: hand "
                         "each piece to send() as it comes out of the loop over the result (no list(result), no "
                         "b''.join), so that a long body streams", expected=pieces, got=sent)


@run_app_exercise.case("a body of one item (a list, a tuple) gets a Content-Length; a generator or a longer body is "
                       "chunked")
def _(answer):
    for app, expected, what, advice in (
            (_app([b"hello"]), [("send", b"hello", 5)], "a list of one item",
             "its one piece is the whole body, so pass body_length=len(data) to send(), and the client gets a "
             "Content-Length (has_one_item(result) tells such a body)"),
            (_app((b"hello",)), [("send", b"hello", 5)], "a tuple of one item",
             "PEP 3333: when the iterable's len() is 1, its one piece is the whole body, whatever its type (a list, "
             "a tuple, any iterable with a __len__), so pass body_length=len(data). Ask len() and take a TypeError "
             "for 'unknown' (has_one_item(result)), rather than testing for a list"),
            (_app((b"one", b"two")), [("send", b"one", None), ("send", b"two", None)], "a tuple of two items",
             "body_length is the length of the WHOLE body, known only for a body of one item: pass None here, or "
             "the client is told the body ends after the first piece"),
            (_generator_app(b"hello"), [("send", b"hello", None)], "a generator",
             "a generator has no len(): nobody knows in advance how many pieces it makes, so body_length is None")):
        with Wire() as wire:
            response = RecordingResponse(wire)
            answer(app, _environ(), response)
            _expect_not_joined(_sends(response), [event[1] for event in expected], what)
            if _sends(response) != expected:
                raise CaseFailed(f"{what}: {advice}", expected=expected, got=_sends(response))
            _on_wire(wire, what)
    with Wire() as wire:
        response = RecordingResponse(wire)
        answer(_app([b""]), _environ(), response)
        parsed = _on_wire(wire, "a list of one empty item")
        if _sends(response) or parsed.values("Content-Length") != ["0"]:
            raise CaseFailed("a list of one empty item: nothing to send(), and finish() sends the head with "
                             "Content-Length: 0", got=response.events)


@run_app_exercise.case("streams: each piece is on the wire before the app is asked for the next")
def _(answer):
    with Wire() as wire:
        late = []

        def on_resume(index):
            wire.new()
            if pieces[index - 1] not in wire.received:
                late.append(index)

        pieces = [b"row 1\n", b"row 2\n", b"row 3\n"]
        response = RecordingResponse(wire)
        answer(_app(Body(pieces, on_resume)), _environ(), response)
        if late:
            raise CaseFailed(f"the app was asked for piece {late[0] + 1} before piece {late[0]} was on the wire: "
                             "send each piece as soon as it comes (no list(result), no b''.join)")
        expect_equal(_on_wire(wire, "three rows").body, b"".join(pieces), "the body the client received")


@run_app_exercise.case("close() is called once, after finish(), however the response ends")
def _(answer):
    with Wire() as wire:
        response = RecordingResponse(wire)
        body = Body([b"rows\n", b"more rows\n"], log=response.events)
        answer(_app(body), _environ(), response)
        _expect_closed(body, "after a response that went well")
    with Wire() as wire:
        response = RecordingResponse(wire)
        crash = AppCrash("the template failed half-way")
        body = Body([b"<html>partial", crash, b"never"], log=response.events)
        try:
            answer(_app(body), _environ(), response)
        except AppCrash as error:
            if error is not crash:
                raise CaseFailed("a new AppCrash came out of run_app: let the app's own exception go on") from None
        else:
            raise CaseFailed("the app failed after its first piece, and run_app returned as if all went well: let "
                             "the exception go on, so that handle_request closes the connection and the client sees "
                             "the body was cut short", got=response.events)
        _expect_closed(body, "after the app failed half-way")
        if response.finished:
            raise CaseFailed("finish() was called after the app failed: it sent the last chunk, and the client took a "
                             "body cut short for a complete one. Call finish() only after the loop, not in finally",
                             got=response.events)
    with Wire() as wire:
        wire.client.close()  # the client left before the answer came
        response = RecordingResponse(wire)
        body = Body([b"one", b"two", b"three"], log=response.events)
        try:
            answer(_app(body), _environ(), response)
        except OSError:  # ClientDisconnected, from send()
            pass
        else:
            raise CaseFailed("send() raised ClientDisconnected (the client left), and run_app returned normally: let "
                             "the error go on, so the server closes the connection", got=response.events)
        _expect_closed(body, "after the client disconnected")
        if body.produced > 1:
            raise CaseFailed(f"the app was asked for {body.produced} pieces, though sending the first one failed: "
                             "stop when send() raises")
    with Wire() as wire:
        response = RecordingResponse(wire)
        try:
            answer(_app([b"a list, ", b"no close()"]), _environ(), response)
        except AttributeError as error:
            raise CaseFailed(f"{error}: a body need not have close(); call it only if it has one "
                             "(hasattr(result, 'close'))") from None


@run_app_exercise.case("errors are handle_request's: run_app answers no 500, and lets the app's exception go on")
def _(answer):
    for what, app in (
            ("an app that fails before its first byte of body", _app(Body([b"", AppCrash("no database")]))),
            ("a generator app that fails before its first piece", _generator_app(b"", AppCrash("no database"))),
    ):
        with Wire() as wire:
            response = RecordingResponse(wire)
            try:
                answer(app, _environ(), response)
            except AppCrash:
                pass
            else:
                raise CaseFailed(f"{what}: run_app returned normally. Let the exception go on: handle_request (03.4) "
                                 "logs it and answers the 500, or closes the connection if the headers went out",
                                 got=response.events)
            sent = wire.new()
            if sent or response.headers_sent:
                raise CaseFailed(f"{what}: bytes went on the wire, so handle_request can no longer answer 500. "
                                 "run_app sends nothing for an empty piece, and nothing when the app fails",
                                 got=sent)

    def fails_when_called(environ, start_response):
        raise AppCrash("fails when called")

    with Wire() as wire:
        try:
            answer(fails_when_called, _environ(), RecordingResponse(wire))
        except AppCrash:
            pass
        else:
            raise CaseFailed("the app raised when called, and run_app returned normally: let the error go on")


# --- 03.4 handle_request and serve_connection -------------------------------------------------------------------------

serve_exercise = Exercise(
    "03.4", "handle_request and serve_connection: the server",
    points=4,
    answer="a function serve_connection(server, connection), the lesson's, with your handle_request(server, "
           "request, connection) beside it",
    params=2,
    timeout=SERVER_CASE_TIMEOUT,
    hints=[
        "handle_request is one request's path through the server: body, length = open_body(request, "
        "connection.rfile, connection.sock, server.max_body); environ = make_environ(request, body, length, "
        "server.server_address, connection.client_address, server.multithread); response = Response("
        "connection.sock, request, server_allows_keep_alive=lambda: not server.stopping); then return "
        "run_app(server.app, environ, response). serve_connection loops: request = read_request(connection); None: "
        "return False; if handle_request(...) is False: return False; after an answer, return True unless "
        "connection.request_waiting() (then serve that request at once: select() never sees it in the buffer).",
        "Who answers what goes wrong. handle_request: except ClientDisconnected: return False; except Exception: "
        "log.exception(...), then send_error(connection.sock, HTTPError(500, ...)) only if not "
        "response.headers_sent (after, closing is the only way), and return False. Before keeping the connection, "
        "read and drop what the app left of the body (while body.read(65536): pass). serve_connection: except "
        "HTTPError: send_error and close_gently; except OSError: pass; except Exception: log.exception(...); then "
        "return False. When handle_request says False: close_gently first if request.keep_alive or "
        "connection.request_waiting().",
        "serve_connection: try: while True: request = read_request(connection) -- if request is None: return False "
        "-- if not handle_request(server, request, connection): if request.keep_alive or "
        "connection.request_waiting(): close_gently(connection.sock) -- return False -- if not "
        "connection.request_waiting(): return True -- except HTTPError as error: send_error(connection.sock, error); "
        "close_gently(connection.sock) -- except OSError: pass -- except Exception: log.exception('error while "
        "serving') -- return False",
    ],
)


class YourServer(wsgi.WSGIServer):
    """The lesson's sequential WSGIServer, with each connection it accepts served by ``serve_connection``, the
    learner's (exercise 03.4), instead of the course's. The rest (accept, the wait for an idle client's next request,
    shutdown) is the lesson's. ``connections`` counts the connections served."""

    def __init__(self, app, serve_connection, *, timeout=wsgi.TIMEOUT):
        super().__init__(app, "127.0.0.1", 0, timeout=timeout)
        self.serve_connection = serve_connection
        self.connections = 0

    def serve_until_done(self, connection, poll_interval=0.5):
        # WSGIServer.serve_until_done, with the learner's serve_connection in place of the course's.
        self.connections += 1
        self.serving = connection
        try:
            while self.serve_connection(self, connection) and self.wait_for_request(connection, poll_interval):
                pass
        finally:
            self.serving = None
            connection.close()


def start_yours(serve_connection, app, name: str, timeout: float = wsgi.TIMEOUT) -> servers.RunningServer:
    """Run a YourServer in a background thread; the RunningServer returned also has ``httpd`` (the server object)
    and ``halt()``, which stops it without waiting for its thread. A loop that dies (the learner's serve_connection
    let an exception out) closes its listening socket, so that the next client is refused at once instead of
    waiting in the backlog."""
    httpd = YourServer(app, serve_connection, timeout=timeout)

    def halt() -> None:
        httpd.stopping = True
        if not httpd.stopped.wait(httpd.timeout + 0.5):  # a request being served gets the timeout to finish
            serving = httpd.serving
            if serving is not None:
                serving.cut()
            httpd.stopped.wait(1.0)
        httpd.server_close()

    host, port = httpd.server_address
    running = servers.RunningServer(name, "yours", host, port, halt)
    running.httpd, running.halt = httpd, halt

    def run() -> None:
        try:
            httpd.serve_forever(poll_interval=0.05)
        except BaseException as error:  # kept for the message; a dead server thread must not vanish silently
            running.error = error
        finally:
            httpd.server_close()

    running.thread = threading.Thread(target=run, name=f"gatewaylab-{name}", daemon=True)
    running.thread.start()
    while httpd.stopped.is_set() and running.thread.is_alive():
        time.sleep(0.002)  # serve_forever() clears `stopped` once it runs: from then on, halt() waits for it
    return running


PIECES = {"make_environ": "03.1", "Response": "03.2", "run_app": "03.3", "handle_request": "03.4",
          "serve_connection": "03.4"}
IMPORTED = ("read_request", "open_body", "close_gently", "send_error", "ClientDisconnected", "HTTPError", "log")


def _code_names(obj) -> set[str]:
    """The names the code of a function, or of a class's methods, refers to (nested functions included)."""
    members = vars(obj).values() if inspect.isclass(obj) else [obj]
    functions = [getattr(m, "fget", m) for m in members]  # a property's getter too
    names, stack = set(), [f.__code__ for f in functions if inspect.isfunction(f)]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if inspect.iscode(const))
    return names


def _defined_in(value, namespace: dict) -> bool:
    """Was this function or class defined in ``namespace`` (the learner's notebook), not imported?"""
    if inspect.isfunction(value):
        return value.__globals__ is namespace
    if inspect.isclass(value):
        return any(inspect.isfunction(m) and m.__globals__ is namespace for m in vars(value).values())
    return False


def pieces_problem(serve_connection) -> str | None:
    """Why the learner's server cannot run yet, in one sentence: serve_connection, or a piece it uses (followed
    through the functions and classes defined beside it), is still the exercise stub, or is not defined; None when
    all are there."""
    if not inspect.isfunction(serve_connection):
        return None  # the cases say what is wrong with it
    if is_stub(serve_connection):
        return "Your serve_connection (exercise 03.4) is not written yet: write it, run its cell, then this one."
    namespace = serve_connection.__globals__
    todo, seen = [("serve_connection", serve_connection)], {"serve_connection"}
    while todo:
        user, obj = todo.pop(0)
        for name in sorted(_code_names(obj) - seen):
            if name not in namespace and (name in PIECES or name in IMPORTED):
                where = f"the cell of exercise {PIECES[name]}" if name in PIECES else "the notebook's first cell"
                return f"{user} uses {name}, which is not defined: run {where} first."
            value = namespace.get(name)
            if not _defined_in(value, namespace):
                continue
            seen.add(name)
            if is_stub(value):
                if name == "handle_request":
                    return ("serve_connection uses your handle_request, which is still the exercise stub: write it "
                            "too (its cell is above serve_connection's).")
                if name in PIECES:
                    return (f"{user} uses your {name}, which is still the exercise stub: solve exercise "
                            f"{PIECES[name]} first, or take the lesson's: run `from gatewaylab.wsgi import {name}` "
                            f"in a cell under exercise {PIECES[name]}'s.")
                return f"{user} uses your {name}, which is still the exercise stub: write it first."
            todo.append((name, value))
    return None


def serve_yours(serve_connection, app, name: str = "l03-yours"):
    """Your server, running ``app`` in the background: the lesson's WSGIServer, each connection served by your
    ``serve_connection`` (exercise 03.4). Use it in a ``with`` block, or stop it with ``.stop()``. While
    serve_connection, or a piece it uses, is not written yet, this prints why, in one line, and returns None."""
    problem = pieces_problem(serve_connection)
    if problem:
        print(problem)
        return None
    servers.stop(name)
    return servers._register(start_yours(serve_connection, app, name))


# The probe's checks, all but the concurrency fact, and where to look when one fails.
PROBE_CHECKS = [one.name for one in probe.CHECKS if one.category != "concurrency"]
PROBE_ADVICE = {
    "GET /": "handle_request runs server.app through run_app, with the environ make_environ builds",
    "HEAD /": "a response to HEAD has no body: Response.send() puts each piece through self.body.frame(), which "
              "sends nothing then (exercise 03.2)",
    "percent-encoded path": "PATH_INFO: percent-decoded, then latin-1 (exercise 03.1)",
    "POST with Content-Length": "the body comes from open_body(request, connection.rfile, connection.sock, "
                                "server.max_body): give make_environ both of what it returns",
    "POST with a chunked body": "open_body(request, connection.rfile, connection.sock, server.max_body) de-chunks "
                                "the body and measures it: give make_environ both of what it returns",
    "Content-Length and Transfer-Encoding": "open_body refuses it with HTTPError(400): answer it with "
                                            "send_error(connection.sock, error), then close_gently",
    "1 GB body announced": "open_body refuses it with HTTPError(413) before reading the body: answer it with "
                           "send_error(connection.sock, error), then close_gently",
    "two requests on one connection": "after a kept-alive answer, serve_connection returns True (the server then "
                                      "waits for the next request), and handle_request returns run_app's answer",
    "Connection: close": "after a response that said Connection: close, run_app returns False, and so do "
                         "handle_request and serve_connection: the server closes the connection",
    "streaming": "run_app sends each piece as it comes (exercise 03.3)",
}
MALFORMED = ("an HTTPError (read_request and open_body raise it for a malformed request) is answered in "
             "serve_connection: send_error(connection.sock, error), then close_gently(connection.sock)")


class _Records(logging.Handler):
    """Keeps the log records of the server under test, so that tracebacks land in a list, not in the notebook."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


STOP_TIMEOUT = 2.0  # seconds the learner's server gets to end once it was told to stop


@contextlib.contextmanager
def _serve(answer, app):
    """Run the learner's server for a case; when the case fails, say so if the server's thread crashed."""
    handler, root = _Records(), logging.getLogger()
    root.addHandler(handler)  # the learner's log.exception goes to a logger with no handler of its own
    server = start_yours(answer, app, "check-03.4", timeout=SERVER_TIMEOUT)
    server.records = handler.records
    try:
        try:
            yield server
        except CaseFailed as failure:
            _stop(server)  # joins the thread, so a crash is recorded in server.error by now
            if server.error is None:
                raise
            raise CaseFailed(f"{failure.message}\nYour server's loop ended with {type(server.error).__name__}: "
                             f"{server.error}. {_crash_advice(server.error)}", expected=failure.expected,
                             got=failure.got) from None
        finally:
            _stop(server)
    finally:
        root.removeHandler(handler)


def _crash_advice(error: BaseException) -> str:
    if isinstance(error, NotImplementedError):
        return "A piece your server uses is still the exercise stub."
    if isinstance(error, NameError):
        return "A piece your server uses is not defined: run the cells above first."
    if isinstance(error, http1.HTTPError):
        return f"Nothing a client sends may end the server: {MALFORMED}."
    if isinstance(error, SystemExit):
        return ("An app called sys.exit(): that SystemExit is the app's bug, and handle_request answers it as any "
                "other failure of the app (a 500, or a close after the headers). Catch it there, beside Exception; "
                "serve_connection need not see it.")
    if isinstance(error, OSError):
        return ("A client that leaves, resets the connection or stays silent shows up as an OSError: catch it in "
                "serve_connection (except OSError: the connection is done with), so that the server goes on.")
    return ("No error while serving one connection may end the server: catch Exception in serve_connection, log "
            "it (log.exception), and return False.")


def _stop(server) -> None:
    """Stop the learner's server; a thread that does not end is stopped by force, and the case says why."""
    if not server.thread.is_alive():
        server.halt()
        return
    server.halt()
    server.thread.join(STOP_TIMEOUT)
    if server.thread.is_alive():
        stop_thread(server.thread)
        raise CaseFailed("your server did not stop: serve_connection was still running seconds after its connection "
                         "was cut off. Does it loop without end on a connection whose client has gone? When "
                         "read_request returns None, return False")


class NoAnswerInTime(CaseFailed):
    """The server kept the connection open and sent no complete answer in time."""


def _connect(server, what: str, wait: float = SOCKET_TIMEOUT):
    """A strict client connection (gatewaylab.wire: a socket, h11, a deadline) to the learner's server."""
    try:
        return ClientConnection(server.address, time.monotonic() + wait)
    except ConnectionRefusedError:
        raise CaseFailed(f"{what}: your server no longer accepts connections: its loop ended. Nothing a client or an "
                         "app does may end it") from None
    except OSError as error:
        raise CaseFailed(f"{what}: could not connect to your server ({error})") from None


def _reply(connection, what: str, method: str = "GET"):
    """The next response on a client connection, or CaseFailed saying what came instead."""
    try:
        return connection.read_response(method)
    except TimeoutError:
        raise NoAnswerInTime(f"{what}: no complete answer within {SOCKET_TIMEOUT:g} s") from None
    except ConnectionError:
        raise CaseFailed(f"{what}: the server closed the connection without an answer") from None
    except h11.RemoteProtocolError as error:
        raise CaseFailed(f"{what}: no complete, valid response ({error})") from None


def _exchange(server, raw: bytes, what: str, method: str = "GET"):
    with contextlib.closing(_connect(server, what)) as connection:
        connection.send(raw)
        return _reply(connection, what, method)


def _read_until_close(server, raw: bytes, what: str) -> bytes:
    """Send ``raw`` on a new connection; everything the server sends until it closes the connection."""
    data = b""
    with contextlib.closing(_connect(server, what)) as connection:
        connection.send(raw)
        try:
            while piece := connection.receive():
                data += piece
        except TimeoutError:
            raise NoAnswerInTime(f"{what}: the server neither finished its answer nor closed the connection within "
                                 f"{SOCKET_TIMEOUT:g} s", got=data) from None
        except ConnectionError as error:
            raise CaseFailed(f"{what}: the connection was reset ({error})", got=data) from None
    return data


def _request(method: str, target: str, headers=(), body: bytes = b"") -> bytes:
    return raw_request(method, target, headers, body, host="check")


def _probe_app():
    return probe.probe_app


@serve_exercise.case("the pieces serve_connection uses are defined and solved")
def _(answer):
    # The server's own except clauses would swallow a NameError or a stub's NotImplementedError, and every request
    # would just go unanswered: say so up front.
    problem = pieces_problem(answer)
    if problem:
        raise CaseFailed(problem)


@serve_exercise.case("the conformance probe: answers, HEAD, request bodies, refusals, limits, keep-alive, streaming",
                     timeout=len(PROBE_CHECKS) * SOCKET_TIMEOUT + 5)  # room for every check to wait its limit
def _(answer):
    with _serve(answer, _probe_app()) as server:
        report = probe.probe(server.url, checks=PROBE_CHECKS, timeout=SOCKET_TIMEOUT)
        failed = report.failed
        if failed:
            first = failed[0]
            names = ", ".join(f"'{r.name}'" for r in failed)
            advice = PROBE_ADVICE.get(first.name, MALFORMED if first.category == "malformed requests" else "")
            raise CaseFailed(f"{len(failed)} of the probe's {len(report.results)} checks failed ({names}). The first, "
                             f"'{first.name}', expected {first.expected}: " + (advice or "see what came back") + ".",
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


KEEP_ALIVE_IGNORED = ("keep-alive was ignored. After an answer that keeps the connection, serve_connection returns "
                      "True (the server waits for the next request on it), and handle_request returns what run_app "
                      "returned")
FLASK_REQUESTS = [
    ("GET", "/hello/Jos%C3%A9?lang=pt", {}, {"name": "José", "args": {"lang": "pt"}}),
    ("POST", "/order", {"data": {"dish": "crème brûlée", "qty": "2"}},
     {"form": {"dish": "crème brûlée", "qty": "2"}, "type": "application/x-www-form-urlencoded"}),
    ("POST", "/order (a chunked body)",  # httpx sends content from a generator chunked
     {"content": lambda: iter([b"dish=tea", b"&qty=1"]), "headers": {"Content-Type": "application/x-www-form-"
                                                                                     "urlencoded"}},
     {"form": {"dish": "tea", "qty": "1"}, "length": 14}),
]


@serve_exercise.case("a Flask app, unmodified, behind wsgiref.validate, answers httpx on one kept-alive connection",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    import httpx

    app = _Recorded(flask_app())
    with contextlib.closing(app), _serve(answer, app) as server, httpx.Client(timeout=SOCKET_TIMEOUT) as client:
        for number, (method, target, options, expected) in enumerate(FLASK_REQUESTS):
            what = f"{method} {target} with httpx"
            options = {key: value() if callable(value) else value for key, value in options.items()}
            try:
                reply = client.request(method, server.url + target.split(" ")[0], **options)
            except httpx.HTTPError as error:
                gone = number and isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))
                raise CaseFailed(f"{what}: httpx got no proper answer: {type(error).__name__}: {error}." + (
                    " httpx sent it on the connection the previous answer kept open (it did not say Connection: "
                    f"close), and your server closed that connection: {KEEP_ALIVE_IGNORED}" if gone else "")) \
                    from None
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
        opened = server.httpd.connections
        if opened != 1:
            raise CaseFailed(f"httpx sent its {len(FLASK_REQUESTS)} requests one after another on a kept-alive "
                             f"connection, and your server made it open {opened}: {KEEP_ALIVE_IGNORED}",
                             expected=1, got=opened)


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
    return [b"hello from " + environ["PATH_INFO"].encode("latin-1")]


def _exits(environ, start_response):
    sys.exit(3)  # an app's bug: wsgiref answers it with a 500 and goes on serving, and so must yours


def _router(environ, start_response):
    apps = {"/called": _crashes_when_called, "/iterated": _crashes_when_iterated, "/late": _crashes_after_a_piece,
            "/echo": _echo, "/exits": _exits}
    return apps.get(environ["PATH_INFO"], _hello)(environ, start_response)


def _read_watching_reset(server, raw: bytes, what: str) -> tuple[bytes, bool]:
    """Send ``raw`` on a plain socket and read until the server closes: (what came, whether it ended with a reset)."""
    data, reset = b"", False
    with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(raw)
        try:
            while piece := sock.recv(65536):
                data += piece
        except TimeoutError:
            raise NoAnswerInTime(f"{what}: no complete answer and no close within {SOCKET_TIMEOUT:g} s",
                                 got=data) from None
        except ConnectionResetError:
            reset = True
    return data, reset


UNREAD = 32768  # bytes of body the server never reads: more than a buffered reader takes, so the kernel holds some


def _failed_with_unread_body(server) -> None:
    """An app that fails without reading a large body, with a request pipelined behind it: the 500 must not be
    followed by a reset (closing a socket with unread bytes in it resets the connection)."""
    what = f"POST /called with a {UNREAD // 1024} KB body its app never reads (it fails first), and a GET after it"
    raw = _request("POST", "/called", [("Content-Length", str(UNREAD))], b"x" * UNREAD) + _request("GET", "/next")
    data, reset = _read_watching_reset(server, raw, what)
    if not data.startswith(b"HTTP/1.1 500"):
        raise CaseFailed(f"{what}: the client should get a 500, then a close", expected="HTTP/1.1 500 ...",
                         got=data[:60])
    if b"HTTP/1.1 200" in data:
        raise CaseFailed(f"{what}: the GET behind it was answered after the 500, which said Connection: close. After "
                         "a failure, handle_request returns False, and serve_connection ends the connection",
                         got=data)
    if reset:
        raise CaseFailed(f"{what}: the 500 came, and then the connection was reset instead of closed. The client was "
                         "still sending (the body, the next request), and closing a socket with unread bytes in it "
                         "makes the kernel reset the connection; on a real network the reset can destroy the 500 "
                         "before the client has read it (RFC 9112 9.6). When handle_request returns False and the "
                         "client may still be sending (it wanted keep-alive, or a request is waiting), "
                         "serve_connection calls close_gently before it returns False")


def _still_serving(server, after: str) -> None:
    """A plain GET must be answered: nothing that went before may have ended the server's loop."""
    try:
        reply = _exchange(server, _request("GET", "/ok"), f"GET /ok after {after}")
    except CaseFailed as failure:  # refused, reset or unanswered, depending on when the loop died
        raise CaseFailed(f"after {after}, the next request got no answer ({failure.message}): your server stopped "
                         "serving. Nothing a client or an app does may end it") from None
    expect_equal((reply.status, reply.body), (200, b"hello from /ok"), f"GET /ok after {after}")


@serve_exercise.case("failing apps: a 500 before the headers went out, a cut-off body after, each logged; the server "
                     "goes on", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        for path, when in (("/called", "when called"), ("/iterated", "before its first piece of body")):
            what = f"GET {path}, whose app fails {when}"
            advice = (f"{what}: nothing of its response had gone out, so the client should get a 500: "
                      "handle_request catches the app's exception from run_app and, while no header has gone out "
                      "(response.headers_sent), answers it with send_error and an HTTPError of status 500")
            with contextlib.closing(_connect(server, what)) as connection:
                connection.send(_request("GET", path))
                try:
                    reply = _reply(connection, what)
                except CaseFailed as failure:
                    raise CaseFailed(f"{advice}. Instead, {failure.message[len(what) + 2:]}") from None
                if reply.status != 500:
                    raise CaseFailed(advice, expected=500, got=reply.summary())
                # Well before the server's idle timeout: a server that kept the connection would close it then.
                if not connection.closes_within(SERVER_TIMEOUT / 2):
                    raise CaseFailed(f"{what}: the 500 said Connection: close, and the server left the connection "
                                     "open, waiting for another request: after a failure, handle_request returns "
                                     "False at once (no draining of the body, no keep-alive), and serve_connection "
                                     "then ends the connection")
        _failed_with_unread_body(server)
        data = _read_until_close(server, _request("GET", "/late"), "GET /late")
        if b"HTTP/1.1 500" in data:
            raise CaseFailed("GET /late: the app failed after its 200 and first piece were on the wire, and your "
                             "server then sent a 500, which the client reads as part of the 200's body. Once "
                             "response.headers_sent, the only way to tell the client is to close the connection",
                             got=data)
        if not data.startswith(b"HTTP/1.1 200") or LATE_PIECE not in data or data.endswith(http1.LAST_CHUNK):
            raise CaseFailed("GET /late: the client should get the 200 and the piece sent before the app failed, "
                             "then the connection closed, without the last chunk", got=data)
        crashes = [r for r in server.records if r.exc_info and isinstance(r.exc_info[1], AppCrash)]
        if len(crashes) < 4:
            raise CaseFailed(f"four apps failed, and {len(crashes)} tracebacks were logged: whoever runs the server "
                             "must learn of the app's bug. In handle_request's except clause, call "
                             "log.exception(...)", expected=4, got=len(crashes))
        _still_serving(server, "four failing apps")
        what = "GET /exits, whose app calls sys.exit()"
        advice = (f"{what}: SystemExit is not an Exception, so `except Exception` lets it through and it stops your "
                  "server. An app's sys.exit() is the app's bug (wsgiref answers it with a 500 and goes on): catch "
                  "it too, `except (Exception, SystemExit):`, and answer 500 as for any failure. (Leave "
                  "KeyboardInterrupt alone: Ctrl-C must still stop the server.)")
        with contextlib.closing(_connect(server, what)) as connection:
            connection.send(_request("GET", "/exits"))
            try:
                reply = _reply(connection, what)
            except CaseFailed:
                raise CaseFailed(advice) from None
            if reply.status != 500:
                raise CaseFailed(advice, expected=500, got=reply.summary())
        _still_serving(server, "an app that called sys.exit()")


def _interrupted(environ, start_response):
    raise KeyboardInterrupt  # what Ctrl-C raises, in the thread running the server (here, the app's)


@serve_exercise.case("Ctrl-C: a KeyboardInterrupt out of the app is not caught, and leaves serve_connection")
def _(answer):
    # serve_connection is called here directly, on one end of a socket pair: a server thread would end with it.
    httpd = YourServer(_interrupted, answer, timeout=SERVER_TIMEOUT)  # not run: its attributes, as the server has
    handler, root = _Records(), logging.getLogger()
    root.addHandler(handler)
    ours, theirs = socket.socketpair()
    theirs.settimeout(SOCKET_TIMEOUT)
    connection = wsgi.Connection(ours, CLIENT_ADDRESS, SERVER_TIMEOUT)
    try:
        theirs.sendall(_request("GET", "/interrupt"))
        try:
            returned = answer(httpd, connection)
        except KeyboardInterrupt:
            return
        raise CaseFailed(f"an app raised KeyboardInterrupt (what Ctrl-C raises), and serve_connection returned "
                         f"{returned!r}: your server caught it (except BaseException, or a bare except:), so Ctrl-C "
                         "could not stop it. Catch only the app's errors, Exception and SystemExit, in "
                         "handle_request, and only Exception in serve_connection: KeyboardInterrupt goes on")
    finally:
        root.removeHandler(handler)
        connection.close()
        theirs.close()
        httpd.server_close()


@serve_exercise.case("keep-alive: two requests sent together both answered, in order; Connection: close ends it",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        with contextlib.closing(_connect(server, "two requests sent together", 2 * SOCKET_TIMEOUT)) as connection:
            connection.send(_request("GET", "/one") + _request("GET", "/two"))
            first = _reply(connection, "the first of two requests sent together")
            try:
                second = _reply(connection, "the second of two requests sent together")
            except CaseFailed as failure:
                raise CaseFailed(f"{failure.message}. It had come with the first, so after the first answer it was "
                                 "already in the connection's buffer, where select() never sees it: after a kept-"
                                 "alive answer, serve_connection goes on with the next request if "
                                 "connection.request_waiting(), and returns True only when none is there") from None
            expect_equal([(first.status, first.body), (second.status, second.body)],
                         [(200, b"hello from /one"), (200, b"hello from /two")], "the two answers, in order")
            connection.send(_request("GET", "/three", [("Connection", "close")]))
            third = _reply(connection, "GET /three with Connection: close, on the same connection")
            if third.headers.get("connection") != "close" or not connection.closes_within(1.0):
                raise CaseFailed("GET /three asked to close (Connection: close): the answer says Connection: close, "
                                 "and then the server closes the connection (handle_request and serve_connection "
                                 "return False)", got=(third.summary(), third.headers))


@serve_exercise.case("request bodies: one the app does not read is not taken for the next request; one it reads "
                     "with read() ends at Content-Length", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        with contextlib.closing(_connect(server, "POST /ignored", 2 * SOCKET_TIMEOUT)) as connection:
            data = b"name=ada&lang=en"
            connection.send(_request("POST", "/ignored", [("Content-Length", str(len(data)))], data))
            first = _reply(connection, "POST /ignored (the app reads none of the body)", "POST")
            expect_equal((first.status, first.body), (200, b"hello from /ignored"), "POST /ignored")
            connection.send(_request("GET", "/next"))
            second = _reply(connection, "GET /next, after POST /ignored on the same connection")
            if second.status != 200:
                raise CaseFailed("GET /next, sent after POST /ignored on the same connection, was answered "
                                 f"{second.summary()}: the 16 bytes of body the app did not read were taken for the "
                                 "start of the next request. Before keeping the connection, handle_request reads "
                                 "and drops what is left of the body: while body.read(65536): pass",
                                 expected=200, got=second.summary())
            expect_equal(second.body, b"hello from /next", "GET /next")
        what = "POST /echo, whose app calls environ['wsgi.input'].read() with no size, as many apps do"
        advice = ("wsgi.input must end where the body ends: give make_environ the body open_body returns (it reads "
                  "no further than Content-Length), not connection.rfile, on which read() waits for bytes that never "
                  "come")
        started = time.monotonic()
        try:
            reply = _exchange(server, _request("POST", "/echo", [("Content-Length", "11")], b"hello world"), what,
                              "POST")
        except NoAnswerInTime as failure:
            raise CaseFailed(f"{failure.message}: {advice}") from None
        waited = time.monotonic() - started
        if (reply.status, reply.body) != (200, b"hello world") or waited > 0.8:
            raise CaseFailed(f"{what}: the answer came after {waited:.1f} s: {advice}", expected=(200, b"hello world"),
                             got=(reply.status, reply.body))


@serve_exercise.case("malformed requests get their error and a gentle close (a 413 is not lost); the server goes on",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        for name, raw, status in (("a broken request line", b"HELLO\r\n\r\n", 400),
                                  ("whitespace before the colon", b"GET / HTTP/1.1\r\nHost : check\r\n\r\n", 400),
                                  ("Transfer-Encoding: gzip", _request("POST", "/echo", [("Transfer-Encoding",
                                                                                          "gzip")], b"hello"), 400)):
            data = _read_until_close(server, raw, f"a request with {name}")
            if not data:
                raise CaseFailed(f"a request with {name}: the server closed the connection without an answer. "
                                 f"{MALFORMED}")
            if not data.startswith(b"HTTP/1.1 %d " % status):
                raise CaseFailed(f"a request with {name}: {MALFORMED}", expected=f"HTTP/1.1 {status} ...",
                                 got=data[:60])
        head = _request("POST", "/echo", [("Content-Length", "20000000")])
        what = "a POST announcing a 20 MB body, above server.max_body"
        # The start of the body comes with the head: the server answers without reading it, so those bytes are
        # still unread in its socket when it is done.
        data, reset = _read_watching_reset(server, head + b"x" * UNREAD, what)
        if not data.startswith(b"HTTP/1.1 413"):
            raise CaseFailed(f"{what}: {MALFORMED}", expected="HTTP/1.1 413 ...", got=data[:60])
        if reset:
            raise CaseFailed(f"{what}: the 413 came, and then the connection was reset instead of closed. Closing a "
                             "socket with unread bytes in it makes the kernel reset the connection, and on a real "
                             "network the reset can destroy the answer before the client has read it (RFC 9112 "
                             "9.6). After send_error, call close_gently(connection.sock): it stops writing, and reads "
                             "and drops what the client still sends, for a moment")
        _still_serving(server, "malformed requests")


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST) instead of the normal goodbye, as a client that crashed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@serve_exercise.case("clients that leave half-way, reset the connection or stay silent: the server goes on",
                     timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    with _serve(answer, _router) as server:
        what = "a client sent 10 bytes of a 100-byte body and stopped sending"
        data = b""
        with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(_request("POST", "/echo", [("Content-Length", "100")], b"only ten b"))
            sock.shutdown(socket.SHUT_WR)  # the client sends no more: the app's read() finds the body cut short
            try:
                while piece := sock.recv(65536):
                    data += piece
            except TimeoutError:
                raise CaseFailed(f"{what}: the server should close the connection (the app's read raises "
                                 "ClientDisconnected), not wait") from None
            except ConnectionError:
                pass
        gone = [r for r in server.records if r.exc_info and isinstance(r.exc_info[1], OSError)]
        if data.startswith(b"HTTP/1.1 500") or gone:
            raise CaseFailed(f"{what}: the app's read() raised ClientDisconnected, and your server treated it as the "
                             "app's bug: " + ("it answered 500" if data else "it logged a traceback") + ". A client "
                             "that left is nobody's bug, and there is no one to answer: handle_request catches "
                             "ClientDisconnected on its own, before the app's other errors, and returns False, "
                             "without a 500 or a traceback", got=data[:60] if data else gone[0].getMessage())
        sock = socket.create_connection(server.address, timeout=SOCKET_TIMEOUT)
        sock.sendall(b"GET /reset HTTP/1.1\r\nHo")
        time.sleep(0.1)
        _reset(sock)
        time.sleep(0.1)
        _still_serving(server, "a client that reset its connection in the middle of a request head")
        with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT):  # connects, and says nothing
            started = time.monotonic()
            try:
                reply = _exchange(server, _request("GET", "/second"), "GET /second, while a silent client is "
                                                                      "connected")
            except NoAnswerInTime:
                raise CaseFailed("a client that connected and said nothing kept your server from answering anyone "
                                 "else: read_request returns None when it stays silent for server.timeout seconds, "
                                 "and then serve_connection returns False") from None
            waited = time.monotonic() - started
            expect_equal(reply.status, 200, "the status for the client after the silent one")
            if waited > SERVER_TIMEOUT + 1.5:
                raise CaseFailed(f"the client after the silent one waited {waited:.1f} s: the silent client should be "
                                 f"dropped after the server's timeout, {SERVER_TIMEOUT:g} s")
        _still_serving(server, "clients that left, reset or stayed silent")
