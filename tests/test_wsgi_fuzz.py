"""Fuzzing the course's WSGI server: random and broken requests must get valid HTTP answers (or a clean close), must
not stop the server, and must not leak threads or sockets.

The default run sends 4,000 requests (a few seconds); FUZZ_EXAMPLES=20000 sends that many for a longer run.
"""

import os
import re
import socket
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewaylab import wsgi, wsgi_pool

TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "4000"))
PER_TEST = max(TOTAL // 4, 1)  # four strategies below
FUZZ = settings(max_examples=PER_TEST, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ([\t\x20-\x7e\x80-\xff]*)")
CHUNK_LINE = re.compile(rb"([0-9a-f]+)\r\n")


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    path = environ["PATH_INFO"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/gen":
        return (piece for piece in [b"chunk one ", b"", b"chunk two"])  # sent chunked (or close-delimited on 1.0)
    return [b"echo: " + body if path == "/echo" else b"ok"]


def open_connections(server):
    """Connections the server holds: the one the sequential server serves; for lesson 04's, idle ones in its
    selector, busy ones in a worker, served ones on the way back."""
    if isinstance(server, wsgi.WSGIServer):
        return int(server.serving is not None)
    if server.workers is None:
        return len(server.idle)
    with server.workers.lock:
        return len(server.idle) + len(server.workers.busy) + len(server.workers.done)


@pytest.fixture(scope="module")
def servers():
    """Lesson 03's sequential server, and lesson 04's with 1 and 4 threads; on the way out, check that nothing was left
    open or running."""
    process = psutil.Process()
    threads_before, fds_before = set(threading.enumerate()), process.num_fds()
    started = []
    for threads in (None, 1, 4):
        options = dict(timeout=2.0, max_body=4096)
        server = (wsgi.make_server(app, "127.0.0.1", 0, **options) if threads is None else
                  wsgi_pool.make_server(app, "127.0.0.1", 0, threads=threads, **options))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        started.append((server, thread))
    try:
        yield [server for server, _ in started]
        deadline = time.monotonic() + 2  # (the last connection's thread may still be closing it)
        while any(open_connections(server) for server, _ in started) and time.monotonic() < deadline:
            time.sleep(0.01)
        left_open = [open_connections(server) for server, _ in started]
    finally:
        for server, thread in started:
            server.shutdown()
            server.server_close()
            thread.join(5)
    assert left_open == [0, 0, 0], "connections still open after the run"
    assert set(threading.enumerate()) == threads_before
    assert process.num_fds() == fds_before
    assert not [c for c in process.net_connections() if c.laddr and c.laddr.port in
                {server.server_address[1] for server, _ in started}]


def exchange(server, data, timeout=5.0):
    """Send `data`, close our sending side (so a half-sent request ends now rather than at the server's timeout),
    and read until the server closes the connection."""
    with socket.create_connection(server.server_address, timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        received = b""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"the server did not close the connection; got {received[:300]!r}"
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                pytest.fail(f"connection reset (not a clean close) after {received[:300]!r}")
            if not piece:
                return received
            received += piece


def skip_chunked(data):
    """The bytes after a strictly valid chunked body."""
    while True:
        match = CHUNK_LINE.match(data)
        assert match, f"invalid chunk size line: {data[:100]!r}"
        size = int(match[1], 16)
        data = data[match.end():]
        if size == 0:
            assert data.startswith(b"\r\n"), f"no blank line after the last chunk: {data[:100]!r}"
            return data[2:]
        assert data[size:size + 2] == b"\r\n" and len(data) >= size + 2, "a chunk shorter than its size"
        data = data[size + 2:]


def check_responses(data):
    """Split what the server sent into responses, checking each one strictly; return their statuses."""
    statuses = []
    while data:
        head, blank, rest = data.partition(b"\r\n\r\n")
        assert blank, f"a response head without its blank line: {data[:300]!r}"
        lines = head.split(b"\r\n")
        status = STATUS_LINE.fullmatch(lines[0])
        assert status, f"invalid status line {lines[0][:100]!r}"
        headers = {}
        for line in lines[1:]:
            field = FIELD_LINE.fullmatch(line)
            assert field, f"invalid header line {line[:100]!r}"
            headers[field[1].lower()] = field[2]
        code = int(status[1])
        statuses.append(code)
        if code < 200 or code in (204, 304):
            data = rest
        elif b"transfer-encoding" in headers:
            assert headers[b"transfer-encoding"] == b"chunked" and b"content-length" not in headers
            data = skip_chunked(rest)
        elif b"content-length" in headers:
            length = int(headers[b"content-length"])
            assert len(rest) >= length, "a body shorter than its Content-Length"
            data = rest[length:]
        elif not rest or rest.startswith(b"HTTP/1.1 "):
            data = rest  # the answer to a HEAD request: no body
        else:
            assert headers.get(b"connection") == b"close", "a body without length that does not end the connection"
            data = b""  # the body runs to the end of the connection
    return statuses


def still_serving(server):
    received = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert check_responses(received) == [200] and received.endswith(b"\r\n\r\nok")


def fuzz_once(server, data):
    check_responses(exchange(server, data))
    still_serving(server)


# --- the strategies -------------------------------------------------------------------------------------------------

VALID = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /gen?a=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /gen HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /gen HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
]


@st.composite
def mutated(draw):
    """A valid request with a few random edits: flipped, inserted, deleted or duplicated bytes."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if edit == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20)) if draw(st.booleans()) else \
                draw(st.sampled_from([b"\r\n", b"\n", b" ", b":", b"\x00", b"\r", b"0" * 30, b"chunked"]))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 10))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 40))]
    return bytes(data)


header_names = st.one_of(st.text(min_size=0, max_size=30).map(lambda t: t.encode("utf-8")),
                         st.binary(max_size=30),
                         st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Host", b"Connection", b"Expect"]))
header_values = st.one_of(st.binary(max_size=60),
                          st.sampled_from([b"chunked", b"close", b"keep-alive", b"-1", b"99999999999999999999", b"3",
                                           b"100-continue", b"gzip, chunked", b" 5 ", b"0x10"]))


@st.composite
def random_headers(draw):
    """A request line that may be valid, with random header names and values (CR, LF, NUL, spaces included)."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"G T", b""]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.10", b"http/1.1"]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=8))
    lines = [method + b" /echo " + version] + [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(st.binary(max_size=40))


@st.composite
def truncated(draw):
    """A valid request cut short anywhere."""
    data = draw(st.sampled_from(VALID))
    return data[:draw(st.integers(0, len(data) - 1))]


# --- the tests ------------------------------------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=2000), which=st.integers(0, 1))
def test_random_bytes(servers, data, which):
    fuzz_once(servers[which], data)


@FUZZ
@given(data=mutated(), which=st.integers(0, 1))
def test_mutated_valid_requests(servers, data, which):
    fuzz_once(servers[which], data)


@FUZZ
@given(data=random_headers(), which=st.integers(0, 1))
def test_random_header_names_and_values(servers, data, which):
    fuzz_once(servers[which], data)


@FUZZ
@given(data=truncated(), which=st.integers(0, 1))
def test_truncated_requests(servers, data, which):
    fuzz_once(servers[which], data)


def test_the_checker_rejects_invalid_responses():
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"
    assert check_responses(two) == [200, 204]
    assert check_responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n") == [200]
    for bad in (b"HTTP/1.1 200\r\n\r\n", b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", b"HTTP/1.1 200 OK\r\nX: y\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody without length"):
        with pytest.raises(AssertionError):
            check_responses(bad)
