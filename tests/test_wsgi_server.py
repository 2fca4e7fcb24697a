"""The course's WSGI servers against PEP 3333, RFC 9112, real clients and a real Flask app: lesson 03's sequential
gatewaylab.wsgi (the tests that give no `threads`) and lesson 04's gatewaylab.wsgi_pool (those that do)."""

import contextlib
import email.utils
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from wsgiref.validate import WSGIWarning, validator

import flask
import httpx
import pytest

from gatewaylab.wire import Connection
from gatewaylab import wsgi_pool
from gatewaylab.wsgi import ClientDisconnected, InputStream, WSGIServer, load_app, make_server

ROOT = Path(__file__).resolve().parents[1]


# --- helpers --------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running(app, **options):
    """Serve `app` on a free port in a thread; stop it, and check the thread ended, on the way out. With `threads`,
    the server is lesson 04's (gatewaylab.wsgi_pool); without, lesson 03's sequential one."""
    server = (wsgi_pool.make_server if "threads" in options else make_server)(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


def url(server, path="/"):
    host, port = server.server_address
    return f"http://{host}:{port}{path}"


def connect(server, timeout=5.0):
    """A raw connection that reads responses strictly (h11), with a deadline so that no test can hang."""
    return Connection(server.server_address, time.monotonic() + timeout)


def request(method="GET", target="/", headers=(), body=b"", version="HTTP/1.1"):
    lines = [f"{method} {target} {version}", "Host: test"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_until_close(sock, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not piece:
            return data
        data += piece


def receive_some(sock, so_far):
    piece = sock.recv(65536)
    assert piece, f"the server closed the connection after {so_far!r}"
    return piece


def exchange(server, raw, method="GET"):
    connection = connect(server)
    try:
        connection.send(raw)
        return connection.read_response(method)
    finally:
        connection.close()


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def environ_app(environ, start_response):
    """Echo the environ as JSON: every value as (type name, value or repr)."""
    shown = {}
    for key, value in environ.items():
        plain = isinstance(value, (str, bool, int, tuple))
        if isinstance(value, tuple):
            value = list(value)
        shown[key] = [type(environ[key]).__name__, value if plain else repr(value)]
    shown["body"] = ["bytes", environ["wsgi.input"].read().decode("latin-1")]
    shown["errors_has_write"] = ["bool", hasattr(environ["wsgi.errors"], "write")]
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def get_environ(server, raw, method="GET"):
    reply = exchange(server, raw, method)
    assert reply.status == 200, reply
    return json.loads(reply.body)


class Tracked:
    """An app's iterable that records close(), optionally failing or waiting while it is iterated."""

    def __init__(self, pieces, fail_after=None, gate=None):
        self.pieces, self.fail_after, self.gate = pieces, fail_after, gate
        self.closed = threading.Event()

    def __iter__(self):
        for number, piece in enumerate(self.pieces):
            if number == self.fail_after:
                raise RuntimeError("the app failed while producing its body")
            if number and self.gate is not None:
                self.gate.wait(5)
            yield piece

    def close(self):
        self.closed.set()


def app_returning(iterable, status="200 OK", headers=(("Content-Type", "text/plain"),)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return iterable
    return app


# --- the environ ----------------------------------------------------------------------------------------------------

def test_environ_has_every_required_key_as_native_strings():
    with running(environ_app) as server:
        raw = request("POST", "/a%20b/caf%C3%A9?x=1&y=%20", [
            ("Content-Type", "text/plain"), ("Content-Length", "4"), ("X-Twice", "1"), ("x-twice", "2"),
            ("X_Sneaky", "dropped"), ("Accept", "*/*")], b"data")
        env = get_environ(server, raw, "POST")
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_HOST", "HTTP_ACCEPT"):
        assert env[key][0] == "str", key
        assert all(ord(char) < 256 for char in env[key][1]), key
    assert env["REQUEST_METHOD"][1] == "POST"
    assert env["SCRIPT_NAME"][1] == ""
    assert env["PATH_INFO"][1] == "/a b/caf\xc3\xa9"  # percent-decoded bytes, as latin-1 (wsgiref's way)
    assert env["PATH_INFO"][1].encode("latin-1").decode("utf-8") == "/a b/café"
    assert env["QUERY_STRING"][1] == "x=1&y=%20"  # still encoded
    assert env["SERVER_PROTOCOL"][1] == "HTTP/1.1"
    assert env["SERVER_NAME"][1] == "127.0.0.1" and env["SERVER_PORT"][1] == str(server.server_address[1])
    assert env["CONTENT_TYPE"][1] == "text/plain" and env["CONTENT_LENGTH"][1] == "4"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_TWICE"][1] == "1,2"  # repeated headers joined with ","
    assert "HTTP_X_SNEAKY" not in env  # an underscore would let it pass for X-Sneaky
    assert env["wsgi.version"] == ["tuple", [1, 0]]
    assert env["wsgi.url_scheme"] == ["str", "http"]
    assert env["wsgi.multithread"] == ["bool", False]
    assert env["wsgi.multiprocess"] == ["bool", False]
    assert env["wsgi.run_once"] == ["bool", False]
    assert env["errors_has_write"] == ["bool", True]
    assert env["body"][1] == "data"


def test_environ_follows_the_request_version_and_thread_count():
    with running(environ_app, threads=3) as server:
        env = get_environ(server, b"GET /x HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"][1] == "HTTP/1.0"
    assert env["wsgi.multithread"] == ["bool", True]
    assert "CONTENT_LENGTH" not in env and "HTTP_HOST" not in env


def test_a_chunked_body_is_decoded_and_given_a_content_length():
    with running(environ_app) as server:
        body = b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n"
        env = get_environ(server, request("POST", "/", [("Transfer-Encoding", "chunked")], body), "POST")
    assert env["body"][1] == "wikipedia"
    assert env["CONTENT_LENGTH"][1] == "9"


# --- wsgi.input -----------------------------------------------------------------------------------------------------

def test_input_stream_ends_at_content_length():
    rfile = io.BufferedReader(io.BytesIO(b"line 1\nline 2\nline 3\nNEXT REQUEST"))
    stream = InputStream(rfile, 21)
    assert stream.read(3) == b"lin"
    assert stream.readline() == b"e 1\n"
    assert stream.readline(3) == b"lin"
    assert stream.readlines() == [b"e 2\n", b"line 3\n"]
    assert stream.read() == b"" and stream.readline() == b"" and stream.read(10) == b""
    assert rfile.read() == b"NEXT REQUEST"  # what follows the body was not touched


def test_input_stream_iterates_and_honours_hints():
    stream = InputStream(io.BufferedReader(io.BytesIO(b"a\nbb\nccc\ndddd\n")), 14)
    assert stream.readlines(3) == [b"a\n", b"bb\n"]  # stops once the hint is reached
    assert list(stream) == [b"ccc\n", b"dddd\n"]
    assert stream.read(None) == b""


def test_input_stream_reports_a_body_cut_short():
    stream = InputStream(io.BufferedReader(io.BytesIO(b"abc")), 10)
    with pytest.raises(ClientDisconnected):
        stream.read()
    with pytest.raises(ClientDisconnected):
        InputStream(io.BufferedReader(io.BytesIO(b"")), 5).readline()


def test_wsgi_input_methods_over_a_real_connection_and_keep_alive_after():
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        parts = [stream.read(2), stream.readline(), stream.readline(2)] + stream.readlines() + [stream.read()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([part.decode() for part in parts]).encode()]

    with running(app) as server:
        connection = connect(server)
        try:
            body = b"ab\ncd\nef\ngh"
            connection.send(request("POST", "/", [("Content-Length", str(len(body)))], body))
            first = connection.read_response("POST")
            connection.send(request("POST", "/", [("Content-Length", "3")], b"xyz"))
            second = connection.read_response("POST")
        finally:
            connection.close()
    assert json.loads(first.body) == ["ab", "\n", "cd", "\n", "ef\n", "gh", ""]
    assert json.loads(second.body) == ["xy", "z", "", ""]


def test_an_unread_body_is_drained_before_the_next_request():
    with running(hello_app) as server:
        connection = connect(server)
        try:
            connection.send(request("POST", "/", [("Content-Length", "100000")], b"x" * 100000))
            first = connection.read_response("POST")
            connection.send(request("GET", "/again"))
            second = connection.read_response()
        finally:
            connection.close()
    assert (first.status, second.status, second.body) == (200, 200, b"hello")


def test_expect_100_continue_gets_an_interim_answer():
    with running(environ_app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        headers = [("Content-Length", "5"), ("Expect", "100-continue"), ("Connection", "close")]
        sock.sendall(request("POST", "/", headers))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body, which the client holds back
        sock.sendall(b"hello")
        received = read_until_close(sock)
    assert received.startswith(b"HTTP/1.1 200 OK") and b'"body": ["bytes", "hello"]' in received


# --- start_response -------------------------------------------------------------------------------------------------

def test_exc_info_before_the_headers_replaces_them():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    with running(app) as server:
        reply = httpx.get(url(server))
    assert (reply.status_code, reply.text) == (503, "sorry")
    assert "x-first" not in reply.headers


def test_exc_info_after_the_headers_reraises_and_the_connection_closes(caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first part"
        try:
            raise ValueError("failed half-way")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never sent"

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        received = read_until_close(sock)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"first part" in received and b"never sent" not in received
    assert not received.endswith(b"0\r\n\r\n")  # no final chunk: the client can tell the body was cut short
    assert "failed half-way" in caplog.text


@pytest.mark.parametrize("bad_call", [
    lambda start_response: start_response("200 OK", []) and start_response("200 OK", []),
    lambda start_response: start_response("200 OK", [("Connection", "keep-alive")]),
    lambda start_response: start_response("200 OK", [("Transfer-Encoding", "chunked")]),
    lambda start_response: start_response("200", []),
    lambda start_response: start_response(200, []),
    lambda start_response: start_response("200 OK", (("A", "b"),)),
    lambda start_response: start_response("200 OK", [("Bad Name", "x")]),
    lambda start_response: start_response("200 OK", [("X", "a\r\nInjected: 1")]),
], ids=["second call", "Connection", "Transfer-Encoding", "no reason", "int status", "tuple of headers",
        "bad header name", "CRLF in value"])
def test_start_response_misuse_gives_500_and_the_server_goes_on(bad_call, caplog):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            return hello_app(environ, start_response)
        bad_call(start_response)
        return [b"should not be sent"]

    with running(app) as server:
        reply = httpx.get(url(server, "/bad"))
        assert reply.status_code == 500 and b"should not" not in reply.content
        assert httpx.get(url(server, "/ok")).text == "hello"
    assert "AssertionError" in caplog.text


def test_write_callable_sends_headers_and_body():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]

    with running(app) as server:
        reply = httpx.get(url(server))
    assert reply.text == "written, then returned"
    assert reply.headers["transfer-encoding"] == "chunked"


def test_start_response_may_be_called_during_the_first_iteration():
    def app(environ, start_response):
        yield b""  # nothing yet: the headers are not due
        start_response("201 Created", [("Content-Type", "text/plain")])
        yield b"made"

    with running(app) as server:
        reply = httpx.get(url(server))
    assert (reply.status_code, reply.text) == (201, "made")


# --- the body on the wire -------------------------------------------------------------------------------------------

def test_first_chunk_arrives_before_the_generator_finishes():
    gate = threading.Event()
    body = Tracked([b"first", b"second"], gate=gate)
    with running(app_returning(body)) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        received = b""
        while b"first" not in received:  # the app is blocked until the test opens the gate
            received += receive_some(sock, received)
        assert not body.closed.is_set()
        gate.set()
        while not received.endswith(b"0\r\n\r\n"):
            received += receive_some(sock, received)
    assert b"6\r\nsecond\r\n" in received
    assert body.closed.wait(5)


@pytest.mark.parametrize("pieces, version, expect", [
    ([b"one piece"], "HTTP/1.1", {"content-length": "9"}),
    ((piece for piece in [b"gen", b"erator"]), "HTTP/1.1", {"transfer-encoding": "chunked"}),
    ((piece for piece in [b"gen", b"erator"]), "HTTP/1.0", {"connection": "close"}),
    ([], "HTTP/1.1", {"content-length": "0"}),
    ([b"a", b"b"], "HTTP/1.1", {"transfer-encoding": "chunked"}),
], ids=["len 1", "generator 1.1", "generator 1.0", "empty", "two pieces"])
def test_framing_without_content_length(pieces, version, expect):
    with running(app_returning(pieces)) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request(version=version, headers=[("Connection", "close")]))
        received = read_until_close(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    headers = dict(line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:])
    for name, value in expect.items():
        assert headers[name] == value
    if "content-length" in expect or "connection" in expect:
        assert "transfer-encoding" not in headers
    if version == "HTTP/1.0":
        assert "content-length" not in headers and body == b"generator"


def test_the_apps_content_length_is_never_exceeded_and_a_short_body_closes():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345678"] if environ["PATH_INFO"] == "/long" else [b"12"]

    with running(app) as server:
        connection = connect(server)
        try:
            connection.send(request("GET", "/long"))
            reply = connection.read_response()
            assert reply.body == b"12345" and reply.keep_alive
            connection.send(request("GET", "/long"))  # the extra bytes were not sent: this answer parses cleanly
            assert connection.read_response().body == b"12345"
        finally:
            connection.close()
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(request("GET", "/short"))
            started = time.monotonic()
            received = read_until_close(sock)  # returns only because the server closes
        assert received.endswith(b"\r\n\r\n12")
        assert time.monotonic() - started < 2  # closed at once, not after the idle timeout


def test_head_and_204_have_no_body():
    def app(environ, start_response):
        status = "204 No Content" if environ["PATH_INFO"] == "/empty" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"a body that HEAD and 204 must not send"]

    with running(app) as server:
        connection = connect(server)
        try:
            connection.send(request("HEAD", "/"))
            head = connection.read_response("HEAD")
            connection.send(request("GET", "/empty"))
            empty = connection.read_response()
            assert connection.extra_bytes(0.2) == b""
        finally:
            connection.close()
    assert (head.status, head.body, empty.status, empty.body) == (200, b"", 204, b"")
    assert "content-length" not in empty.headers and "transfer-encoding" not in empty.headers


# --- close() and errors ---------------------------------------------------------------------------------------------

def test_close_is_called_after_success():
    body = Tracked([b"a", b"b"])
    with running(app_returning(body)) as server:
        assert httpx.get(url(server)).text == "ab"
    assert body.closed.is_set()


def test_an_app_failing_before_the_headers_gets_500_and_close_is_called(caplog):
    body = Tracked([b"", b"never"], fail_after=1)  # the empty piece sends nothing, so the headers are still unsent

    with running(app_returning(body)) as server:
        reply = httpx.get(url(server))
        assert reply.status_code == 500 and reply.headers["connection"] == "close"
        assert email.utils.parsedate_to_datetime(reply.headers["date"]).tzinfo is not None  # a valid HTTP date
        assert body.closed.is_set()

        def crashing_app(environ, start_response):
            raise KeyError("no such thing")
        server.app = crashing_app
        assert httpx.get(url(server)).status_code == 500
        server.app = hello_app
        assert httpx.get(url(server)).text == "hello"  # the server is still serving
    assert "no such thing" in caplog.text


def test_an_app_failing_after_the_headers_closes_the_connection(caplog):
    body = Tracked([b"sent", b"never"], fail_after=1)
    with running(app_returning(body)) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        received = read_until_close(sock)
        assert body.closed.is_set()
        server.app = hello_app
        assert httpx.get(url(server)).status_code == 200  # the server is still serving
    assert received.startswith(b"HTTP/1.1 200 OK") and b"4\r\nsent\r\n" in received
    assert not received.endswith(b"0\r\n\r\n")


def test_close_is_called_when_the_client_disconnects():
    def endless():
        while True:
            yield b"x" * 65536
            time.sleep(0.001)

    body = Tracked(endless())
    with running(app_returning(body)) as server:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(request())
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
        assert body.closed.wait(5)  # the next send failed, and the server closed the iterable
        server.app = hello_app
        assert httpx.get(url(server)).status_code == 200


# --- malformed requests ---------------------------------------------------------------------------------------------

MALFORMED = {
    "bad request line": (b"HELLO\r\n\r\n", 400),
    "lower-case version": (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    "whitespace before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "no Host on 1.1": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "huge header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    "huge target": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many headers": (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 500 + b"\r\n", 431),
    "body too large": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413),
    "chunked body too large": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
                               + b"a" * 2048 + b"\r\n0\r\n\r\n", 413),
    "invalid Content-Length": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    "two Content-Lengths": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400),
    # RFC 9112 6.3: without a final chunked the body's end is unknown (400); 6.1: an unknown coding before it is 501.
    "gzip alone": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400),
    "chunked, gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "chunked twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n0\r\n\r\n", 400),
    "gzip, chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "chunked on HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "bad chunk": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "chunk size, bare LF": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                            400),
    "chunk size, CR CR LF": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r\nhello\r\n0\r\n"
                             b"\r\n", 400),
    "CL and TE": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_requests_get_their_status_then_the_connection_closes(name):
    raw, status = MALFORMED[name]
    with running(hello_app, max_body=1000) as server:
        connection = connect(server)
        try:
            connection.send(raw)
            reply = connection.read_response("POST" if raw.startswith(b"POST") else "GET")
            closed = connection.closes_within(2.0)
        finally:
            connection.close()
        assert reply.status == status, reply
        assert reply.headers["connection"] == "close" and closed
        assert reply.headers["date"].endswith(" GMT")  # RFC 9110 6.6.1: errors carry a Date too
        assert httpx.get(url(server)).text == "hello"  # and the server goes on serving


def test_a_refused_body_is_answered_and_the_connection_closed_without_a_reset():
    with running(hello_app, max_body=1000) as server, \
            socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("POST", "/", [("Content-Length", "2000000")], b"a" * 200_000))  # the rest never comes
        time.sleep(0.1)  # the server has answered 413 by now, with most of those bytes still unread
        received = b""
        while piece := sock.recv(65536):  # a reset (closing with unread data) would raise ConnectionResetError here
            received += piece
    assert received.startswith(b"HTTP/1.1 413 ")


def test_a_head_cut_short_is_a_400():
    with running(hello_app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_until_close(sock).startswith(b"HTTP/1.1 400 Bad Request")


# --- keep-alive -----------------------------------------------------------------------------------------------------

def test_http11_keeps_the_connection_until_connection_close():
    with running(hello_app) as server:
        connection = connect(server)
        try:
            for _ in range(3):
                connection.send(request())
                reply = connection.read_response()
                assert reply.status == 200 and reply.keep_alive and "connection" not in reply.headers
            connection.send(request(headers=[("Connection", "close")]))
            last = connection.read_response()
            assert last.headers["connection"] == "close" and connection.closes_within(2.0)
        finally:
            connection.close()


def test_http10_closes_unless_asked_to_keep_alive():
    with running(hello_app) as server:
        connection = connect(server)
        try:
            connection.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            kept = connection.read_response()
            assert kept.headers["connection"] == "keep-alive" and kept.headers["content-length"] == "5"
            connection.send(b"GET / HTTP/1.0\r\n\r\n")
            connection.read_response()
            assert connection.closes_within(2.0)
        finally:
            connection.close()


def test_pipelined_requests_are_answered_in_order():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("GET", "/1") + request("GET", "/2") + request("GET", "/3", [("Connection", "close")]))
        received = read_until_close(sock)
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.index(b"\r\n\r\n/1") < received.index(b"\r\n\r\n/2") < received.index(b"\r\n\r\n/3")


@pytest.mark.parametrize("threads", [1, 2])
def test_idle_keep_alive_clients_hold_no_thread(threads):
    """Three clients keep their connections open, idle, between requests: the sequential server (and a pool of 2)
    serves every one of them, and each connection is still the same, kept alive."""
    with running(hello_app, threads=threads) as server:
        clients = [connect(server) for _ in range(3)]
        try:
            for _ in range(2):
                for client in clients:
                    client.send(request())
                    reply = client.read_response()
                    assert reply.status == 200 and reply.keep_alive and "connection" not in reply.headers
        finally:
            for client in clients:
                client.close()


# --- timeouts -------------------------------------------------------------------------------------------------------

def test_a_silent_client_is_dropped_without_a_word_after_the_timeout_and_others_are_served():
    with running(hello_app, timeout=0.5) as server, socket.create_connection(server.server_address) as sock:
        started = time.monotonic()
        assert read_until_close(sock, timeout=5) == b""
        assert 0.4 < time.monotonic() - started < 2.0
        assert httpx.get(url(server)).text == "hello"


@pytest.mark.parametrize("sent", [b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\n", b"GE"],
                         ids=["headers", "blank line", "two bytes"])
def test_a_request_head_stalled_half_way_gets_408_and_a_close(sent):
    with running(hello_app, timeout=0.5) as server, socket.create_connection(server.server_address) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        received = read_until_close(sock, timeout=5)
        assert 0.4 < time.monotonic() - started < 2.0
        assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close\r\n" in received
        assert httpx.get(url(server)).text == "hello"


def test_an_idle_keep_alive_connection_times_out():
    with running(hello_app, timeout=0.5) as server:
        connection = connect(server)
        try:
            connection.send(request())
            assert connection.read_response().keep_alive
            started = time.monotonic()
            assert connection.closes_within(3.0)
            assert time.monotonic() - started < 2.0
        finally:
            connection.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_each_idle_connection_times_out_on_its_own_clock(threads):
    """One client goes quiet while another keeps asking: the quiet one is closed after the timeout, the busy one never,
    though it opened first."""
    with running(hello_app, threads=threads, timeout=0.5) as server:
        busy, quiet = connect(server), connect(server)
        try:
            quiet.send(request())
            assert quiet.read_response().keep_alive
            started = time.monotonic()
            while time.monotonic() - started < 1.2:  # more than twice the timeout
                busy.send(request())
                assert busy.read_response().keep_alive
                time.sleep(0.2)
            assert quiet.closes_within(0.1)  # closed long ago
        finally:
            busy.close()
            quiet.close()


def test_a_keep_alive_connection_stalled_in_its_next_request_gets_408():
    with running(hello_app, timeout=0.5) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request() + b"GET /next HTTP/1.1\r\n")  # one request, then half of the next
        received = read_until_close(sock)
    first, _, rest = received.partition(b"hello")
    assert first.startswith(b"HTTP/1.1 200 OK") and rest.startswith(b"HTTP/1.1 408 Request Timeout")


# --- concurrency and shutdown ---------------------------------------------------------------------------------------

def slow_app(environ, start_response):
    time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def parallel_gets(server, count):
    statuses = []

    def one():
        with socket.create_connection(server.server_address, timeout=10) as sock:
            sock.sendall(request(headers=[("Connection", "close")]))
            statuses.append(read_until_close(sock, 10)[:12])

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started, statuses


def test_a_pool_of_n_threads_serves_n_slow_requests_in_about_one_delay():
    with running(slow_app, threads=10) as server:
        elapsed, statuses = parallel_gets(server, 10)
    assert statuses == [b"HTTP/1.1 200"] * 10
    assert elapsed < 0.5 * 1.8, f"10 requests of 0.5 s on 10 threads took {elapsed:.2f} s"


def test_the_sequential_server_serves_one_at_a_time():
    with running(slow_app) as server:
        elapsed, statuses = parallel_gets(server, 3)
    assert statuses == [b"HTTP/1.1 200"] * 3
    assert elapsed >= 1.45, f"3 requests of 0.5 s on the sequential server took only {elapsed:.2f} s"


@pytest.mark.parametrize("threads", [1, 4])
def test_shutdown_is_prompt_and_leaves_no_thread(threads):
    before = set(threading.enumerate())
    server = wsgi_pool.make_server(hello_app, "127.0.0.1", 0, threads=threads, timeout=5.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5})
    thread.start()
    idle = connect(server)  # a keep-alive client that sends nothing more: it must not delay the shutdown
    idle.send(request())
    assert idle.read_response().status == 200
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    thread.join(5)
    assert time.monotonic() - started < 1.0  # not the 5 s timeout, nor the 0.5 s poll interval
    assert idle.closes_within(1.0)
    idle.close()
    assert set(threading.enumerate()) == before


def test_a_busy_request_finishes_during_shutdown():
    server = wsgi_pool.make_server(slow_app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        time.sleep(0.1)  # the app is now sleeping
        server.shutdown()
        received = read_until_close(sock)
    server.server_close()
    thread.join(5)
    assert received.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in received
    assert received.endswith(b"done")


@pytest.mark.parametrize("threads", [1, 2])
def test_shutdown_cuts_off_an_endless_response_after_the_timeout(threads):
    """A stream that never ends, to a client that keeps reading: shutdown() waits `timeout` seconds, not for ever."""
    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        while True:
            yield b"tick\n"
            time.sleep(0.02)

    server = wsgi_pool.make_server(endless, "127.0.0.1", 0, threads=threads, timeout=0.5)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        reader = threading.Thread(target=read_until_close, args=(sock, 5))
        reader.start()
        time.sleep(0.2)
        started = time.monotonic()
        server.shutdown()
        elapsed = time.monotonic() - started
        reader.join(5)
    server.server_close()
    thread.join(5)
    assert 0.4 < elapsed < 2.0 and not reader.is_alive() and not thread.is_alive()


def test_a_body_the_app_left_unread_is_drained_before_the_close():
    """Connection: close, and a 300 kB body the app never reads: closing with those bytes unread would make the kernel
    reset the connection, and a reset can destroy the answer before the client reads it (RFC 9112 9.6)."""
    def refuses(environ, start_response):
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"nope\n"]

    body = b"x" * 300_000
    with running(refuses) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("POST", headers=[("Connection", "close"), ("Content-Length", str(len(body)))], body=body))
        time.sleep(0.3)  # the server has answered and closed by now
        received = b""
        while piece := sock.recv(65536):  # a reset raises ConnectionResetError here
            received += piece
    assert received.startswith(b"HTTP/1.1 401 Unauthorized") and received.endswith(b"nope\n")


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_an_app_calling_sys_exit_gets_a_500_and_the_server_goes_on(threads):
    # As in wsgiref: sys.exit() in an app is the app's bug, not a request to stop the server.
    def exits(environ, start_response):
        sys.exit(3)

    options = {} if threads is None else {"threads": threads}
    with running(exits, **options) as server:
        for _ in range(3):  # more than the pool's threads: none of them was lost
            with socket.create_connection(server.server_address, timeout=5) as sock:
                sock.sendall(request(headers=[("Connection", "close")]))
                started = time.monotonic()
                assert read_until_close(sock, 3).startswith(b"HTTP/1.1 500 ")
                assert time.monotonic() - started < 1.0  # closed at once, not after the 5 s timeout
        if threads and threads > 1:
            deadline = time.monotonic() + 2
            while server.workers.busy and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not server.workers.busy


def test_shutdown_before_serving_and_context_manager():
    with make_server(hello_app, "127.0.0.1", 0) as server:
        server.shutdown()  # not serving: returns at once
    with pytest.raises(OSError):
        server.socket.getsockname()


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(TypeError, match="WSGI application"):
        make_server("not an app", port=0)
    with pytest.raises(ValueError, match="threads"):
        wsgi_pool.make_server(hello_app, port=0, threads=0)
    with pytest.raises(ValueError, match="backlog"):
        WSGIServer(hello_app, port=0, backlog=-1)


def test_serve_wsgi_runs_the_course_server_and_stops_it():
    from gatewaylab.servers import serve_wsgi

    before = set(threading.enumerate())
    with serve_wsgi(hello_app, "test-gatewaylab-wsgi", server="gatewaylab", threads=4) as server:
        assert httpx.get(server.url).text == "hello"
    assert set(threading.enumerate()) == before


# --- a real framework, and wsgiref's validator ----------------------------------------------------------------------

def make_flask_app():
    app = flask.Flask("probe_flask")

    @app.get("/hello/<name>")
    def hello(name):
        return f"Hello, {name}! page={flask.request.args.get('page')}"

    @app.post("/json")
    def echo_json():
        return flask.jsonify(received=flask.request.get_json(), length=flask.request.content_length)

    @app.get("/stream")
    def stream():
        return flask.Response((f"line {i}\n" for i in range(3)), mimetype="text/plain")

    @app.get("/fail")
    def fail():
        raise RuntimeError("handled by Flask")

    return app


def test_a_real_flask_app_runs_unmodified():
    with running(make_flask_app(), threads=4) as server, httpx.Client(base_url=url(server)) as client:
        reply = client.get("/hello/caf%C3%A9", params={"page": "2"})
        assert (reply.status_code, reply.text) == (200, "Hello, café! page=2")
        posted = client.post("/json", json={"a": [1, 2]})
        assert posted.json() == {"received": {"a": [1, 2]}, "length": len(posted.request.content)}
        assert client.get("/stream").text == "line 0\nline 1\nline 2\n"
        assert client.get("/missing").status_code == 404
        assert client.get("/fail").status_code == 500
        chunked = client.post("/json", content=iter([b'{"b"', b": 1}"]), headers={"Content-Type": "application/json"})
        assert chunked.json() == {"received": {"b": 1}, "length": 8}  # a chunked upload, de-chunked for Flask


def test_wsgiref_validator_finds_nothing_wrong(caplog):
    def input_app(environ, start_response):
        stream = environ["wsgi.input"]
        lines = [stream.readline(), *stream.readlines(1)] + list(stream)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"|".join(lines)]

    routes = {"/flask": validator(make_flask_app()), "/input": validator(input_app)}

    def dispatch(environ, start_response):
        prefix = "/" + environ["PATH_INFO"].split("/")[1]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = prefix, environ["PATH_INFO"][len(prefix):]
        return routes[prefix](environ, start_response)

    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)  # a validator warning fails the request, so the test sees it
        with running(dispatch, threads=2) as server, httpx.Client(base_url=url(server)) as client:
            assert client.get("/flask/hello/x").status_code == 200
            assert client.post("/flask/json", json=[1]).json()["received"] == [1]
            assert client.get("/flask/stream").text.count("line") == 3
            assert client.head("/flask/hello/x").status_code == 200
            assert client.get("/flask/missing").status_code == 404
            assert client.post("/input/", content=b"a\nb\nc\n").text == "a\n|b\n|c\n"
    assert "gatewaylab.wsgi" not in caplog.text and "Error" not in caplog.text


# --- the command line -----------------------------------------------------------------------------------------------

def start_cli(tmp_path, *args):
    (tmp_path / "cli_app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from the command line']\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gatewaylab.wsgi", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_serves_and_stops_cleanly_on_a_signal(tmp_path, stop_signal):
    process = start_cli(tmp_path, "cli_app:app", "--port", "0", "--threads", "2")
    try:
        banner = process.stdout.readline()
        assert "http://127.0.0.1:" in banner
        address = banner.split("http://")[1].split()[0].rstrip(";")
        assert httpx.get(f"http://{address}/").text == "from the command line"
        process.send_signal(stop_signal)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("spec, message", [
    ("cli_app:missing", "has no attribute"),
    ("no_such_module:app", "cannot import"),
    ("cli_app", "expected module:name"),
])
def test_cli_gives_a_one_line_error_for_a_bad_app(tmp_path, spec, message):
    process = start_cli(tmp_path, spec, "--port", "0")
    out, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_load_app_finds_nested_attributes():
    assert load_app("gatewaylab.wsgi:make_server") is make_server
    with pytest.raises(ValueError, match="not a callable"):
        load_app("gatewaylab.wsgi:MAX_BODY")


def test_a_request_head_trickled_a_byte_at_a_time_gets_408_after_the_deadline():
    # Each byte comes well within the timeout, so a timeout per read would never fire (slowloris); the head's deadline
    # does, about `timeout` seconds after its first byte.
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with running(app, timeout=1.0) as server:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            started = time.monotonic()
            answer = b""
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    answer += sock.recv(4096)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                if answer:
                    break
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.9 < elapsed < 2.5, elapsed
        assert httpx.get(url(server)).text == "ok"  # and the server goes on serving


# --- lesson 03's sequential server itself ------------------------------------------------------------------------------

def test_the_sequential_server_serves_one_connection_at_a_time_and_an_idle_one_holds_it():
    # What lesson 04 sets out to fix: a kept-alive connection left idle holds lesson 03's server until it times out.
    with running(hello_app, timeout=1.0) as server, httpx.Client(base_url=url(server)) as idle_client:
        assert idle_client.get("/").status_code == 200  # its connection stays open, idle
        started = time.monotonic()
        assert httpx.get(url(server), timeout=5).status_code == 200  # another client waits in the backlog
        waited = time.monotonic() - started
    assert 0.8 < waited < 2.5, f"the second client waited {waited:.2f} s (the idle timeout is 1 s)"


def test_the_sequential_server_stops_promptly_with_an_idle_client_connected():
    server = make_server(hello_app, "127.0.0.1", 0, timeout=30)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with httpx.Client(base_url=url(server)) as client:
            assert client.get("/").status_code == 200  # the server now waits for this client's next request
            started = time.monotonic()
            server.shutdown()
            assert time.monotonic() - started < 1.0, "shutdown waited for the idle client's 30 s timeout"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()


def test_the_sequential_server_says_it_is_not_multithreaded():
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.multithread"])
        return hello_app(environ, start_response)

    with running(app) as server:
        httpx.get(url(server))
    with running(app, threads=3) as server:
        httpx.get(url(server))
    assert seen == [False, True]


@pytest.mark.parametrize("threads", [None, 2])
def test_a_head_request_whose_app_fails_gets_the_500_head_without_its_text(threads):
    def fails(environ, start_response):
        raise KeyError("user_id")

    with running(fails, **({} if threads is None else {"threads": threads})) as server:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(request("HEAD", headers=[("Connection", "close")]))
            answer = read_until_close(sock, 3)
    head, blank, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and blank and body == b""  # RFC 9110 9.3.2: no body for HEAD
