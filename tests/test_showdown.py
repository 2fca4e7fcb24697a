"""gatewaylab.showdown: the apps answer what the workloads ask, the contenders start and stop cleanly (gunicorn too),
a showdown measures the ordering the lesson claims, and memory, the CPU stall and the notes app measure what they say."""

import asyncio
import io
import os
import threading
import time

import pytest

from gatewaylab import measurements, servers, showdown
from gatewaylab.showdown import (CONTENDERS, Contender, asgi_app, cpu_stall, cpu_stall_plot, levels_up_to, measure,
                                 measure_notes, memory_per_connection, memory_plot, record_showdown, showdown_panel,
                                 showdown_plot, wsgi_app)

pytestmark = pytest.mark.xdist_group("l08-checks")  # timing measurements: not beside other timing tests


@pytest.fixture(autouse=True)
def nothing_left_running():
    before = set(threading.enumerate())
    yield
    assert servers.running() == {}
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(threading.enumerate()) - before, threading.enumerate()


def call_wsgi(path, query=""):
    status = []
    body = b"".join(wsgi_app({"PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()},
                             lambda s, h: status.append(s)))
    return status[0], body


def call_asgi(path, query=b""):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    asyncio.run(asgi_app({"type": "http", "path": path, "query_string": query}, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize("path, query, status", [
    ("/hello", "", "200 OK"), ("/io", "delay=0.01", "200 OK"), ("/cpu", "ms=1", "200 OK"),
    ("/mixed", "delay=0.01&ms=1", "200 OK"), ("/nope", "", "404 Not Found"), ("/io", "delay=x", "404 Not Found"),
    ("/io", "delay=31", "404 Not Found"), ("/cpu", "ms=-1", "404 Not Found"), ("/cpu", "ms=5000", "404 Not Found"),
])
def test_both_apps_answer_the_workloads_and_refuse_the_rest(path, query, status):
    assert call_wsgi(path, query)[0] == status
    assert call_asgi(path, query.encode())[0] == int(status.split()[0])


def test_the_io_workload_waits_and_the_cpu_workload_computes():
    started = time.perf_counter()
    call_wsgi("/io", "delay=0.1")
    assert time.perf_counter() - started >= 0.1
    started = time.thread_time()
    call_asgi("/cpu", b"ms=30")
    assert time.thread_time() - started >= 0.03  # on the caller's own thread: the loop's, under an ASGI server


def test_levels_and_contenders_are_checked():
    assert levels_up_to(1) == [1] and levels_up_to(40) == [1, 8, 40] and levels_up_to(1000) == [1, 200, 1000]
    for bad in (0, 1001, True, 2.0):
        with pytest.raises(ValueError):
            levels_up_to(bad)
    with pytest.raises(ValueError):
        Contender("x", "cgi", lambda app: "http://127.0.0.1:1")
    with pytest.raises(TypeError):
        Contender("x", "wsgi", "not a function")
    with pytest.raises(ValueError, match="workload"):
        measure(CONTENDERS[:1], "nap")


def test_a_showdown_puts_the_sequential_server_far_behind_and_draws_it():
    chosen = [c for c in CONTENDERS if c.name in ("sequential WSGI (course)", "uvicorn")]
    seen, progress = [], []
    rows = measure(chosen, "io", (1, 10), each=seen.append, progress=lambda d, t: progress.append((d, t)))
    assert [(r["server"], r["clients"]) for r in rows] == [
        ("sequential WSGI (course)", 1), ("sequential WSGI (course)", 10), ("uvicorn", 1), ("uvicorn", 10)]
    assert all(r["ok"] == r["clients"] and r["errors"] == 0 for r in rows)
    sequential, asgi = rows[1], rows[3]
    assert sequential["rps"] * 2 < asgi["rps"]  # 10 x 50 ms one by one, against all at once
    assert sequential["p50_s"] <= sequential["p99_s"] and sequential["p99_s"] >= 0.4
    assert len(seen) == 2 and len(seen[0]) == 2 and progress[-1] == (22, 22)
    plot = showdown_plot(rows, "io")
    assert "uvicorn" in plot.summary and "10 clients" in plot.summary and "requests per second" in plot.alt
    assert plot.png().startswith(b"\x89PNG")


def test_gunicorn_gthread_serves_and_stops_with_its_process():
    gunicorn = next(c for c in CONTENDERS if c.name.startswith("gunicorn"))
    server = gunicorn.start(wsgi_app)
    try:
        from gatewaylab.load import load
        assert load(server.url + "/io?delay=0.05", 10).ok == 10
    finally:
        server.stop()
    assert server.process.poll() is not None  # the whole gunicorn (arbiter and worker) has gone


def test_your_own_server_joins_whether_it_returns_a_server_or_a_url():
    mine = Contender("mine", "wsgi", lambda app: servers.serve_wsgi(app, name="l08-test-mine",
                                                                   server="wsgiref-threaded"))
    rows = measure([mine], "hello", (1, 5))
    assert [r["ok"] for r in rows] == [1, 5] and "l08-test-mine" not in servers.running()  # stopped for you
    left_running = servers.serve_asgi(asgi_app, name="l08-test-url")
    try:
        rows = measure([Contender("by url", "asgi", lambda app: left_running.url + "/")], "hello", (2,))
        assert rows[0]["ok"] == 2 and left_running.running  # a bare URL is not stopped
    finally:
        left_running.stop()
    with pytest.raises(TypeError, match="URL"):
        measure([Contender("broken", "wsgi", lambda app: 8000)], "hello", (1,))


def test_the_panel_runs_as_a_call_and_records_the_showdown():
    panel = showdown_panel(["sequential WSGI (course)", "ASGI (course)"], "hello", clients=5)
    result = panel.run(prediction=3)
    assert {r["server"] for r in result["rows"]} == {"sequential WSGI (course)", "ASGI (course)"}
    assert "<img" in panel.output.value and panel.last_plot is not None
    kept = measurements.load()["08.showdown"]
    assert kept["figures"]["workload"] == "hello" and len(kept["figures"]["rows"]) == 4
    assert set(kept["figures"]["rows"][0]) == {"server", "clients", "rps", "p50_s", "p99_s"}
    with pytest.raises(ValueError, match="no such server"):
        showdown_panel(["nginx"])


def test_record_showdown_summarises_the_most_clients():
    rows = [{"server": "a", "clients": 1, "rps": 5.0, "p50_s": 0.1, "p99_s": 0.1},
            {"server": "a", "clients": 9, "rps": 50.0, "p50_s": 0.1, "p99_s": 0.2},
            {"server": "b", "clients": 9, "rps": 500.0, "p50_s": 0.01, "p99_s": 0.02}]
    record_showdown("io", rows)
    assert measurements.load()["08.showdown"]["summary"].startswith("waiting on I/O (50 ms), 9 clients: b 500")


def test_a_thread_per_connection_costs_more_memory_than_a_task():
    figures = memory_per_connection(300)
    per = figures["kib_per_connection"]
    assert figures["connections"] == 300 and per["threads"] > per["tasks"] > 0, figures
    assert "KiB" in memory_plot(figures).summary
    assert servers.running() == {}


def test_the_apps_say_which_process_answered():
    assert call_wsgi("/pid", "delay=0") == ("200 OK", str(os.getpid()).encode())
    assert call_asgi("/pid", b"delay=0") == (200, str(os.getpid()).encode())
    assert call_wsgi("/pid", "delay=x")[0] == "404 Not Found"


def test_the_stall_percentiles_are_nearest_ranks_computed_exactly():
    # p / 100 * n in floating point: 7 / 100 * 100 is 7.000000000000001, whose ceil would give the 8th value
    for n, p in ((100, 7), (50, 14), (25, 28), (10, 70), (20, 35)):
        assert showdown._p(list(range(n, 0, -1)), p) == p * n // 100
    assert showdown._p([0.3, 0.1, 0.2], 0) == 0.1 and showdown._p([0.3, 0.1, 0.2], 99) == 0.3


def test_the_warm_up_waits_for_every_gunicorn_worker():
    _, start, workers = showdown.STALL_CONTENDERS["processes"]
    server = start(wsgi_app)
    try:
        pids = showdown._blocking(showdown._warm_up(server.url, workers))
    finally:
        server.stop()
    assert workers == 2 and len(pids) == 2 and os.getpid() not in pids


def test_one_cpu_bound_request_stalls_the_loop_not_the_threads():
    figures = cpu_stall(cpu_ms=300, probes=10, kinds=("threads", "asgi"))
    assert figures["p99_s"]["asgi"] >= 0.15, figures  # the loop ran nothing else while it computed
    assert figures["p99_s"]["threads"] < figures["p99_s"]["asgi"], figures
    plot = cpu_stall_plot(figures)
    assert "p99" in plot.summary and "asgi" in plot.summary


def test_the_notes_app_blocks_the_loop_until_fixed():
    blocking = measure_notes("blocking", 5)
    fixed = measure_notes("fixed", 5)
    assert blocking["stored"] == fixed["stored"] == 5 and blocking["ok"] == fixed["ok"] == 5
    assert blocking["max_lag_ms"] >= 150  # at least one upstream call of 0.2 s in the loop's thread
    assert fixed["wall_s"] < blocking["wall_s"]
    flask = measure_notes("flask", 5, busy_s=0.3)
    assert flask["stored"] == 5 and flask["max_lag_ms"] is None
    with pytest.raises(ValueError):
        measure_notes("django")
