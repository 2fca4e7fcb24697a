"""WebSocket on the course's ASGI server (gatewaylab.websocket) against RFC 6455 and asgiref's specs/www.rst: the
handshake, frames, messages, the ASGI events, the chat room with a real client library (websockets 17), and HTTP still
served as ASGIServer serves it."""

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gatewaylab import websocket
from gatewaylab.chat import Room, chat_app
from gatewaylab.http1 import Request
from gatewaylab.websocket import (BINARY, CLOSE, CONTINUATION, GUID, PING, PONG, TEXT, Frame, MessageAssembler,
                                  ProtocolError, WebSocketServer, accept_key, encode_frame, handshake_error,
                                  make_websocket_scope, parse_close, read_frame)

ROOT = Path(__file__).resolve().parents[1]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 4.1's example
WAIT = 10  # seconds any one wait may take before a test fails (never a timing assertion: the machine is shared)


# --- helpers ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running(app, **options):
    """Serve `app` with WebSocketServer on a free port; on the way out, stop it and check nothing is left running."""
    threads_before = set(threading.enumerate())
    server = WebSocketServer(app, "127.0.0.1", 0, **options).start()
    try:
        yield server
    finally:
        server.shutdown()
        assert not server.thread.is_alive() and server.socket.fileno() == -1
        assert set(threading.enumerate()) <= threads_before


def ws_url(server, path="/ws"):
    host, port = server.server_address
    return f"ws://{host}:{port}{path}"


def handshake(path="/ws", key=KEY, version="13", extra=()):
    lines = [f"GET {path} HTTP/1.1", "Host: test", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_raw(server, raw=None):
    """A raw client: sends a handshake, returns (reader, writer, the answer's head as text)."""
    reader, writer = await asyncio.open_connection(*server.server_address)
    writer.write(raw or handshake())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return reader, writer, head.decode("latin-1")


def masked(opcode, payload, fin=True):
    return encode_frame(opcode, payload, fin, mask=os.urandom(4))


async def server_frame(reader):
    return await asyncio.wait_for(read_frame(reader, 1 << 24, masked=False), WAIT)


async def close_of(reader):
    """Read frames until the server's close; its (code, reason)."""
    while True:
        frame = await server_frame(reader)
        if frame.opcode == CLOSE:
            return parse_close(frame.payload)


async def at_eof(reader):
    """Does the server close the connection, sending nothing more first?"""
    return await asyncio.wait_for(reader.read(), WAIT) == b""


async def rest_of(reader):
    """What the server sends until it closes the connection (a timeout if it never does)."""
    return await asyncio.wait_for(reader.read(), WAIT)


def stream_of(data):
    """An asyncio stream holding `data`, then its end (read_frame without a socket)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def decode(data, max_size=1 << 20, masked=True):
    async def read():
        return await read_frame(stream_of(data), max_size, masked=masked)
    return asyncio.run(read())


def refused_with(data, max_size=1 << 20):
    with pytest.raises(ProtocolError) as caught:
        decode(data, max_size)
    return caught.value.code


def echo_app(record=None):
    """Accepts, echoes every message, records every event it receives; closes with 4000 on the text "bye"."""
    async def app(scope, receive, send):
        assert scope["type"] == "websocket"
        while True:
            message = await receive()
            if record is not None:
                record.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.disconnect":
                return
            elif message.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4000, "reason": "see you"})
            else:
                await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
    return app


def request_of(method="GET", version="HTTP/1.1", **changes):
    headers = {"Host": "test", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
               "Sec-WebSocket-Version": "13"}
    headers.update({name.replace("_", "-"): value for name, value in changes.items()})
    return Request(method, "/ws", version, [(name, value) for name, value in headers.items() if value is not None])


# --- the handshake ------------------------------------------------------------------------------------------------

def test_the_accept_key_is_rfc_6455s_example():
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key("x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="  # another key, another answer


def test_handshake_errors():
    assert handshake_error(request_of()) is None
    assert handshake_error(request_of(Upgrade="WebSocket", Connection="keep-alive, Upgrade")) is None  # any case
    assert handshake_error(request_of(Sec_WebSocket_Version="8")).status == 426
    for wrong in [request_of("POST"), request_of(version="HTTP/1.0"), request_of(Connection="keep-alive"),
                  request_of(Upgrade="h2c"), request_of(Sec_WebSocket_Key=None),
                  request_of(Sec_WebSocket_Key=base64.b64encode(b"x" * 15).decode()),  # 15 bytes, not 16
                  request_of(Sec_WebSocket_Key="not base64!"), request_of(Sec_WebSocket_Version=None)]:
        error = handshake_error(wrong)
        assert error is not None and error.status == 400, wrong


def test_a_handshake_is_answered_101_with_the_accept_key_and_the_scope_follows_the_spec():
    record, scopes = [], []

    async def app(scope, receive, send):
        scopes.append(scope)  # (a lifespan scope too: the echo app raises on it, so lifespan is off)
        await echo_app(record)(scope, receive, send)

    async def client(server):
        reader, writer, head = await open_raw(server, handshake("/ws/caf%C3%A9?room=1", extra=[
            "Sec-WebSocket-Protocol: chat, superchat"]))
        writer.close()
        return head

    with running(app) as server:
        head = asyncio.run(client(server))
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert "\r\nUpgrade: websocket\r\n" in head and "\r\nConnection: Upgrade\r\n" in head
    assert "Sec-WebSocket-Protocol" not in head  # the app chose none
    scope = scopes[-1]
    assert scope["type"] == "websocket" and scope["scheme"] == "ws" and "method" not in scope
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"} and scope["http_version"] == "1.1"
    assert scope["path"] == "/ws/café" and scope["raw_path"] == b"/ws/caf%C3%A9"
    assert scope["query_string"] == b"room=1" and scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert (b"sec-websocket-key", KEY.encode()) in scope["headers"]
    assert scope["server"] == server.server_address and scope["client"][0] == "127.0.0.1"
    assert scope["state"] == {}
    assert record[0] == {"type": "websocket.connect"}
    assert record[-1]["type"] == "websocket.disconnect" and record[-1]["code"] == 1006  # no close frame came


def test_the_scope_function_alone():
    request = Request("GET", "/chat?x=%20", "HTTP/1.1", [("Host", "h"), ("Sec-WebSocket-Protocol", "a,b")])
    scope = make_websocket_scope(request, ("127.0.0.1", 80), ("10.0.0.1", 5000), {"db": 1})
    assert scope["query_string"] == b"x=%20" and scope["subprotocols"] == ["a", "b"]
    assert scope["client"] == ("10.0.0.1", 5000) and scope["state"] == {"db": 1}


def test_a_wrong_version_gets_426_naming_13_and_a_bad_key_400():
    async def client(server, raw):
        reader, writer, head = await open_raw(server, raw)
        body = await rest_of(reader)
        writer.close()
        return head, body

    with running(echo_app()) as server:
        head, body = asyncio.run(client(server, handshake(version="8")))
        assert head.startswith("HTTP/1.1 426 ") and "\r\nSec-WebSocket-Version: 13\r\n" in head
        assert "\r\nUpgrade: websocket\r\n" in head  # RFC 9110 15.5.22: a 426 names the protocol
        assert b"version 13" in body  # and then the connection was closed (rest_of read to its end)
        head, body = asyncio.run(client(server, handshake(key="short")))
        assert head.startswith("HTTP/1.1 400 ") and b"Sec-WebSocket-Key" in body


def test_the_subprotocol_and_headers_of_the_accept_go_in_the_101():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "superchat", "headers": [(b"x-room", b"1")]})
        await receive()

    async def client(server):
        async with connect(ws_url(server), subprotocols=["chat", "superchat"]) as ws:
            return ws.subprotocol, ws.response.headers["x-room"]

    with running(app) as server:
        assert asyncio.run(client(server)) == ("superchat", "1")


def test_an_unoffered_subprotocol_is_an_app_error_a_500():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "other"})

    async def client(server):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(ws_url(server), subprotocols=["chat"]):
                pass
        return caught.value.response.status_code

    with running(app) as server:
        assert asyncio.run(client(server)) == 500


def test_close_before_accept_is_403_and_an_app_error_before_accept_is_500():
    async def refusing(scope, receive, send):
        await receive()
        await send({"type": "websocket.close"})

    async def refusing_unread(scope, receive, send):  # without reading websocket.connect first: allowed
        await send({"type": "websocket.close"})

    async def failing(scope, receive, send):
        await receive()
        raise RuntimeError("boom")

    async def status_of(server):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(ws_url(server)):
                pass
        return caught.value.response.status_code

    with running(refusing) as server:
        assert asyncio.run(status_of(server)) == 403
    with running(refusing_unread) as server:
        assert asyncio.run(status_of(server)) == 403
    with running(failing) as server:
        assert asyncio.run(status_of(server)) == 500


# --- frames -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, head_size", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)])
def test_each_length_form(size, head_size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = encode_frame(BINARY, payload)
    assert len(data) == head_size + size and data[0] == 0x82
    assert data[1] == (size if size < 126 else 126 if size < 65536 else 127)  # no mask bit: a server frame
    assert decode(data, masked=False) == Frame(True, BINARY, payload)
    client = encode_frame(BINARY, payload, mask=b"\x01\x02\x03\x04")
    assert len(client) == head_size + 4 + size and client[1] & 0x80
    assert decode(client) == Frame(True, BINARY, payload)


def test_masking_is_the_rfcs_example():
    # RFC 6455 5.7: a masked "Hello" from a client
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(TEXT, b"Hello", mask=bytes.fromhex("37fa213d")) == data
    assert decode(data) == Frame(True, TEXT, b"Hello")
    assert encode_frame(TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")  # unmasked, as a server sends it
    assert encode_frame(TEXT, b"Hel", fin=False)[0] == 0x01  # FIN clear


def test_a_non_minimal_length_is_accepted():
    data = bytes([0x82, 0x80 | 126]) + (5).to_bytes(2, "big") + b"\0\0\0\0" + b"hello"
    assert decode(data) == Frame(True, BINARY, b"hello")
    data = bytes([0x82, 0x80 | 127]) + (5).to_bytes(8, "big") + b"\0\0\0\0" + b"hello"
    assert decode(data) == Frame(True, BINARY, b"hello")


def test_broken_frames_are_refused_with_the_right_code():
    assert refused_with(encode_frame(TEXT, b"hi")) == 1002  # unmasked client frame
    assert refused_with(bytes([0x80 | 0x40 | TEXT]) + masked(TEXT, b"hi")[1:]) == 1002  # RSV1 set
    assert refused_with(bytes([0x83]) + masked(TEXT, b"hi")[1:]) == 1002  # reserved opcode 3
    assert refused_with(bytes([0x8B]) + masked(TEXT, b"hi")[1:]) == 1002  # reserved control opcode 11
    assert refused_with(masked(PING, b"x", fin=False)) == 1002  # a fragmented control frame
    assert refused_with(masked(PING, b"x" * 126)) == 1002  # a control frame over 125 bytes
    assert refused_with(masked(BINARY, b"x" * 101), max_size=100) == 1009
    top_bit = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + b"\0\0\0\0"
    assert refused_with(top_bit) == 1002
    assert decode(masked(BINARY, b"x" * 100), max_size=100).payload == b"x" * 100  # at the limit: fine
    assert decode(masked(PING, b"x" * 125)).payload == b"x" * 125
    with pytest.raises(asyncio.IncompleteReadError):
        decode(masked(BINARY, b"hello")[:-1])  # truncated: the stream ended


def test_the_assembler_joins_fragments_and_refuses_what_is_out_of_place():
    assembler = MessageAssembler(max_size=10)
    assert assembler.feed(Frame(False, TEXT, "caf".encode())) is None
    assert assembler.feed(Frame(False, CONTINUATION, "é".encode()[:1])) is None  # a character split in two frames
    assert assembler.feed(Frame(True, CONTINUATION, "é!".encode()[1:])) == "café!"
    assert assembler.feed(Frame(True, BINARY, b"\xff\x00")) == b"\xff\x00"
    with pytest.raises(ProtocolError) as caught:
        assembler.feed(Frame(True, CONTINUATION, b"x"))
    assert caught.value.code == 1002
    assembler.feed(Frame(False, BINARY, b"x"))
    with pytest.raises(ProtocolError) as caught:
        MessageAssembler().feed(Frame(True, CONTINUATION, b""))
    assert caught.value.code == 1002
    with pytest.raises(ProtocolError) as caught:
        assembler.feed(Frame(True, TEXT, b"new"))  # a new message while one is under way
    assert caught.value.code == 1002
    with pytest.raises(ProtocolError) as caught:
        MessageAssembler().feed(Frame(True, TEXT, b"\xc3\x28"))
    assert caught.value.code == 1007
    big = MessageAssembler(max_size=10)
    big.feed(Frame(False, BINARY, b"x" * 6))
    with pytest.raises(ProtocolError) as caught:
        big.feed(Frame(True, CONTINUATION, b"x" * 5))  # each frame is small, the message is not
    assert caught.value.code == 1009


def test_close_frame_bodies():
    assert parse_close(b"") == (1005, "")
    assert parse_close((1000).to_bytes(2, "big")) == (1000, "")
    assert parse_close((4000).to_bytes(2, "big") + "bientôt".encode()) == (4000, "bientôt")
    for code in (1012, 1013, 1014, 3000, 4999):
        assert parse_close(code.to_bytes(2, "big"))[0] == code
    for body in [b"\x03", *(code.to_bytes(2, "big") for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000))]:
        with pytest.raises(ProtocolError) as caught:
            parse_close(body)
        assert caught.value.code == 1002, body
    with pytest.raises(ProtocolError) as caught:
        parse_close((1000).to_bytes(2, "big") + b"\xff")
    assert caught.value.code == 1007


# --- frames on a live connection ----------------------------------------------------------------------------------

def test_fragments_pings_and_the_close_on_a_live_connection():
    record = []

    async def client(server):
        reader, writer, head = await open_raw(server)
        assert head.startswith("HTTP/1.1 101 ")
        writer.write(masked(TEXT, b"hel", fin=False))
        writer.write(masked(PING, b"are you there?"))  # a control frame between a message's frames
        writer.write(masked(CONTINUATION, b"lo", fin=True))
        pong, echo = await server_frame(reader), await server_frame(reader)
        writer.write(masked(BINARY, b"\x00\x01"))
        binary = await server_frame(reader)
        writer.write(masked(PONG, b"unasked"))  # allowed, and not answered
        writer.write(masked(CLOSE, (1000).to_bytes(2, "big") + b"done"))
        close = await server_frame(reader)
        closed = await at_eof(reader)  # the server closes the TCP connection after the closing handshake
        writer.close()
        return pong, echo, binary, close, closed

    with running(echo_app(record)) as server:
        pong, echo, binary, close, closed = asyncio.run(client(server))
    assert pong == Frame(True, PONG, b"are you there?")
    assert echo == Frame(True, TEXT, b"hello")
    assert binary == Frame(True, BINARY, b"\x00\x01")
    assert close == Frame(True, CLOSE, (1000).to_bytes(2, "big")) and closed  # the code echoed
    assert record == [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hello"},
                      {"type": "websocket.receive", "bytes": b"\x00\x01"},
                      {"type": "websocket.disconnect", "code": 1000, "reason": "done"}]


@pytest.mark.parametrize("frame, code", [
    (encode_frame(TEXT, b"unmasked"), 1002),
    (masked(TEXT, b"\xc3\x28"), 1007),
    (masked(CONTINUATION, b"out of place"), 1002),
    (masked(BINARY, b"x" * 2000), 1009),
    (masked(CLOSE, b"\x03"), 1002),
], ids=["unmasked", "bad-utf8", "stray-continuation", "too-big", "one-byte-close"])  # masks are random: name them
def test_a_broken_client_is_closed_with_the_right_code_and_its_app_hears_it(frame, code):
    record = []

    async def client(server):
        reader, writer, _ = await open_raw(server)
        writer.write(frame)
        got = await close_of(reader)
        closed = await at_eof(reader)
        writer.close()
        return got, closed

    with running(echo_app(record), max_message=1000) as server:
        (got, _), closed = asyncio.run(client(server))
    assert got == code and closed
    assert record[-1]["type"] == "websocket.disconnect" and record[-1]["code"] == code


def test_a_close_without_a_code_is_echoed_empty_and_the_app_hears_1005():
    record = []

    async def client(server):
        reader, writer, _ = await open_raw(server)
        writer.write(masked(CLOSE, b""))
        frame = await server_frame(reader)
        writer.close()
        return frame

    with running(echo_app(record)) as server:
        assert asyncio.run(client(server)) == Frame(True, CLOSE, b"")
    assert record[-1] == {"type": "websocket.disconnect", "code": 1005, "reason": ""}


# --- the ASGI events with a real client ---------------------------------------------------------------------------

def test_echo_and_the_apps_close_with_code_and_reason():
    record = []

    async def client(server):
        async with connect(ws_url(server)) as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00" * 100_000)
            data = await ws.recv()
            await ws.send("bye")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return text, data, ws.close_code, ws.close_reason

    with running(echo_app(record)) as server:
        text, data, code, reason = asyncio.run(client(server))
    assert (text, data, code, reason) == ("hello", b"\x00" * 100_000, 4000, "see you")
    # what the client's close frame said: websockets echoes the code and the reason
    assert record[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "see you"}


def test_the_disconnect_carries_the_clients_code():
    record = []

    async def client(server):
        async with connect(ws_url(server)) as ws:
            await ws.send("one")
            await ws.recv()
            await ws.close(4321, "leaving")

    with running(echo_app(record)) as server:
        asyncio.run(client(server))
    assert record[-1] == {"type": "websocket.disconnect", "code": 4321, "reason": "leaving"}


def test_an_app_error_after_accept_closes_with_1011(caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("boom")

    async def client(server):
        async with connect(ws_url(server)) as ws:
            await ws.send("anything")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    with caplog.at_level(logging.ERROR, "gatewaylab.websocket"), running(app) as server:
        assert asyncio.run(client(server)) == 1011
    assert "boom" in caplog.text


def test_an_app_that_returns_while_open_closes_with_1000():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "only this"})

    async def client(server):
        async with connect(ws_url(server)) as ws:
            text = await ws.recv()
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return text, ws.close_code

    with running(app) as server:
        assert asyncio.run(client(server)) == ("only this", 1000)


def test_send_after_close_raises_and_after_the_client_left_raises_an_oserror():
    outcomes = {}

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/close":
            await send({"type": "websocket.close"})
            try:
                await send({"type": "websocket.send", "text": "late"})
            except RuntimeError as error:
                outcomes["after close"] = error
            return
        outcomes["disconnect"] = await receive()
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as error:
            outcomes["after disconnect"] = error

    async def client(server):
        async with connect(ws_url(server, "/close")) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        async with connect(ws_url(server, "/leave")):
            pass

    with running(app) as server:
        asyncio.run(client(server))
    assert "after websocket.close" in str(outcomes["after close"])
    assert outcomes["disconnect"]["code"] == 1000 and isinstance(outcomes["after disconnect"], OSError)


@pytest.mark.parametrize("message", [
    {"type": "websocket.send"}, {"type": "websocket.send", "text": "a", "bytes": b"b"},
    {"type": "websocket.send", "text": b"bytes as text"}, {"type": "websocket.close", "code": 1005},
    {"type": "websocket.close", "reason": "x" * 124}, {"type": "http.response.start", "status": 200},
])
def test_a_wrong_event_after_accept_is_an_app_error(message):
    errors = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send(message)
        except (ValueError, RuntimeError) as error:
            errors.append(error)
            raise

    async def client(server):
        async with connect(ws_url(server)) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    with running(app) as server:
        assert asyncio.run(client(server)) == 1011
    assert len(errors) == 1


def test_a_stopping_server_says_going_away():
    codes, heard = [], []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        heard.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as error:  # the server closed: an OSError (www spec 2.4), not an app error
            heard.append(error)

    async def client(server):
        async with connect(ws_url(server)) as ws:
            await asyncio.to_thread(server.shutdown)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            codes.append((ws.close_code, ws.close_reason))

    with running(app) as server:
        asyncio.run(client(server))
    assert codes == [(1001, "the server is stopping")]
    assert heard[0]["type"] == "websocket.disconnect" and heard[0]["code"] == 1001
    assert isinstance(heard[1], OSError)


# --- the chat, with several real clients --------------------------------------------------------------------------

async def next_line(ws, prefix):
    """The next message that starts with `prefix` (other members' joins may come first)."""
    while True:
        line = await asyncio.wait_for(ws.recv(), WAIT)
        if line.startswith(prefix):
            return line


def test_the_chat_reaches_every_member_and_announces_joins_and_leaves():
    room = Room()

    async def clients(server):
        alice = await connect(ws_url(server) + "?name=alice")
        others = [await connect(ws_url(server) + f"?name=member{i}") for i in range(4)]
        assert await next_line(alice, "* member3") == "* member3 joined"
        assert len(room) == 5
        await others[0].send("hello, room")
        lines = [await next_line(ws, "member0:") for ws in [alice, *others]]
        await others[1].close()
        left = await next_line(alice, "* member1")
        late = await connect(ws_url(server) + "?name=alice")  # a name in use: a guest name instead
        history = [await asyncio.wait_for(late.recv(), WAIT) for _ in range(len(room.history))]
        for ws in [alice, late, *others]:
            await ws.close()
        return lines, left, history

    with running(chat_app(room)) as server:
        lines, left, history = asyncio.run(clients(server))
        page = httpx.get(f"http://{server.server_address[0]}:{server.server_address[1]}/")
    assert lines == ["member0: hello, room"] * 5
    assert left == "* member1 left"
    assert "member0: hello, room" in history and history[0] == "* alice joined"
    assert "guest-1 joined" in " ".join(room.history) and len(room) == 0
    assert page.status_code == 200 and "new WebSocket(url)" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_the_chat_page_computes_the_room_url_from_its_own():
    from gatewaylab.chat import PAGE
    script = PAGE.decode()
    assert "location.href" in script and "'/ws'" in script and "ws://" not in script  # relative: works behind a proxy


def test_the_chat_under_uvicorn_too():
    from gatewaylab.servers import serve_asgi

    async def client(url):
        async with connect(url + "/ws?name=solo") as ws:
            await next_line(ws, "* solo")
            await ws.send("ping?")
            return await next_line(ws, "solo:")

    with serve_asgi(chat_app(Room()), "ws-test-uvicorn") as server:
        assert asyncio.run(client(server.url.replace("http", "ws"))) == "solo: ping?"


# --- HTTP is still served as ASGIServer serves it -----------------------------------------------------------------

async def http_app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    if scope["type"] == "websocket":
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"{scope['method']} {scope['path']}".encode()})


def test_http_requests_are_served_as_by_asgiserver():
    with running(http_app) as server:
        base = f"http://{server.server_address[0]}:{server.server_address[1]}"
        with httpx.Client() as client:
            answers = [client.get(base + "/one"), client.post(base + "/two", content=b"x"),
                       client.get(base + "/three", headers={"Upgrade": "h2c", "Connection": "Upgrade"})]
        assert [a.text for a in answers] == ["GET /one", "POST /two", "GET /three"]
        assert answers[0].http_version == "HTTP/1.1" and "content-length" in answers[0].headers


def test_the_command_line_serves_websocket(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "gatewaylab.websocket", "gatewaylab.chat:app", "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving gatewaylab.chat:app on http://127.0.0.1:"), line
        url = line.split()[3].rstrip(";").replace("http", "ws")

        async def client():
            async with connect(url + "/ws?name=cli") as ws:
                return await next_line(ws, "* cli")

        assert asyncio.run(client()) == "* cli joined"
    finally:
        process.terminate()
        assert process.wait(WAIT) == 0


def test_max_message_is_checked():
    with pytest.raises(ValueError):
        WebSocketServer(http_app, port=0, max_message=0)
    assert websocket.MAX_MESSAGE == 1 << 20
