"""Lesson 10's decision panel: describe your application, get WSGI or ASGI and a server set-up, with the reasons, each
beside the figure your own runs measured (gatewaylab.measurements).

    >>> advice = recommend(io_ms=80, cpu_ms=5, long_lived=False, framework="Flask", concurrency=40, cores=2)
    >>> advice.interface, advice.setup
    ('WSGI', 'gunicorn with gthread workers: 4 workers x 10 threads (`gunicorn -k gthread -w 4 --threads 10 app:app`)')
    >>> print(advice)             # the reasons, each with the figure of your own run, or the demo that measures it
    >>> decision_panel()          # the same, as widgets: change a value, the advice follows

The rules, in the order they are tried (each is one of the course's measured facts, see reference/specs.md):

1. CPU time at least the time spent waiting ("cpu"): processes, whichever interface the framework speaks. One Python
   process runs Python code on one core at a time (the GIL; lesson 04's CPU race), and an event loop does not wait
   faster than threads when there is nothing to wait for: async gains nothing (myth 2, claim 8), and CPU work inside
   `async def` stalls every connection of the loop (lesson 05's loop lag, lesson 08's CPU stall).
2. Long-lived connections: WebSocket, Server-Sent Events, long polls ("realtime"): ASGI. WebSocket needs it (WSGI has
   no way to take over the connection); SSE works under WSGI, but each open stream holds a thread for its whole life
   (myth 5; lesson 09 counts them).
3. Mostly waiting, many at once ("waiting-many", above HIGH_CONCURRENCY): ASGI: a waiting request is a task of a few KiB,
   not a thread (lesson 08's memory per connection, its showdown).
4. Mostly waiting, a modest number at once ("waiting-few", up to LOW_CONCURRENCY): WSGI with threads for a WSGI
   framework (Flask, Django): a pool of N threads serves N waiting requests at once (myth 1; lesson 04's pool), and it
   is the straightforward choice (claim 12). An ASGI framework (Starlette, FastAPI) stays ASGI.
5. In between ("judgement"): either works; the framework and the code you have decide. Said to be a judgement call.

The framework narrows the set-up: Flask is WSGI only (its async views still hold a worker thread; Quart is its ASGI
twin), Django speaks both (async views gain only under ASGI, myth 3; its ASGI handler serves HTTP only, WebSocket
needs Channels), Starlette and FastAPI are ASGI.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from gatewaylab.html_style import LEFT

__all__ = ["recommend", "Advice", "Reason", "decision_panel", "DecisionPanel", "FRAMEWORKS", "LOW_CONCURRENCY",
           "HIGH_CONCURRENCY", "DEMOS"]

FRAMEWORKS = ("Flask", "Django", "Starlette", "FastAPI", "other")
WSGI_FRAMEWORKS, ASGI_FRAMEWORKS = ("Flask",), ("Starlette", "FastAPI")
LOW_CONCURRENCY = 100  # requests waiting at once that a pool of threads serves without a second thought
HIGH_CONCURRENCY = 1000  # beyond this, a thread per waiting request is the cost that decides

# Which demo fills in each measurement, for "run lesson NN's ... to measure this".
DEMOS = {
    "04.slow_requests": "lesson 04's slow-requests panels (sequential, then pool)",
    "05.loop_lag": "lesson 05's loop-lag demo",
    "07.race": "lesson 07's race of the course's ASGI server against uvicorn",
    "08.showdown": "lesson 08's showdown",
    "08.memory": "lesson 08's memory-per-connection measurement",
    "08.cpu_stall": "lesson 08's CPU-stall demo",
    "08.notes_app": "lesson 08's notes app",
    "09.sse_streams": "lesson 09's Server-Sent Events streams",
    "09.websocket": "lesson 09's WebSocket broadcast",
    "10.bridges": "lesson 10's bridges race",
}

_GREEN, _ORANGE, _GREY = "#009E73", "#E69F00", "#555555"  # Okabe-Ito bluish green and orange; grey for asides


@dataclass
class Reason:
    """One reason for the advice, and the figure of the learner's own run that backs it (key: a measurement key)."""

    text: str
    key: str | None = None
    figure: str | None = None  # what the learner measured, in words; None: not measured yet (or no key)

    @property
    def missing(self) -> str | None:
        """"run lesson 08's showdown to measure this" when the reason has a key and no figure yet."""
        if self.key is None or self.figure is not None:
            return None
        return f"run {DEMOS.get(self.key, self.key)} to measure this"

    def __str__(self) -> str:
        if self.figure is not None:
            return f"{self.text} Your run: {self.figure}."
        return f"{self.text}" + (f" [{self.missing}]" if self.missing else "")


@dataclass
class Advice:
    """What recommend() says: the interface, the server set-up, why, and whether it is a judgement call."""

    interface: str  # "WSGI" or "ASGI"
    setup: str  # the server set-up, with a command line
    rule: str  # which rule decided: "cpu", "realtime", "waiting-many", "waiting-few", "judgement"
    reasons: list[Reason] = field(default_factory=list)
    judgement: str | None = None  # when it is a judgement call: what would tip it
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> int:
        """How many reasons carry a figure of the learner's own."""
        return sum(r.figure is not None for r in self.reasons)

    @property
    def to_measure(self) -> list[str]:
        """The demos to run to back the reasons that have no figure yet (each once)."""
        return list(dict.fromkeys(r.missing for r in self.reasons if r.missing))

    def __str__(self) -> str:
        lines = [f"{self.interface}: {self.setup}"]
        if self.judgement:
            lines.append(f"A judgement call: {self.judgement}")
        lines += [f"- {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def html(self) -> str:
        rows = []
        for reason in self.reasons:
            if reason.figure is not None:
                backing = f"<span style='color:{_GREEN}'>your run: {html.escape(reason.figure)}</span>"
            elif reason.missing:
                backing = f"<span style='color:{_GREY}'>not measured yet: {html.escape(reason.missing)}</span>"
            else:
                backing = f"<span style='color:{_GREY}'>(a fact of the framework, nothing to measure)</span>"
            rows.append(f"<tr><td style='{LEFT};padding:0.2em 0.6em 0.2em 0'>{html.escape(reason.text)}</td>"
                        f"<td style='{LEFT};padding:0.2em 0'>{backing}</td></tr>")
        judgement = (f"<p style='margin:0.3em 0;border-left:4px solid {_ORANGE};padding-left:0.5em'><b>A judgement "
                     f"call.</b> {html.escape(self.judgement)}</p>" if self.judgement else "")
        return (f"<div class='gatewaylab-advice' style='line-height:1.45'>"
                f"<p style='margin:0.3em 0'><b>{self.interface}</b>: {html.escape(self.setup)}</p>{judgement}"
                f"<table style='border-collapse:collapse'><thead><tr><th style='{LEFT}'>why</th>"
                f"<th style='{LEFT}'>measured on your machine</th></tr></thead><tbody>{''.join(rows)}</tbody>"
                f"</table></div>")

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return str(self)


# --- the learner's figures, in words (each accepts figures with fields missing: then there is nothing to say) -------

def _s(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _fig_slow_requests(f: dict) -> str:
    wall = f["wall_s"]
    parts = [f"{name} {_s(wall[name])}" if name != "pool" else f"pool of {f['pool_size']} {_s(wall['pool'])}"
             for name in ("sequential", "threaded", "pool") if name in wall]
    if "pool" not in wall:
        raise KeyError("pool")  # the pool's figure is the one this reason needs
    return f"{f['clients']} requests of {f['delay_s']:g} s: " + ", ".join(parts)


def _fig_loop_lag(f: dict) -> str:
    return (f"a blocking call in async def stalled the loop {f['blocking_ms']:.0f} ms; "
            f"in asyncio.to_thread {f['fixed_ms']:.0f} ms")


def _fig_race(f: dict) -> str:
    wall = f["wall_s"]
    return (f"{f['clients']} requests of {f['delay_s']:g} s on one thread: the course's ASGI server "
            f"{_s(wall['gatewaylab'])}, uvicorn {_s(wall['uvicorn'])}")


def _fig_showdown(f: dict) -> str:
    rows = f["rows"]
    top = max(row["clients"] for row in rows)
    at_top = sorted((row for row in rows if row["clients"] == top), key=lambda row: -row["rps"])
    return (f"{f.get('workload', 'the showdown')} at {top} clients: "
            + "; ".join(f"{row['server']} {row['rps']:.0f} req/s, p99 {_s(row['p99_s'])}" for row in at_top))


def _fig_memory(f: dict, concurrency: int | None = None) -> str:
    per = f["kib_per_connection"]
    text = (f"{f['connections']} open connections: {per['threads']:.0f} KiB each as threads, "
            f"{per['tasks']:.0f} KiB as tasks")
    if concurrency:
        text += (f"; at {concurrency} at once, about {per['threads'] * concurrency / 1024:.0f} MiB against "
                 f"{per['tasks'] * concurrency / 1024:.0f} MiB")
    return text


def _fig_cpu_stall(f: dict) -> str:
    p99 = f["p99_s"]
    return f"{f['cpu_ms']:g} ms of CPU per request: p99 {_s(p99['threads'])} with threads, {_s(p99['asgi'])} under ASGI"


def _fig_notes_app(f: dict) -> str:
    return (f"{f['clients']} clients of the notes app: {_s(f['wall_s']['blocking'])} with the blocking call, "
            f"{_s(f['wall_s']['fixed'])} fixed; worst loop lag {f['max_lag_ms']['blocking']:.0f} ms against "
            f"{f['max_lag_ms']['fixed']:.0f} ms")


def _fig_sse(f: dict) -> str:
    threads = f["threads"]
    return (f"{f['streams']} open streams held {threads['wsgi']} threads under WSGI, {threads['asgi']} "
            f"under ASGI")


def _fig_websocket(f: dict) -> str:
    return f"a broadcast reached {f['clients']} WebSocket clients in {_s(f['broadcast_s'])}"


def _fig_bridges(f: dict) -> str:
    wall = f["wall_s"]
    return (f"{f['requests']} requests of {f['delay_s']:g} s to a WSGI app under an ASGI server: WsgiToAsgi "
            f"{_s(wall['WsgiToAsgi'])}, a2wsgi {_s(wall['a2wsgi'])}")


FIGURES: dict[str, Callable[..., str]] = {
    "04.slow_requests": _fig_slow_requests, "05.loop_lag": _fig_loop_lag, "07.race": _fig_race,
    "08.showdown": _fig_showdown, "08.memory": _fig_memory, "08.cpu_stall": _fig_cpu_stall,
    "08.notes_app": _fig_notes_app, "09.sse_streams": _fig_sse, "09.websocket": _fig_websocket,
    "10.bridges": _fig_bridges,
}


def _figure(measured: dict, key: str, **extra) -> str | None:
    """The learner's figure for key in words; None when that demo has not been run (or kept figures lack a field)."""
    entry = measured.get(key)
    figures = entry.get("figures") if isinstance(entry, dict) else None
    if not isinstance(figures, dict):
        return None
    try:
        return FIGURES[key](figures, **extra)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None  # figures of an older shape, or incomplete: as good as not measured


# --- the rules -----------------------------------------------------------------------------------------------------

def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of 0 or more, not {value!r}")
    return float(value)


def _framework(name: str) -> str:
    for known in FRAMEWORKS:
        if isinstance(name, str) and name.strip().lower() == known.lower():
            return known
    raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, not {name!r}")


def _asgi_setup(cores: int, framework: str) -> str:
    app = {"Django": "project.asgi:application"}.get(framework, "app:app")
    return (f"uvicorn with {cores} worker process{'es' if cores > 1 else ''}, one per core "
            f"(`uvicorn --workers {cores} {app}`), or behind gunicorn or another process manager")


def _threads_setup(cores: int, concurrency: int, framework: str) -> str:
    workers = 2 * cores  # gunicorn's docs (its workers setting): "generally in the 2-4 x $(NUM_CORES) range"
    threads = max(4, math.ceil(concurrency / workers))  # together, a thread for every request waiting at once
    app = {"Django": "project.wsgi"}.get(framework, "app:app")
    return (f"gunicorn with gthread workers: {workers} workers x {threads} threads "
            f"(`gunicorn -k gthread -w {workers} --threads {threads} {app}`)")


def _processes_setup(cores: int, framework: str, interface: str) -> str:
    if interface == "ASGI":
        return _asgi_setup(cores, framework) + "; the CPU work in plain `def` endpoints or a process pool"
    app = {"Django": "project.wsgi"}.get(framework, "app:app")
    return (f"gunicorn with {cores} sync worker process{'es' if cores > 1 else ''}, one per core "
            f"(`gunicorn -w {cores} {app}`)")


def recommend(io_ms: float, cpu_ms: float, long_lived: bool, framework: str, concurrency: int, *,
              cores: int | None = None, measured: dict | None = None) -> Advice:
    """WSGI or ASGI, and a server set-up, for an application that per request waits `io_ms` ms on I/O (a database,
    another service) and computes `cpu_ms` ms in Python; `long_lived`: it keeps connections open (WebSocket, Server-
    Sent Events, long polls); `framework`: one of FRAMEWORKS; `concurrency`: requests (or open connections) at once.

    cores: this machine's (os.cpu_count()) unless given. measured: the learner's figures, as
    gatewaylab.measurements.load() returns them (read from the file unless given; {} for none).
    """
    io_ms, cpu_ms = _number(io_ms, "io_ms"), _number(cpu_ms, "cpu_ms")
    if io_ms + cpu_ms == 0:
        raise ValueError("a request takes some time: give its I/O wait or its CPU time in ms")
    if not isinstance(long_lived, bool):
        raise TypeError(f"long_lived must be True or False, not {long_lived!r}")
    framework = _framework(framework)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of 1 or more, not {concurrency!r}")
    cores = cores or os.cpu_count() or 1
    if measured is None:
        from gatewaylab import measurements

        measured = measurements.load()

    def reason(text: str, key: str | None = None, **extra) -> Reason:
        return Reason(text, key, _figure(measured, key, **extra) if key else None)

    inputs = dict(io_ms=io_ms, cpu_ms=cpu_ms, long_lived=long_lived, framework=framework, concurrency=concurrency,
                  cores=cores)
    reasons: list[Reason] = []
    speaks = "WSGI" if framework in WSGI_FRAMEWORKS else "ASGI" if framework in ASGI_FRAMEWORKS else None
    busy_cores = concurrency * cpu_ms / (cpu_ms + io_ms)  # cores kept busy when `concurrency` requests run at once
    capacity = cores * 1000 / cpu_ms if cpu_ms else math.inf  # requests/s the cores can compute

    if cpu_ms >= io_ms:  # 1. CPU-bound
        interface = speaks or ("WSGI" if not long_lived else "ASGI")
        reasons.append(reason("Most of each request is Python computing: one process runs Python on one core at a "
                              "time (the GIL), so only more processes add throughput, under WSGI or ASGI alike.",
                              "08.cpu_stall"))
        reasons.append(reason("Async gains nothing here: an event loop overlaps waiting, and there is little to "
                              "wait for; CPU work inside async def stalls every other connection of its loop.",
                              "05.loop_lag"))
        reasons.append(Reason(f"{cores} core{'s' if cores > 1 else ''} compute at most about {capacity:.0f} "
                              f"requests/s of {cpu_ms:g} ms each; {concurrency} at once keep about "
                              f"{busy_cores:.1f} cores busy."))
        judgement = None
        if busy_cores > cores:
            judgement = (f"{concurrency} requests at once need about {busy_cores:.0f} cores and this machine has "
                         f"{cores}: requests will queue whatever the server. More cores or machines, or less CPU "
                         f"per request (a cache, a faster library), decide it, not the interface.")
        if long_lived:
            reasons.append(reason("Long-lived connections need ASGI (WebSocket has no WSGI form); keep the "
                                  "computing off the loop, in a process pool (loop.run_in_executor).",
                                  "09.websocket"))
            judgement = judgement or ("CPU-heavy and long-lived at once: ASGI for the connections, processes for "
                                      "the computing; you may split them into two services.")
        return Advice(interface, _processes_setup(cores, framework, interface), "cpu", reasons, judgement, inputs)

    if long_lived:  # 2. real time
        reasons.append(reason("WebSocket needs ASGI: WSGI has no way to hand the connection over to the app.",
                              "09.websocket"))
        reasons.append(reason("Server-Sent Events work under WSGI, but each open stream holds a thread (or a "
                              "worker) for as long as it is open; under ASGI a stream is a task.", "09.sse_streams"))
        reasons.append(reason(f"{concurrency} open connections as threads against tasks:", "08.memory",
                              concurrency=concurrency))
        setup, judgement = _asgi_setup(cores, framework), None
        if framework == "Flask":
            setup = ("keep the Flask app under WSGI (" + _threads_setup(cores, min(concurrency, LOW_CONCURRENCY),
                     framework) + ") and serve the real-time part from an ASGI app beside it (Starlette, or Quart, "
                     "Flask's ASGI twin) under uvicorn; or mount Flask inside that ASGI app with a2wsgi")
            reasons.append(reason("Flask is WSGI only. Under an ASGI server a WSGI app runs through an adapter: "
                                  "asgiref's WsgiToAsgi uses one shared thread by default, a2wsgi a pool.",
                                  "10.bridges"))
            judgement = ("with Flask the real-time part moves to an ASGI app: a second app beside Flask, or a port "
                         "to Quart. Which costs less depends on how much of the app is real time.")
        elif framework == "Django":
            setup += "; Django's ASGI handler serves HTTP only: WebSocket needs Channels"
            reasons.append(Reason("Django speaks ASGI (since 3.0), but its own ASGI handler serves HTTP only: "
                                  "WebSocket consumers come from Channels."))
        if cores > 1:  # the set-up has a worker process per core
            reasons.append(Reason("Clients connected to different worker processes share no memory: a broadcast "
                                  "(a chat room) needs one process or a message bus between them."))
        return Advice("ASGI", setup, "realtime", reasons, judgement, inputs)

    # 3-5. mostly waiting
    waiting = [reason(f"Each request mostly waits ({io_ms:g} ms waiting, {cpu_ms:g} ms computing): under WSGI a "
                      "pool of N threads serves N waiting requests at once, so WSGI is not one at a time.",
                      "04.slow_requests"),
               reason("Under ASGI one thread overlaps all the waits, as long as nothing blocks the loop.",
                      "07.race")]
    if concurrency > HIGH_CONCURRENCY:  # 3.
        reasons += waiting[1:]
        reasons.append(reason(f"{concurrency} requests waiting at once are {concurrency} threads under WSGI, "
                              f"{concurrency} tasks under ASGI:", "08.memory", concurrency=concurrency))
        reasons.append(reason("Throughput and tail latency with many clients at once:", "08.showdown"))
        reasons.append(reason("One blocking call in async code undoes it: every call that waits must be awaited "
                              "(or run in asyncio.to_thread).", "08.notes_app"))
        setup, judgement = _asgi_setup(cores, framework), None
        if framework == "Flask":
            setup = ("port the busy endpoints to Quart (Flask's ASGI twin) or Starlette under uvicorn; or stay on "
                     + _threads_setup(cores, concurrency, framework) + " and budget the threads' memory")
            reasons.append(Reason("Flask is WSGI: its async views still hold a worker thread each."))
            judgement = ("Flask at this concurrency: ASGI means another framework; thousands of threads under "
                         "WSGI work too, at their memory cost (above).")
        elif framework == "Django":
            setup += ", with async views (and async ORM calls) all the way down"
            reasons.append(Reason("Django: async views pay only under ASGI (under WSGI they run in a one-off "
                                  "event loop); sync views under ASGI each run in a thread, as under WSGI."))
        return Advice("ASGI", setup, "waiting-many", reasons, judgement, inputs)

    if concurrency <= LOW_CONCURRENCY:  # 4.
        reasons += waiting
        if speaks == "ASGI":
            reasons.append(Reason(f"{framework} is an ASGI framework: it runs under an ASGI server (a plain `def` "
                                  "endpoint runs in Starlette's thread pool, 40 threads by default)."))
            return Advice("ASGI", _asgi_setup(cores, framework), "waiting-few", reasons, None, inputs)
        reasons.append(reason(f"{concurrency} at once is a small pool: threads are cheap at this count.",
                              "08.memory", concurrency=concurrency))
        if framework == "Django":
            reasons.append(Reason("Django: async views pay only under ASGI; with sync views, WSGI with threads "
                                  "does the same work with less machinery."))
        reasons.append(Reason("The straightforward choice for a traditional app at modest concurrency: its code, "
                              "its libraries and its debugger stay synchronous."))
        return Advice("WSGI", _threads_setup(cores, concurrency, framework), "waiting-few", reasons, None, inputs)

    # 5. in between
    reasons += waiting
    reasons.append(reason(f"{concurrency} requests at once, as threads against tasks:", "08.memory",
                          concurrency=concurrency))
    reasons.append(reason("Throughput and tail latency with many clients at once:", "08.showdown"))
    if speaks == "ASGI" or framework == "Django":
        interface, setup = "ASGI", _asgi_setup(cores, framework)
        if framework == "Django":
            setup += ", with async views; or WSGI with threads (" + _threads_setup(cores, concurrency,
                                                                                   framework) + ")"
        judgement = (f"{concurrency} at once is within reach of threads and of tasks. ASGI if the code is async "
                     f"already (async views, async database driver); WSGI with threads if it is synchronous.")
    else:
        interface, setup = "WSGI", _threads_setup(cores, concurrency, framework)
        judgement = (f"{concurrency} at once is within reach of a thread pool and of an event loop. Stay on WSGI "
                     f"with threads while the memory above is acceptable; ASGI once it is not, or the connections "
                     f"must stay open.")
    return Advice(interface, setup, "judgement", reasons, judgement, inputs)


# --- the panel -----------------------------------------------------------------------------------------------------

class DecisionPanel:
    """The decision panel: your application's numbers in, the advice out; it follows every change of a value.

    Where widgets cannot show, call recommend(...) with the same values: it is what the panel calls.
    """

    def __init__(self, io_ms: float = 50, cpu_ms: float = 5, long_lived: bool = False, framework: str = "Flask",
                 concurrency: int = 50, *, cores: int | None = None):
        import ipywidgets as widgets

        style = {"description_width": "initial"}
        self.io_ms = widgets.BoundedFloatText(io_ms, min=0, max=3_600_000, description="waiting on I/O per "
                                              "request (ms):", style=style)
        self.cpu_ms = widgets.BoundedFloatText(cpu_ms, min=0, max=3_600_000, description="CPU time per request "
                                               "(ms):", style=style)
        self.long_lived = widgets.Checkbox(long_lived, description="long-lived connections (WebSocket, SSE, "
                                           "long polls)", style=style, indent=False)
        self.framework = widgets.Dropdown(options=list(FRAMEWORKS), value=_framework(framework),
                                          description="framework:", style=style)
        self.concurrency = widgets.BoundedIntText(concurrency, min=1, max=10_000_000, description="requests or "
                                                  "connections at once:", style=style)
        self.cores = cores
        self.output = widgets.HTML("")
        self.advice: Advice | None = None
        heading = widgets.HTML("<h4 style='margin:0.4em 0'>Your application: WSGI or ASGI?</h4>")
        self.widget = widgets.VBox([heading, widgets.HBox([self.io_ms, self.cpu_ms]),
                                    widgets.HBox([self.framework, self.concurrency]), self.long_lived,
                                    self.output])
        self.widget.add_class("gatewaylab-decision")
        for control in (self.io_ms, self.cpu_ms, self.long_lived, self.framework, self.concurrency):
            control.observe(self.update, names="value")
        self.update()

    def update(self, _change=None) -> Advice | None:
        """Recompute the advice from the widgets' values (and the measurements file, read again)."""
        try:
            self.advice = recommend(self.io_ms.value, self.cpu_ms.value, self.long_lived.value,
                                    self.framework.value, self.concurrency.value, cores=self.cores)
        except (TypeError, ValueError) as exc:
            self.advice = None
            self.output.value = f"<p style='color:#D55E00'>{html.escape(str(exc))}</p>"
            return None
        self.output.value = self.advice.html()
        return self.advice

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ("The decision panel (widgets cannot show here; call recommend(io_ms, cpu_ms, "
                                "long_lived, framework, concurrency) instead). With its values now:\n"
                                + str(self.advice if self.advice is not None else "no advice: a value is wrong"))
        return bundle

    def __repr__(self) -> str:
        return str(self.advice)


def decision_panel(io_ms: float = 50, cpu_ms: float = 5, long_lived: bool = False, framework: str = "Flask",
                   concurrency: int = 50, *, cores: int | None = None) -> DecisionPanel:
    """Lesson 10's decision panel, with these starting values (see recommend for what each means)."""
    return DecisionPanel(io_ms, cpu_ms, long_lived, framework, concurrency, cores=cores)
