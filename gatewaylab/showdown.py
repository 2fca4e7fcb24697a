"""Lesson 08's showdown: the same workloads on sequential WSGI, threaded WSGI and ASGI servers, measured and plotted.

    >>> rows = measure(CONTENDERS, "io", levels=(1, 10, 40))       # one row per server and number of clients
    >>> showdown_plot(rows, "io")                                  # throughput and p50/p99 latency against clients
    >>> panel = showdown_panel()                                   # the same, live: pick servers, workload, clients
    >>> memory_per_connection(1000)                                # KiB per held connection: a thread vs a task
    >>> cpu_stall(cpu_ms=200)                                      # one CPU-bound request vs the other requests

Every server the course provides runs in a child process of its own (`python -m gatewaylab.showdown serve KIND`,
or gunicorn), so that it competes with the notebook's load driver for the cores, not for the notebook's GIL, and so
that its memory can be read from /proc. A learner's own server joins as a `Contender` whose `start(app)` starts a
server for `app` (a WSGI or an ASGI app, as its `interface` says) and returns its URL, or an object with `.url`
(and `.stop()`, which the showdown calls when it is done; a plain URL is left running).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from gatewaylab.examples import burn_cpu
from gatewaylab.load import _raise_file_limit, format_rate, format_seconds, load, run_load
from gatewaylab.plots import SERIES_COLOURS, Plot
from gatewaylab.servers import LOCALHOST, serve_asgi, serve_command, serve_wsgi, stop_all

__all__ = [
    "WORKLOADS", "Contender", "CONTENDERS", "contender_names", "levels_up_to", "measure", "showdown_plot",
    "showdown_panel", "record_showdown", "memory_per_connection", "memory_plot", "cpu_stall", "cpu_stall_plot",
    "wsgi_app", "asgi_app", "gunicorn_command", "rss_kib", "measure_notes", "record_memory", "record_cpu_stall",
    "record_notes",
]

# What each workload asks of a request, as the path the apps below understand.
WORKLOADS = {
    "io": "/io?delay=0.05",  # waiting on I/O: 50 ms, as a database query or an upstream call might take
    "cpu": "/cpu?ms=5",  # CPU-bound: 5 ms of pure Python
    "mixed": "/mixed?delay=0.05&ms=2",  # 50 ms of waiting, then 2 ms of computing
    "hello": "/hello",  # nothing at all: what the server itself costs
}
WORKLOAD_LABELS = {"io": "waiting on I/O (50 ms)", "cpu": "CPU-bound (5 ms)",
                   "mixed": "mixed (50 ms wait + 2 ms CPU)", "hello": "hello world"}
MAX_DELAY, MAX_MS = 30.0, 1000.0  # what one request may ask for, so a typo cannot tie a server up for minutes
POOL_THREADS = 10
START_TIMEOUT = 15.0


# --- the apps: one WSGI, one ASGI, the same paths -----------------------------------------------------------------

def _work(path: str, query: str) -> tuple[float, float] | None:
    """(seconds to wait, milliseconds of CPU) that a request asks for; None for an unknown path or a bad number."""
    if path in ("/", "/hello"):
        return 0.0, 0.0
    if path not in ("/io", "/cpu", "/mixed"):
        return None
    fields = parse_qs(query)
    try:
        delay = float(fields.get("delay", ["0"])[0]) if path != "/cpu" else 0.0
        ms = float(fields.get("ms", ["0"])[0]) if path != "/io" else 0.0
    except ValueError:
        return None
    if not (0 <= delay <= MAX_DELAY and 0 <= ms <= MAX_MS):
        return None
    return delay, ms


def _pid_delay(path: str, query: str) -> float | None:
    """/pid?delay=s (which process answered, after s seconds: the warm-up counts the workers): its delay, or None."""
    if path != "/pid":
        return None
    work = _work("/io", query)
    return None if work is None else work[0]


def wsgi_app(environ, start_response):
    """/hello, /io?delay=s (time.sleep), /cpu?ms=n (pure Python), /mixed?delay=s&ms=n: one app, four workloads;
    and /pid?delay=s, the process id of the worker that answered."""
    path, query = environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
    if (delay := _pid_delay(path, query)) is not None:
        time.sleep(delay)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    work = _work(path, query)
    if work is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try /hello, /io?delay=0.05, /cpu?ms=5 or /mixed?delay=0.05&ms=2\n"]
    delay, ms = work
    if delay:
        time.sleep(delay)
    if ms:
        burn_cpu(ms / 1000)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


async def asgi_app(scope, receive, send):
    """wsgi_app's twin: asyncio.sleep for the waiting, and the CPU work on the event loop itself, as an async view
    that computes does it."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, query = scope["path"], scope["query_string"].decode("latin-1")
    if (delay := _pid_delay(path, query)) is not None:
        await asyncio.sleep(delay)
        work, status, body = None, 200, str(os.getpid()).encode()
    else:
        work = _work(path, query)
        status, body = (404, b"not found\n") if work is None else (200, b"hello\n")
    if work is not None:
        delay, ms = work
        if delay:
            await asyncio.sleep(delay)
        if ms:
            burn_cpu(ms / 1000)  # on the loop: every other request waits meanwhile
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- the contenders -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contender:
    """A server set-up in the showdown. `start(app)` starts a server for `app` (WSGI or ASGI, as `interface` says)
    and returns its URL, or an object with `.url` and, to be stopped afterwards, `.stop()`."""

    name: str
    interface: str  # "wsgi" or "asgi"
    start: Callable[[Any], Any]
    kind: str = "yours"  # "sequential", "threads", "processes", "tasks" or "yours": what the plots colour by

    def __post_init__(self):
        if self.interface not in ("wsgi", "asgi"):
            raise ValueError(f"interface must be 'wsgi' or 'asgi', not {self.interface!r}")
        if not callable(self.start):
            raise TypeError(f"start must be a function taking the app and returning the server's URL, "
                            f"not {self.start!r}")


def _child(kind: str, threads: int = 1) -> Callable[[Any], Any]:
    def start(app):
        return serve_command([sys.executable, "-m", "gatewaylab.showdown", "serve", kind, "--port", "{port}",
                              "--threads", str(threads)], name=f"l08-{kind}")
    return start


def gunicorn_command(app: str = "gatewaylab.showdown:wsgi_app", *, workers: int = 1, threads: int = POOL_THREADS,
                     worker_class: str = "gthread") -> list[str]:
    """The command line of a gunicorn serving `app` on 127.0.0.1:{port} (serve_command fills the port in). A short
    graceful timeout: stopping waits at most 1 s for requests in flight, not gunicorn's default 30 s."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"{LOCALHOST}:{{port}}", "--workers", str(workers),
            "--worker-class", worker_class, "--threads", str(threads), "--graceful-timeout", "1",
            "--backlog", "2048", "--log-level", "warning", app]


def _gunicorn(workers: int, threads: int, worker_class: str = "gthread") -> Callable[[Any], Any]:
    def start(app):
        return serve_command(gunicorn_command(workers=workers, threads=threads, worker_class=worker_class),
                             name=f"l08-gunicorn-{worker_class}")
    return start


CONTENDERS = [
    Contender("sequential WSGI (course)", "wsgi", _child("sequential"), "sequential"),
    Contender(f"pool WSGI (course, {POOL_THREADS} threads)", "wsgi", _child("pool", POOL_THREADS), "threads"),
    Contender(f"gunicorn gthread ({POOL_THREADS} threads)", "wsgi", _gunicorn(1, POOL_THREADS), "threads"),
    Contender("ASGI (course)", "asgi", _child("gatewaylab-asgi"), "tasks"),
    Contender("uvicorn", "asgi", _child("uvicorn"), "tasks"),
]


def contender_names(contenders: Iterable[Contender] = CONTENDERS) -> list[str]:
    return [c.name for c in contenders]


def levels_up_to(clients: int) -> list[int]:
    """The numbers of clients a showdown measures, up to `clients`: 1, about a fifth, and all of them."""
    if isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= 1000:
        raise ValueError(f"clients must be a whole number from 1 to 1000, not {clients!r}")
    return sorted({1, max(1, clients // 5), clients})


# --- measuring ----------------------------------------------------------------------------------------------------

def _url_and_stop(handle) -> tuple[str, Callable[[], None]]:
    url = handle if isinstance(handle, str) else getattr(handle, "url", None)
    if not isinstance(url, str) or not url.startswith("http://"):
        raise TypeError(f"a contender's start(app) must return its URL ('http://127.0.0.1:8000') or an object with "
                        f".url (what serve_wsgi and serve_socket return), not {handle!r}")
    stop = getattr(handle, "stop", None)
    return url.rstrip("/"), (stop if callable(stop) else (lambda: None))


def row(server: str, result) -> dict:
    """One row of a showdown: who served, how many clients, requests/s, median and 99th percentile latency (s)."""
    answered = bool(result.latencies)
    return {"server": server, "clients": result.clients, "rps": round(result.throughput, 2),
            "p50_s": round(result.percentile(50), 5) if answered else 0.0,
            "p99_s": round(result.percentile(99), 5) if answered else 0.0,
            "ok": result.ok, "errors": len(result.records) - result.ok}


def measure(contenders: Iterable[Contender] = CONTENDERS, workload: str = "io", levels: Iterable[int] = (1, 8, 40),
            *, progress: Callable[[int, int], None] | None = None,
            each: Callable[[list[dict]], None] | None = None, timeout: float = 60.0) -> list[dict]:
    """Start each contender, send it `level` concurrent clients (one request each) for each level, stop it.
    progress(done, total) counts requests; each(rows) is called with the rows so far after every server."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, not {workload!r}")
    contenders, levels = list(contenders), sorted(set(levels))
    total, done, rows = len(contenders) * sum(levels), 0, []
    apps = {"wsgi": wsgi_app, "asgi": asgi_app}
    for contender in contenders:
        url, stop = _url_and_stop(contender.start(apps[contender.interface]))
        try:
            load(url + "/hello", 1, timeout=5)  # the first request may pay for imports: not part of the race
            for level in levels:
                report = None if progress is None else (lambda d, _t, base=done: progress(base + d, total))
                result = load(url + WORKLOADS[workload], level, timeout=timeout, progress=report)
                rows.append({**row(contender.name, result), "kind": contender.kind})
                done += level
        finally:
            stop()
        if each is not None:
            each(list(rows))
    if progress is not None:
        progress(total, total)
    return rows


def record_showdown(workload: str, rows: list[dict]) -> None:
    """Keep the rows as "08.showdown" in the learner's measurements (lesson 10 reads them)."""
    from gatewaylab import measurements

    top = max(r["clients"] for r in rows)
    best = sorted((r for r in rows if r["clients"] == top), key=lambda r: -r["rps"])
    summary = f"{WORKLOAD_LABELS[workload]}, {top} clients: " + ", ".join(
        f"{r['server']} {format_rate(r['rps'])}" for r in best)
    keep = [{k: r[k] for k in ("server", "clients", "rps", "p50_s", "p99_s")} for r in rows]
    measurements.record("08.showdown", {"workload": workload, "rows": keep}, summary)


# --- the plot -----------------------------------------------------------------------------------------------------

def _colours(rows: list[dict]) -> dict[str, str]:
    names = list(dict.fromkeys(r["server"] for r in rows))
    return {name: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, name in enumerate(names)}


def showdown_plot(rows: list[dict], workload: str, *, title: str | None = None) -> Plot:
    """Left: throughput (requests/s) against the number of clients; right: p50 (solid) and p99 (dashed) latency."""
    if not rows:
        raise ValueError("nothing to plot: no rows measured yet")
    colours = _colours(rows)
    figure = Figure(figsize=(10, 4.4), layout="constrained")
    rate_ax, latency_ax = figure.subplots(1, 2)
    for name, colour in colours.items():
        mine = sorted((r for r in rows if r["server"] == name), key=lambda r: r["clients"])
        clients = [r["clients"] for r in mine]
        rate_ax.plot(clients, [r["rps"] for r in mine], "o-", color=colour, label=name)
        latency_ax.plot(clients, [r["p50_s"] for r in mine], "o-", color=colour)
        latency_ax.plot(clients, [r["p99_s"] for r in mine], "s--", color=colour)
    latency_ax.plot([], [], "k-", label="p50 (median)")
    latency_ax.plot([], [], "k--", label="p99")
    for ax in (rate_ax, latency_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # 10 and 200, not 10^1 and 2x10^2
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        ax.set_xlabel("concurrent clients (log scale)")
        ax.grid(alpha=0.3, which="both")
    rate_ax.set(ylabel="throughput (successful requests/s, log)", title="Throughput")
    latency_ax.set(ylabel="latency (s, log)", title="Latency p50 and p99")
    latency_ax.legend(loc="upper left", frameon=False, fontsize=8)
    figure.suptitle(title or f"Showdown: {WORKLOAD_LABELS.get(workload, workload)}")
    figure.legend(*rate_ax.get_legend_handles_labels(), loc="outside lower center",
                  ncols=min(len(colours), 3), frameon=False)
    top = max(r["clients"] for r in rows)
    best = sorted((r for r in rows if r["clients"] == top), key=lambda r: -r["rps"])
    summary = f"{top} clients, {WORKLOAD_LABELS.get(workload, workload)}: " + "; ".join(
        f"{r['server']} {format_rate(r['rps'])}, p50 {format_seconds(r['p50_s'])}, "
        f"p99 {format_seconds(r['p99_s'])}" + (f", {r['errors']} failed" if r.get("errors") else "")
        for r in best)
    alt = ("Two line charts against the number of concurrent clients on a log scale, one line per server. Left: "
           "throughput in requests per second; right: median (solid) and 99th percentile (dashed) latency in "
           f"seconds. {summary}.")
    return Plot(figure, alt, summary)


# --- the panel ----------------------------------------------------------------------------------------------------

CLIENT_CHOICES = (1, 5, 10, 20, 40, 50, 100, 200, 500, 1000)


def _live_html(plot: Plot) -> str:
    """The plot so far. Named by aria-label, not alt: the finished plot below is the one with alt text (and the
    one a page's tests wait for)."""
    png = base64.b64encode(plot.png()).decode("ascii")
    return (f'<img src="data:image/png;base64,{png}" role="img" aria-label="{html.escape(plot.alt, quote=True)}" '
            f'style="max-width:100%;display:block"><p>{html.escape(plot.summary)}</p>')


def showdown_panel(servers: Iterable[str] | None = None, workload: str = "io", clients: int = 40, *,
                   extra: Iterable[Contender] = (), record: bool = True):
    """A predict-then-run panel: pick the servers, the workload and the most clients; the plot grows while it runs,
    one server after another. `extra`: your own Contenders, e.g.
    Contender("mine", "wsgi", lambda app: serve_socket(...)). Each run is recorded as "08.showdown"."""
    import ipywidgets as widgets

    from gatewaylab.demos import PredictRun

    everyone = {c.name: c for c in [*CONTENDERS, *extra]}
    chosen = list(servers) if servers is not None else list(everyone)
    unknown = [name for name in chosen if name not in everyone]
    if unknown:
        raise ValueError(f"no such server: {', '.join(unknown)}; choose from {', '.join(everyone)}")
    pick = widgets.SelectMultiple(options=list(everyone), value=chosen, rows=min(len(everyone), 7),
                                  description="servers", layout=widgets.Layout(width="32em"))
    kind = widgets.Dropdown(options=[(label, key) for key, label in WORKLOAD_LABELS.items()], value=workload,
                            description="workload", style={"description_width": "initial"})
    most = widgets.SelectionSlider(options=CLIENT_CHOICES, value=clients, description="clients up to",
                                   style={"description_width": "initial"})
    live = widgets.HTML("")  # the plot so far, while the run goes on

    def run(progress):
        if not pick.value:
            raise ValueError("pick at least one server (Ctrl- or Shift-click to pick several)")
        work, contenders = kind.value, [everyone[name] for name in pick.value]

        def each(rows):
            live.value = _live_html(showdown_plot(rows, work, title="so far: " + WORKLOAD_LABELS[work]))
        rows = measure(contenders, work, levels_up_to(most.value), progress=progress, each=each)
        live.value = ""
        if record:
            record_showdown(work, rows)
        return {"workload": work, "rows": rows}

    def ratio(result) -> float:
        top = max(r["clients"] for r in result["rows"])
        rates = [r["rps"] for r in result["rows"] if r["clients"] == top]
        return max(rates) / max(min(rates), 1e-9)

    return PredictRun(
        "At the most clients, how many times the slowest server's throughput will the fastest reach? "
        "(Pick servers with Ctrl- or Shift-click.)", "×", run,
        lambda result, prediction: showdown_plot(result["rows"], result["workload"]),
        measure=ratio, title="Concurrency showdown",
        controls=[pick, widgets.HBox([kind, most]), live])


# --- memory per connection ----------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int | None:
    """A process's resident memory (KiB), from /proc or psutil; None when neither can tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss // 1024
    except Exception:  # no psutil, or the process has gone
        return None


HOLD_REQUEST = b"GET /hold HTTP/1.1\r\nHost: showdown\r\n\r\n"


def _held(url: str) -> int:
    import httpx

    return int(httpx.get(url + "/count", timeout=5).text)


def memory_per_connection(connections: int = 1000, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Open `connections` long-lived requests to a thread-per-connection WSGI server (wsgiref's threaded server)
    and to an ASGI server (uvicorn, a task each), each in a child process; the growth of its resident memory
    divided by the connections. {"connections": n, "kib_per_connection": {"threads": x, "tasks": y}, "rss_kib":
    {kind: [before, after]}}"""
    _raise_file_limit(connections)
    figures = {"connections": connections, "kib_per_connection": {}, "rss_kib": {}}
    for step, kind in enumerate(("threads", "tasks")):
        server = serve_command([sys.executable, "-m", "gatewaylab.showdown", "serve", f"hold-{kind}",
                                "--port", "{port}"], name=f"l08-hold-{kind}")
        sockets: list[socket.socket] = []
        try:
            _held(server.url)  # warm: the first request builds what every later one reuses
            before = rss_kib(server.process.pid)
            for n in range(connections):
                sock = socket.create_connection(server.address, timeout=10)
                sock.sendall(HOLD_REQUEST)
                sockets.append(sock)
                if progress is not None and n % 50 == 0:
                    progress(step * connections + n, 2 * connections)
            deadline = time.monotonic() + START_TIMEOUT
            while _held(server.url) < connections:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {kind} server held only {_held(server.url)} of {connections}")
                time.sleep(0.05)
            after = rss_kib(server.process.pid)
        finally:
            for sock in sockets:
                sock.close()
            server.stop()
        if before is None or after is None:
            raise RuntimeError("cannot read a process's memory here: no /proc, and psutil is not installed")
        figures["rss_kib"][kind] = [before, after]
        figures["kib_per_connection"][kind] = round((after - before) / connections, 2)
    if progress is not None:
        progress(2 * connections, 2 * connections)
    return figures


def memory_plot(figures: dict) -> Plot:
    per = figures["kib_per_connection"]
    figure = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = figure.add_subplot()
    labels = {"threads": "a thread each\n(wsgiref threaded, WSGI)", "tasks": "a task each\n(uvicorn, ASGI)"}
    bars = ax.bar([labels[k] for k in per], list(per.values()), color=SERIES_COLOURS[:len(per)],
                  label=[labels[k].split("\n")[0] for k in per])
    ax.bar_label(bars, labels=[f"{v:.1f} KiB" for v in per.values()], padding=2)
    ax.set(ylabel="resident memory per connection (KiB)", xlabel="how the server holds a connection",
           title=f"Memory per connection, {figures['connections']} long-lived connections")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False)
    summary = f"{figures['connections']} held connections: " + ", ".join(
        f"{kind} {value:.1f} KiB each" for kind, value in per.items())
    if per.get("tasks", 0) > 0:
        summary += f" (a thread costs {per['threads'] / per['tasks']:.1f}× a task)"
    alt = f"Bar chart of resident memory per connection in KiB, one bar per kind of server. {summary}."
    return Plot(figure, alt, summary)


# --- where the event loop loses: one CPU-bound request among quick ones -------------------------------------------

STALL_CONTENDERS = {  # kind: (name, start, worker processes)
    "threads": ("pool WSGI (course, 10 threads, one process)", _child("pool", POOL_THREADS), 1),
    "asgi": ("uvicorn (ASGI, one event loop)", _child("uvicorn"), 1),
    "processes": ("gunicorn (2 sync worker processes)", _gunicorn(2, 1, "sync"), 2),
}


def _blocking(coroutine):
    """Run a coroutine to its end in a fresh event loop in a worker thread (a notebook cell's loop is running)."""
    outcome: dict = {}

    def work():
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
    worker = threading.Thread(target=work, name="gatewaylab-showdown", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def _stall_run(url: str, cpu_ms: float, probes: int) -> tuple[float, list[float]]:
    """One request of cpu_ms ms of CPU; meanwhile `probes` /hello requests, spread over 1.5 x cpu_ms, one by one.
    (the CPU request's latency, the probes' latencies)"""
    cpu = asyncio.create_task(run_load(f"{url}/cpu?ms={cpu_ms:g}", 1, timeout=30))
    await asyncio.sleep(0.02)  # the CPU request is being served

    async def probe(i):
        await asyncio.sleep(i * 1.5 * cpu_ms / 1000 / probes)
        return (await run_load(url + "/hello", 1, timeout=30)).records[0]
    records = await asyncio.gather(*(probe(i) for i in range(probes)))
    heavy = (await cpu).records[0]
    if not heavy.ok or not all(r.ok for r in records):
        raise RuntimeError(f"some requests failed: {[r.error or r.status for r in [heavy, *records] if not r.ok]}")
    return heavy.latency, [r.latency for r in records]


async def _warm_up(url: str, workers: int, timeout: float = START_TIMEOUT) -> set[int]:
    """Until `workers` different processes have answered: rounds of `workers` requests at once to /pid?delay=0.2
    (while one worker waits, the next request needs another). A gunicorn that has just started may still be booting
    its second worker, and one worker can answer every request of a round. The process ids seen."""
    import httpx

    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while len(pids) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(pids)} of {workers} worker processes answered at {url}")
            replies = await asyncio.gather(*(client.get(f"{url}/pid", params={"delay": "0.2"})
                                             for _ in range(workers)))
            pids.update(int(reply.text) for reply in replies)
    return pids


def _p(values: list[float], p: float) -> float:
    """The p-th percentile of values by nearest rank (ceil(p * n / 100), exact for whole p; p / 100 * n is not:
    7 / 100 * 100 is 7.000000000000001)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def cpu_stall(cpu_ms: float = 200, probes: int = 20, kinds: Iterable[str] = ("threads", "asgi", "processes"),
              *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Each server gets one request that computes cpu_ms ms while quick /hello requests keep arriving; how long the
    quick ones took. {"cpu_ms": c, "p99_s": {kind: s}, "p50_s": {...}, "cpu_s": {...}, "latencies_s": {...}}; the
    percentiles by nearest rank (measured latencies: with 20 probes, p99 is the slowest of them)."""
    kinds = list(kinds)
    figures: dict = {"cpu_ms": cpu_ms, "p99_s": {}, "p50_s": {}, "cpu_s": {}, "latencies_s": {}, "servers": {}}
    for step, kind in enumerate(kinds):
        name, start, workers = STALL_CONTENDERS[kind]
        url, stop = _url_and_stop(start(wsgi_app if kind != "asgi" else asgi_app))
        try:
            _blocking(_warm_up(url, workers))  # every worker process up and answering, not only the first
            heavy, quick = _blocking(_stall_run(url, cpu_ms, probes))
        finally:
            stop()
        figures["servers"][kind] = name
        figures["cpu_s"][kind] = round(heavy, 4)
        figures["latencies_s"][kind] = [round(v, 5) for v in quick]
        figures["p50_s"][kind], figures["p99_s"][kind] = round(_p(quick, 50), 5), round(_p(quick, 99), 5)
        if progress is not None:
            progress(step + 1, len(kinds))
    return figures


def cpu_stall_plot(figures: dict) -> Plot:
    kinds = list(figures["latencies_s"])
    figure = Figure(figsize=(8, 4.4), layout="constrained")
    ax = figure.add_subplot()
    for i, kind in enumerate(kinds):
        values = figures["latencies_s"][kind]
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.plot(range(1, len(values) + 1), values, "o-", color=colour,
                label=f"{figures['servers'].get(kind, kind)}: p99 {format_seconds(figures['p99_s'][kind])}")
    ax.axhline(figures["cpu_ms"] / 1000, color="black", linestyle=":", label=f"the CPU request's "
               f"{figures['cpu_ms']:g} ms")
    ax.set(xlabel="quick request (number, in the order sent)", ylabel="latency (s)",
           title=f"One {figures['cpu_ms']:g} ms CPU-bound request among quick ones")
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    summary = f"quick requests beside one {figures['cpu_ms']:g} ms computation, p99: " + ", ".join(
        f"{kind} {format_seconds(figures['p99_s'][kind])}" for kind in kinds)
    alt = (f"Line chart of the latency in seconds of each quick request, in the order sent, one line per server, "
           f"with a dotted line at the CPU request's duration. {summary}.")
    return Plot(figure, alt, summary)


# --- the child processes: python -m gatewaylab.showdown serve KIND --port N ---------------------------------------

_hold_lock = threading.Lock()
_holding = [0]
_release = threading.Event()


def _text(start_response, body: str):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body.encode()]


def hold_wsgi(environ, start_response):
    """/hold keeps its thread until the server stops; /count says how many are held."""
    if environ.get("PATH_INFO") == "/count":
        return _text(start_response, str(_holding[0]))
    with _hold_lock:
        _holding[0] += 1
    try:
        _release.wait(300)
    finally:
        with _hold_lock:
            _holding[0] -= 1
    return _text(start_response, "released\n")


async def hold_asgi(scope, receive, send):
    """/hold keeps its task until the client leaves; /count says how many are held."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/count":
        body = str(_holding[0]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    _holding[0] += 1
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        _holding[0] -= 1


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.showdown",
                                     description="Serve one of the showdown's set-ups until stopped.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("kind", choices=["sequential", "pool", "uvicorn", "gatewaylab-asgi", "hold-threads",
                                        "hold-tasks"])
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=POOL_THREADS)
    args = parser.parse_args(argv)
    _raise_file_limit(1100)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    where = dict(name="showdown", port=args.port)
    starters = {
        "sequential": lambda: serve_wsgi(wsgi_app, server="gatewaylab-sequential", **where),
        "pool": lambda: serve_wsgi(wsgi_app, server="gatewaylab", threads=args.threads, **where),
        "uvicorn": lambda: serve_asgi(asgi_app, server="uvicorn", **where),
        "gatewaylab-asgi": lambda: serve_asgi(asgi_app, server="gatewaylab", **where),
        "hold-threads": lambda: serve_wsgi(hold_wsgi, server="wsgiref-threaded", **where),
        "hold-tasks": lambda: serve_asgi(hold_asgi, server="uvicorn", lifespan="off", **where),
    }
    try:
        starters[args.kind]()
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        _release.set()
        stop_all()


if __name__ == "__main__":
    main()


# --- the notes app: blocking calls in async views, found with the loop-lag monitor and fixed ------------------------

NOTES_VERSIONS = ("flask", "blocking", "fixed")


def _hold_write_lock(path: str, seconds: float, held: threading.Event) -> None:
    """Another writer (a batch job, say): take the database's write lock and keep it `seconds` s."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()


def measure_notes(version: str = "blocking", clients: int = 10, *, busy_s: float = 0.0,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Serve the notes app (`version`: "flask" under the course's pool of `clients` threads, "blocking" or "fixed"
    Starlette under uvicorn) in a fresh SQLite file, with the slow upstream; send `clients` POST /notes at once.
    busy_s: another connection holds the database's write lock that long meanwhile.
    {"version", "clients", "wall_s", "max_lag_ms" (None for Flask: no loop), "ok", "stored"}"""
    import tempfile

    from gatewaylab import notes_app

    if version not in NOTES_VERSIONS:
        raise ValueError(f"version must be one of {', '.join(NOTES_VERSIONS)}, not {version!r}")
    with tempfile.TemporaryDirectory(prefix="gatewaylab-notes-") as folder:
        path = os.path.join(folder, "notes.db")
        notes_app.create_db(path)
        with serve_asgi(notes_app.upstream_app, name="l08-measure-upstream") as upstream:
            up = upstream.url  # the apps ask for /tag?text=... there
            if version == "flask":
                server = serve_wsgi(notes_app.flask_app(path, up), name="l08-measure-notes", server="gatewaylab",
                                    threads=max(2, min(clients, 50)))
                app = None
            else:
                make = notes_app.starlette_app if version == "blocking" else notes_app.fixed_starlette_app
                app = make(path, up)
                server = serve_asgi(app, name="l08-measure-notes", lifespan="on")
            with server:
                load(server.url + "/notes", 1, method="GET", timeout=10)  # warm up
                seen = len(app.state.monitor.lags) if app is not None else 0
                if busy_s:
                    held = threading.Event()
                    locker = threading.Thread(target=_hold_write_lock, args=(path, busy_s, held), daemon=True)
                    locker.start()
                    held.wait(5)
                result = load(server.url + "/notes?text=buy%20milk", clients, method="POST", timeout=30,
                              progress=progress)
                time.sleep(0.05)  # the heartbeat notes a stall when it wakes, just after the stall ends
                lag = max((late for _, late in app.state.monitor.lags[seen:]), default=0.0) \
                    if app is not None else None
                if busy_s:
                    locker.join()
        stored = len(notes_app.list_notes(path))
    return {"version": version, "clients": clients, "wall_s": round(result.wall, 4),
            "max_lag_ms": None if lag is None else round(lag * 1000, 1), "ok": result.ok, "stored": stored}


# --- the learner's figures, for lesson 10 ---------------------------------------------------------------------------

def record_memory(figures: dict) -> dict:
    """Keep memory_per_connection's figures as "08.memory"; return them."""
    from gatewaylab import measurements

    per = figures["kib_per_connection"]
    measurements.record("08.memory", figures, f"{figures['connections']} held connections: a thread each "
                        f"{per['threads']:.1f} KiB, a task each {per['tasks']:.1f} KiB per connection")
    return figures


def record_cpu_stall(figures: dict) -> dict:
    """Keep cpu_stall's figures as "08.cpu_stall"; return them."""
    from gatewaylab import measurements

    measurements.record("08.cpu_stall", figures, f"quick requests beside one {figures['cpu_ms']:g} ms computation, "
                        "p99: " + ", ".join(f"{kind} {format_seconds(s)}" for kind, s in figures["p99_s"].items()))
    return figures


def record_notes(blocking: dict, fixed: dict) -> dict:
    """Keep two measure_notes runs (the blocking app and the fixed one) as "08.notes_app"; return the figures."""
    from gatewaylab import measurements

    figures = {"clients": blocking["clients"],
               "wall_s": {"blocking": blocking["wall_s"], "fixed": fixed["wall_s"]},
               "max_lag_ms": {"blocking": blocking["max_lag_ms"], "fixed": fixed["max_lag_ms"]}}
    measurements.record("08.notes_app", figures, f"{blocking['clients']} notes at once: blocking "
                        f"{format_seconds(blocking['wall_s'])} (loop stalled {blocking['max_lag_ms']:.0f} ms), "
                        f"fixed {format_seconds(fixed['wall_s'])} (stalled {fixed['max_lag_ms']:.0f} ms)")
    return figures
