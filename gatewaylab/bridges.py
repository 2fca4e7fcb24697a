"""WSGI apps under an ASGI server, through two adapters, measured (lesson 10).

    >>> run = race(requests=4, delay=1.0)   # run.results: {"WsgiToAsgi": LoadResult, "a2wsgi": ...}
    >>> panel = bridge_panel()              # the same as a predict-then-run panel

asgiref's `WsgiToAsgi` and a2wsgi's `WSGIMiddleware` both turn a WSGI app into an ASGI app. Under uvicorn, four
requests at once to a WSGI app that sleeps 1 s take about 4 s through the first and about 1 s through the second:
asgiref runs every WSGI call through `sync_to_async` with `thread_sensitive=True` (one shared thread), a2wsgi
through a pool of 10 threads. `ThreadNoting` shows it: it notes the thread that ran each request.
"""

import io
import sys
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

def environ_for(scope, body):
    """The WSGI environ (PEP 3333) for an ASGI http scope and its whole request body (bytes)."""
    root = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    path = scope["path"].encode("utf-8").decode("latin-1")  # native strings: latin-1
    server = scope.get("server") or ("localhost", 80)
    environ = {"REQUEST_METHOD": scope["method"], "SCRIPT_NAME": root,
               "PATH_INFO": path[len(root):] if path.startswith(root) else path,
               "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
               "SERVER_NAME": server[0], "SERVER_PORT": str(server[1] or 0),
               "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
               "CONTENT_LENGTH": str(len(body)),  # the whole body is here, however it came
               "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"),
               "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue  # the length of the body above, even when it came chunked
        key = key if key == "CONTENT_TYPE" else f"HTTP_{key}"
        value = value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value  # RFC 9110 5.3
    return environ


def scope_for(environ):
    """The ASGI http scope for a WSGI environ (its body is read apart, from wsgi.input)."""
    headers = [(key[5:].lower().replace("_", "-").encode("latin-1"), value.encode("latin-1"))
               for key, value in environ.items() if key.startswith("HTTP_")]
    headers += [(key.lower().replace("_", "-").encode("latin-1"), environ[key].encode("latin-1"))
                for key in ("CONTENT_TYPE", "CONTENT_LENGTH") if environ.get(key)]
    root = environ.get("SCRIPT_NAME", "")
    path = (root + environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
             "method": environ["REQUEST_METHOD"], "scheme": environ.get("wsgi.url_scheme", "http"),
             "path": path, "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
             "root_path": root.encode("latin-1").decode("utf-8", "replace"), "headers": headers,
             "server": (environ["SERVER_NAME"], int(environ["SERVER_PORT"]))}
    if environ.get("REMOTE_ADDR"):  # WSGI has no raw_path: the path came decoded
        scope["client"] = (environ["REMOTE_ADDR"], int(environ.get("REMOTE_PORT") or 0))
    return scope


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
