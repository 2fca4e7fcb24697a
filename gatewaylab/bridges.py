"""WSGI apps under an ASGI server, through two adapters, measured (lesson 10).

    >>> run = race(requests=4, delay=1.0)   # run.results: {"WsgiToAsgi": LoadResult, "a2wsgi": ...}
    >>> panel = bridge_panel()              # the same as a predict-then-run panel

asgiref's `WsgiToAsgi` and a2wsgi's `WSGIMiddleware` both turn a WSGI app into an ASGI app. Under uvicorn, four
requests at once to a WSGI app that sleeps 1 s take about 4 s through the first and about 1 s through the second:
asgiref runs every WSGI call through `sync_to_async` with `thread_sensitive=True` (one shared thread), a2wsgi
through a pool of 10 threads. `ThreadNoting` shows it: it notes the thread that ran each request.
"""

import threading
import time
from typing import NamedTuple
from urllib.parse import parse_qs

from a2wsgi import WSGIMiddleware
from asgiref.wsgi import WsgiToAsgi

from gatewaylab import measurements
from gatewaylab.demos import PredictRun
from gatewaylab.load import load
from gatewaylab.plots import timeline
from gatewaylab.servers import serve_asgi

ADAPTERS = {"WsgiToAsgi": WsgiToAsgi, "a2wsgi": WSGIMiddleware}  # name -> what wraps a WSGI app


class ThreadNoting:
    """A WSGI app that waits ?delay= s (time.sleep, 1 s by default, at most 10) and notes the
    name of the thread that ran each request in `threads`."""

    def __init__(self):
        self.threads, self.lock = [], threading.Lock()

    def __call__(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            delay = min(max(float(query.get("delay", ["1"])[0]), 0.0), 10.0)
        except ValueError:
            delay = 1.0
        with self.lock:
            self.threads.append(threading.current_thread().name)
        time.sleep(delay)  # a blocking call, as a WSGI app makes
        body = threading.current_thread().name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]


class BridgeRace(NamedTuple):
    results: dict  # adapter name -> LoadResult
    threads: dict  # adapter name -> names of the threads that ran the app


def race(requests=4, delay=1.0, progress=None):
    """`requests` clients at once, through each adapter in turn, under uvicorn: a BridgeRace."""
    results, threads = {}, {}
    for number, (name, adapter) in enumerate(ADAPTERS.items()):
        app = ThreadNoting()
        with serve_asgi(adapter(app), name="bridge-race", lifespan="off") as server:
            def step(done, _total, before=number * requests):
                if progress:
                    progress(before + done, len(ADAPTERS) * requests)
            results[name] = load(f"{server.url}/?delay={delay}", requests, progress=step,
                                 timeout=requests * delay + 10, label=f"{name} under uvicorn")
        threads[name] = sorted(set(app.threads))
    return BridgeRace(results, threads)


def figures(run, requests, delay):
    """What race() measured, as lesson 10's "10.bridges" measurement keeps it."""
    return {"requests": requests, "delay_s": delay,
            "wall_s": {name: round(result.wall, 3) for name, result in run.results.items()},
            "threads": {name: len(names) for name, names in run.threads.items()}}


def summary(run, requests, delay):
    """One line: '4 x 1 s under uvicorn: WsgiToAsgi 4.01 s in 1 thread, a2wsgi ...'."""
    parts = []
    for name, result in run.results.items():
        count = len(run.threads[name])
        parts.append(f"{name} {result.wall:.2f} s in {count} thread{'' if count == 1 else 's'}")
    return f"{requests} x {delay:g} s under uvicorn: " + ", ".join(parts)


def recorded_race(requests=4, delay=1.0, progress=None):
    """race(), then its figures kept as "10.bridges" for the lesson's verdicts and choice."""
    run = race(requests, delay, progress)
    measurements.record("10.bridges", figures(run, requests, delay),
                        summary(run, requests, delay))
    return run


def bridge_panel(requests=4, delay=1.0):
    """Predict, then run: how long do `requests` requests at once take through WsgiToAsgi?"""
    def plot(run, prediction):
        return timeline(list(run.results.values()), ideal=delay, prediction=prediction,
                        title=f"{requests} requests at once to a WSGI app that sleeps {delay:g} s, "
                              "through two adapters, under uvicorn")

    return PredictRun(
        f"{requests} clients at once ask a WSGI app that calls `time.sleep({delay:g})`, wrapped in "
        "asgiref's `WsgiToAsgi` and served by uvicorn. How many seconds until all have their "
        "answer? (Then the same app through a2wsgi's `WSGIMiddleware`.)",
        "s", lambda progress: recorded_race(requests, delay, progress), plot,
        title="Two adapters, one WSGI app", button="Run both",
        measure=lambda run: run.results["WsgiToAsgi"].wall)
