"""Fuzzing the WebSocket frame decoder of the course's server (gatewaylab.websocket) over a real connection: random,
truncated, oversized, unmasked and otherwise broken frames after a good handshake. The server must answer only with
valid server frames, end with the close code the broken frame calls for (RFC 6455 7.4.1) or a clean close, never log
a bug, leave no task or socket behind, and still serve a good client afterwards.

The default run tries 500 examples; FUZZ_EXAMPLES=5000 tries that many (the HTTP fuzz tests read the same variable).
"""

import logging
import os
import socket
import struct
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewaylab.websocket import (BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, WebSocketServer, accept_key,
                                  encode_frame, sendable_close_code)
# The HTTP fuzz test's log recorder and task count: they need only server.loop
from test_asgi_fuzz import Recorder, loop_tasks

TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "500"))
PER_TEST = max(TOTAL // 5, 1)  # five strategies below
FUZZ = settings(max_examples=PER_TEST, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
MAX_MESSAGE = 4096  # the server's limit: a bigger frame or message is closed with 1009
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = (f"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
SURPRISES = []  # what the app saw that the spec does not allow


# --- the app, and the server ---------------------------------------------------------------------------------------

async def echo(scope, receive, send):
    """Echoes every message; checks that each event has the spec's shape."""
    if scope["type"] != "websocket":
        raise RuntimeError("only websocket")
    if (await receive()) != {"type": "websocket.connect"}:
        SURPRISES.append("the first event was not websocket.connect")
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            if not isinstance(message.get("code"), int):
                SURPRISES.append(f"a disconnect without a code: {message!r}")
            return
        if (message.get("text") is None) == (message.get("bytes") is None):
            SURPRISES.append(f"not exactly one of text and bytes: {message!r}")
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


class Fuzzed:
    """The server under test, with what it held when it was idle: every example must leave it so."""

    def __init__(self):
        self.server = WebSocketServer(echo, "127.0.0.1", 0, timeout=1.0, max_message=MAX_MESSAGE).start()
        self.server_address = self.server.server_address
        self.process = psutil.Process()
        self.idle_tasks, self.idle_fds = loop_tasks(self.server), self.process.num_fds()

    def settled(self):
        return (not self.server.connections and not self.server.sessions
                and loop_tasks(self.server) == self.idle_tasks and self.process.num_fds() == self.idle_fds)

    def settle(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.settled():
            if time.monotonic() > deadline:
                pytest.fail(f"left behind: {len(self.server.connections)} connection(s), "
                            f"{loop_tasks(self.server) - self.idle_tasks} task(s), "
                            f"{self.process.num_fds() - self.idle_fds} file descriptor(s)")
            time.sleep(0.002)


@pytest.fixture(scope="module")
def recorder():
    handler = Recorder()
    loggers = [logging.getLogger(name) for name in ("gatewaylab.asgi", "gatewaylab.websocket", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture(scope="module")
def fuzzed(recorder):
    """The server the fuzz tests share; on the way out, check that it stopped with nothing left open or running."""
    process = psutil.Process()
    threads_before, fds_before = set(threading.enumerate()), process.num_fds()
    fuzzed = Fuzzed()
    try:
        yield fuzzed
    finally:
        fuzzed.server.shutdown()
    assert set(threading.enumerate()) == threads_before
    assert process.num_fds() == fds_before


def errors(recorder):
    """Server bugs, app errors and asyncio's complaints: none may be logged."""
    return [record.getMessage() for record in recorder.records if record.levelno >= logging.ERROR]


@pytest.fixture
def check(fuzzed, recorder):
    """After each example: nothing left behind, nothing logged as an error, no surprise for the app, and a good
    client still served."""
    def after():
        try:
            fuzzed.settle()
            assert errors(recorder) == [] and SURPRISES == []
            still_serving(fuzzed)
        finally:
            SURPRISES.clear()
            del recorder.records[:]
    SURPRISES.clear()
    del recorder.records[:]
    return after


# --- a strict client -----------------------------------------------------------------------------------------------

def parse_server_frames(data):
    """The frames a server sent, read strictly: unmasked, no reserved bits or opcodes, control frames whole and
    short, minimal lengths; AssertionError otherwise. Returns (frames as (fin, opcode, payload), what is left over)."""
    frames = []
    while len(data) >= 2:
        first, second = data[0], data[1]
        assert first & 0x70 == 0 and first & 0x0F in (0, 1, 2, 8, 9, 10), f"bad first byte {first:#x}"
        assert not second & 0x80, "a masked server frame"
        length, start = second & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(data) < 2 + size:
                break
            length, start = int.from_bytes(data[2:2 + size], "big"), 2 + size
            assert length >= (126 if size == 2 else 1 << 16), "a non-minimal length from the server"
        if len(data) < start + length:
            break
        opcode = first & 0x0F
        assert opcode < 8 or (first & 0x80 and length <= 125), "a broken control frame"
        frames.append((bool(first & 0x80), opcode, data[start:start + length]))
        data = data[start + length:]
    return frames, data


def open_websocket(address):
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        piece = sock.recv(4096)
        assert piece, f"the server closed during the handshake: {head!r}"
        head += piece
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and f"Sec-WebSocket-Accept: {accept_key(KEY)}".encode() in head
    return sock, rest


def read_to_close(sock, rest, wait=5.0):
    """Everything the server sends until it closes the connection (a reset counts as a close)."""
    data = rest
    sock.settimeout(wait)
    try:
        while piece := sock.recv(65536):
            data += piece
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {wait:g} s")
    return data


def masked(opcode, payload, fin=True):
    return encode_frame(opcode, payload, fin, mask=os.urandom(4))


def close_code(frames):
    """The code of the server's close frame (the last frame), None if it sent none."""
    if not frames or frames[-1][1] != CLOSE:
        return None
    payload = frames[-1][2]
    return int.from_bytes(payload[:2], "big") if payload else 1005


def still_serving(fuzzed):
    sock, rest = open_websocket(fuzzed.server_address)
    try:
        sock.sendall(masked(TEXT, b"still here") + masked(CLOSE, (1000).to_bytes(2, "big")))
        frames, left = parse_server_frames(read_to_close(sock, rest))
    finally:
        sock.close()
    assert frames == [(True, TEXT, b"still here"), (True, CLOSE, (1000).to_bytes(2, "big"))] and left == b""


def exchange(fuzzed, data, how="half-close"):
    """A handshake, then `data`; then the client half-closes and reads what the server sends until it closes (None:
    the client leaves at once, with a close or a reset)."""
    sock, rest = open_websocket(fuzzed.server_address)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed before all of it went: what it sent is still to be read
        if how == "reset":  # SO_LINGER with a zero timeout: close() sends a reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if how in ("reset", "close"):
            return None
        sock.shutdown(socket.SHUT_WR)
        return read_to_close(sock, rest)
    except OSError:
        return None  # the server reset the connection before we read: a close
    finally:
        sock.close()


# --- the strategies ------------------------------------------------------------------------------------------------

@st.composite
def message(draw):
    """A valid message: its frames (fragmented at random, pings between them) and the frames the server answers."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    content = draw(st.text(max_size=60)).encode() if opcode == TEXT else draw(st.binary(max_size=200))
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=3)))
    pieces = [content[a:b] for a, b in zip([0] + cuts, cuts + [len(content)])]
    wire, answers = b"", []
    for number, piece in enumerate(pieces):
        if draw(st.integers(0, 4)) == 0:
            ping = draw(st.binary(max_size=125))
            wire += masked(PING, ping)
            answers.append((True, PONG, ping))
        wire += masked(opcode if number == 0 else CONTINUATION, piece, fin=number == len(pieces) - 1)
    return wire, answers + [(True, opcode, content)]


BROKEN = {  # a broken frame, and the close code it calls for
    "unmasked": (encode_frame(TEXT, b"no mask"), 1002),
    "RSV1": (bytes([0xC1]) + masked(TEXT, b"x")[1:], 1002),
    "RSV3": (bytes([0x92]) + masked(BINARY, b"x")[1:], 1002),
    "opcode 3": (bytes([0x83]) + masked(BINARY, b"x")[1:], 1002),
    "opcode 15": (bytes([0x8F]) + masked(PING, b"x")[1:], 1002),
    "fragmented ping": (masked(PING, b"x", fin=False), 1002),
    "long ping": (masked(PING, b"x" * 126), 1002),
    "bad UTF-8": (masked(TEXT, b"caf\xc3"), 1007),
    "continuation first": (masked(CONTINUATION, b"x"), 1002),
    "frame too big": (masked(BINARY, b"x" * (MAX_MESSAGE + 1)), 1009),
    "claims 2**40 bytes": (bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + os.urandom(4), 1009),
    "message too big": (masked(BINARY, b"x" * MAX_MESSAGE, fin=False) + masked(CONTINUATION, b"x"), 1009),
    "new message mid-message": (masked(TEXT, b"a", fin=False) + masked(TEXT, b"b"), 1002),
    "1-byte close": (masked(CLOSE, b"\x03"), 1002),
    "close code 1005": (masked(CLOSE, (1005).to_bytes(2, "big")), 1002),
    "close code 2000": (masked(CLOSE, (2000).to_bytes(2, "big")), 1002),
    "close reason not UTF-8": (masked(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
}


@st.composite
def good_then_broken(draw):
    """Valid messages, then one broken frame (and maybe bytes after it, which the server must not read)."""
    messages = draw(st.lists(message(), max_size=3))
    name = draw(st.sampled_from(sorted(BROKEN)))
    broken, code = BROKEN[name]
    after = draw(st.sampled_from([b"", masked(TEXT, b"after"), os.urandom(20)]))
    wire = b"".join(m[0] for m in messages) + broken + after
    return wire, [answer for m in messages for answer in m[1]], code, name


@st.composite
def good_then_close(draw):
    messages = draw(st.lists(message(), max_size=4))
    code = draw(st.sampled_from([None, 1000, 1001, 1011, 3000, 4999]))
    payload = b"" if code is None else code.to_bytes(2, "big") + draw(st.text(max_size=20)).encode()[:100]
    wire = b"".join(m[0] for m in messages) + masked(CLOSE, payload)
    answers = [answer for m in messages for answer in m[1]]
    return wire, answers + [(True, CLOSE, b"" if code is None else code.to_bytes(2, "big"))]


@st.composite
def truncated(draw):
    """Valid messages, cut at a random byte; the client then half-closes, resets, or just closes."""
    wire = b"".join(m[0] for m in draw(st.lists(message(), min_size=1, max_size=3)))
    return wire[:draw(st.integers(0, len(wire) - 1))], draw(st.sampled_from(["half-close", "reset", "close"]))


@st.composite
def random_frames(draw):
    """Frames with random first bytes, mask bits, lengths (any of the three forms, some huge) and payloads."""
    wire = b""
    for _ in range(draw(st.integers(1, 4))):
        first = draw(st.integers(0, 255))
        is_masked = draw(st.integers(0, 5)) > 0
        length = draw(st.one_of(st.integers(0, 130), st.integers(0, 70000), st.integers(0, 2**64 - 1)))
        payload = draw(st.binary(max_size=min(length, 300)))
        form = bytes([(0x80 if is_masked else 0) | min(length, 125)]) if length < 126 else (
            bytes([(0x80 if is_masked else 0) | 126]) + length.to_bytes(2, "big") if length < 65536 else
            bytes([(0x80 if is_masked else 0) | 127]) + length.to_bytes(8, "big"))
        wire += bytes([first]) + form + (os.urandom(4) if is_masked else b"") + payload
    return wire


# --- the tests -----------------------------------------------------------------------------------------------------

@FUZZ
@given(case=good_then_broken())
def test_a_broken_frame_after_good_messages_gets_its_close_code(fuzzed, check, case):
    wire, answers, code, name = case
    frames, left = parse_server_frames(exchange(fuzzed, wire))
    assert frames[:-1] == answers and close_code(frames) == code and left == b"", name
    check()


@FUZZ
@given(case=good_then_close())
def test_good_messages_are_echoed_and_the_close_too(fuzzed, check, case):
    wire, answers = case
    frames, left = parse_server_frames(exchange(fuzzed, wire))
    assert frames == answers and left == b""
    check()


@FUZZ
@given(case=truncated())
def test_a_truncated_stream_is_a_clean_close(fuzzed, check, case):
    wire, how = case
    data = exchange(fuzzed, wire, how)
    if data is not None:
        frames, left = parse_server_frames(data)
        assert close_code(frames) is None and left == b""  # echoes and pongs only: no close frame came to answer
    check()


@FUZZ
@given(wire=st.one_of(random_frames(), st.binary(max_size=300)))
def test_random_frames_and_bytes(fuzzed, check, wire):
    frames, left = parse_server_frames(exchange(fuzzed, wire))
    assert left == b""
    code = close_code(frames)
    assert code is None or code == 1005 or sendable_close_code(code)  # (1005: an empty close echoed)
    assert all(opcode != CLOSE for _, opcode, _ in frames[:-1])  # nothing after the close
    check()


@FUZZ
@given(case=good_then_broken(), how=st.sampled_from(["reset", "close"]))
def test_a_client_that_leaves_at_once_after_a_broken_frame(fuzzed, check, case, how):
    exchange(fuzzed, case[0], how)
    check()


def test_every_broken_frame_is_fuzzed():
    names = set()

    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck))
    @given(case=good_then_broken())
    def sample(case):
        names.add(case[3])

    sample()
    assert names == set(BROKEN)
