"""Predict, then run: widget panels for the course's live demos, and the same demos as plain calls.

    >>> demo = teaser_race()        # shows the question, a box for your prediction, a Run button
    >>> race = demo.run(2.0)        # or run it headless: blocks, returns the measurements, fills the panel too

A panel's Run button starts the measurement in a background thread, so the notebook stays responsive and the progress
bar moves. That thread updates the browser only by assigning widget values (HTML.value, IntProgress.value): output
printed from a thread with `with out:` lands in whichever cell runs at that moment (JupyterLab) or stalls a headless run
(nbclient), so nothing here prints.
"""

from __future__ import annotations

import asyncio
import html
import threading
import time
import traceback
from typing import Any, Callable, NamedTuple
from urllib.parse import parse_qs

import ipywidgets as widgets

from gatewaylab.load import LoadResult, load
from gatewaylab.plots import OKABE_ITO, Plot, timeline
from gatewaylab.servers import serve_asgi, serve_wsgi

__all__ = ["PredictRun", "teaser_race", "Race", "slow_wsgi_app", "slow_asgi_app"]


class PredictRun:
    """A predict-then-run panel.

    run(progress) does the measurement and returns a result; it may call progress(done, total) from any thread.
    plot(result, prediction) turns the result into a Plot. measure(result) gives the number the learner predicted
    (default: a LoadResult's wall time); the panel compares it with the prediction. button: the Run button's label.
    """

    def __init__(self, question: str, unit: str, run: Callable[[Callable[[int, int], None]], Any],
                 plot: Callable[[Any, float | None], Plot], *, default: float | None = None, title: str | None = None,
                 measure: Callable[[Any], float] | None = None, button: str = "Run"):
        for name, value in (("run", run), ("plot", plot)):
            if not callable(value):
                raise TypeError(f"{name} must be a function, not {value!r}")
        if measure is not None and not callable(measure):
            raise TypeError(f"measure must be a function, not {measure!r}")
        self.question, self.unit, self.title = question, unit, title
        self._run, self._plot, self._measure = run, plot, measure or _wall_time
        self.result: Any = None
        self.last_plot: Plot | None = None
        self.thread: threading.Thread | None = None
        self._busy = threading.Lock()  # one measurement at a time, whether from the button or from run()

        self.prediction = widgets.FloatText(value=_number("default", default) or 0.0,
                                            description=f"Your prediction ({unit}):",
                                            style={"description_width": "initial"})
        self.button = widgets.Button(description=button, icon="play", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=1)
        self.status = widgets.HTML(f"Type your prediction, then press {html.escape(button)}.")
        self.output = widgets.HTML("")  # the comparison and the plot
        heading = [widgets.HTML(f"<h4>{html.escape(title)}</h4>")] if title else []
        self.widget = widgets.VBox(heading + [
            widgets.HTML(f"<p>{html.escape(question)}</p>"),
            widgets.HBox([self.prediction, self.button]),
            widgets.HBox([self.progress, self.status]),
            self.output,
        ])
        self.widget.add_class("gatewaylab-demo")  # a handle for the page's CSS and for browser tests
        self.button.on_click(lambda _button: self.start())

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def start(self) -> threading.Thread | None:
        """What the Run button does: measure in a background thread and return at once (None if already running)."""
        if not self._busy.acquire(blocking=False):
            return None
        self.button.disabled = True
        prediction = self.prediction.value
        self.thread = threading.Thread(target=self._in_background, args=(prediction,), name="gatewaylab-demo",
                                       daemon=True)
        self.thread.start()
        return self.thread

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a measurement started with the button (or start()) to end."""
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self, prediction: float | None = None):
        """The demo as a plain, blocking call: measure, fill the panel, return the result (errors are raised)."""
        prediction = _number("prediction", prediction)
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this demo is already running; wait for it to finish")
        if prediction is not None:
            self.prediction.value = prediction
        return self._measure_and_show(prediction)

    def _in_background(self, prediction: float) -> None:
        try:
            self._measure_and_show(prediction)
        except Exception:
            pass  # already shown in the panel, where the learner looks; a thread's traceback would go unseen

    def _measure_and_show(self, prediction: float | None):
        """Runs holding self._busy; releases it."""
        try:
            self.button.disabled = True
            self.progress.value = 0
            self.status.value = "running…"
            self.output.value = ""
            started = time.perf_counter()
            try:
                result = self._run(self._show_progress)
                plot = self._plot(result, prediction)
                if not isinstance(plot, Plot):
                    raise TypeError(f"the demo's plot function returned {type(plot).__name__}, not a Plot")
                measured = self._measure(result)
            except Exception as exc:
                self.status.value = (f"<span style='color:{OKABE_ITO['vermillion']}'>failed: "
                                     f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>")
                self.output.value = f"<pre>{html.escape(traceback.format_exc())}</pre>"
                raise
            self.result, self.last_plot = result, plot
            self.output.value = f"<p><b>{html.escape(self.comparison(prediction, measured))}</b></p>{plot.html()}"
            self.status.value = f"done in {time.perf_counter() - started:.1f} s"
            return result
        finally:
            self.button.disabled = False
            self._busy.release()

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)

    def comparison(self, prediction: float | None, measured: float | None) -> str:
        """'you predicted 2.0 s; measured 10.1 s'"""
        unit = f" {self.unit}" if self.unit else ""
        said = f"measured {_show(measured)}{unit}" if measured is not None else "done"
        return said if prediction is None else f"you predicted {_show(prediction)}{unit}; {said}"


def _wall_time(result) -> float | None:
    return result.wall if isinstance(result, LoadResult) else None


def _show(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def _number(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    return float(value)


# --- lesson 00's teaser -----------------------------------------------------------------------------------------------

class Race(NamedTuple):
    wsgi: LoadResult
    asgi: LoadResult


def slow_wsgi_app(environ, start_response):
    """Wait, then say hello: ?delay=0.5 sets the wait in seconds. time.sleep blocks the thread that runs the app."""
    delay = _delay(environ.get("QUERY_STRING", ""))
    if delay is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"delay must be a number of seconds from 0 to 10"]
    time.sleep(delay)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


async def slow_asgi_app(scope, receive, send):
    """The same endpoint in ASGI. `await asyncio.sleep` lets the event loop serve other requests meanwhile."""
    delay = _delay(scope["query_string"].decode("latin-1"))
    if delay is None:
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"delay must be a number of seconds from 0 to 10"})
        return
    await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _delay(query: str) -> float | None:
    """The ?delay= value (default 0.5 s), or None when it is not a number from 0 to 10."""
    try:
        delay = float(parse_qs(query).get("delay", ["0.5"])[0])
    except ValueError:
        return None
    return delay if 0 <= delay <= 10 else None


def teaser_race(clients: int = 20, delay: float = 0.5) -> PredictRun:
    """Lesson 00's teaser: `clients` simultaneous requests to an endpoint that waits `delay` s, served by wsgiref's
    sequential WSGI server and then by uvicorn (ASGI). The learner predicts how long the WSGI server takes.
    At the defaults it takes about 20 x 0.5 s = 10 s, plus 0.5 s for uvicorn."""
    if isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= 1000:
        raise ValueError(f"clients must be a whole number from 1 to 1000, not {clients!r}")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 < delay <= 10:
        raise ValueError(f"delay must be a number of seconds above 0 and at most 10, not {delay!r}")
    timeout = clients * delay + 10  # the last request to a sequential server waits for all the others

    def race(progress) -> Race:
        total = 2 * clients
        with serve_wsgi(slow_wsgi_app, name="teaser-wsgi") as server:
            wsgi = load(f"{server.url}/?delay={delay}", clients, timeout=timeout, label="wsgiref (WSGI, sequential)",
                        progress=lambda done, _total: progress(done, total))
        # lifespan="off": the app has nothing to set up, and its code stays about requests alone
        with serve_asgi(slow_asgi_app, name="teaser-asgi", lifespan="off") as server:
            asgi = load(f"{server.url}/?delay={delay}", clients, timeout=timeout, label="uvicorn (ASGI)",
                        progress=lambda done, _total: progress(clients + done, total))
        return Race(wsgi, asgi)

    def plot(result: Race, prediction: float | None) -> Plot:
        return timeline([result.wsgi, result.asgi], ideal=delay, prediction=prediction,
                        title=f"{clients} clients at once, an endpoint that waits {delay:g} s: WSGI vs ASGI")

    demo = PredictRun(
        f"{clients} clients send one request each, all at the same moment, to an endpoint that waits {delay:g} s and "
        f"then answers \"hello\". Served by Python's built-in WSGI server (wsgiref.simple_server), how many seconds "
        f"until all {clients} have their answer? (Then the same endpoint runs under uvicorn, an ASGI server.)",
        "s", race, plot, title="Teaser: one slow endpoint, two servers", button="Run the race",
        measure=lambda result: result.wsgi.wall)
    demo.widget.add_class("gatewaylab-race")
    return demo
