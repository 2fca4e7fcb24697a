"""gatewaylab.load: every request recorded, responses framed correctly, failures named. (Speed: benchmarks/.)"""

import asyncio
import socket
import socketserver
import threading

import pytest

from gatewaylab.load import LoadResult, RequestRecord, format_seconds, load, run_load

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;note=ext\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 200_000
SHORT_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"


class CannedServer(socketserver.ThreadingTCPServer):
    """A server that answers each request by its path: `routes[path]` is the raw bytes to send, or one of
    "drop" (close without answering), "hang" (never answer) or ("then close", bytes) (answer, then close even though
    the response would allow keep-alive). It counts connections, to tell keep-alive from reconnecting."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread

    def __init__(self, routes):
        self.routes, self.connections, self.stopping = routes, 0, threading.Event()
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02})
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.stopping.set()  # releases "hang" handlers
        self.shutdown()
        self.server_close()
        self.thread.join()


class _CannedHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.connections += 1
        self.request.settimeout(5)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = self.request.recv(65536)
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1].decode()
            action = self.server.routes[path]
            if action == "drop":
                return
            if action == "hang":
                self.server.stopping.wait(10)
                return
            if isinstance(action, tuple):
                self.request.sendall(action[1])
                return
            self.request.sendall(action)
            framed = b"Content-Length" in action or b"chunked" in action
            if not framed or b"connection: close" in head.lower():
                return


@pytest.fixture
def server():
    servers = []

    def start(routes):
        servers.append(CannedServer(routes))
        return servers[-1]
    yield start
    for s in servers:
        s.stop()


def refused_url():
    """A URL on a port where nothing listens: bound (so nobody else takes it during the test) but not listening."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    return probe, f"http://127.0.0.1:{probe.getsockname()[1]}/"


def test_every_request_is_recorded_and_clients_send_their_share_in_turn(server):
    s = server({"/": OK})
    result = load(s.url + "/", clients=5, requests=12)
    assert [r.index for r in result.records] == list(range(12))
    assert [r.client for r in result.records] == [i % 5 for i in range(12)]
    assert all(r.status == 200 and r.error is None and 0 <= r.start <= r.end <= result.wall for r in result.records)
    for client in range(5):  # one after another: a client's next request starts after its previous one ended
        mine = [r for r in result.records if r.client == client]
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:]))
    assert (result.ok, result.errors, result.clients, len(result.latencies)) == (12, 0, 5, 12)
    assert result.throughput == pytest.approx(12 / result.wall)
    assert result.summary().startswith("12 requests, 5 clients: all 12 OK in ")
    assert s.connections == 12  # without keep-alive, one connection per request


def test_requests_default_to_one_per_client_and_url_path_is_used(server):
    s = server({"/a?x=1": OK})
    result = load(s.url + "/a?x=1", clients=3)
    assert len(result.records) == 3 and result.ok == 3


def test_non_2xx_statuses_are_recorded_but_not_ok(server):
    s = server({"/missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "/": OK})
    result = load(s.url, clients=4, path="/missing")
    assert [r.status for r in result.records] == [404] * 4
    assert (result.ok, result.errors, result.throughput) == (0, 0, 0.0)
    assert "0 OK, 4 HTTP 404 in" in result.summary()


def test_refused_connections_are_recorded_as_errors():
    probe, url = refused_url()
    with probe:
        result = load(url, clients=3, requests=6)
    assert [r.error for r in result.records] == ["connection refused"] * 6
    assert all(r.status is None for r in result.records)
    assert (result.ok, result.errors, result.latencies) == (0, 6, [])
    assert "0 OK, 6 connection refused" in result.summary() and result.summary().endswith("no responses")
    with pytest.raises(ValueError, match="no request got a response"):
        result.percentile(50)


def test_a_server_that_closes_early_is_an_error_not_a_hang(server):
    s = server({"/drop": "drop", "/short": ("then close", SHORT_BODY)})
    dropped = load(s.url, clients=2, path="/drop", timeout=5)
    assert [r.error for r in dropped.records] == ["connection closed without a response"] * 2
    short = load(s.url, clients=2, path="/short", timeout=5)
    assert [r.error for r in short.records] == ["connection closed mid-response"] * 2


def test_a_request_that_takes_too_long_times_out(server):
    s = server({"/hang": "hang"})
    result = load(s.url + "/hang", clients=2, timeout=0.3)
    assert [r.error for r in result.records] == ["timed out after 0.3 s"] * 2
    assert all(0.29 <= r.end - r.start < 2 for r in result.records)


def test_a_malformed_response_is_named(server):
    s = server({"/": ("then close", b"SPDY/9 OK\r\n\r\n")})
    result = load(s.url, clients=1)
    assert result.records[0].error.startswith("malformed response: status line")


def test_chunked_body_is_read_exactly_so_the_connection_can_be_reused(server):
    s = server({"/": CHUNKED})
    result = load(s.url, clients=2, requests=6, keep_alive=True)
    assert result.ok == 6, result
    assert s.connections == 2  # had the body been misread, the next response on the connection would have failed


def test_content_length_body_with_keep_alive_uses_one_connection_per_client(server):
    s = server({"/": OK})
    result = load(s.url, clients=3, requests=9, keep_alive=True)
    assert result.ok == 9 and s.connections == 3


def test_head_response_has_no_body_whatever_its_content_length(server):
    s = server({"/": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"})
    result = load(s.url, clients=1, requests=3, method="HEAD", keep_alive=True, timeout=2)
    assert result.ok == 3 and s.connections == 1


def test_close_delimited_body_is_read_to_the_end(server):
    s = server({"/": UNTIL_CLOSE})
    result = load(s.url, clients=2, requests=4, keep_alive=True)
    assert result.ok == 4 and s.connections == 4  # a body that ends at close cannot share its connection


def test_a_kept_alive_connection_closed_by_the_server_is_reopened_not_failed(server):
    s = server({"/": ("then close", OK)})  # says nothing about closing, then closes: a stale keep-alive connection
    result = load(s.url, clients=1, requests=3, keep_alive=True)
    assert result.ok == 3 and s.connections == 3


def test_progress_is_reported_from_zero_to_total(server):
    s = server({"/": OK})
    calls = []
    result = load(s.url, clients=10, requests=50, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 50) and calls[-1] == (50, 50)
    assert all(total == 50 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert result.ok == 50


def test_an_error_in_the_progress_callback_reaches_the_caller(server):
    s = server({"/": OK})

    def broken(done, total):
        raise RuntimeError("widget gone")
    with pytest.raises(RuntimeError, match="widget gone"):
        load(s.url, clients=2, progress=broken)


def test_load_works_inside_a_running_event_loop_and_run_load_can_be_awaited(server):
    s = server({"/": OK})

    async def notebook_cell():
        asyncio.get_running_loop()  # as in a kernel: a loop is running here
        blocking = load(s.url, clients=4, label="from a coroutine")
        awaited = await run_load(s.url, clients=4)
        return blocking, awaited

    blocking, awaited = asyncio.run(notebook_cell())
    assert blocking.ok == 4 and awaited.ok == 4
    assert blocking.label == "from a coroutine" and blocking.summary().startswith("from a coroutine: 4 requests")


def test_no_thread_is_left_behind(server):
    s = server({"/": OK})
    before = threading.active_count()
    load(s.url, clients=5)
    load(s.url.replace("127.0.0.1", "localhost"), clients=5)  # a name to look up uses the loop's executor
    assert threading.active_count() == before


@pytest.mark.parametrize("kwargs, error, message", [
    ({"url": "https://127.0.0.1/"}, ValueError, "plain http"),
    ({"url": b"http://127.0.0.1/"}, TypeError, "url must be a string"),
    ({"url": "http://127.0.0.1:99999/"}, ValueError, "port"),
    ({"clients": 0}, ValueError, "clients must be a whole number"),
    ({"clients": 2.5}, ValueError, "clients must be a whole number"),
    ({"requests": -1}, ValueError, "requests must be a whole number"),
    ({"timeout": 0}, ValueError, "timeout must be a positive number"),
    ({"method": "GE T"}, ValueError, "method must be an HTTP method"),
    ({"path": "no-slash"}, ValueError, "path must start with '/'"),
    ({"clients": 10_000_000}, ValueError, "open files"),
    ({"colour": "red"}, TypeError, "colour"),
])
def test_bad_arguments_get_a_clear_error(kwargs, error, message):
    kwargs = {"url": "http://127.0.0.1:9/", **kwargs}
    with pytest.raises(error, match=message):
        load(**kwargs)


def records(latencies, statuses=None, errors=None):
    statuses = statuses or [200] * len(latencies)
    errors = errors or [None] * len(latencies)
    return [RequestRecord(i, i, 0.0, lat, status, err)
            for i, (lat, status, err) in enumerate(zip(latencies, statuses, errors))]


def test_percentiles_interpolate_between_neighbours():
    result = LoadResult(None, "http://x/", 5, records([5, 1, 4, 2, 3]), wall=5.0)
    assert [result.percentile(p) for p in (0, 50, 95, 100)] == pytest.approx([1, 3, 4.8, 5])
    with pytest.raises(ValueError, match="between 0 and 100"):
        result.percentile(101)


def test_summary_reads_as_one_line():
    result = LoadResult("demo", "http://x/", 5, records([1, 2, 3, 4, 5]), wall=5.0)
    assert repr(result) == str(result) == result.summary() == (
        "demo: 5 requests, 5 clients: all 5 OK in 5.00 s (1.0 req/s); latency p50 3.00 s, p95 4.80 s, max 5.00 s")
    mixed = LoadResult(None, "http://x/", 1,
                       records([0.5, 0.02, 0.001], [200, 500, None], [None, None, "connection reset"]), wall=0.5)
    assert mixed.summary() == ("3 requests, 1 client: 1 OK, 1 HTTP 500, 1 connection reset in 0.50 s (2.0 req/s); "
                               "latency p50 0.26 s, p95 0.48 s, max 0.50 s")
    assert mixed.latencies == [0.5, 0.02]  # the failed request has no latency to count


def test_html_is_a_small_escaped_table():
    result = LoadResult("<b>bold</b>", "http://x/", 2, records([1, 2], [200, None], [None, "connection refused"]), 2.0)
    page = result._repr_html_()
    assert page.startswith("<table>") and "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    assert "connection refused" in page and "latency p95" in page


def test_seconds_are_formatted_for_reading():
    assert [format_seconds(s) for s in (0.0123, 0.00045, 0.5, 10.034, 250.0)] == \
        ["12.3 ms", "0.45 ms", "0.50 s", "10.03 s", "250 s"]
