"""gatewaylab.server_table: the live table of servers measures each one in a child process, skips what is not
installed, and leaves nothing running, whether it ends, fails, is stopped or is interrupted."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from gatewaylab import server_table, servers
from gatewaylab.server_table import REFERENCE, SERVERS, ServerTable, asgi_app, measure, table_html, wsgi_app

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(duration=0.3, clients=8, delay=0.2)  # seconds, not a minute: the servers are what is under test


@pytest.fixture(autouse=True)
def nothing_left_running():
    # Only the processes this test started: an earlier test on the same worker may have left the process-wide
    # helpers multiprocessing keeps for good (its resource tracker, a pool's forkserver), which are not servers.
    before = set(psutil.Process().children(recursive=True))
    yield
    assert servers.running() == {}

    def new_children():
        return [child for child in psutil.Process().children(recursive=True) if child not in before]
    deadline = time.monotonic() + 5
    while new_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new_children() == []


def test_the_table_knows_the_courses_servers_and_the_production_ones_and_what_each_is():
    assert [s.key for s in SERVERS] == ["gatewaylab-wsgi", "gatewaylab-asgi", "uvicorn", "gunicorn", "hypercorn",
                                       "granian"]
    for s in SERVERS:
        assert all((s.name, s.module, s.interface, s.workers, s.http2, s.tls, s.websocket)), s
        assert "{port}" in " ".join(s.argv(10))
        assert set(REFERENCE[s.key]) == {"rps", "slow_wall_s"} and REFERENCE[s.key]["rps"] > 0
    by_key = {s.key: s for s in SERVERS}
    assert by_key["gatewaylab-wsgi"].interface == "WSGI" and by_key["gatewaylab-asgi"].interface == "ASGI"
    assert by_key["gunicorn"].interface.startswith("WSGI") and "gthread" in by_key["gunicorn"].argv(10)
    assert "WSGI" in by_key["hypercorn"].interface and "WSGI" in by_key["granian"].interface
    assert by_key["gatewaylab-asgi"].websocket.startswith("no")  # gatewaylab.asgi speaks no WebSocket
    # The WSGI servers' pool sets the slow run's rounds: 100 / 10 x 0.5 s on the reference machine.
    assert 4.5 <= REFERENCE["gunicorn"]["slow_wall_s"] <= 6 and REFERENCE["uvicorn"]["slow_wall_s"] < 1
    assert server_table.REFERENCE_MACHINE.startswith("2 cores, Python 3.11")
    page = table_html([server_table.Row(s) for s in SERVERS])
    assert "<span style='white-space:nowrap'>--ssl-keyfile</span>" in page  # an option never breaks at its hyphens
    assert page.count("<tr>") == 2 + len(SERVERS) and "through a2wsgi when installed" in page


def test_the_versions_shown_are_the_pinned_ones():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for s in SERVERS:
        if s.version_of:
            assert s.version() == pins[s.version_of], s.key
            assert s.label == f"{s.name} {pins[s.version_of]}"


def call_wsgi(query):
    seen = []
    body = b"".join(wsgi_app({"QUERY_STRING": query}, lambda status, headers: seen.append(status)))
    return seen, body


def test_the_apps_say_hello_after_the_delay_asked_for():
    started = time.monotonic()
    assert call_wsgi("delay=0.1") == (["200 OK"], b"Hello, world!\n") and time.monotonic() - started >= 0.1
    for query in ("", "delay=soon", "delay=-3"):  # no delay
        started = time.monotonic()
        assert call_wsgi(query)[1] == b"Hello, world!\n" and time.monotonic() - started < 0.05

    async def call_asgi():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await asgi_app({"type": "http", "query_string": b"delay=0.1"}, receive, send)
        lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        await asgi_app({"type": "lifespan"}, lambda: asyncio.sleep(0, next(lifespan)), send)
        return sent

    started = time.monotonic()
    sent = asyncio.run(call_asgi())
    assert time.monotonic() - started >= 0.1
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "lifespan.startup.complete",
                                         "lifespan.shutdown.complete"]
    assert sent[1]["body"] == b"Hello, world!\n"


def test_measure_an_asgi_and_a_wsgi_server():
    seen = []
    rows = measure(["uvicorn", "gunicorn"], threads=2, progress=lambda done, total, rows: seen.append(done),
                   **QUICK)
    assert [row.status for row in rows] == ["measured", "measured"], rows
    assert all(row.rps > 0 for row in rows)
    uvicorn, gunicorn = rows
    # 8 requests of 0.2 s: the event loop waits for all at once; two threads take four rounds
    assert 0.2 <= uvicorn.slow_wall_s < 0.2 + 1.5, uvicorn
    assert 0.9 * 4 * 0.2 <= gunicorn.slow_wall_s < 4 * 0.2 + 2.5, gunicorn
    assert seen[0] == 0 and seen[-1] == 6 and seen == sorted(seen)
    page = table_html(rows, clients=8, delay=0.2, threads=2)
    assert f"{uvicorn.slow_wall_s:.2f} s" in page and f"{REFERENCE['uvicorn']['slow_wall_s']:.2f} s" in page
    assert "gunicorn (gthread) 27.0.1" in page and "with 2 threads" in page


def test_a_server_that_is_not_installed_is_skipped_and_one_that_fails_is_said_to_and_the_rest_go_on(monkeypatch):
    missing = replace(SERVERS[2], key="missing", name="missing", module="no_such_server_module_here")
    broken = replace(SERVERS[2], key="broken", name="broken",
                     argv=lambda threads: [sys.executable, "-c", "raise SystemExit(3)"])
    monkeypatch.setattr(server_table, "SERVERS", [missing, broken, *SERVERS])
    monkeypatch.setattr(server_table, "SERVER_KEYS", ["missing", "broken", *server_table.SERVER_KEYS])
    rows = measure(["missing", "broken", "gatewaylab-asgi"], **QUICK)
    assert rows[0].status.startswith("not installed (no_such_server_module_here cannot be imported)")
    assert rows[1].status.startswith("failed: RuntimeError") and "exited with code 3" in rows[1].status
    assert rows[2].status == "measured" and rows[2].slow_wall_s is not None
    page = table_html(rows)
    assert "not installed" in page and "failed: RuntimeError" in page
    with pytest.raises(ValueError, match="unknown servers"):
        measure(["nginx"])


def test_an_interrupt_during_a_measurement_stops_the_server_and_its_workers():
    def interrupt(done, total, rows):
        if rows[0].status == "running: throughput":
            assert len(psutil.Process().children(recursive=True)) >= 2  # gunicorn's master and its worker
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure(["gunicorn"], progress=interrupt, **QUICK)
    # the fixture checks that no server and no child process is left


SCRIPT = textwrap.dedent("""
    from gatewaylab.server_table import measure
    measure(["gunicorn", "granian"], duration=60)
""")


def marked(marker):
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SERVER_TABLE_TEST") == marker:
                found.append(process)
        except (psutil.Error, OSError):
            pass
    return found


def test_ctrl_c_in_a_script_leaves_no_server_running():
    marker = uuid.uuid4().hex
    script = subprocess.Popen([sys.executable, "-c", SCRIPT], env={**os.environ, "SERVER_TABLE_TEST": marker},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(marked(marker)) < 3 and time.monotonic() < deadline:  # the script, gunicorn's master, a worker
            time.sleep(0.1)
        assert len(marked(marker)) >= 3, script.stderr
        time.sleep(0.5)  # measuring now
        script.send_signal(signal.SIGINT)  # to the script alone: it must stop the servers, no signal reaches them
        script.wait(30)
        assert "KeyboardInterrupt" in script.stderr.read()
        deadline = time.monotonic() + 5
        while marked(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marked(marker) == []
    finally:
        for process in marked(marker):
            process.kill()
        if script.poll() is None:
            script.kill()
            script.wait()


def test_the_panel_measures_in_the_background_and_its_stop_button_stops_after_the_current_step():
    table = ServerTable(["gatewaylab-asgi", "uvicorn"], **QUICK)
    assert "Measure" == table.button.description and table.stop_button.disabled
    assert table.output.value.count("<tr>") == 2 + 2  # two heading rows, a row per server, nothing measured yet
    started = time.monotonic()
    table.button.click()
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 30
    while "running: throughput" not in table.status.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert table.button.disabled and not table.stop_button.disabled
    table.stop_button.click()
    table.wait(30)
    assert [row.status for row in table.rows] == ["stopped", "stopped"]
    assert table.status.value == "stopped" and not table.button.disabled
    rows = table.run()  # as a plain call: the rows show as the table
    assert [row.status for row in rows] == ["measured", "measured"] and table.status.value == "done"
    assert isinstance(rows, server_table.Rows) and f"{rows[0].rps:,.0f} req/s" in repr(rows)
    assert rows._repr_html_().startswith("<table") and "<function" not in repr(rows)
    assert table.progress.value == table.progress.max == 6
    assert f"{rows[0].rps:,.0f}" in table.output.value
    bundle = table._repr_mimebundle_()
    assert "run()" in bundle["text/plain"] and "gatewaylab.asgi" in bundle["text/plain"]


def test_the_rows_read_as_the_table_not_as_dataclasses():
    rows = server_table.Rows([server_table.Row(SERVERS[2], status="measured", rps=4431.258306432988,
                                               slow_wall_s=0.5412, reference=REFERENCE["uvicorn"]),
                              server_table.Row(SERVERS[3])], clients=8, delay=0.2, threads=2)
    text = repr(rows)
    assert text.startswith("Servers on this machine") and "4,431 req/s, slow 0.54 s" in text, text
    assert "<function" not in text and "argv" not in text and "4431.258" not in text
    assert repr(rows[0]) == f"Row({SERVERS[2].label}: 4,431 req/s, slow 0.54 s; measured)"
    assert repr(rows[1]).endswith("–, slow –; waiting)") and "<lambda>" not in repr(SERVERS[3])
    page = rows._repr_html_()
    assert page.startswith("<table") and "4,431" in page and "with 2 threads" in page and "8 requests" in page
