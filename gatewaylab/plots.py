"""Timing plots of load runs, readable by everyone: colour-blind-safe colours, labelled axes, alt text, a summary line.

    >>> timeline([wsgi_result, asgi_result], ideal=0.5, prediction=2.0)   # when each request ran
    >>> latency_summary([wsgi_result, asgi_result])                         # p50 / p95 / max and throughput

A `Plot` shows in a notebook as an <img> with alt text followed by its one-line summary (and as the summary alone in
plain text). Figures are built with matplotlib's object API and drawn with the Agg renderer, never through pyplot: they
are not registered with pyplot, so they never pile up, never show twice under `%matplotlib inline`, and are freed with
the Plot.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gatewaylab.load import LoadResult, format_rate, format_seconds

__all__ = ["Plot", "timeline", "latency_summary", "OKABE_ITO", "SERIES_COLOURS"]

# Okabe & Ito (2008), "Color Universal Design": eight colours that stay distinct under the common colour-vision
# deficiencies.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
# One colour per LoadResult, in this order (yellow last: it is faint on white). Reference lines use black and
# vermillion, and differ by line style too.
SERIES_COLOURS = [OKABE_ITO[name] for name in
                  ("blue", "orange", "bluish green", "reddish purple", "sky blue", "vermillion", "yellow")]
IDEAL_COLOUR, PREDICTION_COLOUR = OKABE_ITO["black"], OKABE_ITO["vermillion"]
IDEAL_WIDTH, PREDICTION_WIDTH = 1.5, 6.0  # points: the band is wide enough to show on both sides of the ideal


class Plot:
    """A rendered figure with its alt text and one-line summary."""

    def __init__(self, figure: Figure, alt: str, summary: str):
        self.figure, self.alt, self.summary = figure, alt, summary

    def png(self) -> bytes:
        buffer = io.BytesIO()
        FigureCanvasAgg(self.figure).print_png(buffer)
        return buffer.getvalue()

    def html(self) -> str:
        """An <img> (the PNG inline) with the alt text, and the summary in a paragraph: for an ipywidgets.HTML."""
        return self._html(base64.b64encode(self.png()).decode("ascii"))

    def _html(self, png_base64: str) -> str:
        return (f'<img src="data:image/png;base64,{png_base64}" alt="{html.escape(self.alt, quote=True)}" '
                f'style="max-width:100%;display:block"><p>{html.escape(self.summary)}</p>')

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        png_base64 = base64.b64encode(self.png()).decode("ascii")  # render once for both
        return {"text/html": self._html(png_base64), "image/png": png_base64, "text/plain": self.summary}

    def __repr__(self) -> str:
        return self.summary


def _results(results) -> list[LoadResult]:
    """One LoadResult or a list of them, checked."""
    if isinstance(results, LoadResult):
        return [results]
    if isinstance(results, (str, bytes)) or not isinstance(results, Iterable):
        raise TypeError(f"expected a LoadResult or a list of them, not {type(results).__name__}")
    results = list(results)
    if not results:
        raise ValueError("nothing to plot: the list of results is empty")
    for item in results:
        if not isinstance(item, LoadResult):
            raise TypeError(f"expected LoadResult items (what load() returns), not {type(item).__name__}")
    return results


def _labels(results: list[LoadResult]) -> list[str]:
    return [result.label or f"run {i + 1}" for i, result in enumerate(results)]


def _seconds(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds (0 or more), not {value!r}")
    return float(value)


def _outcome(result: LoadResult) -> str:
    count = len(result.records)
    done = f"all {count} OK" if result.ok == count else f"{result.ok} of {count} OK"
    return f"{done} by {format_seconds(result.wall)}"


def axis_seconds(seconds: float) -> str:
    """A time for a legend beside an axis in seconds: in seconds too (0.05 -> '0.05 s', not '50 ms')."""
    return f"{seconds:.3g} s"


def timeline(results, *, ideal: float | None = None, prediction: float | None = None,
             title: str | None = None) -> Plot:
    """One horizontal bar per request, from when it started to when it ended; one colour per LoadResult.

    ideal: a reference time (s), e.g. one request's delay, drawn as a thin dashed black line; prediction: the learner's
    guess (s), drawn as a wide, see-through vermillion band with a triangle above the plot, under the ideal's line
    (so both show when they are equal); None draws none. Requests are listed in the order they finished, each result
    in its own band.
    """
    results = _results(results)
    ideal, prediction = _seconds("ideal", ideal), _seconds("prediction", prediction)
    labels = _labels(results)
    total = sum(len(result.records) for result in results)
    figure = Figure(figsize=(8, min(6.0, 2.6 + 0.09 * total)), layout="constrained")
    ax = figure.add_subplot()

    row, failed_x, failed_y = 0, [], []
    for index, (result, label) in enumerate(zip(results, labels)):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        ordered = sorted(result.records, key=lambda record: (record.end, record.index))
        # Rectangles in one collection: a thousand bars draw in a blink (Axes.barh makes an artist per bar).
        boxes = [[(r.start, y - 0.4), (r.end, y - 0.4), (r.end, y + 0.4), (r.start, y + 0.4)]
                 for y, r in enumerate(ordered, start=row)]
        # The edge keeps even a sub-millisecond request visible as a thin mark.
        ax.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors=colour, linewidths=0.5,
                                         label=f"{label}: {_outcome(result)}"))
        for y, record in enumerate(ordered, start=row):
            if record.error is not None:
                failed_x.append(record.end)
                failed_y.append(y)
        row += len(ordered)
        if index < len(results) - 1:
            ax.axhline(row - 0.5, color="#999999", linewidth=0.8)
    if failed_x:
        ax.plot(failed_x, failed_y, "x", color=OKABE_ITO["black"], markersize=5, linestyle="none",
                label=f"no response ({len(failed_x)})")
    if prediction is not None:
        # A wide, see-through band with a triangle above the plot, under the thin dashed ideal: a prediction equal
        # to the ideal shows as the dashed line inside the band, and the triangle marks it even then.
        ax.axvline(prediction, color=to_rgba(PREDICTION_COLOUR, 0.5), linewidth=PREDICTION_WIDTH,
                   solid_capstyle="butt", zorder=3, marker="v", markevery=[1], markersize=10,
                   markerfacecolor=PREDICTION_COLOUR, markeredgecolor=PREDICTION_COLOUR, clip_on=False,
                   label=f"your prediction: {axis_seconds(prediction)}")
    if ideal is not None:
        ax.axvline(ideal, color=IDEAL_COLOUR, linestyle="--", linewidth=IDEAL_WIDTH, zorder=4,
                   label=f"ideal: {axis_seconds(ideal)}")

    right = max([r.end for result in results for r in result.records] + [ideal or 0, prediction or 0])
    ax.set_xlim(0, right * 1.04 or 1)
    ax.set_ylim(row - 0.5, -0.5)  # first request at the top
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("request (in order of finishing)")
    ax.set_title(title or "When each request ran", pad=10)  # room for the prediction's triangle
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, frameon=False)

    parts = [f"{label}: {_outcome(result)}" for result, label in zip(results, labels)]
    if ideal is not None:
        parts.append(f"ideal {format_seconds(ideal)}")
    if prediction is not None:
        parts.append(f"you predicted {format_seconds(prediction)}")
    summary = "; ".join(parts)
    alt = (f"Timeline of {total} requests, one horizontal bar per request from its start to its end; x axis: time "
           f"since start in seconds; y axis: requests in order of finishing. "
           + " ".join(_describe(result, label) for result, label in zip(results, labels))
           + (f" A dashed line marks the ideal, {format_seconds(ideal)}." if ideal is not None else "")
           + (f" A wide band with a triangle above it marks your prediction, {format_seconds(prediction)}"
              + (", the same as the ideal." if prediction == ideal else ".") if prediction is not None else ""))
    return Plot(figure, alt, summary)


def _describe(result: LoadResult, label: str) -> str:
    text = f"{label}: {len(result.records)} requests from {result.clients} clients, {result.ok} OK"
    if result.errors:
        text += f", {result.errors} without a response (marked with crosses)"
    if result.latencies:
        text += (f"; the last ended at {format_seconds(result.wall)}; "
                 f"latency p50 {format_seconds(result.percentile(50))}, max {format_seconds(max(result.latencies))}.")
    else:
        text += f"; none got a response; the run took {format_seconds(result.wall)}."
    return text


STATISTICS = (("p50", 50), ("p95", 95), ("max", 100))


def latency_summary(results, *, title: str | None = None) -> Plot:
    """Per result: latency p50, p95 and max (left, in seconds) and throughput (right, successful requests/s)."""
    results = _results(results)
    labels = _labels(results)
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    latency_ax, throughput_ax = figure.subplots(1, 2, width_ratios=[3, 1.4])
    width = 0.8 / len(results)

    for index, (result, label) in enumerate(zip(results, labels)):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        offset = (index - (len(results) - 1) / 2) * width
        values = [result.percentile(p) if result.latencies else 0.0 for _, p in STATISTICS]
        bars = latency_ax.bar([x + offset for x in range(len(STATISTICS))], values, width, color=colour, label=label)
        latency_ax.bar_label(bars, labels=[format_seconds(v) if result.latencies else "no responses" for v in values],
                             fontsize=8, padding=2)
        bars = throughput_ax.bar([offset], [result.throughput], width, color=colour)
        throughput_ax.bar_label(bars, labels=[format_rate(result.throughput)], fontsize=8, padding=2)

    latency_ax.set_xticks(range(len(STATISTICS)), [name for name, _ in STATISTICS])
    latency_ax.set_xlabel("latency statistic over requests that got a response")
    latency_ax.set_ylabel("latency (s)")
    latency_ax.set_title("Latency")
    throughput_ax.set_xticks([0], ["all requests"])
    throughput_ax.set_xlabel("whole run")
    throughput_ax.set_ylabel("throughput (successful requests/s)")
    throughput_ax.set_title("Throughput")
    for ax in (latency_ax, throughput_ax):
        ax.margins(y=0.15)  # room for the value labels above the bars
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(title or "Latency and throughput")
    figure.legend(loc="outside lower center", ncols=min(len(results), 4), frameon=False)

    parts = []
    for result, label in zip(results, labels):
        if result.latencies:
            parts.append(f"{label}: p50 {format_seconds(result.percentile(50))}, p95 "
                         f"{format_seconds(result.percentile(95))}, max {format_seconds(max(result.latencies))}, "
                         f"{format_rate(result.throughput)}")
        else:
            parts.append(f"{label}: no responses")
    summary = "; ".join(parts)
    alt = ("Two bar charts. Left: latency in seconds at p50, p95 and max, one bar per run; right: throughput in "
           f"successful requests per second, one bar per run. {summary}.")
    return Plot(figure, alt, summary)
