"""Fuzzing the course's ASGI server (gatewaylab.asgi): random, broken, pipelined and vanishing requests, and apps that
fail, must get valid HTTP/1.1 answers (or a clean close), must not stop the server, and must leave no task, socket or
thread behind; a client that reads nothing must not make the server buffer without bound.

The default run tries 2,000 examples, one connection each (a pipeline holds up to six requests), each followed by a
good request that must still be answered; FUZZ_EXAMPLES=10000 tries that many. The WSGI server's fuzz test
(test_wsgi_fuzz) lends its strategies and its strict response checker; well-formed requests are read with h11 (wire).
"""

import asyncio
import logging
import os
import socket
import struct
import threading
import time

import h11
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewaylab.asgi import ASGIServer
from gatewaylab.wire import Connection
# The WSGI server's fuzz strategies (requests against the paths /, /echo and /gen, which the app below serves alike),
# its strict checker of what a server sent, and its exchange: they need only server.server_address.
from test_wsgi_fuzz import VALID, check_responses, exchange, mutated, random_headers, still_serving, truncated

TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
PER_TEST = max(TOTAL // 8, 1)  # eight strategies below
FUZZ = settings(max_examples=PER_TEST, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
MAX_BODY = 4096  # the server's limit on a request body: a bigger one gets 413
BIG = 2**20  # bytes of /big's body, for clients that leave without reading it


# --- the app ---------------------------------------------------------------------------------------------------

SURPRISES = []  # what the app saw that the spec does not allow (receive() raising, a malformed event...)


async def read_body(receive):
    """The whole request body; ConnectionError if the client left (as an app would raise)."""
    body, more = b"", True
    while more:
        try:
            message = await receive()
        except Exception as error:  # www.rst: a client that left is an http.disconnect event, not an exception
            SURPRISES.append(f"receive() raised {error!r}")
            raise
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client left")
        if not (message["type"] == "http.request" and isinstance(message["body"], bytes)
                and isinstance(message["more_body"], bool)):
            SURPRISES.append(f"receive() gave {message!r}")
        body += message["body"]
        more = message["more_body"]
    return body


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def body(data, more=False):
    return {"type": "http.response.body", "body": data, "more_body": more}


async def app(scope, receive, send):
    """One path per behaviour: well-behaved answers, and every way of failing the fuzz should survive."""
    if scope["type"] != "http":
        raise RuntimeError("only http")  # (lifespan "auto": served without lifespan)
    path = scope["path"]
    if path == "/raise-before":
        raise KeyError("before http.response.start")
    if path == "/skip":  # answers without reading the body: the server skips it
        await send(START)
        await send(body(b"skipped"))
        return
    data = await read_body(receive) if path != "/late-read" else b""
    if path == "/echo":
        await send(START)
        await send(body(b"echo: " + data))  # one event: Content-Length
    elif path == "/gen":
        await send(START)
        for piece in (b"chunk one ", b"", b"chunk two"):  # chunked (close-delimited on HTTP/1.0)
            await send(body(piece, more=True))
        await send(body(b""))
    elif path == "/big":
        await send(START)
        for _ in range(BIG // 65536):
            await send(body(b"x" * 65536, more=True))
        await send(body(b""))
    elif path == "/wait":  # a long poll: waits for http.disconnect
        while (await receive())["type"] != "http.disconnect":
            SURPRISES.append("a second http.request after the whole body")
    elif path == "/late-read":  # reads the body after its head has gone out
        await send(START)
        await send(body(b"late: ", more=True))
        await send(body(await read_body(receive)))
    elif path == "/raise-after-start":
        await send(START)
        raise KeyError("after http.response.start")
    elif path == "/raise-mid-body":
        await send(START)
        await send(body(b"partial", more=True))
        raise KeyError("in the middle of the body")
    elif path == "/return-early":
        await send(START)
    elif path == "/out-of-order":
        await send(body(b"body before start"))
    elif path == "/twice":
        await send(START)
        await send(body(b"once"))
        await send(body(b"twice"))
    elif path == "/recover":  # an app that catches its own mistake, then answers properly
        try:
            await send(body(b"body before start"))
        except RuntimeError:
            pass
        await send(START)
        await send(body(b"recovered"))
    else:
        await send(START)
        await send(body(b"ok"))


# --- the server, and what it must not leave behind -------------------------------------------------------------

class Recorder(logging.Handler):
    """Keeps the server's and asyncio's log records: a server bug (caught by serve()'s last resort) or an error
    asyncio logs (a task's exception never retrieved, say) fails the test."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def bugs(self):
        return [record.getMessage() for record in self.records if record.levelno >= logging.ERROR and (
            record.name == "asyncio" or "error while serving" in record.getMessage())]


def loop_tasks(server):
    """How many tasks the server's loop runs (besides the one that counts)."""
    async def count():
        return len(asyncio.all_tasks()) - 1
    return asyncio.run_coroutine_threadsafe(count(), server.loop).result(5)


def transport_buffers(server):
    """Bytes waiting in the write buffer of each of the server's connections' transports."""
    async def sizes():
        return [connection.writer.transport.get_write_buffer_size() for connection in server.connections]
    return asyncio.run_coroutine_threadsafe(sizes(), server.loop).result(5)


class Fuzzed:
    """The server under test, with what it held when it was idle: every example must leave it so."""

    def __init__(self, **options):
        self.server = ASGIServer(app, "127.0.0.1", 0, **options).start()
        self.server_address = self.server.server_address
        self.process = psutil.Process()
        self.idle_tasks, self.idle_fds = loop_tasks(self.server), self.process.num_fds()

    def settled(self):
        return (not self.server.connections and loop_tasks(self.server) == self.idle_tasks
                and self.process.num_fds() == self.idle_fds)

    def settle(self, timeout=3.0):
        """Wait until the server holds no connection, task or socket more than when idle; fail after `timeout`."""
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
    loggers = [logging.getLogger("gatewaylab.asgi"), logging.getLogger("asyncio")]
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
    fuzzed = Fuzzed(timeout=1.0, max_body=MAX_BODY)
    try:
        yield fuzzed
    finally:
        fuzzed.server.shutdown()
    assert set(threading.enumerate()) == threads_before
    assert process.num_fds() == fds_before
    assert not [c for c in process.net_connections() if c.laddr and c.laddr.port == fuzzed.server_address[1]]


@pytest.fixture
def check(fuzzed, recorder):
    """Run one example, then: nothing left behind, no server bug logged, nothing the spec forbids seen by the app,
    and a good request still answered."""
    def clear():
        SURPRISES.clear()
        del recorder.records[:]

    def after():  # (a fixture runs once for all of a test's examples: this, after each one)
        try:
            fuzzed.settle()
            assert recorder.bugs() == [] and SURPRISES == []
            still_serving(fuzzed)
        finally:
            clear()
    clear()
    return after


def fuzz_once(fuzzed, check, data):
    check_responses(exchange(fuzzed, data))
    check()


# --- well-formed requests, and what each should get --------------------------------------------------------------

OK = {"/": b"ok", "/echo": None, "/gen": b"chunk one chunk two", "/skip": b"skipped", "/recover": b"recovered",
      "/late-read": None}
FAILING = ["/raise-before", "/raise-after-start", "/return-early", "/out-of-order"]  # 500, then a close
CUT = ["/raise-mid-body", "/twice"]  # the head has gone out: the response stands or is cut short, then a close
TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1,
                max_size=12)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)


def encode_chunked(draw, data):
    """`data` as a valid chunked body, in random pieces, sizes in either case, with extensions and trailers."""
    out, rest = b"", data
    while rest:
        size = draw(st.integers(1, len(rest)))
        digits = draw(st.sampled_from(["%x", "%X", "%04x"])) % size
        out += digits.encode() + draw(st.sampled_from([b"", b";name=value", b';a="b c"'])) + b"\r\n"
        out += rest[:size] + b"\r\n"
        rest = rest[size:]
    return out + b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n", b"A: b\r\nC:\r\n"])) + b"\r\n"


@st.composite
def good_request(draw, paths=tuple(OK) + tuple(FAILING) + tuple(CUT)):
    """A valid request: its bytes, and what the server must answer (path, method, body, whether it keeps the
    connection open)."""
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]))
    path = draw(st.sampled_from(paths))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    data = draw(st.binary(max_size=64)) if draw(st.booleans()) else b""
    framing = draw(st.sampled_from(["length", "chunked"] if version == "HTTP/1.1" else ["length"]))
    if not data and draw(st.booleans()):
        framing = None
    headers = [(name, value) for name, value in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=3))
               if name.lower() not in ("host", "content-length", "transfer-encoding", "connection", "expect")]
    if version == "HTTP/1.1" or draw(st.booleans()):
        headers.append(("Host", "fuzz"))
    connection = draw(st.sampled_from([None, "close", "keep-alive", "Keep-Alive, x"]))
    if connection:
        headers.append(("Connection", connection))
    expect = version == "HTTP/1.1" and framing is not None and draw(st.booleans())
    if expect:
        headers.append(("Expect", "100-continue"))
    if framing == "length":
        headers.append(("Content-Length", str(len(data))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    draw(st.randoms()).shuffle(headers)
    query = draw(st.sampled_from(["", "?", "?a=1&b=%20"]))
    raw = "".join([f"{method} {path}{query} {version}\r\n"] + [f"{name}: {value}\r\n" for name, value in headers])
    raw = raw.encode("latin-1") + b"\r\n" + (encode_chunked(draw, data) if framing == "chunked" else data)

    options = {option.strip().lower() for option in (connection or "").split(",")}
    keep = "close" not in options and (version == "HTTP/1.1" or "keep-alive" in options)
    if path in ("/gen", "/late-read") and version == "HTTP/1.0" and method != "HEAD":
        keep = False  # no chunks in HTTP/1.0: the body ends with the connection
    if path in ("/skip", "/late-read") and expect and (data or framing == "chunked"):
        keep = False  # the final head went out before any 100 Continue: the body may not come, so it closes
    if path in FAILING or path in CUT:
        keep = False
    if method == "HEAD":
        answer = b""  # nothing after the head, not even a 500's text (RFC 9110 9.3.2)
    elif path in FAILING:
        answer = None
    elif path == "/echo":
        answer = b"echo: " + data
    elif path == "/late-read":
        answer = b"late: " + data
    else:
        answer = OK.get(path, {"/raise-mid-body": b"partial", "/twice": b"once"}.get(path))
    return raw, dict(method=method, path=path, version=version, body=answer, keep=keep)


def read_answers(connection, expected):
    """Read, strictly (h11), the answers the requests must get, in order, until one that ends the connection."""
    for number, want in enumerate(expected):
        what = f"request {number} ({want['method']} {want['path']} {want['version']})"
        if want["path"] == "/raise-mid-body" and want["method"] != "HEAD" and want["version"] == "HTTP/1.1":
            with pytest.raises(h11.RemoteProtocolError, match="without sending complete message body"):
                connection.read_response(want["method"])  # the last chunk never comes: the client sees it cut
            return
        reply = connection.read_response(want["method"])
        status = 500 if want["path"] in FAILING else 200
        assert reply.status == status, what
        if want["body"] is not None:  # (None: a 500's text, which the server words as it likes)
            assert reply.body == want["body"], what
        assert reply.headers["date"].endswith(" GMT"), what
        if not want["keep"]:
            # (The head of a response whose app failed after it went out could not know: it may not say close.)
            assert reply.keep_alive is False or want["path"] in CUT, what
            break
        assert reply.keep_alive, what
    assert connection.extra_bytes(3.0) == b"", "bytes after the last answer"
    assert connection.closes_within(3.0), "the server did not close the connection after the last answer"


# --- hostile requests --------------------------------------------------------------------------------------------

@st.composite
def wrong_lengths(draw):
    """A request whose Content-Length is not its body's length (or is no length at all), then maybe another."""
    data = draw(st.binary(max_size=40))
    declared = draw(st.one_of(st.integers(0, 60).map(str), st.just(str(len(data))), st.just(str(MAX_BODY + 1)),
                              st.sampled_from(["-1", "+5", " 5", "5 ", "0x10", "1_0", "5, 5", "", "١٢",
                                               "99999999999999999999"])))
    path = draw(st.sampled_from(["/echo", "/", "/skip"]))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n".encode()
    if draw(st.booleans()):
        head += b"Content-Length: " + draw(st.sampled_from([declared.encode(), b"3", b"0"])) + b"\r\n"
    return head + b"\r\n" + data + draw(st.sampled_from([b"", VALID[0], VALID[3], b"GET / HTTP/1.1\r\n"]))


CHUNK_DIGITS = ["%X", "%08x", "0x%x", "-%x", " %x", "%x ", "+%x", "%x\t", "0000000000000000%x", "%xg", "", "%d_0"]
CHUNK_EXTENSIONS = [b";a=b", b";", b"; a", b";a=\"\r\n\"", b";\x00", b";\x7f", b";\n"]
CHUNK_ENDINGS = [b"\n", b"\r", b"", b"\r\r\n", b" \r\n", b"\n\r"]
VALID_LAST = [b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"00\r\n\r\n", b"0;ext\r\n\r\n"]
BROKEN_LAST = [b"0\r\n", b"", b"0\r\nbad trailer\r\n\r\n", b"0\n\n", b"0\r\nX-T: 1\r\n", b"0\r\n: x\r\n\r\n",
               b"0\r\nX-T: a\rb\r\n\r\n", b"ffffffffffffffff\r\n", b"10000000000000000\r\n", b"%x\r\n" % (MAX_BODY + 1)]


@st.composite
def broken_chunked(draw):
    """A chunked body altered in one or more ways: a size that is not the data's, a size line, an extension or an
    ending off the grammar, no CRLF after the data, a missing or broken last chunk or trailer, a size past the
    limit; or left unaltered, and then its answer is known: (the bytes, the answer's statuses, its first body)."""
    path = draw(st.sampled_from(["/echo", "/echo", "/", "/skip"]))
    body, wire, altered = b"", b"", False
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(min_size=1, max_size=40 if draw(st.integers(0, 9)) else 2 * MAX_BODY))
        size, digits, extension, ending, after = len(data), "%x", b"", b"\r\n", b"\r\n"
        if draw(st.integers(0, 3)) == 0:
            size = max(size + draw(st.sampled_from([-2, -1, 1, 3])), 0)
        if draw(st.integers(0, 4)) == 0:
            digits = draw(st.sampled_from(CHUNK_DIGITS))
        if draw(st.integers(0, 4)) == 0:
            extension = draw(st.sampled_from(CHUNK_EXTENSIONS))
        if draw(st.integers(0, 5)) == 0:
            ending = draw(st.sampled_from(CHUNK_ENDINGS))
        if draw(st.integers(0, 5)) == 0:
            after = draw(st.sampled_from([b"\n", b"", b"\r", b"xx\r\n", b"\r\n\r\n"]))
        altered |= (size, digits, extension, ending, after) != (len(data), "%x", b"", b"\r\n", b"\r\n")
        wire += (digits % size if "%" in digits else digits).encode() + extension + ending + data + after
        body += data
    last = draw(st.sampled_from(VALID_LAST * 3 + BROKEN_LAST))
    altered |= last in BROKEN_LAST
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    tail = draw(st.sampled_from([b"", VALID[0], VALID[4]]))
    if altered:
        expected = None
    elif path == "/skip":
        # Answered before its body is read; a body past the limit is then refused with a close.
        expected = [200] + [200] * (bool(tail) and len(body) <= MAX_BODY), b"skipped"
    elif len(body) > MAX_BODY:
        expected = [413], None
    else:
        expected = [200] + [200] * bool(tail), {"/echo": b"echo: " + body, "/": b"ok"}[path]
    return head + wire + last + tail, expected


@st.composite
def pipelines(draw):
    """Up to six valid requests sent at once, to paths that answer, fail before the head, or fail after it."""
    return draw(st.lists(good_request(), min_size=1, max_size=6))


@st.composite
def vanishing(draw):
    """Valid requests (to any path, a long poll and a big body included) of which the client sends a part, maybe
    reads a little, and leaves: with a close, a reset, or a half-close first."""
    requests = draw(st.lists(good_request(tuple(OK) + tuple(FAILING) + tuple(CUT) + ("/wait", "/big")),
                             min_size=1, max_size=3))
    data = b"".join(raw for raw, _ in requests)
    cut = draw(st.integers(0, len(data)))
    return data[:cut], draw(st.sampled_from(["close", "reset", "half-close"])), draw(st.integers(0, 2))


def leave(sock, how):
    if how == "reset":  # SO_LINGER with a zero timeout: close() sends a reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- the tests ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", [st.binary(max_size=2000), mutated(), random_headers(), truncated(),
                                      wrong_lengths()],
                         ids=["random bytes", "mutated", "random headers", "truncated", "wrong lengths"])
@FUZZ
@given(data=st.data())
def test_any_request_gets_a_valid_answer_or_a_clean_close(fuzzed, check, strategy, data):
    fuzz_once(fuzzed, check, data.draw(strategy))


@FUZZ
@given(case=broken_chunked())
def test_broken_chunked_bodies(fuzzed, check, case):
    data, expected = case
    received = exchange(fuzzed, data)
    statuses = check_responses(received)
    if expected is not None:
        want_statuses, first_body = expected
        assert statuses == want_statuses
        if first_body is not None:
            assert received.split(b"\r\n\r\n", 1)[1].startswith(first_body)
    check()


@FUZZ
@given(requests=pipelines())
def test_pipelined_valid_requests_and_failing_apps(fuzzed, check, requests):
    connection = Connection(fuzzed.server_address, time.monotonic() + 10)
    try:
        connection.send(b"".join(raw for raw, _ in requests))
        connection.sock.shutdown(socket.SHUT_WR)  # no more requests: the server closes after the last answer
        read_answers(connection, [want for _, want in requests])
    finally:
        connection.close()
    check()


@FUZZ
@given(case=vanishing())
def test_clients_that_vanish_mid_request(fuzzed, check, case):
    data, how, reads = case
    sock = socket.create_connection(fuzzed.server_address, timeout=5)
    try:
        sock.sendall(data)
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.05)
        for _ in range(reads):  # (a read may find nothing yet: the server has not answered, or waits for more)
            try:
                if not sock.recv(1000):
                    break
            except (TimeoutError, ConnectionResetError):
                break
    finally:
        leave(sock, how)
    check()


def test_the_fuzz_reaches_every_path_and_outcome():
    """The strategies do make what they are for: valid and broken chunked bodies, each path, both versions."""
    paths, versions, broken = set(), set(), set()

    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck))
    @given(requests=pipelines(), chunked=broken_chunked())
    def sample(requests, chunked):
        paths.update(want["path"] for _, want in requests)
        versions.update(want["version"] for _, want in requests)
        broken.add(chunked[1] is None)

    sample()
    assert paths == set(OK) | set(FAILING) | set(CUT) and versions == {"HTTP/1.1", "HTTP/1.0"}
    assert broken == {True, False}


# --- a client that reads nothing -------------------------------------------------------------------------------

def test_a_client_that_reads_nothing_gets_no_unbounded_buffer_and_is_dropped_after_the_timeout(recorder):
    """An app streams 64 MiB to a client that reads nothing: send() waits for the transport to drain, so the
    server's buffer stays within asyncio's high-water mark plus one piece, the app is held up, and after the
    server's timeout the client counts as gone (send() raises OSError) and its connection is closed, though the
    client has neither read nor closed."""
    piece, events = 2**20, []

    async def flood(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("only http")
        await send(START)
        try:
            for _ in range(64):
                await send(body(b"x" * piece, more=True))
                events.append(piece)
        except OSError as error:
            events.append(error)

    del recorder.records[:]
    server = Fuzzed(timeout=1.0, lifespan="off").server
    sock = socket.create_connection(server.server_address, timeout=5)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        server.app = flood
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        largest, deadline = 0, time.monotonic() + 10
        while not (events and isinstance(events[-1], OSError)):
            assert time.monotonic() < deadline, "send() never gave up on the client"
            largest = max([largest] + transport_buffers(server))
            time.sleep(0.01)
        sent = sum(event for event in events if isinstance(event, int))
        assert sent < 16 * piece  # not 64 MiB: what the kernel's buffers hold, at most
        assert largest <= 65536 + piece + 65536  # the high-water mark, the piece in hand and its chunk framing
        deadline = time.monotonic() + 3
        while server.connections:  # the client still holds its socket open, unread
            assert time.monotonic() < deadline, "the connection of a client that reads nothing was never closed"
            time.sleep(0.01)
    finally:
        sock.close()
        server.shutdown()
    assert recorder.bugs() == []
