"""Predict, then run: widget panels for the course's live demos, and the same demos as plain calls.

    >>> demo = teaser_race()                 # shows the question, a box for your prediction, a Run button
    >>> race = demo.run(prediction=2.0)      # or as a plain call (headless, text front ends): blocks, returns the
    ...                                      # measurements, fills the panel too

A panel's Run button starts the measurement in a background thread, so the notebook stays responsive and the progress
bar moves. That thread updates the browser only by assigning widget values (HTML.value, IntProgress.value): output
printed from a thread with `with out:` lands in whichever cell runs at that moment (JupyterLab) or stalls a headless run
(nbclient), so nothing here prints.
"""

from __future__ import annotations

import asyncio
import html
import math
import textwrap
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import parse_qs

import ipywidgets as widgets

from gatewaylab.load import LoadResult, load
from gatewaylab.plots import OKABE_ITO, Plot, timeline
from gatewaylab.servers import serve_asgi, serve_wsgi

__all__ = ["PredictRun", "show_when", "teaser_race", "Race", "slow_wsgi_app", "slow_asgi_app", "slow_requests_record",
           "loop_lag_record"]


class PredictRun:
    """A predict-then-run panel: a question, a box for your prediction, a Run button, and the measurement drawn
    against what you predicted.

    In JupyterLab (or any front end that shows widgets): type your prediction in the box, press Run. Anywhere else (a
    headless run, a text front end, a script) the panel cannot show; run the demo as a call instead, with your
    prediction, in the panel's unit:

        >>> panel.run(prediction=2.5)    # blocks until measured; returns the result; fills the panel too
        >>> panel.last_plot              # the plot: a picture in a notebook, its one-line summary in text

    A panel whose kernel has gone (the notebook was reopened, or its kernel restarted) says so in the notebook and
    asks you to run the cells above from the top, then its own cell again.

    Building one: run(progress) does the measurement and returns a result; it may call progress(done, total) from any
    thread. plot(result, prediction) turns the result into a Plot (prediction is None when there is none).
    measure(result) gives the number the learner predicted (default: a LoadResult's wall time); the panel compares it
    with the prediction. controls: more widgets (settings the learner can change), shown above the prediction box.
    button: the Run button's label. In question and title, `backticks` mark code.

    record(result) keeps what a run measured for lesson 10's decision panel: it returns (key, figures, summary) for
    gatewaylab.measurements.record, or None to keep nothing. It runs after each successful run, in the run's thread;
    whatever goes wrong in it (or in saving) is said in the panel's status line and never fails the demo.
    """

    def __init__(self, question: str, unit: str, run: Callable[[Callable[[int, int], None]], Any],
                 plot: Callable[[Any, float | None], Plot], *, default: float | None = None, title: str | None = None,
                 measure: Callable[[Any], float] | None = None, button: str = "Run",
                 controls: Iterable[widgets.Widget] = (),
                 record: Callable[[Any], tuple[str, dict, str] | None] | None = None):
        for name, value in (("run", run), ("plot", plot)):
            if not callable(value):
                raise TypeError(f"{name} must be a function, not {value!r}")
        for name, value in (("measure", measure), ("record", record)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a function, not {value!r}")
        controls = list(controls)
        for control in controls:
            if not isinstance(control, widgets.Widget):
                raise TypeError(f"controls must be widgets, not {control!r}")
        self.question, self.unit, self.title, self.button_label = question, unit, title, button
        self._run, self._plot, self._measure, self._record = run, plot, measure or _wall_time, record
        self.result: Any = None
        self.last_plot: Plot | None = None
        self.last_prediction: float | None = None
        self._last_measured: float | None = None
        self.thread: threading.Thread | None = None
        self._busy = threading.Lock()  # one measurement at a time, whether from the button or from run()
        self._id = uuid.uuid4().hex[:12]  # ties the panel to its "not live" note (see _ipython_display_)

        default = _prediction(default, "default")
        # A text box, not a number box: a number box cannot be blank, so "no prediction" would read as 0.
        self.prediction = widgets.Text(value="" if default is None else f"{default:g}",
                                       placeholder="a number", description=f"Your prediction ({unit}):",
                                       style={"description_width": "initial"})
        self.button = widgets.Button(description=button, icon="play", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=1)
        self.status = widgets.HTML(f"Type your prediction, then press “{html.escape(button)}”.")
        self.output = widgets.HTML("")  # the comparison and the plot
        # Hidden while the panel is live. ipywidgets marks a view whose kernel connection is gone with the class
        # jupyter-widgets-disconnected (after a kernel restart, or for a widget restored from a saved notebook):
        # the style sheet shows this box then, since the kernel that would answer the Run button is gone.
        self.stale = widgets.HTML(
            _block(f"<b>This panel has lost its kernel</b> (the kernel restarted, or the notebook was reopened): "
                   f"“{html.escape(button)}” can do nothing now. Run the cells above from the top (<i>Run ▸ Run All "
                   f"Above Selected Cell</i>), then this cell again, for a live panel.") + _style_sheet(self._id),
            layout=widgets.Layout(display="none"))
        self.stale.add_class("gatewaylab-stale")
        self._status_row = widgets.HBox([self.progress, self.status])
        self._status_row.add_class("gatewaylab-status")  # hidden with the kernel gone: the box above says why
        heading = [widgets.HTML(_block(f"<h4 style='margin:0.4em 0'>{_inline(title)}</h4>"))] if title else []
        self.widget = widgets.VBox(heading + [widgets.HTML(_block(f"<p style='margin:0'>{_inline(question)}</p>"))]
                                   + controls + [
            widgets.HBox([self.prediction, self.button]),
            self.stale,
            self._status_row,
            self.output,
        ])
        self.widget.add_class("gatewaylab-demo")  # a handle for the page's CSS and for browser tests
        self.button.on_click(lambda _button: self.start())

    # --- how the panel shows ---

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self._text()  # where widgets cannot show: what this is, and how to run it anyway
        return bundle

    def _ipython_display_(self):
        """The widget, then a note for when it cannot show. A notebook saved with its panels, reopened later, shows
        "Error displaying widget: model not found" where each panel was (JupyterLab's widget renderer says so, and
        falls back to no other format): the note below it says what to do. The live panel's style sheet hides it."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        display({"text/html": self.note_html()}, raw=True)  # no text/plain: a text front end has the repr's advice

    def note_html(self) -> str:
        """The note shown under the panel where the panel itself cannot be (hidden while the panel is live)."""
        return (f"<div class='gatewaylab-note gatewaylab-note-{self._id}' style='border-left:4px solid "
                f"{OKABE_ITO['orange']};padding:0.3em 0.8em;line-height:1.45'><b>No live panel above?</b> If you "
                f"see <i>Error displaying widget</i>, text or nothing where the panel should be, it belongs to a "
                f"kernel session that has ended. Run the cells above from the top (<i>Run ▸ Run All Above Selected "
                f"Cell</i>), then this cell again, to get the panel.</div>")

    def _name(self) -> str:
        """The name this panel has in the notebook (race = teaser_race() gives "race"), or "panel"."""
        try:
            from IPython import get_ipython

            names = get_ipython().user_ns if get_ipython() is not None else {}
        except Exception:  # no IPython: a plain script
            names = {}
        return next((name for name, value in list(names.items()) if value is self and not name.startswith("_")),
                    "panel")

    def _in_code(self, template: str) -> str:
        example = f"{self.last_prediction:g}" if self.last_prediction is not None else "2.5"
        return template.format(call=f"{self._name()}.run(prediction={example})")

    def _text(self) -> str:
        lines = [f"{self.title}: a predict-then-run panel" if self.title else "A predict-then-run panel"]
        lines += textwrap.wrap(_plain(self.question), 100)
        lines += textwrap.wrap(f"In JupyterLab, type your prediction in the panel's box and press "
                               f"\"{self.button_label}\". Reading this instead of the panel? It cannot show here. In a "
                               f"notebook, run the cells above from the top, then this cell. Where widgets cannot show "
                               f"at all (a headless run, a text front end), run it as a call with your prediction, in "
                               f"{self.unit or 'the unit asked for'}:", 100)
        lines.append(self._in_code("    {call}"))
        if self.last_plot is not None:
            lines.append(f"Last run: {self.comparison(self.last_prediction, self._last_measured)}; "
                         f"{self.last_plot.summary}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self._text()

    # --- running ---

    def start(self) -> threading.Thread | None:
        """What the Run button does: read the prediction box, measure in a background thread and return at once.
        Returns None (and says why in the panel) if the box holds no number, or a measurement is already running."""
        try:
            prediction = _prediction(self.prediction.value, "prediction", typed=True)
        except ValueError as exc:
            self.status.value = _warning(str(exc))
            return None
        if prediction is None:
            self.status.value = _warning(f"Type your prediction in the box first: a number, in {self.unit} (a guess "
                                         f"is fine), then press “{self.button_label}”.")
            return None
        if not self._busy.acquire(blocking=False):
            return None
        self.button.disabled = True
        self.thread = threading.Thread(target=self._in_background, args=(prediction,), name="gatewaylab-demo",
                                       daemon=True)
        self.thread.start()
        return self.thread

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a measurement started with the button (or start()) to end."""
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self, prediction: float | None = None):
        """The demo as a plain, blocking call: measure, fill the panel, return the result (errors are raised).
        prediction: your prediction in the panel's unit; without one, the run is recorded as "no prediction"."""
        prediction = _prediction(prediction, "prediction")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this demo is already running; wait for it to finish")
        self.prediction.value = "" if prediction is None else f"{prediction:g}"
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
                self.status.value = _warning(f"failed: {type(exc).__name__}: {exc}")
                self.output.value = f"<pre>{html.escape(traceback.format_exc())}</pre>"
                raise
            self.result, self.last_plot, self.last_prediction = result, plot, prediction
            self._last_measured = measured
            self.output.value = _block(f"<p style='margin:0.5em 0'><b>"
                                       f"{html.escape(self.comparison(prediction, measured))}</b></p>{plot.html()}")
            self.status.value = f"done in {time.perf_counter() - started:.1f} s" + self._keep(result)
            return result
        finally:
            self.button.disabled = False
            self._busy.release()

    def _keep(self, result) -> str:
        """Record the run's figures (if the panel has a record function); a note for the status line when that
        failed. Nothing raised here reaches the demo: its measurement stands whether or not it could be kept."""
        if self._record is None:
            return ""
        try:
            kept = self._record(result)
            if kept is not None:
                from gatewaylab import measurements  # only panels that record need it

                key, figures, summary = kept
                measurements.record(key, figures, summary)
        except Exception as exc:
            return html.escape(f" (not kept for lesson 10's comparison: {type(exc).__name__}: {exc})")
        return ""

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)

    def comparison(self, prediction: float | None, measured: float | None) -> str:
        """'you predicted 2.0 s; measured 10.1 s', or 'no prediction; measured 10.1 s'"""
        unit = f" {self.unit}" if self.unit else ""
        said = f"measured {_show(measured)}{unit}" if measured is not None else "done"
        guess = "no prediction" if prediction is None else f"you predicted {_show(prediction)}{unit}"
        return f"{guess}; {said}" if measured is not None or prediction is not None else said


def show_when(widget: widgets.Widget, control: widgets.Widget, *values) -> None:
    """Show `widget` only while `control.value` is one of `values` (a setting that only acts for some choices of
    another, like a pool size for a pooled server). Needs the kernel: the panel's own controls do."""
    if not values:
        raise ValueError("give the values of control for which the widget shows")

    def update(_change=None):
        widget.layout.display = None if control.value in values else "none"

    control.observe(update, names="value")
    update()


def _wall_time(result) -> float | None:
    return result.wall if isinstance(result, LoadResult) else None


def _show(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def _prediction(value, name: str, *, typed: bool = False) -> float | None:
    """A prediction (or a default) as a float, None for none; typed: it is the text of the box (blank means none,
    a decimal comma is accepted). Refuses what is not a number of 0 or more with a message for the learner."""
    if value is None:
        return None
    if typed:
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text.replace(",", ".") if "," in text and "." not in text else text)
        except ValueError:
            raise ValueError(f"“{text}” is not a number: type your prediction as a number, for example 2.5") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of 0 or more, not {value:g}")
    return float(value)


CODE_STYLE = "font-family:var(--jp-code-font-family,monospace);font-size:0.92em"


def _inline(text: str) -> str:
    """Text for the panel's HTML, escaped, with `code` in the code font."""
    parts = html.escape(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick is a backtick
        return html.escape(text)
    return "".join(f"<code style='{CODE_STYLE}'>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def _plain(text: str) -> str:
    return text if text.count("`") % 2 else text.replace("`", "")


def _block(inner: str) -> str:
    """An HTML widget's content at normal line spacing: ipywidgets gives every line the height of a whole widget row
    (--jp-widgets-inline-height), which double-spaces any text that wraps."""
    return f"<div style='line-height:1.45;white-space:normal'>{inner}</div>"


def _warning(text: str) -> str:
    return f"<span style='color:{OKABE_ITO['vermillion']}'>{html.escape(text)}</span>"


def _style_sheet(panel_id: str) -> str:
    """The rules that hide this panel's note while the panel is live, and show the lost-kernel box when it is not.
    They sit in the panel (an HTML widget's content), so they exist exactly where a live view of it was drawn."""
    note = f".gatewaylab-note-{panel_id}"
    return ("<style>"
            f"{note} {{display:none !important}}"
            f".jp-OutputArea-child:has({note}) {{display:none}}"  # the note's prompt and margins too (where :has works)
            ".gatewaylab-stale.jupyter-widgets-disconnected {display:flex !important; margin:0.3em 0;"
            f" padding:0.3em 0.8em; border-left:4px solid {OKABE_ITO['vermillion']}; background:#fdf1e8}}"
            ".gatewaylab-demo.jupyter-widgets-disconnected .jupyter-button {opacity:0.45; pointer-events:none}"
            ".gatewaylab-demo.jupyter-widgets-disconnected .gatewaylab-status {display:none}"
            # ipywidgets' broken-chain mark on every part of the panel: the box above says it once, in words
            ".gatewaylab-demo.jupyter-widgets-disconnected::before,"
            " .gatewaylab-demo .jupyter-widgets-disconnected::before {content:none; display:none}"
            "</style>")


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
    sequential WSGI server and then by uvicorn (ASGI). The learner predicts how long the WSGI server takes, in the
    panel or, where widgets cannot show, as a call: teaser_race().run(prediction=2.5).
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
        f"then answers \"hello\". Served by Python's built-in WSGI server (`wsgiref.simple_server`), how many seconds "
        f"until all {clients} have their answer? (Then the same endpoint runs under uvicorn, an ASGI server.)",
        "s", race, plot, title="Teaser: one slow endpoint, two servers", button="Run the race",
        measure=lambda result: result.wsgi.wall)
    demo.widget.add_class("gatewaylab-race")
    return demo


# --- what lessons 04 and 05 keep for lesson 10 (gatewaylab.measurements) ----------------------------------------------

SLOW_REQUEST_NAMES = {"sequential": "sequential", "threaded": "a thread per connection", "pool": "pool"}


def slow_requests_record(result: LoadResult, kind: str, clients: int, delay: float, pool: int | None = None,
                         **_other_settings) -> tuple[str, dict, str]:
    """Lesson 04's slow-requests panel, as PredictRun's record: ("04.slow_requests", figures, summary).

    figures: {"clients": N, "delay_s": d, "wall_s": {kind: s, ...}, "pool_size": n}. A run with the same clients and
    delay as the figures kept adds its kind's wall time to theirs (the sequential panel, then the pool's, give one
    comparison); other settings start afresh. A pool's wall time is kept with its pool size. A run in which any
    request failed is not kept (ValueError): its wall time would say nothing about the server.
    """
    from gatewaylab import measurements

    if kind not in SLOW_REQUEST_NAMES:
        raise ValueError(f"kind must be one of {', '.join(SLOW_REQUEST_NAMES)}, not {kind!r}")
    if result.ok != clients:
        raise ValueError(f"{clients - result.ok} of {clients} requests failed")
    kept = measurements.load().get("04.slow_requests", {}).get("figures", {})
    same = kept.get("clients") == clients and kept.get("delay_s") == delay and isinstance(kept.get("wall_s"), dict)
    wall = {name: s for name, s in kept["wall_s"].items() if name in SLOW_REQUEST_NAMES} if same else {}
    figures = {"clients": clients, "delay_s": delay, "wall_s": wall}
    if kind == "pool":
        if pool is None:
            raise ValueError("a pool's run needs its pool size")
        figures["pool_size"] = pool
    elif same and "pool" in wall and isinstance(kept.get("pool_size"), int):
        figures["pool_size"] = kept["pool_size"]
    else:
        wall.pop("pool", None)
    wall[kind] = round(result.wall, 3)
    parts = [(f"pool of {figures['pool_size']}" if name == "pool" else SLOW_REQUEST_NAMES[name])
             + f" {wall[name]:.2f} s" for name in SLOW_REQUEST_NAMES if name in wall]
    return "04.slow_requests", figures, f"{clients} clients x {delay:g} s: " + ", ".join(parts)


def loop_lag_record(blocking_s: float, fixed_s: float, calls: int = 5,
                    call_s: float = 0.1) -> tuple[str, dict, str]:
    """Lesson 05's loop-lag demo, as PredictRun's record: ("05.loop_lag", figures, summary), from the worst lag (s) of
    the heartbeat with the blocking call made in `async def`, and with it in asyncio.to_thread.
    figures: {"blocking_ms": ..., "fixed_ms": ..., "calls": 5, "call_ms": 100}."""
    figures = {"blocking_ms": round(blocking_s * 1000, 1), "fixed_ms": round(fixed_s * 1000, 1), "calls": calls,
               "call_ms": round(call_s * 1000, 1)}
    return "05.loop_lag", figures, (f"{calls} blocking calls of {call_s * 1000:g} ms: worst loop lag "
                                    f"{figures['blocking_ms']:g} ms in async def, {figures['fixed_ms']:g} ms "
                                    f"in asyncio.to_thread")
