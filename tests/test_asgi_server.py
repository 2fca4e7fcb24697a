"""The course's ASGI server (gatewaylab.asgi) against asgiref's specs (www.rst, lifespan.rst), RFC 9112, httpx,
a real Starlette app, and the malformed requests the WSGI server's tests send."""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from gatewaylab.asgi import ASGIServer, StartupFailed
# The WSGI server's tests' raw requests and helpers (which need only server.server_address)
from test_wsgi_server import MALFORMED, connect, exchange, read_until_close, request, url

ROOT = Path(__file__).resolve().parents[1]


# --- helpers ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running(app, **options):
    """Serve `app` on a free port in a thread; on the way out, stop it and check nothing is left running."""
    threads_before = set(threading.enumerate())
    server = ASGIServer(app, "127.0.0.1", 0, **options).start()
    try:
        yield server
    finally:
        server.shutdown()
        assert not server.thread.is_alive() and server.socket.fileno() == -1
        assert set(threading.enumerate()) <= threads_before


async def hello_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("only http")  # as the spec asks of an app that does not know a protocol
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def read_body(receive):
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client left")
        body += message["body"]
        more = message["more_body"]
    return body


async def echo_app(scope, receive, send):
    """Reads the whole body, then answers with it."""
    assert scope["type"] == "http"
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def recorder_app(record, respond=True):
    """An app that appends every scope and event to `record`."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("only http")
        record.append(scope)
        while True:
            message = await receive()
            record.append(message)
            if message["type"] == "http.disconnect" or not message["more_body"]:
                break
        if respond:
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"ok"})
    return app


def wait_for(condition, timeout=5.0):
    """Wait until condition() is true (it is about another thread); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --- real clients and a real framework ----------------------------------------------------------------------

def test_hello_world_with_httpx():
    with running(hello_app) as server:
        reply = httpx.get(url(server))
    assert reply.status_code == 200 and reply.text == "hello"
    assert reply.headers["content-length"] == "5"  # one body event: the server knows the length
    assert reply.headers["date"].endswith(" GMT") and reply.headers["server"] == "gatewaylab"


def starlette_app():
    async def home(request):
        return PlainTextResponse(f"home {dict(request.query_params)}")

    async def item(request):
        return PlainTextResponse(f"item {request.path_params['name']}")

    async def echo_json(request):
        return JSONResponse({"got": await request.json()})

    async def stream(request):
        async def numbers():
            for number in range(5):
                yield f"{number}\n"
        return StreamingResponse(numbers(), media_type="text/plain")

    return Starlette(routes=[Route("/", home), Route("/items/{name}", item),
                             Route("/echo", echo_json, methods=["POST"]), Route("/stream", stream)])


def test_a_starlette_app_runs_unmodified(caplog):
    with running(starlette_app()) as server, httpx.Client(base_url=url(server)) as client:
        assert client.get("/?a=1&b=x%20y").text == "home {'a': '1', 'b': 'x y'}"
        assert client.get("/items/caf%C3%A9%20au%20lait").text == "item café au lait"
        assert client.post("/echo", json={"n": [1, 2]}).json() == {"got": {"n": [1, 2]}}
        streamed = client.get("/stream")
        assert streamed.text == "0\n1\n2\n3\n4\n" and streamed.headers["transfer-encoding"] == "chunked"
        assert client.get("/missing").status_code == 404
        assert client.post("/").status_code == 405
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# --- the scope and the request body ---------------------------------------------------------------------------

def test_the_scope_of_a_request_is_exactly_what_the_spec_says():
    record = []
    with running(recorder_app(record)) as server:
        raw = request("GET", "/caf%C3%A9/a%2Fb?q=%C3%A9&x=1+2", [
            ("X-Twice", "1"), ("x-twice", "2"), ("Accept", "*/*")])
        connection = connect(server)
        try:
            connection.send(raw)
            assert connection.read_response().status == 200
            client_port = connection.sock.getsockname()[1]
        finally:
            connection.close()
    scope, first = record[0], record[1]
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/café/a/b",  # percent-decoded, then UTF-8 decoded
        "raw_path": b"/caf%C3%A9/a%2Fb",  # as sent
        "query_string": b"q=%C3%A9&x=1+2",  # still encoded
        "root_path": "",
        "headers": [(b"host", b"test"), (b"x-twice", b"1"), (b"x-twice", b"2"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", client_port),
        "server": server.server_address,
        "state": {},
    }
    assert first == {"type": "http.request", "body": b"", "more_body": False}


def test_an_absolute_form_target_gives_its_host_and_http10_its_version():
    record = []
    with running(recorder_app(record)) as server:
        exchange(server, b"GET http://example.org/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
        exchange(server, b"GET /old HTTP/1.0\r\n\r\n")
    assert record[0]["headers"][0] == (b"host", b"example.org") and record[0]["path"] == "/p"
    assert [h for h in record[0]["headers"] if h[0] == b"host"] == [(b"host", b"example.org")]
    assert record[2]["http_version"] == "1.0" and record[2]["headers"] == []


def test_a_chunked_upload_arrives_as_several_http_request_events():
    record = []

    def pieces():
        yield b"first,"
        yield b"second,"
        yield b"third"

    with running(recorder_app(record)) as server:
        assert httpx.post(url(server), content=pieces()).status_code == 200
    events = record[1:]
    assert record[0]["headers"][-1] == (b"transfer-encoding", b"chunked")
    assert b"".join(event["body"] for event in events) == b"first,second,third"
    assert [event["body"] for event in events if event["body"]] == [b"first,", b"second,", b"third"]
    assert all(event["more_body"] for event in events[:-1]) and not events[-1]["more_body"]


def test_a_body_is_streamed_to_the_app_as_it_arrives():
    halves, first_half_seen = [], threading.Event()

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        while True:
            message = await receive()
            halves.append(message["body"])
            first_half_seen.set()
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"%d pieces" % len(halves)})

    with running(app) as server:
        connection = connect(server)
        try:
            connection.send(request("POST", "/", [("Content-Length", "10")], b"12345"))
            assert first_half_seen.wait(5)  # the app has the first half before the second is sent
            connection.send(b"67890")
            assert connection.read_response("POST").body == b"2 pieces"
        finally:
            connection.close()
    assert halves == [b"12345", b"67890"]


def test_expect_100_continue_is_sent_when_the_app_first_asks_for_the_body():
    gate = threading.Event()

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await echo_app(scope, receive, send)

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("POST", "/", [("Content-Length", "4"), ("Expect", "100-continue"),
                                           ("Connection", "close")]))
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing yet: the app has not asked for the body
        gate.set()
        sock.settimeout(5)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert read_until_close(sock, 0.5).endswith(b"\r\n\r\ndata")


@pytest.mark.parametrize("reads", [False, True], ids=["never reads the body", "reads it after the head"])
def test_an_answer_before_the_app_asks_for_an_expected_body_says_close_and_no_100_follows_it(reads):
    record = []

    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"early ", "more_body": True})
        if reads:
            record.append(await receive())  # the client sent its body anyway: it is there to read
        await send({"type": "http.response.body", "body": b"answer"})

    raw = request("POST", "/", [("Expect", "100-continue"), ("Content-Length", "4")], b"data")
    with running(app, lifespan="off") as server:
        reply, closed = answer_and_close(server, raw)
    assert reply.body == b"early answer" and reply.headers["connection"] == "close" and closed
    assert record == ([{"type": "http.request", "body": b"data", "more_body": False}] if reads else [])


# --- send(): validation and framing -----------------------------------------------------------------------

START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"x"}


@pytest.mark.parametrize("events, error, words", [
    ([BODY], RuntimeError, "expected 'http.response.start' first"),
    ([START, START], RuntimeError, "expected 'http.response.body'"),
    ([START, BODY, BODY], RuntimeError, "after the response was complete"),
    ([{"type": "http.response.strat"}], RuntimeError, "expected 'http.response.start'"),
    (["http.response.start"], ValueError, "dict with a 'type'"),
    ([{**START, "status": "200"}], ValueError, "an int from 200 to 599"),
    ([{**START, "status": 100}], ValueError, "an int from 200 to 599"),
    ([{**START, "status": 600}], ValueError, "an int from 200 to 599"),
    ([{**START, "status": True}], ValueError, "an int from 200 to 599"),
    ([{**START, "headers": [("content-type", "text/plain")]}], ValueError, "pair of bytes"),
    ([{**START, "headers": [(b"a", b"b", b"c")]}], ValueError, "pair of bytes"),
    ([{**START, "headers": [b"ab"]}], ValueError, "pair of bytes"),
    ([{**START, "headers": 5}], ValueError, "iterable"),
    ([{**START, "headers": [(b"x-bad", b"a\r\nb")]}], ValueError, "invalid value"),
    ([{**START, "headers": [(b"bad name", b"1")]}], ValueError, "invalid header name"),
    ([{**START, "headers": [(b"content-length", b"+5")]}], ValueError, "Content-Length"),
    ([{**START, "trailers": True}], ValueError, "no trailers"),
    ([START, {**BODY, "body": "text"}], ValueError, "must be bytes"),
    ([START, {**BODY, "more_body": 1}], ValueError, "must be a bool"),
], ids=lambda value: None if isinstance(value, (list, type)) else value)
def test_a_malformed_or_out_of_order_send_raises(events, error, words, caplog):
    raised = []

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        try:
            for event in events:
                await send(event)
        except Exception as exception:
            raised.append(exception)
            raise

    with running(app) as server:
        reply = httpx.get(url(server))
    assert len(raised) == 1 and type(raised[0]) is error and words in str(raised[0]), raised
    # Before the head went out the client gets a 500; after the whole response, what it got stands.
    assert reply.status_code == (200 if events[:2] == [START, BODY] else 500)
    assert "error in the application" in caplog.text


def test_an_app_failing_before_the_response_gets_500_and_the_server_goes_on(caplog):
    async def app(scope, receive, send):
        raise KeyError("boom")

    with running(app) as server:
        connection = connect(server)
        try:
            connection.send(request())
            reply = connection.read_response()
            closed = connection.closes_within(2.0)
        finally:
            connection.close()
        assert reply.status == 500 and reply.headers["connection"] == "close" and closed
        assert reply.headers["date"].endswith(" GMT")
        assert "KeyError: 'boom'" in caplog.text
        server.app = hello_app
        assert httpx.get(url(server)).text == "hello"


def test_a_head_request_whose_app_fails_gets_the_500_head_without_its_text():
    async def app(scope, receive, send):
        raise KeyError("boom")

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("HEAD"))
        received = read_until_close(sock)
    assert received.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert received.endswith(b"\r\n\r\n") and received.count(b"\r\n\r\n") == 1  # nothing after the head
    assert b"\r\nContent-Length: " in received  # (the length a GET would get, as a HEAD's answer says)


def test_an_app_failing_after_start_but_before_any_body_still_gets_500():
    async def app(scope, receive, send):
        await send(START)
        raise KeyError("boom")

    with running(app) as server:
        assert httpx.get(url(server)).status_code == 500


@pytest.mark.parametrize("fail", [True, False], ids=["raises", "returns early"])
def test_an_app_failing_after_the_body_started_truncates_it_and_closes(fail, caplog):
    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        if fail:
            raise KeyError("boom")

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        received = read_until_close(sock)
    assert received.count(b"HTTP/1.1") == 1 and received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in received
    assert received.endswith(b"\r\n\r\n7\r\npartial\r\n")  # no last chunk: the client sees it cut short
    assert ("KeyError: 'boom'" if fail else "without completing its response") in caplog.text


def streaming_app(pieces, status=200, headers=()):
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def test_head_204_and_304_have_no_body_and_keep_the_connection():
    app = streaming_app([b"hello"], headers=[(b"content-length", b"5")])
    with running(app) as server:
        connection = connect(server)
        try:
            connection.send(request("HEAD"))
            head = connection.read_response("HEAD")
            assert head.body == b"" and head.headers["content-length"] == "5" and head.keep_alive
            assert connection.extra_bytes(0.2) == b""  # the body really was not sent
            connection.send(request())
            assert connection.read_response().body == b"hello"
        finally:
            connection.close()
    for status in (204, 304):
        with running(streaming_app([b"ignored"], status=status)) as server, \
                socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(request(headers=[("Connection", "close")]))
            received = read_until_close(sock)
        assert received.startswith(b"HTTP/1.1 %d " % status) and received.endswith(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in received and b"Content-Length" not in received


def test_framing_without_content_length_and_a_content_length_never_exceeded():
    with running(streaming_app([b"ab", b"cd"])) as server:
        chunked = exchange(server, request())
        old = exchange(server, request(version="HTTP/1.0", headers=[("Connection", "keep-alive")]))
    assert chunked.body == b"abcd" and chunked.headers["transfer-encoding"] == "chunked"
    assert chunked.keep_alive
    # HTTP/1.0 has no chunks: the body ends when the connection closes.
    assert old.body == b"abcd" and old.headers["connection"] == "close" and not old.keep_alive
    with running(streaming_app([b"hello", b"world"], headers=[(b"content-length", b"3")])) as server:
        connection = connect(server)
        try:
            connection.send(request())
            reply = connection.read_response()
            assert reply.body == b"hel" and connection.extra_bytes(0.2) == b""
        finally:
            connection.close()
    with running(streaming_app([b"hi"], headers=[(b"content-length", b"10")])) as server, \
            socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        assert read_until_close(sock).endswith(b"\r\n\r\nhi")  # short: the close ends it


def test_the_apps_hop_by_hop_headers_give_way_to_the_servers_and_connection_close_is_honoured():
    headers = [(b"transfer-encoding", b"gzip"), (b"connection", b"close"), (b"keep-alive", b"timeout=9")]
    with running(streaming_app([b"x"], headers=headers)) as server, \
            socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        received = read_until_close(sock)
    head = received.split(b"\r\n\r\n")[0].lower()
    assert b"gzip" not in head and b"keep-alive" not in head and head.count(b"connection: close") == 1
    assert b"transfer-encoding: chunked" in head


def test_send_waits_for_a_client_that_stops_reading():
    sent = []

    async def app(scope, receive, send):
        await send(START)
        try:
            for _ in range(500):
                await send({"type": "http.response.body", "body": b"x" * 2**20, "more_body": True})
                sent.append(1)
        except OSError as error:  # the spec's "server-specific subclass of OSError" (spec 2.4)
            sent.append(error)

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(request())
        wait_for(lambda: len(sent) > 2)
        stalled_at = None
        while stalled_at != len(sent):  # until send() has stopped returning
            stalled_at = len(sent)
            time.sleep(0.3)
        assert stalled_at < 100  # not 500 MiB queued in the server: it waits for the client
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    wait_for(lambda: isinstance(sent[-1], OSError))


def test_a_client_that_reads_nothing_and_keeps_its_socket_open_is_dropped_after_the_timeout():
    """send() gives up after the timeout; the connection is then closed at once, though bytes are still buffered for
    it (a plain close would wait for them to go out: for ever)."""
    raised = []

    async def app(scope, receive, send):
        await send(START)
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 2**20, "more_body": True})
        except OSError as error:
            raised.append(error)

    with running(app, timeout=0.3, lifespan="off") as server, \
            socket.create_connection(server.server_address, timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(request())
        wait_for(lambda: raised)
        wait_for(lambda: not server.connections, timeout=2)  # the client still holds its socket, unread


def test_a_connection_closed_with_bytes_its_client_never_reads_is_dropped_after_the_timeout():
    """The response is complete and Connection: close, but its last bytes wait in the buffer for a client that has
    stopped reading (send()'s last wait for the buffer ended before): the close gives up after the timeout."""
    async def app(scope, receive, send):
        await send(START)
        transport = next(iter(server.connections)).writer.transport
        while not transport.get_write_buffer_size():  # until the kernel's buffers are full
            await send({"type": "http.response.body", "body": b"x" * 4096, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with running(app, timeout=0.3, lifespan="off") as server, \
            socket.create_connection(server.server_address, timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request(headers=[("Connection", "close")]))
        wait_for(lambda: server.connections)
        wait_for(lambda: not server.connections, timeout=3)


# --- connections ----------------------------------------------------------------------------------------

def test_keep_alive_follows_the_version_and_the_connection_header():
    cases = [  # (request, the response's Connection header, whether the connection stays open)
        (request(), None, True),
        (request(headers=[("Connection", "close")]), "close", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", True),
        (b"GET / HTTP/1.0\r\n\r\n", "close", False),
    ]
    with running(hello_app) as server:
        for raw, header, stays in cases:
            connection = connect(server)
            try:
                for _ in range(3 if stays else 1):
                    connection.send(raw)
                    reply = connection.read_response()
                    assert reply.body == b"hello" and reply.headers.get("connection") == header, raw
                assert connection.closes_within(0.2 if stays else 2.0) is not stays, raw
            finally:
                connection.close()


def test_a_streamed_response_on_a_kept_alive_connection_is_not_held_back_by_nagle():
    # asyncio sets TCP_NODELAY only on a socket whose proto is IPPROTO_TCP; one accepted from
    # socket.create_server's listener has proto 0 (uvicorn's issue #3149 is the same trap). Without
    # it, each small chunk after the first response waits for the client's delayed ACK (~40 ms).
    with running(streaming_app([b"one ", b"two ", b"three"])) as server:
        connection = connect(server)
        try:
            for _ in range(2):
                connection.send(request())
                assert connection.read_response().body == b"one two three"
            [served] = list(server.connections)
            sock = served.writer.get_extra_info("socket")
            assert sock.proto == 0  # what the listener gives: asyncio left Nagle on
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            connection.close()


def test_pipelined_requests_are_answered_in_order_with_their_bodies():
    async def app(scope, receive, send):
        body = await read_body(receive)
        await send(START)
        await send({"type": "http.response.body", "body": scope["path"].encode() + b":" + body})

    with running(app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("POST", "/1", [("Content-Length", "1")], b"a")
                     + request("POST", "/2", [("Transfer-Encoding", "chunked")], b"1\r\nb\r\n0\r\n\r\n")
                     + request("GET", "/3", [("Connection", "close")]))
        received = read_until_close(sock)
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.index(b"\r\n\r\n/1:a") < received.index(b"\r\n\r\n/2:b") < received.index(b"\r\n\r\n/3:")


def test_a_body_the_app_did_not_read_is_skipped_before_the_next_request():
    with running(hello_app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request("POST", "/", [("Content-Length", "5")], b"GET /")
                     + request("POST", "/", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n0\r\n\r\n")
                     + request(headers=[("Connection", "close")]))
        received = read_until_close(sock)
    assert received.count(b"HTTP/1.1 200 OK") == 3 and b"400" not in received


def answer_and_close(server, raw):
    """Send `raw` on a new connection: the response, and whether the server closed after it."""
    connection = connect(server)
    try:
        connection.send(raw)
        reply = connection.read_response("POST" if raw.startswith(b"POST") else "GET")
        return reply, connection.closes_within(2.0)
    finally:
        connection.close()


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_requests_get_the_wsgi_servers_status_then_a_close(name):
    raw, status = MALFORMED[name]
    with running(echo_app, max_body=1000) as server:  # (it reads the body: a chunked one can fail)
        reply, closed = answer_and_close(server, raw)
        assert (reply.status, reply.headers["connection"], closed) == (status, "close", True), reply
        assert reply.headers["date"].endswith(" GMT")
        assert httpx.get(url(server)).status_code == 200  # and the server goes on serving


def test_content_length_with_transfer_encoding_is_refused_before_the_app_runs():
    record = []
    with running(recorder_app(record)) as server:
        # (a request smuggled in the body would follow)
        reply, closed = answer_and_close(server, MALFORMED["CL and TE"][0] + request())
    assert reply.status == 400 and closed and record == []


def test_a_request_trickled_a_byte_at_a_time_after_empty_lines_is_served():
    raw = b"\r\n\r\n" + request("POST", "/", [("Transfer-Encoding", "chunked"), ("Connection", "close")],
                                b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
    with running(echo_app) as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in raw:
            sock.send(bytes([byte]))
            time.sleep(0.001)  # (pacing, so that the bytes arrive apart)
        received = read_until_close(sock)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\nabcde")


def test_a_request_head_stalled_half_way_gets_408_and_an_idle_connection_is_closed_silently():
    with running(hello_app, timeout=0.3) as server:
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert read_until_close(sock).startswith(b"HTTP/1.1 408 Request Timeout")
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(request())
            started = time.monotonic()
            assert read_until_close(sock).count(b"HTTP/1.1 200 OK") == 1  # then a silent close
            assert time.monotonic() - started < 2


def test_a_long_poll_hears_http_disconnect_within_a_second():
    waiting, heard = threading.Event(), []

    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        waiting.set()
        message = await receive()  # nothing more comes until the client leaves
        heard.append((message, time.monotonic()))

    with running(app) as server:
        sock = socket.create_connection(server.server_address, timeout=5)
        sock.sendall(request())
        assert waiting.wait(5)
        sock.close()
        left = time.monotonic()
        wait_for(lambda: heard, timeout=3)
    assert heard[0][0] == {"type": "http.disconnect"} and heard[0][1] - left < 1.0


def test_a_long_poll_hears_http_disconnect_though_a_pipelined_request_waits_behind_it():
    """The client sent the start of another request behind the long poll, then closed: those bytes, unread, must not
    hide that it has gone."""
    waiting, heard = threading.Event(), []

    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        waiting.set()
        heard.append(await receive())

    with running(app, lifespan="off") as server:
        sock = socket.create_connection(server.server_address, timeout=5)
        sock.sendall(request() + b"GET /next HTTP/1.1\r\n")
        assert waiting.wait(5)
        sock.close()
        wait_for(lambda: heard, timeout=2)
        wait_for(lambda: not server.connections, timeout=2)
    assert heard == [{"type": "http.disconnect"}]


def test_a_client_that_resets_in_the_middle_of_its_body_is_an_http_disconnect(caplog):
    reading, heard = threading.Event(), []

    async def app(scope, receive, send):
        heard.append(await receive())
        reading.set()
        try:
            heard.append(await receive())  # the rest of the body never comes: the client resets
        except Exception as error:
            heard.append(error)

    with running(app, lifespan="off") as server:
        sock = socket.create_connection(server.server_address, timeout=5)
        sock.sendall(request("POST", "/", [("Content-Length", "10")], b"abc"))
        assert reading.wait(5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        wait_for(lambda: len(heard) == 2)
    assert heard == [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]
    assert "error" not in caplog.text.lower()


def test_send_after_the_client_left_raises_an_oserror_that_is_not_logged(caplog):
    raised, started = [], threading.Event()

    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        started.set()
        while not raised:
            try:
                await receive()  # http.disconnect, once the client has gone
                await send({"type": "http.response.body", "body": b"more", "more_body": True})
            except OSError as error:
                raised.append(error)
                raise

    with running(app) as server:
        sock = socket.create_connection(server.server_address, timeout=5)
        sock.sendall(request())
        assert started.wait(5)
        sock.close()
        wait_for(lambda: raised)
    assert "error" not in caplog.text.lower()


# --- lifespan --------------------------------------------------------------------------------------------

def lifespan_app(record, startup="lifespan.startup.complete"):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            record.append(("scope", scope["asgi"]))
            while True:
                message = await receive()
                record.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["pool"] = "open"
                    await send({"type": startup, "message": "no database"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        record.append(("request", dict(scope["state"])))
        scope["state"]["pool"] = "changed by a request"  # a copy: the next request does not see it
        await hello_app(scope, receive, send)
    return app


def test_lifespan_runs_startup_before_requests_and_shutdown_after():
    record = []
    with running(lifespan_app(record)) as server:
        assert record[-1] == "lifespan.startup"
        httpx.get(url(server))
        httpx.get(url(server))
    assert record == [("scope", {"version": "3.0", "spec_version": "2.0"}), "lifespan.startup",
                      ("request", {"pool": "open"}), ("request", {"pool": "open"}), "lifespan.shutdown"]


def test_lifespan_startup_failed_stops_the_server():
    record = []
    with pytest.raises(StartupFailed, match="no database"):
        ASGIServer(lifespan_app(record, "lifespan.startup.failed"), port=0).start()
    assert record[-1] == "lifespan.startup"


@pytest.mark.parametrize("mode, serves", [("auto", True), ("on", False), ("off", True)])
def test_an_app_that_raises_on_the_lifespan_scope(mode, serves, caplog):
    caplog.set_level(logging.INFO)
    if not serves:
        with pytest.raises(StartupFailed, match="raised RuntimeError"):
            ASGIServer(hello_app, port=0, lifespan=mode).start()
        return
    with running(hello_app, lifespan=mode) as server:
        assert httpx.get(url(server)).text == "hello"
    assert ("serving without lifespan" in caplog.text) == (mode == "auto")
    assert "Traceback" not in caplog.text


def test_lifespan_off_sends_no_lifespan_scope():
    record = []
    with running(lifespan_app(record), lifespan="off") as server:
        httpx.get(url(server))
    assert record == [("request", {})]


# --- shutdown -------------------------------------------------------------------------------------------

def test_graceful_shutdown_lets_a_request_in_flight_finish_and_closes_idle_connections():
    inside = threading.Event()

    async def slow_app(scope, receive, send):
        if scope["type"] == "http":
            inside.set()
            await asyncio.sleep(0.5)
            await hello_app(scope, receive, send)

    server = ASGIServer(slow_app, port=0).start()
    idle = connect(server)
    idle.send(request("GET", "/"))
    assert idle.read_response().keep_alive
    inside.clear()
    replies = []
    client = threading.Thread(target=lambda: replies.append(httpx.get(url(server))))
    client.start()
    assert inside.wait(5)
    started = time.monotonic()
    server.shutdown()
    client.join(5)
    assert replies[0].text == "hello" and replies[0].headers["connection"] == "close"
    assert time.monotonic() - started < 2  # the idle connection did not hold the server for its timeout
    assert idle.closes_within(0.1)
    idle.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url(server))


def test_shutdown_cuts_off_a_request_that_outlasts_the_grace_period():
    inside = threading.Event()

    async def endless(scope, receive, send):
        inside.set()
        await asyncio.sleep(60)

    server = ASGIServer(endless, port=0, grace=0.2, lifespan="off").start()
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(request())
        assert inside.wait(5)
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 2 and read_until_close(sock) == b""


def test_serve_leaves_no_task_or_socket_behind():
    async def scenario():
        ready = asyncio.Event()
        server = ASGIServer(hello_app, port=0)
        serving = asyncio.create_task(server.serve(on_ready=ready.set))
        await ready.wait()
        reader, writer = await asyncio.open_connection(*server.server_address)
        writer.write(request())
        assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200 OK")  # then idle, kept open
        server.request_shutdown()
        await serving
        assert await reader.read() == b""  # the idle connection was closed
        writer.close()
        await writer.wait_closed()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert server.socket.fileno() == -1

    asyncio.run(scenario())


def listen_backlog(sock):
    """The accept queue's length limit of a listening socket, as the kernel has it (what `ss -ltn` shows as
    Send-Q): Linux's TCP_INFO gives it, for a listening socket, in tcpi_sacked (after 8 one-byte fields and 5
    four-byte ones)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("8B6I", info)[13]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the backlog with Linux's TCP_INFO")
def test_the_socket_listens_with_the_servers_backlog_not_asyncios_default_of_100():
    most = int(Path("/proc/sys/net/core/somaxconn").read_text())  # the kernel caps every backlog there
    if most <= 100:
        pytest.skip("somaxconn is too low to tell a backlog from asyncio's default")
    for options, backlog in (({"backlog": 300}, 300), ({}, 1024)):  # 1,024: the default
        with running(hello_app, **options) as server:
            assert listen_backlog(server.socket) == min(backlog, most)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(TypeError, match="ASGI application"):
        ASGIServer("not an app", port=0)
    with pytest.raises(ValueError, match="lifespan"):
        ASGIServer(hello_app, port=0, lifespan="yes")


# --- the command line -----------------------------------------------------------------------------------

CLI_APP = """
async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while (await receive())['type'] == 'lifespan.startup':
            await send({'type': STARTUP, 'message': 'no database'})
        await send({'type': 'lifespan.shutdown.complete'})
    else:
        await send({'type': 'http.response.start', 'status': 200})
        await send({'type': 'http.response.body', 'body': b'from the command line'})
"""


@pytest.fixture
def cli(tmp_path):
    """Start `python -m gatewaylab.asgi` in a folder with cli_app.py; every process is ended after."""
    processes = []

    def start(*args, startup="lifespan.startup.complete"):
        (tmp_path / "cli_app.py").write_text(f"STARTUP = {startup!r}\n{CLI_APP}")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "gatewaylab.asgi", *args], cwd=tmp_path, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return processes[-1]

    yield start
    for process in processes:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_serves_and_stops_gracefully_on_a_signal(cli, stop_signal):
    process = cli("cli_app:app", "--port", "0", "--lifespan", "on")
    banner = process.stdout.readline()  # printed once startup is complete
    address = banner.split("http://")[1].split(";")[0]
    assert address.startswith("127.0.0.1:")  # not every interface unless told
    assert httpx.get(f"http://{address}/").text == "from the command line"
    process.send_signal(stop_signal)
    assert process.wait(10) == 0 and process.stdout.read() == "Stopped.\n"


def test_cli_exits_non_zero_when_lifespan_startup_fails(cli):
    process = cli("cli_app:app", "--port", "0", startup="lifespan.startup.failed")
    out, err = process.communicate(timeout=20)
    assert process.returncode == 1 and "no database" in err and "Serving" not in out


@pytest.mark.parametrize("spec, message", [("cli_app:missing", "has no attribute"),
                                           ("no_such_module:app", "cannot import")])
def test_cli_gives_a_one_line_error_for_an_app_it_cannot_load(cli, spec, message):
    process = cli(spec, "--port", "0")
    err = process.communicate(timeout=20)[1]
    assert process.returncode == 1 and message in err and len(err.strip().splitlines()) == 1


def test_a_receive_cancelled_as_the_response_completes_stays_cancelled():
    # What Django's ASGIHandler does: listen for http.disconnect in a task while it responds, then
    # cancel the listener. Its receive() must raise CancelledError, not return an event (which
    # Django takes for a client that left: RequestAborted, and a traceback for every request).
    returned = []

    async def app(scope, receive, send):
        await receive()

        async def respond():
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        listener, responder = asyncio.ensure_future(receive()), asyncio.ensure_future(respond())
        await asyncio.wait([listener, responder], return_when=asyncio.FIRST_COMPLETED)
        if not listener.done():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                returned.append(await listener)

    with ASGIServer(app, port=0, lifespan="off") as server, httpx.Client() as client:
        for _ in range(20):
            assert client.get(url(server)).text == "ok"
    assert returned == []
