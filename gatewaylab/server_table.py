"""Lesson 10's live table of servers: the course's two, and the production servers installed, measured on your machine.

    >>> table = server_table()     # a panel: press "Measure", watch each row fill in (about a minute in all)
    >>> rows = measure()           # the same as a plain call; the rows show as the table (table_html(rows), or text)

Each server runs in a child process of its own on a free port (gatewaylab.servers.serve_command), serving the same
two endpoints (`wsgi_app` or `asgi_app` below): "Hello, world!" at once, and the same after `?delay=0.5` seconds. Two
figures are measured per server:

- throughput: 10 clients, each keeping its connection open (keep-alive), sending hello-world requests for
  DURATION seconds with gatewaylab.load; requests per second of the OK ones;
- slow requests: 100 clients at once, each request waiting 0.5 s in the app (time.sleep under WSGI, asyncio.sleep
  under ASGI); seconds until all are answered.

Every server runs one process, so that the table compares servers, not process counts: the WSGI ones with a pool of
THREADS threads (100 requests of 0.5 s then take 100 / 10 rounds, about 5 s), the ASGI ones with one event loop. A
server that is not installed is skipped, and said to be. The figures of the machine the course was written on
(REFERENCE) stand beside yours. What each server is (interface, workers, HTTP/2, TLS, WebSocket) is a static column,
taken from each project's documentation and the code of the version in requirements.txt.

Every server is stopped on the way out, its child processes too (gunicorn's and granian's workers), whether the run
ends, fails or is interrupted: Ctrl-C or the kernel's interrupt button during a plain call (measure(), table.run()),
the Stop button during the panel's run (it stops after the current step, within a few seconds).
"""

from __future__ import annotations

import asyncio
import html
import importlib.util
import os
import platform
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs

from gatewaylab.html_style import LEFT

__all__ = ["server_table", "ServerTable", "measure", "table_html", "table_text", "Server", "Row", "Rows", "SERVERS",
           "REFERENCE",
           "wsgi_app", "asgi_app"]

DURATION = 2.0  # seconds of hello-world requests per server
CLIENTS, DELAY = 100, 0.5  # the slow-request run: this many clients at once, each request waiting this long
THREADS = 10  # the WSGI servers' pool
BACKLOG = 2048  # above CLIENTS: no connection waits for a SYN retry
READY_TIMEOUT = 20.0  # seconds a server may take to answer its first request
HELLO = b"Hello, world!\n"


# --- the apps every server serves (the child processes import this module, which imports nothing heavy) -------------

def _delay(query: str) -> float:
    try:
        return min(max(float(parse_qs(query).get("delay", ["0"])[0]), 0.0), 10.0)
    except ValueError:
        return 0.0


def wsgi_app(environ, start_response):
    """Hello, world; after ?delay= seconds (time.sleep: the thread waits)."""
    delay = _delay(environ.get("QUERY_STRING", ""))
    if delay:
        time.sleep(delay)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


async def asgi_app(scope, receive, send):
    """The same in ASGI (asyncio.sleep: the loop serves others meanwhile); answers the lifespan protocol too."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    delay = _delay(scope["query_string"].decode("latin-1"))
    if delay:
        await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]})
    await send({"type": "http.response.body", "body": HELLO})


# --- the servers ------------------------------------------------------------------------------------------------------

WSGI_TARGET, ASGI_TARGET = "gatewaylab.server_table:wsgi_app", "gatewaylab.server_table:asgi_app"


@dataclass(frozen=True, repr=False)
class Server:
    """A server of the table: how to start it, and what it is (from its documentation and code)."""

    key: str
    name: str
    module: str  # importable when the server is installed
    interface: str
    workers: str
    http2: str
    tls: str
    websocket: str
    argv: Callable[[int], list[str]]  # the command line, given the pool size
    version_of: str | None = None  # the distribution whose version is shown

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str | None:
        if self.version_of is None:
            return None
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.version_of)
        except PackageNotFoundError:
            return None

    @property
    def label(self) -> str:
        version = self.version()
        return f"{self.name} {version}" if version else self.name

    def __repr__(self) -> str:
        return f"Server({self.key!r}: {self.label}, {self.interface})"


PY = sys.executable
SERVERS = [
    Server("gatewaylab-wsgi", "gatewaylab.wsgi (pool)", "gatewaylab.wsgi_pool", "WSGI",
           "one process, a pool of N threads (lessons 03-04)", "no: HTTP/1.1", "no", "no",
           lambda threads: [PY, "-m", "gatewaylab.wsgi", WSGI_TARGET, "--port", "{port}", "--threads",
                            str(threads), "--backlog", str(BACKLOG)]),
    Server("gatewaylab-asgi", "gatewaylab.asgi", "gatewaylab.asgi", "ASGI",
           "one process, one asyncio event loop (lesson 07)", "no: HTTP/1.1", "no", "no (HTTP only)",
           lambda threads: [PY, "-m", "gatewaylab.asgi", ASGI_TARGET, "--port", "{port}", "--lifespan", "off"]),
    Server("uvicorn", "uvicorn", "uvicorn",
           "ASGI; WSGI with --interface wsgi, through a2wsgi when installed (its own adapter is deprecated)",
           "an event loop per process; --workers N processes", "with --http2 and the optional zttp package",
           "yes (--ssl-certfile, --ssl-keyfile)", "yes (websockets or wsproto)",
           lambda threads: [PY, "-m", "uvicorn", ASGI_TARGET, "--host", "127.0.0.1", "--port", "{port}",
                            "--lifespan", "off", "--log-level", "warning", "--no-access-log",
                            "--backlog", str(BACKLOG)], "uvicorn"),
    Server("gunicorn", "gunicorn (gthread)", "gunicorn", "WSGI; ASGI with its asgi worker (since 24.0)",
           "pre-fork: a master and N worker processes; gthread: a pool of threads in each",
           "yes, beta since 25.0 (--http-protocols h2, the h2 package; over TLS, or h2c if enabled)",
           "yes (--certfile, --keyfile)", "with the asgi worker only",
           lambda threads: [PY, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1", "--threads",
                            str(threads), "--bind", "127.0.0.1:{port}", "--backlog", str(BACKLOG),
                            "--log-level", "warning", WSGI_TARGET], "gunicorn"),
    Server("hypercorn", "hypercorn", "hypercorn", "ASGI and WSGI",
           "N worker processes (-w), each an asyncio, uvloop or trio event loop",
           "yes (h2); HTTP/3 with aioquic", "yes (--certfile, --keyfile)", "yes, over HTTP/1 and HTTP/2",
           lambda threads: [PY, "-m", "hypercorn", "--bind", "127.0.0.1:{port}", "--backlog", str(BACKLOG),
                            ASGI_TARGET], "hypercorn"),
    Server("granian", "granian", "granian", "ASGI, WSGI and RSGI (its own), on a Rust HTTP core",
           "N worker processes (--workers), Rust runtime threads in each, blocking threads for WSGI",
           "yes (HTTP/1 and HTTP/2)", "yes, HTTPS and mTLS (--ssl-certificate, --ssl-keyfile)", "yes",
           lambda threads: [PY, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                            "--workers", "1", "--backlog", str(BACKLOG), "--log-level", "warning",
                            "--no-access-log", ASGI_TARGET], "granian"),
]
SERVER_KEYS = [server.key for server in SERVERS]

# Measured once with measure() on the machine the course was written on (see REFERENCE_MACHINE).
REFERENCE_MACHINE = "2 cores, Python 3.11, Linux"
# Throughput there was bounded by the load driver sharing the 2 cores with the server: compare orders of magnitude.
REFERENCE: dict[str, dict[str, float]] = {
    "gatewaylab-wsgi": {"rps": 5434, "slow_wall_s": 5.02},
    "gatewaylab-asgi": {"rps": 7301, "slow_wall_s": 0.52},
    "uvicorn": {"rps": 5389, "slow_wall_s": 0.54},
    "gunicorn": {"rps": 3499, "slow_wall_s": 5.03},
    "hypercorn": {"rps": 5423, "slow_wall_s": 0.55},
    "granian": {"rps": 13020, "slow_wall_s": 0.52},
}


# --- measuring --------------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class Row:
    """One server's line of the table."""

    server: Server
    status: str = "waiting"  # "waiting", "running", "measured", "not installed", "failed: ...", "stopped"
    rps: float | None = None  # hello-world requests per second, keep-alive
    slow_wall_s: float | None = None  # seconds until CLIENTS requests of DELAY s were all answered
    reference: dict[str, float] = field(default_factory=dict)

    def figures(self) -> str:
        """'4,431 req/s, slow 0.54 s' (a dash for what was not measured)."""
        rps = f"{self.rps:,.0f} req/s" if self.rps is not None else "–"
        return rps + ", " + (f"slow {self.slow_wall_s:.2f} s" if self.slow_wall_s is not None else "slow –")

    def __repr__(self) -> str:
        return f"Row({self.server.label}: {self.figures()}; {self.status})"


class Rows(list):
    """measure()'s rows (a list of Row) that show as the table: HTML in a notebook, text in a terminal."""

    def __init__(self, rows=(), *, clients: int = CLIENTS, delay: float = DELAY, threads: int = THREADS):
        super().__init__(rows)
        self.clients, self.delay, self.threads = clients, delay, threads

    def _repr_html_(self) -> str:
        return table_html(self, clients=self.clients, delay=self.delay, threads=self.threads)

    def __repr__(self) -> str:
        return table_text(self)


def _children(process) -> list:
    try:
        import psutil

        return psutil.Process(process.pid).children(recursive=True)
    except Exception:  # no psutil, or the process has gone already
        return []


def _stop(running) -> None:
    """Stop a server started with serve_command, and any worker process it left behind (gunicorn's, granian's)."""
    children = _children(running.process) if running.process is not None else []
    running.stop()
    for child in children:
        try:
            child.wait(2)
        except Exception:  # still running after its parent stopped (or psutil's TimeoutExpired): kill it
            try:
                child.kill()
                child.wait(2)
            except Exception:
                pass


def _wait_ready(url: str, cancelled: threading.Event) -> None:
    """Until the server answers a request (gunicorn's master binds the port before its worker can answer)."""
    from gatewaylab.load import load

    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        result = load(url, clients=1, timeout=2)
        if result.ok == 1:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer within {READY_TIMEOUT:g} s: {result.summary()}")
        if cancelled.is_set():
            return
        time.sleep(0.1)


def _throughput(url: str, duration: float, cancelled: threading.Event) -> float:
    from gatewaylab.load import load

    ok, started = 0, time.monotonic()
    while time.monotonic() - started < duration and not cancelled.is_set():
        ok += load(url, clients=10, requests=300, keep_alive=True, timeout=10).ok
    return ok / (time.monotonic() - started)


def _measure_one(row: Row, duration: float, clients: int, delay: float, threads: int, cancelled: threading.Event,
                 step: Callable[[str], None]) -> None:
    from gatewaylab.load import load
    from gatewaylab.servers import serve_command

    spec = row.server
    running = serve_command(spec.argv(threads), name=f"server-table-{spec.key}")
    try:
        step("starting")
        _wait_ready(running.url + "/", cancelled)
        step("throughput")
        row.rps = _throughput(running.url + "/", duration, cancelled)
        if cancelled.is_set():
            return
        step("slow requests")
        slow = load(f"{running.url}/?delay={delay:g}", clients=clients, timeout=clients * delay + 30)
        if slow.ok != clients:
            raise RuntimeError(f"{clients - slow.ok} of {clients} slow requests failed: {slow.summary()}")
        row.slow_wall_s = slow.wall
    finally:
        _stop(running)


def measure(servers: list[str] | None = None, *, duration: float = DURATION, clients: int = CLIENTS,
            delay: float = DELAY, threads: int = THREADS,
            progress: Callable[[int, int, list[Row]], None] | None = None,
            cancelled: threading.Event | None = None) -> Rows:
    """Measure each server (keys of SERVERS; all by default) in turn; return the rows (a Rows: a list of Row, shown
    as the table).

    progress(done, total, rows) is called as each step starts and ends (total: three steps per server). A server
    that is not installed, or fails, has that in its row's status; the others are measured all the same. Setting
    `cancelled` stops after the current step (the rows not reached say "stopped").
    """
    keys = SERVER_KEYS if servers is None else list(servers)
    unknown = [key for key in keys if key not in SERVER_KEYS]
    if unknown:
        raise ValueError(f"unknown servers {unknown}; the table knows {', '.join(SERVER_KEYS)}")
    cancelled = cancelled or threading.Event()
    rows = Rows([Row(next(s for s in SERVERS if s.key == key), reference=REFERENCE.get(key, {})) for key in keys],
                clients=clients, delay=delay, threads=threads)
    total, done = 3 * len(rows), 0

    def report() -> None:
        if progress is not None:
            progress(done, total, rows)

    report()
    for index, row in enumerate(rows):
        if cancelled.is_set():
            row.status = "stopped"
            continue
        if not row.server.installed():
            row.status = f"not installed ({row.server.module} cannot be imported): skipped"
            done = 3 * (index + 1)
            report()
            continue
        row.status = "running"
        first = done

        def step(what: str) -> None:
            nonlocal done
            done = first + {"starting": 0, "throughput": 1, "slow requests": 2}[what]
            row.status = f"running: {what}"
            report()

        try:
            _measure_one(row, duration, clients, delay, threads, cancelled, step)
            row.status = "stopped" if cancelled.is_set() else "measured"
        except Exception as exc:
            row.status = f"failed: {type(exc).__name__}: {exc}"
        done = 3 * (index + 1)
        report()
    return rows


# --- the table --------------------------------------------------------------------------------------------------------

def this_machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _cell(value: float | None, fmt: str, reference: float | None) -> str:
    mine = fmt.format(value) if value is not None else "–"
    theirs = fmt.format(reference) if reference is not None else "–"
    top = "vertical-align:top;white-space:nowrap"
    return f"<td style='{top}'>{mine}</td><td style='{top};color:#555555'>{theirs}</td>"


def _text(text: str) -> str:
    """Escaped, with command-line options (--ssl-keyfile) kept on one line."""
    return re.sub(r"(--[\w-]+)", r"<span style='white-space:nowrap'>\1</span>", html.escape(text))


def table_html(rows: list[Row], *, clients: int = CLIENTS, delay: float = DELAY, threads: int = THREADS) -> str:
    """The rows as an HTML table: what each server is, then your figures beside the reference machine's."""
    body = []
    for row in rows:
        s = row.server
        status = "" if row.status == "measured" else (f"<br><span style='color:#555555;font-size:90%'>"
                                                       f"{html.escape(row.status)}</span>")
        body.append(f"<tr><td style='{LEFT}'><b>{html.escape(s.label)}</b>{status}</td>"
                    + "".join(f"<td style='{LEFT}'>{_text(text)}</td>"
                              for text in (s.interface, s.workers, s.http2, s.tls, s.websocket))
                    + _cell(row.rps, "{:,.0f}", row.reference.get("rps"))
                    + _cell(row.slow_wall_s, "{:.2f} s", row.reference.get("slow_wall_s")) + "</tr>")
    return ("<table class='gatewaylab-servers' style='border-collapse:collapse'>"
            f"<caption style='{LEFT}'>Each server in one process (the WSGI ones with {threads} threads), on "
            f"this machine ({html.escape(this_machine())}) and on the course's reference machine "
            f"({html.escape(REFERENCE_MACHINE)}). Throughput: 10 keep-alive clients, hello world. Slow: "
            f"{clients} requests at once, each waiting {delay:g} s.</caption>"
            f"<thead><tr><th style='{LEFT}' rowspan=2>server</th><th style='{LEFT}' rowspan=2>interface</th>"
            f"<th style='{LEFT}' rowspan=2>workers</th><th style='{LEFT}' rowspan=2>HTTP/2</th>"
            f"<th style='{LEFT}' rowspan=2>TLS</th><th style='{LEFT}' rowspan=2>WebSocket</th>"
            "<th colspan=2>hello world, req/s</th><th colspan=2>slow requests, wall</th></tr>"
            "<tr><th>yours</th><th>reference</th><th>yours</th><th>reference</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def table_text(rows: list[Row]) -> str:
    lines = [f"Servers on this machine ({this_machine()}); reference: {REFERENCE_MACHINE}"]
    for row in rows:
        mine = row.figures()
        ref = row.reference
        theirs = (f"{ref['rps']:,.0f} req/s, slow {ref['slow_wall_s']:.2f} s" if {"rps", "slow_wall_s"} <= set(ref)
                  else "none")
        lines.append(f"- {row.server.label}, {row.server.interface}: {mine}; reference {theirs}; {row.status}")
    return "\n".join(lines)


class ServerTable:
    """The live table: a Measure button, a Stop button, progress, and the table filling in row by row.

    As a plain call (no widgets, or a script): table.run() measures and returns the rows, which show as the table
    (HTML in a notebook, text elsewhere); the widget's table shows them too.
    """

    def __init__(self, servers: list[str] | None = None, *, duration: float = DURATION, clients: int = CLIENTS,
                 delay: float = DELAY, threads: int = THREADS):
        import ipywidgets as widgets

        self.servers, self.duration, self.clients, self.delay, self.threads = servers, duration, clients, delay, \
            threads
        keys = SERVER_KEYS if servers is None else list(servers)
        self.rows = Rows([Row(next(s for s in SERVERS if s.key == key), reference=REFERENCE.get(key, {}))
                          for key in keys], clients=clients, delay=delay, threads=threads)
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self.button = widgets.Button(description="Measure", icon="play", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=3 * len(self.rows))
        self.status = widgets.HTML(f"Press “Measure”: each server is started, measured and stopped in turn "
                                   f"(about {len(self.rows) * (duration + clients * delay / threads + 2):.0f} s "
                                   f"at most).")
        self.output = widgets.HTML(table_html(self.rows, clients=clients, delay=delay, threads=threads))
        self.widget = widgets.VBox([widgets.HBox([self.button, self.stop_button, self.progress, self.status]),
                                    self.output])
        self.widget.add_class("gatewaylab-server-table")
        self.button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.cancelled.set())

    def _show(self, done: int, total: int, rows: list[Row]) -> None:
        self.rows = rows
        self.progress.max, self.progress.value = max(total, 1), min(done, max(total, 1))
        current = next((row for row in rows if row.status.startswith("running")), None)
        self.status.value = html.escape(f"{current.server.label}: {current.status}" if current else
                                        f"{done} of {total} steps")
        self.output.value = table_html(rows, clients=self.clients, delay=self.delay, threads=self.threads)

    def run(self) -> Rows:
        """Measure now (blocking); fill the table; return the rows (shown as the table)."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("the table is being measured already; wait for it, or press Stop")
        try:
            self.cancelled.clear()
            self.button.disabled, self.stop_button.disabled = True, False
            rows = measure(self.servers, duration=self.duration, clients=self.clients, delay=self.delay,
                           threads=self.threads, progress=self._show, cancelled=self.cancelled)
            self.status.value = "stopped" if self.cancelled.is_set() else "done"
            return rows
        finally:
            self.button.disabled, self.stop_button.disabled = False, True
            self._busy.release()

    def start(self) -> threading.Thread | None:
        """What the Measure button does: run() in a background thread, so the notebook stays responsive."""
        if self._busy.locked():
            return None

        def background():
            try:
                self.run()
            except Exception as exc:  # shown where the learner looks; a thread's traceback would go unseen
                self.status.value = html.escape(f"failed: {type(exc).__name__}: {exc}")

        self.thread = threading.Thread(target=background, name="gatewaylab-server-table", daemon=True)
        self.thread.start()
        return self.thread

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ("The live table of servers (widgets cannot show here: its run() measures, and "
                                "returns the rows, which print as this table).\n" + table_text(self.rows))
        return bundle

    def __repr__(self) -> str:
        return table_text(self.rows)


def server_table(servers: list[str] | None = None, **options) -> ServerTable:
    """Lesson 10's live table of servers; see ServerTable (options: duration, clients, delay, threads)."""
    return ServerTable(servers, **options)


if __name__ == "__main__":  # python -m gatewaylab.server_table: measure here, print the rows (and REFERENCE's dict)
    measured = measure(progress=lambda done, total, rows: print(f"{done}/{total}", file=sys.stderr, flush=True))
    print(table_text(measured))
    print({row.server.key: {"rps": round(row.rps), "slow_wall_s": round(row.slow_wall_s, 2)}
           for row in measured if row.rps is not None and row.slow_wall_s is not None})
