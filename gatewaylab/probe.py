"""A conformance probe: point it at any HTTP server and see what it gets right.

    >>> server = serve_wsgi(probe_app, server="gatewaylab")      # or wsgiref, uvicorn (probe_asgi_app), your own...
    >>> probe(server.url)                                        # a table: check, expected, got, passed
    >>> probe_side_by_side({"mine": url1, "course": url2, "wsgiref": url3})

The server under test runs a small known application, `probe_app` (WSGI) or `probe_asgi_app` (ASGI), so the probe
knows what a correct answer looks like. `probe(url, realtime=True)` adds the server-sent-events and WebSocket checks
(REALTIME_CHECKS), each run if the app offers what it needs (GET /offers says: both apps offer SSE, only the ASGI one
WebSocket, which WSGI cannot carry); for an app that does not, the check is reported as a fact (INFO), not a failure.

Each check talks HTTP over a raw socket, because most of them send what no well-behaved client would (a broken
request line, a header too big, two body lengths, an unmasked WebSocket frame), and reads the answer with h11, a strict
HTTP/1.1 parser, so a malformed answer fails the check too. Every check has a deadline: a server that hangs shows as a
failed check, never as a hung probe.
"""
import html
import os
import textwrap
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11

from gatewaylab.html_style import LEFT
from gatewaylab.websocket import (BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, accept_key, encode_frame,
                                  parse_close)
from gatewaylab.wire import Connection, Reply, exchange, request

__all__ = ["probe", "probe_side_by_side", "probe_app", "probe_asgi_app", "ProbeReport", "SideBySide", "CheckResult",
           "CHECKS", "REALTIME_CHECKS", "app_offers"]

CHECK_TIMEOUT = 3.0  # seconds each check may take (the concurrency check gets more: see there)
HELLO = b"Hello from the probe app\n"
STREAM_PARTS, STREAM_DELAY = 4, 0.25  # /stream sends 4 pieces, 0.25 s apart
SLOW_CLIENTS, SLOW_DELAY = 5, 0.5  # the concurrency check: 5 requests at once, each waiting 0.5 s
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 4.1's example key: its accept key is known
EVENTS, EVENT_DELAY = 4, 0.25  # /events sends 4 server-sent events, 0.25 s apart
PLAIN, EVENT_STREAM = "text/plain; charset=utf-8", "text/event-stream"


# --- The known application ----------------------------------------------------------------------------------------

def route(method, path, query, body):
    """What the probe app answers: (status, [body pieces], seconds to wait before each piece after the first).

    GET /              a fixed greeting
    GET /query?...     the query string, still percent-encoded
    GET /path/...      the percent-decoded path, as UTF-8
    POST /echo         the request body
    GET /stream?n=&delay=   n pieces, `delay` seconds apart
    GET /slow?delay=   one answer after `delay` seconds
    GET /events?n=&delay=   n server-sent events (text/event-stream), `delay` seconds apart
    GET /offers        what the app offers beyond HTTP: "sse" (the ASGI app adds "websocket")
    """
    options = {name: values[0] for name, values in parse_qs(query).items()}
    try:
        count = min(int(options.get("n", STREAM_PARTS)), 20)
        delay = min(float(options.get("delay", SLOW_DELAY)), 5.0)  # capped: the app is not a way to tie up a server
    except ValueError:
        return "400 Bad Request", [b"n must be an int and delay a number\n"], 0.0
    if path == "/":
        return "200 OK", [HELLO], 0.0
    if path == "/query":
        return "200 OK", [query.encode("latin-1")], 0.0
    if path.startswith("/path/"):
        return "200 OK", [path.encode("utf-8")], 0.0
    if path == "/echo" and method == "POST":
        return "200 OK", [body], 0.0
    if path == "/stream":
        return "200 OK", [f"part {i + 1} of {count}\n".encode() for i in range(count)], delay
    if path == "/slow":
        return "200 OK", [b"", f"waited {delay:g} s\n".encode()], delay  # the wait comes before the second piece
    if path == "/events":
        return "200 OK", [f"id: {i + 1}\ndata: event {i + 1} of {count}\n\n".encode() for i in range(count)], delay
    if path == "/offers":
        return "200 OK", [b"sse\n"], 0.0
    return "404 Not Found", [b"not found\n"], 0.0


def content_type(path):
    """The Content-Type of the app's answers: server-sent events are text/event-stream (WHATWG HTML 9.2)."""
    return EVENT_STREAM if path == "/events" else PLAIN


def probe_app(environ, start_response):
    """The probe's WSGI application: run the server under test with it."""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit():  # (a server that passes on an invalid one, such as "-5", gets an empty body here)
        body = environ["wsgi.input"].read(int(length))
    elif environ.get("wsgi.input_terminated"):  # a server that says the input ends by itself (a de-chunked body)
        body = environ["wsgi.input"].read()
    else:
        body = b""  # PEP 3333: without CONTENT_LENGTH an app must not read
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
    status, parts, delay = route(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), body)
    start_response(status, [("Content-Type", content_type(path))])
    return wsgi_body(parts, delay)


def wsgi_body(parts, delay):
    for number, part in enumerate(parts):
        if number:
            time.sleep(delay)
        yield part


async def probe_asgi_app(scope, receive, send):
    """The same application for ASGI servers (it also answers the lifespan protocol)."""
    import asyncio

    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, parts, delay = route(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), body)
    if scope["path"] == "/offers":
        parts = [b"sse websocket\n"]
    await send({"type": "http.response.start", "status": int(status[:3]),
                "headers": [(b"content-type", content_type(scope["path"]).encode())]})
    for number, part in enumerate(parts):
        if number:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def websocket_echo(scope, receive, send):
    """WebSocket at /ws: every message comes back as it came, text or binary. Elsewhere: refused (403)."""
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


# --- The checks ---------------------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    category: str
    expected: str
    run: object  # run(address, deadline) -> (passed, what came back); passed None: a fact, neither pass nor fail
    timeout: float = CHECK_TIMEOUT
    needs: str | None = None  # what the app must offer (GET /offers) for the check to run: "sse", "websocket"


CHECKS = []  # HTTP/1.1: every probe runs them
REALTIME_CHECKS = []  # what an app offers beyond HTTP (SSE, WebSocket): probe(realtime=True) adds them


def check(name, category, expected, timeout=CHECK_TIMEOUT, needs=None):
    """Register a check (a decorator). The order of registration is the order of the report. A check that `needs`
    something the app offers goes with the realtime ones."""
    def register(run):
        (CHECKS if needs is None else REALTIME_CHECKS).append(Check(name, category, expected, run, timeout, needs))
        return run
    return register


def status_is(reply, *accepted):
    return reply.status in accepted, reply.summary()


@check("GET /", "correct answers", f"200, body {HELLO.decode().strip()!r}")
def check_get(address, deadline):
    reply = exchange(address, deadline, request("GET", "/"))
    return reply.status == 200 and reply.body == HELLO, f"{reply.summary()}, body {shorten(reply.body)}"


@check("HEAD /", "correct answers", "200, no body")
def check_head(address, deadline):
    connection = Connection(address, deadline)
    try:
        connection.send(request("HEAD", "/"))
        reply = connection.read_response("HEAD")
        extra = connection.extra_bytes(0.3)
    finally:
        connection.close()
    got = reply.summary() + (f", then {len(extra)} bytes of body" if extra else ", no body")
    return reply.status == 200 and not extra, got


@check("query string", "correct answers", "200, body 'a=1&b=x%20y' (the query as sent)")
def check_query(address, deadline):
    reply = exchange(address, deadline, request("GET", "/query?a=1&b=x%20y"))
    return reply.status == 200 and reply.body == b"a=1&b=x%20y", f"{reply.summary()}, body {shorten(reply.body)}"


@check("percent-encoded path", "correct answers", "200, body '/path/café' (decoded)")
def check_path(address, deadline):
    reply = exchange(address, deadline, request("GET", "/path/caf%C3%A9"))
    expected = "/path/café".encode()
    return reply.status == 200 and reply.body == expected, f"{reply.summary()}, body {shorten(reply.body)}"


@check("POST with Content-Length", "correct answers", "200, the 1,000-byte body echoed")
def check_post(address, deadline):
    body = bytes(range(256)) * 3 + b"x" * 232
    reply = exchange(address, deadline, request("POST", "/echo", [("Content-Length", "1000")], body), "POST")
    same = "the same body" if reply.body == body else f"a different body of {len(reply.body)} bytes"
    return reply.status == 200 and reply.body == body, f"{reply.summary()}, {same}"


@check("POST with a chunked body", "correct answers", "200, body 'hello, world' (de-chunked)")
def check_chunked_post(address, deadline):
    body = b"7\r\nhello, \r\n5\r\nworld\r\n0\r\n\r\n"
    reply = exchange(address, deadline, request("POST", "/echo", [("Transfer-Encoding", "chunked")], body), "POST")
    return reply.status == 200 and reply.body == b"hello, world", f"{reply.summary()}, body {shorten(reply.body)}"


@check("bad request line", "malformed requests", "400")
def check_bad_request_line(address, deadline):
    return status_is(exchange(address, deadline, b"HELLO THERE\r\n\r\n"), 400)


@check("whitespace before colon", "malformed requests", "400 (RFC 9112 5.1: must reject)")
def check_space_before_colon(address, deadline):
    return status_is(exchange(address, deadline, request("GET", "/", [("X-Probe ", "1")])), 400)


@check("HTTP/1.1 without Host", "malformed requests", "400 (RFC 9112 3.2)")
def check_no_host(address, deadline):
    return status_is(exchange(address, deadline, request("GET", "/", host=None)), 400)


@check("HTTP/2.0 request line", "malformed requests", "505 (or 400)")
def check_http2(address, deadline):
    return status_is(exchange(address, deadline, request("GET", "/", version="HTTP/2.0")), 505, 400)


@check("invalid Content-Length", "malformed requests", "400")
def check_bad_content_length(address, deadline):
    raw = request("POST", "/echo", [("Content-Length", "-5")], b"hello")
    return status_is(exchange(address, deadline, raw, "POST"), 400)


@check("Content-Length and Transfer-Encoding", "malformed requests",
       "400, or 'hello' (decoded as chunked); then the connection closed")
def check_cl_and_te(address, deadline):
    # Framed by Content-Length, the body would be "5\r\nhe" and "llo..." a second request: request smuggling.
    raw = request("POST", "/echo", [("Content-Length", "6"), ("Transfer-Encoding", "chunked")],
                  b"5\r\nhello\r\n0\r\n\r\n")
    connection = Connection(address, deadline)
    try:
        connection.send(raw)
        reply = connection.read_response("POST")
        closed = connection.closes_within(1.0)
    finally:
        connection.close()
    refused_or_chunked = reply.status == 400 or (reply.status == 200 and reply.body == b"hello")
    got = f"{reply.summary()}, body {shorten(reply.body)}, connection {'closed' if closed else 'left open'}"
    return refused_or_chunked and closed, got


@check("unknown transfer coding", "malformed requests", "501 (or 400)")
def check_unknown_coding(address, deadline):
    raw = request("POST", "/echo", [("Transfer-Encoding", "gzip")], b"hello")
    return status_is(exchange(address, deadline, raw, "POST"), 501, 400)


@check("100 kB header", "limits", "431 (or 400)")
def check_big_header(address, deadline):
    return status_is(exchange(address, deadline, request("GET", "/", [("X-Big", "a" * 100_000)])), 431, 400)


@check("100 kB target", "limits", "414 (or 400, 431)")
def check_big_target(address, deadline):
    return status_is(exchange(address, deadline, request("GET", "/query?" + "a" * 100_000)), 414, 400, 431)


@check("1,000 headers", "limits", "431 (or 400)")
def check_many_headers(address, deadline):
    headers = [(f"X-H{i}", "1") for i in range(1000)]
    return status_is(exchange(address, deadline, request("GET", "/", headers)), 431, 400)


@check("1 GB body announced", "limits", "413, before the body is sent")
def check_big_body(address, deadline):
    raw = request("POST", "/echo", [("Content-Length", str(10 ** 9))], b"x" * 1000)
    return status_is(exchange(address, deadline, raw, "POST"), 413)


@check("two requests on one connection", "keep-alive", "two 200 answers on the same connection")
def check_keep_alive(address, deadline):
    connection = Connection(address, deadline)
    try:
        connection.send(request("GET", "/"))
        first = connection.read_response()
        if not first.keep_alive:
            return False, f"{first.summary()}, then the server closed the connection"
        connection.send(request("GET", "/query?second"))
        second = connection.read_response()
    except ConnectionError:
        return False, "the server closed the connection after the first answer"
    finally:
        connection.close()
    passed = first.status == second.status == 200 and second.body == b"second"
    return passed, f"{first.summary()}, then {second.summary()}, body {shorten(second.body)}"


@check("Connection: close", "keep-alive", "200, then the server closes the connection")
def check_connection_close(address, deadline):
    connection = Connection(address, deadline)
    try:
        connection.send(request("GET", "/", [("Connection", "close")]))
        reply = connection.read_response()
        closed = connection.closes_within(1.0)
    finally:
        connection.close()
    return reply.status == 200 and closed, f"{reply.summary()}, connection {'closed' if closed else 'left open'}"


@check("streaming", "streaming",
       f"the first of {STREAM_PARTS} pieces arrives before the last is produced "
       f"({(STREAM_PARTS - 1) * STREAM_DELAY:g} s)")
def check_streaming(address, deadline):
    reply = exchange(address, deadline, request("GET", f"/stream?n={STREAM_PARTS}&delay={STREAM_DELAY}"))
    last = (STREAM_PARTS - 1) * STREAM_DELAY
    passed = reply.status == 200 and reply.first_data is not None and reply.first_data < last - STREAM_DELAY / 2
    first = "no body" if reply.first_data is None else f"first bytes after {reply.first_data:.2f} s"
    return passed, f"{reply.summary()}, {first}, all after {reply.elapsed:.2f} s"


# --- Server-sent events and WebSocket: run when the app offers them --------------------------------------------

def read_events(connection):
    """Read one response to a request sent already, noting when each server-sent event (up to its blank line)
    arrives: (the response, [(seconds after the request, the event's text)])."""
    parser = connection.parser
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "probe")]))
    parser.send(h11.EndOfMessage())
    response, events, pending = None, [], b""
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            data = connection.receive()
            if not data and response is None:
                raise ConnectionError("the server closed the connection without an answer")
            parser.receive_data(data)
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            *whole, pending = (pending + event.data).replace(b"\r\n", b"\n").split(b"\n\n")
            events += [(time.monotonic() - connection.sent_at, text.decode("utf-8", "replace")) for text in whole]
        elif isinstance(event, h11.EndOfMessage):
            return response, events


@check("server-sent events", "streaming",
       f"text/event-stream; {EVENTS} events, the first before the last is produced "
       f"({(EVENTS - 1) * EVENT_DELAY:g} s)", needs="sse")
def check_sse(address, deadline):
    connection = Connection(address, deadline)
    try:
        connection.send(request("GET", f"/events?n={EVENTS}&delay={EVENT_DELAY}", [("Accept", EVENT_STREAM)]))
        response, events = read_events(connection)
    finally:
        connection.close()
    kind = dict(response.headers).get(b"content-type", b"(none)").decode("latin-1")
    expected = [f"id: {i + 1}\ndata: event {i + 1} of {EVENTS}" for i in range(EVENTS)]
    last = (EVENTS - 1) * EVENT_DELAY
    passed = (response.status_code == 200 and kind.startswith(EVENT_STREAM) and [text for _, text in events] ==
              expected and events[0][0] < last - EVENT_DELAY / 2)
    times = ", ".join(f"{at:.2f}" for at, _ in events) or "none"
    return passed, f"{response.status_code} {kind}, {len(events)} events at {times} s"


class WebSocketPeer:
    """The probe's end of a WebSocket connection: its frames are masked as a client's must be (or not, to test a
    server), and it reads the server's frames strictly from the bytes after the 101."""

    def __init__(self, connection, rest):
        self.connection, self.buffer = connection, rest

    def send(self, opcode, payload, masked=True, fin=True):
        self.connection.send(encode_frame(opcode, payload, fin=fin, mask=os.urandom(4) if masked else None))

    def read(self, size):
        while len(self.buffer) < size:
            data = self.connection.receive()
            if not data:
                raise ConnectionError("the server closed the connection in the middle of a frame")
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frame(self):
        """The next frame, (opcode, payload); a frame a server must not send raises ValueError."""
        first, second = self.read(2)
        if second & 0x80 or first & 0x70:
            raise ValueError(f"the server sent a masked frame or reserved bits (first bytes {first:#x} {second:#x})")
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(self.read(2 if length == 126 else 8), "big")
        return first & 0x0F, self.read(length)

    def closes(self):
        """Does the server close the TCP connection now, sending nothing more?"""
        return not self.buffer and self.connection.closes_within(1.0)


def ws_handshake(address, deadline, version="13", path="/ws"):
    """Open a connection and send a WebSocket handshake (for /ws, where the app accepts): (connection, status,
    headers, bytes after the head).
    h11 writes the request and reads the answer: a 101 to a request with Upgrade hands it the connection."""
    connection = Connection(address, deadline)
    parser = h11.Connection(h11.CLIENT)
    headers = [("Host", "probe"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", version)]
    connection.send(parser.send(h11.Request(method="GET", target=path, headers=headers)) +
                    parser.send(h11.EndOfMessage()))
    while (event := parser.next_event()) is h11.NEED_DATA:
        data = connection.receive()
        if not data:
            connection.close()
            raise ConnectionError("the server closed the connection without an answer")
        parser.receive_data(data)
    fields = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
    return connection, event.status_code, fields, parser.trailing_data[0]


def ws_open(address, deadline):
    """A WebSocketPeer on an accepted connection; ConnectionError if the server did not answer 101."""
    connection, status, fields, rest = ws_handshake(address, deadline)
    if status != 101:
        connection.close()
        raise ConnectionError(f"the handshake got {status}, not 101")
    return WebSocketPeer(connection, rest)


def ws_close_of(peer):
    """The close frame's code that ends what the server sends (the frames before it skipped), or None."""
    while True:
        opcode, payload = peer.frame()
        if opcode == CLOSE:
            return parse_close(payload)[0]


@check("WebSocket handshake", "WebSocket", f"101, Sec-WebSocket-Accept {accept_key(WS_KEY)} (RFC 6455 4.2.2)",
       needs="websocket")
def check_ws_handshake(address, deadline):
    connection, status, fields, _ = ws_handshake(address, deadline)
    connection.close()
    accept = fields.get("sec-websocket-accept")
    passed = status == 101 and accept == accept_key(WS_KEY) and fields.get("upgrade", "").lower() == "websocket"
    return passed, f"{status}, Sec-WebSocket-Accept {accept}"


@check("WebSocket version 8", "WebSocket", "426 (or another 4xx) with Sec-WebSocket-Version: 13 (RFC 6455 4.4)",
       needs="websocket")
def check_ws_version(address, deadline):
    # RFC 6455 4.4: the version header is a MUST; the status is "an appropriate HTTP error code (such as 426)"
    connection, status, fields, _ = ws_handshake(address, deadline, version="8")
    connection.close()
    offered = fields.get("sec-websocket-version")
    passed = 400 <= status < 500 and "13" in header_values(offered)
    return passed, f"{status}, Sec-WebSocket-Version {offered}"


@check("WebSocket refused by the app", "WebSocket",
       "403 (a close before the accept: asgiref's www spec)", needs="websocket")
def check_ws_refused(address, deadline):
    # The probe app accepts at /ws only: anywhere else it closes first, which the server must answer with 403.
    connection, status, fields, _ = ws_handshake(address, deadline, path="/refused")
    connection.close()
    return status == 403, f"{status}" + (", Sec-WebSocket-Accept sent" if "sec-websocket-accept" in fields else "")


def header_values(value):
    """The comma-separated values of a header (None: none)."""
    return {part.strip() for part in (value or "").split(",")}


@check("WebSocket echo", "WebSocket", "a masked text and a 70,000-byte binary message come back", needs="websocket")
def check_ws_echo(address, deadline):
    peer = ws_open(address, deadline)
    data = bytes(range(256)) * 273 + bytes(112)  # 70,000 bytes: the 64-bit length form
    try:
        peer.send(TEXT, "probe ✓".encode())
        text = peer.frame()
        peer.send(BINARY, data)
        binary = peer.frame()
    finally:
        peer.connection.close()
    passed = text == (TEXT, "probe ✓".encode()) and binary == (BINARY, data)
    return passed, f"text {shorten(text[1])}, binary of {len(binary[1])} bytes" + ("" if passed else " (different)")


@check("WebSocket fragments", "WebSocket",
       "a text in 2 fragments, a ping between: a pong, the text whole (RFC 6455 5.4)",
       needs="websocket")
def check_ws_fragments(address, deadline):
    peer = ws_open(address, deadline)
    try:
        peer.send(TEXT, b"frag", fin=False)
        peer.send(PING, b"between")  # control frames may come between a message's fragments
        peer.send(CONTINUATION, b"ments")
        frames = [peer.frame(), peer.frame()]  # the pong comes first, or the message (a server may do either)
    finally:
        peer.connection.close()
    passed = sorted(frames) == [(TEXT, b"fragments"), (PONG, b"between")]
    return passed, ", ".join(f"opcode {opcode:#x} {shorten(payload)}" for opcode, payload in frames)


@check("WebSocket ping", "WebSocket", "a pong with the ping's payload (RFC 6455 5.5.2)", needs="websocket")
def check_ws_ping(address, deadline):
    peer = ws_open(address, deadline)
    try:
        peer.send(PING, b"probe ping")
        opcode, payload = peer.frame()
    finally:
        peer.connection.close()
    return (opcode, payload) == (PONG, b"probe ping"), f"opcode {opcode:#x}, payload {shorten(payload)}"


@check("WebSocket close", "WebSocket", "close 1000 echoed, then the server closes (RFC 6455 5.5.1, 7.1.1)",
       needs="websocket")
def check_ws_close(address, deadline):
    peer = ws_open(address, deadline)
    try:
        peer.send(CLOSE, (1000).to_bytes(2, "big") + b"bye")
        code = ws_close_of(peer)
        closed = peer.closes()
    finally:
        peer.connection.close()
    return code == 1000 and closed, f"close {code}, connection {'closed' if closed else 'left open'}"


@check("WebSocket unmasked frame", "WebSocket", "close 1002 (RFC 6455 5.1: a client must mask)", needs="websocket")
def check_ws_unmasked(address, deadline):
    peer = ws_open(address, deadline)
    try:
        peer.send(TEXT, b"not masked", masked=False)
        code = ws_close_of(peer)
    finally:
        peer.connection.close()
    return code == 1002, f"close {code}"


@check("WebSocket frame too big", "WebSocket",
       "close 1009 from the head of a 4 GiB frame, its payload unsent (RFC 6455 7.4.1)", needs="websocket")
def check_ws_too_big(address, deadline):
    peer = ws_open(address, deadline)
    try:
        # A binary frame's head: FIN, MASK, the 64-bit length 2**32, a mask; the server must not wait for the payload
        peer.connection.send(bytes([0x80 | BINARY, 0x80 | 127]) + (2 ** 32).to_bytes(8, "big") + os.urandom(4))
        code = ws_close_of(peer)
    finally:
        peer.connection.close()
    return code == 1009, f"close {code}"


@check(f"{SLOW_CLIENTS} slow requests at once", "concurrency",
       f"a fact, not a test: {SLOW_CLIENTS} requests that each wait {SLOW_DELAY:g} s, sent together",
       timeout=SLOW_CLIENTS * SLOW_DELAY + CHECK_TIMEOUT)
def check_concurrency(address, deadline):
    results = [None] * SLOW_CLIENTS

    def one(index):
        try:
            results[index] = exchange(address, deadline, request("GET", f"/slow?delay={SLOW_DELAY}"))
        except Exception as error:
            results[index] = error

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(SLOW_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    answered = sum(isinstance(result, Reply) and result.status == 200 for result in results)
    if answered < SLOW_CLIENTS:
        return None, f"only {answered} of {SLOW_CLIENTS} answered within {wall:.2f} s"
    at_once = round(SLOW_CLIENTS * SLOW_DELAY / wall, 1)
    how = "in parallel" if wall < 2 * SLOW_DELAY else f"about {at_once:g} at a time"
    return None, f"all {SLOW_CLIENTS} answered in {wall:.2f} s: {how}"


# --- Running the checks, and the report ---------------------------------------------------------------------------

@dataclass
class CheckResult:
    name: str
    category: str
    expected: str
    got: str
    passed: bool | None  # None: a fact about the server (the concurrency check), neither pass nor fail
    seconds: float

    @property
    def mark(self):
        return {True: "PASS", False: "FAIL", None: "INFO"}[self.passed]


def shorten(body, limit=40):
    text = repr(body)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_check(one, address, timeout):
    """Run one check within `timeout` seconds; whatever goes wrong becomes a failed result, never an exception."""
    started = time.monotonic()
    try:
        passed, got = one.run(address, started + timeout)
    except TimeoutError:
        passed, got = False, f"no complete answer within {timeout:g} s"
    except ConnectionRefusedError:
        passed, got = False, "connection refused: is the server running?"
    except ConnectionError as error:
        passed, got = False, f"connection closed or reset without a complete answer ({error})"
    except h11.RemoteProtocolError as error:
        passed, got = False, f"not a valid HTTP/1.1 response: {error}"
    except Exception as error:  # anything else the server provoked, e.g. OSError: a failed check, not a failed probe
        passed, got = False, f"{type(error).__name__}: {error}"
    return CheckResult(one.name, one.category, one.expected, got, passed, time.monotonic() - started)


def parse_address(target):
    """(host, port) from a URL ("http://127.0.0.1:8000/"), "host:port", a (host, port) tuple, or anything with
    an .address, such as gatewaylab.servers' RunningServer."""
    if hasattr(target, "address"):
        target = target.address
    if isinstance(target, tuple) and len(target) == 2:
        return str(target[0]), int(target[1])
    if not isinstance(target, str):
        raise TypeError(f"probe needs a URL like 'http://127.0.0.1:8000' or a (host, port) tuple, got {target!r}")
    parts = urlsplit(target if "://" in target else "http://" + target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"probe speaks plain HTTP: expected a URL like 'http://127.0.0.1:8000', got {target!r}")
    return parts.hostname, parts.port or 80


# Okabe-Ito colours (safe for colour-blind readers), and the word PASS/FAIL/INFO says it without colour too.
LEFT_CELL = f"style='{LEFT}'"  # as an attribute, for the tables below
STYLE = {True: "color:#009E73;font-weight:bold", False: "color:#D55E00;font-weight:bold", None: "color:#0072B2"}


@dataclass
class ProbeReport:
    """The results of one probe: a table in a notebook (HTML), aligned text elsewhere. label: the server's name, as
    given to probe_side_by_side or probe(label=...); the summary names the server by it (by its URL without one)."""

    target: str
    results: list = field(default_factory=list)
    label: str | None = None

    @property
    def passed(self):
        """True if no check failed (the concurrency fact does not count)."""
        return all(result.passed is not False for result in self.results)

    @property
    def failed(self):
        return [result for result in self.results if result.passed is False]

    def summary(self):
        counted = [result for result in self.results if result.passed is not None]
        return f"{self.label or self.target}: {sum(r.passed for r in counted)} of {len(counted)} checks passed"

    def __str__(self):
        rows = [(r.mark, r.name, r.expected, r.got) for r in self.results]
        widths = [max(len(row[i]) for row in rows + [("", "check", "expected", "")]) for i in range(3)]
        lines = [self.summary()]
        for row in rows:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td style='{STYLE[r.passed]}'>{r.mark}</td><td {LEFT_CELL}>{html.escape(r.category)}</td>"
            f"<td {LEFT_CELL}>{html.escape(r.name)}</td><td {LEFT_CELL}>{html.escape(r.expected)}</td>"
            f"<td {LEFT_CELL}>{html.escape(r.got)}</td></tr>"
            for r in self.results)
        return (f"<p><b>{html.escape(self.summary())}</b></p><table><thead><tr><th>result</th><th {LEFT_CELL}>kind</th>"
                f"<th {LEFT_CELL}>check</th><th {LEFT_CELL}>expected</th><th {LEFT_CELL}>got</th></tr></thead><tbody>{rows}</tbody></table>")


def probe(target, *, checks=None, timeout=None, label=None, realtime=False):
    """Run every check (or the named ones) against the server at `target`, one after another; returns a ProbeReport.

    The server should be serving probe_app (WSGI) or probe_asgi_app (ASGI): the checks know their answers.
    `timeout` (seconds) replaces each check's own time limit. `label` names the server in the report's summary.
    `realtime`: add the SSE and WebSocket checks (REALTIME_CHECKS; `checks` may name them too).
    """
    host, port = parse_address(target)
    known = CHECKS + REALTIME_CHECKS
    if checks is None:
        chosen = known if realtime else CHECKS
    else:
        chosen = [one for one in known if one.name in checks]
    if checks is not None and len(chosen) != len(set(checks)):
        unknown = sorted(set(checks) - {one.name for one in known})
        raise ValueError(f"unknown checks {unknown}; the checks are {[one.name for one in known]}")
    report = ProbeReport(f"http://{host}:{port}", label=label)
    offered = app_offers((host, port)) if any(one.needs for one in chosen) else set()
    for one in chosen:
        if one.needs is not None and one.needs not in offered:
            report.results.append(CheckResult(one.name, one.category, one.expected,
                                              f"not run: the app does not offer {one.needs}", None, 0.0))
        else:
            report.results.append(run_check(one, (host, port), one.timeout if timeout is None else timeout))
    return report


def app_offers(address):
    """What the app under test offers beyond HTTP, as its GET /offers says: {"sse", "websocket"} for probe_asgi_app
    (on any server: the server's support is what the checks test); nothing if it does not say."""
    try:
        reply = exchange(address, time.monotonic() + CHECK_TIMEOUT, request("GET", "/offers"))
    except (OSError, h11.RemoteProtocolError):
        return set()
    return set(reply.body.decode("latin-1").split()) if reply.status == 200 else set()


@dataclass
class SideBySide:
    """Several servers' reports, one column each."""

    reports: dict  # label -> ProbeReport

    def rows(self):
        names = [result.name for result in next(iter(self.reports.values())).results]
        by_label = {label: {r.name: r for r in report.results} for label, report in self.reports.items()}
        return [(name, [by_label[label].get(name) for label in self.reports]) for name in names]

    def __str__(self):
        """A text table of at most TEXT_WIDTH characters a line: a cell too long for its column wraps onto more lines
        (nothing is cut), and then a blank line separates the rows."""
        table = [["check"] + list(self.reports)]
        for name, results in self.rows():
            table.append([name] + [f"{r.mark} {r.got}" if r else "" for r in results])
        widths = column_widths([max(len(row[i]) for row in table) for i in range(len(table[0]))],
                               TEXT_WIDTH - len(GAP) * (len(table[0]) - 1))
        rows = [[textwrap.wrap(cell, width, break_on_hyphens=False) or [""] for cell, width in zip(row, widths)]
                for row in table]
        wrapped = any(len(cell) > 1 for row in rows for cell in row)
        lines = []
        for number, row in enumerate(rows):
            if wrapped and number > 1:
                lines.append("")
            for i in range(max(len(cell) for cell in row)):
                lines.append(GAP.join((cell[i] if i < len(cell) else "").ljust(width)
                                      for cell, width in zip(row, widths)).rstrip())
            if number == 0:
                lines.append(GAP.join("-" * width for width in widths))
        return "\n".join(lines + [""] + [report.summary() for report in self.reports.values()])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(label)}</th>" for label in self.reports)
        body = ""
        for name, results in self.rows():
            expected = next(r.expected for r in results if r)
            cells = "".join(
                f"<td style='{STYLE[r.passed]}'>{r.mark}<br><span style='font-weight:normal'>{html.escape(r.got)}"
                "</span></td>" if r else "<td></td>" for r in results)
            body += f"<tr><td {LEFT_CELL}><b>{html.escape(name)}</b><br>{html.escape(expected)}</td>{cells}</tr>"
        summaries = "<br>".join(html.escape(report.summary()) for report in self.reports.values())
        return f"<table><thead><tr><th {LEFT_CELL}>check (expected)</th>{head}</tr></thead><tbody>{body}</tbody></table>" \
               f"<p>{summaries}</p>"


def probe_side_by_side(targets, *, checks=None, timeout=None, realtime=False):
    """probe() each server of {label: url_or_address}; the reports side by side, one column per server, each
    named by its label."""
    if not targets:
        raise ValueError("give at least one server, as {label: url}")
    return SideBySide({label: probe(target, checks=checks, timeout=timeout, label=label, realtime=realtime)
                       for label, target in targets.items()})


TEXT_WIDTH = 110  # characters in a line of SideBySide's text table: a notebook's output on a 1280 px screen
GAP = "  "


def column_widths(natural, total, narrowest=12):
    """Widths for columns whose longest cells are `natural` characters, to fit `total`: a column that needs less than
    an even share keeps its width, and the others share what is left evenly (never narrower than `narrowest`)."""
    widths = list(natural)
    wide = list(range(len(widths)))
    while wide:
        share = (total - sum(widths[i] for i in range(len(widths)) if i not in wide)) // len(wide)
        narrow = [i for i in wide if natural[i] <= share]
        if not narrow:
            for i in wide:
                widths[i] = max(share, narrowest)
            break
        wide = [i for i in wide if i not in narrow]
    return widths
