"""gatewaylab.plots: what a plot draws, says and shows, and that it leaves no figure behind."""

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex, to_rgb

from gatewaylab.load import LoadResult, RequestRecord
from gatewaylab.plots import OKABE_ITO, SERIES_COLOURS, Plot, latency_summary, timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def staircase(label, n=5, step=0.5):
    """What a sequential server does to n simultaneous requests: request k ends after (k + 1) steps."""
    records = [RequestRecord(i, i, 0.0, step * (n - i), 200, None) for i in range(n)]  # finishing in reverse order
    return LoadResult(label, "http://127.0.0.1:1/", n, records, wall=step * n)


def together(label, n=5, delay=0.5, failed=0):
    records = [RequestRecord(i, i, 0.0, delay, 200, None) for i in range(n - failed)]
    records += [RequestRecord(i, i, 0.0, 0.01, None, "connection refused") for i in range(n - failed, n)]
    return LoadResult(label, "http://127.0.0.1:1/", n, records, wall=delay)


def vertical_lines(ax):
    """(the ideal's line, the prediction's line)"""
    ideal = [line for line in ax.lines if line.get_linestyle() == "--"]
    prediction = [line for line in ax.lines if line.get_marker() == "v"]
    assert len(ideal) == len(prediction) == 1, ax.lines
    return ideal[0], prediction[0]


def legend_texts(plot):
    return [text.get_text() for legend in plot.figure.legends for text in legend.get_texts()]


def test_timeline_draws_one_bar_per_request_in_one_colour_per_result():
    plot = timeline([staircase("wsgi"), together("asgi", failed=1)], ideal=0.5, prediction=2.0, title="Race")
    ax = plot.figure.axes[0]
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [len(c.get_paths()) for c in bars] == [5, 5]
    assert [to_hex(c.get_facecolor()[0]) for c in bars] == [c.lower() for c in SERIES_COLOURS[:2]]
    # the staircase is ordered by finishing time: the first row ends first
    ends = [path.vertices[:, 0].max() for path in bars[0].get_paths()]
    assert ends == sorted(ends) == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    assert ax.get_title() == "Race"
    assert ax.get_xlabel() == "time since start (s)" and ax.get_ylabel().startswith("request")
    ideal, prediction = vertical_lines(ax)
    assert ideal.get_xdata()[0] == 0.5 and prediction.get_xdata()[0] == 2.0
    assert ideal.get_linestyle() == "--" and to_hex(ideal.get_color()) == OKABE_ITO["black"].lower()
    assert to_hex(prediction.get_color()) == OKABE_ITO["vermillion"].lower()
    texts = legend_texts(plot)
    assert "wsgi: all 5 OK by 2.50 s" in texts and "asgi: 4 of 5 OK by 0.50 s" in texts
    assert "ideal: 0.5 s" in texts and "your prediction: 2 s" in texts and "no response (1)" in texts


def test_timeline_says_in_words_what_it_shows():
    plot = timeline([staircase("wsgi"), together("asgi")], ideal=0.5, prediction=2.0)
    assert plot.summary == "wsgi: all 5 OK by 2.50 s; asgi: all 5 OK by 0.50 s; ideal 0.50 s; you predicted 2.00 s"
    for fact in ("Timeline of 10 requests", "wsgi: 5 requests from 5 clients, 5 OK", "the last ended at 2.50 s",
                 "dashed line marks the ideal, 0.50 s", "band with a triangle above it marks your prediction, 2.00 s."):
        assert fact in plot.alt


def test_a_prediction_equal_to_the_ideal_stays_visible_and_so_does_the_ideal():
    plot = timeline([staircase("wsgi"), together("asgi")], ideal=0.5, prediction=0.5)
    ax = plot.figure.axes[0]
    ideal, prediction = vertical_lines(ax)
    assert ideal.get_zorder() > prediction.get_zorder()  # the thin ideal is drawn over the wide prediction
    assert prediction.get_linewidth() >= 3 * ideal.get_linewidth()  # so the band shows on both sides of it
    assert list(prediction.get_markevery()) == [1] and not prediction.get_clip_on()  # a triangle above the plot
    assert "your prediction, 0.50 s, the same as the ideal" in plot.alt
    # In the picture: along the line, both the ideal's black and the prediction's vermillion show.
    pixels = plt.imread(io.BytesIO(plot.png()))[:, :, :3]
    x, _ = ax.transData.transform((0.5, 0))
    top, bottom = [plot.figure.bbox.height - ax.transAxes.transform((0, y))[1] for y in (1, 0)]
    column = pixels[int(top) + 2:int(bottom) - 2, int(x) - 6:int(x) + 7].reshape(-1, 3)
    black = (column.max(axis=1) < 0.25).sum()
    vermillion = ((column[:, 0] > 0.8) & (column[:, 1] > 0.45) & (column[:, 1] < 0.85) & (column[:, 2] < 0.75)).sum()
    assert black > 50 and vermillion > 50, (black, vermillion)
    # and the triangle above the plot is solid vermillion
    above = pixels[int(top) - 6:int(top), int(x) - 3:int(x) + 4].reshape(-1, 3)
    assert (np.abs(above - to_rgb(OKABE_ITO["vermillion"])).max(axis=1) < 0.1).sum() > 10


def test_no_prediction_draws_none():
    ax = timeline(together("asgi"), ideal=0.5, prediction=None).figure.axes[0]
    assert [line.get_linestyle() for line in ax.lines] == ["--"]
    assert not any(line.get_marker() == "v" for line in ax.lines)


def test_timeline_takes_a_single_result_and_names_unlabelled_runs():
    plot = timeline(together(None))
    assert plot.summary == "run 1: all 5 OK by 0.50 s"
    assert plot.figure.axes[0].get_title() == "When each request ran"


def test_timeline_of_a_thousand_requests_renders():
    records = [RequestRecord(i, i, 0.0001 * i, 0.0001 * i + 0.002, 200, None) for i in range(1000)]
    plot = timeline(LoadResult("big", "http://x/", 1000, records, wall=0.102))
    assert plot.png().startswith(PNG_SIGNATURE)
    assert plot.figure.get_size_inches()[1] <= 6  # the figure stays a readable size; the bars get thinner


def test_rendering_shows_img_with_alt_text_and_summary_and_leaves_no_pyplot_figure():
    before = plt.get_fignums()
    plot = timeline([staircase('say "hi" <now>'), together("asgi")], ideal=0.5)
    bundle = plot._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_SIGNATURE)
    assert bundle["text/plain"] == plot.summary == repr(plot)
    page = bundle["text/html"]
    assert page.startswith(f'<img src="data:image/png;base64,{bundle["image/png"]}" alt="Timeline of 10 requests')
    assert "&quot;hi&quot; &lt;now&gt;" in page and '"hi"' not in page  # alt text and summary escaped
    assert page.endswith("</p>") and "<p>say &quot;hi&quot;" in page
    assert plot.html() == page
    assert plt.get_fignums() == before


def test_latency_summary_bars_are_the_percentiles_and_throughput():
    wsgi, asgi = staircase("wsgi"), together("asgi")
    plot = latency_summary([wsgi, asgi], title="Who waits")
    latency_ax, throughput_ax = plot.figure.axes
    heights = [[round(bar.get_height(), 6) for bar in container] for container in latency_ax.containers]
    assert heights == [[wsgi.percentile(50), wsgi.percentile(95), 2.5], [0.5, 0.5, 0.5]]
    assert [bar.get_facecolor() for bar in latency_ax.containers[0]][0][:3] == pytest.approx(
        tuple(int(SERIES_COLOURS[0][i:i + 2], 16) / 255 for i in (1, 3, 5)))
    assert [c[0].get_height() for c in throughput_ax.containers] == pytest.approx([5 / 2.5, 5 / 0.5])
    assert latency_ax.get_ylabel() == "latency (s)" and "requests/s" in throughput_ax.get_ylabel()
    assert plot.figure.get_suptitle() == "Who waits"
    assert legend_texts(plot) == ["wsgi", "asgi"]
    assert plot.summary == ("wsgi: p50 1.50 s, p95 2.40 s, max 2.50 s, 2.0 req/s; "
                            "asgi: p50 0.50 s, p95 0.50 s, max 0.50 s, 10.0 req/s")
    assert plot.summary in plot.alt and plot.png().startswith(PNG_SIGNATURE)


def test_latency_summary_of_a_run_without_responses_says_so():
    dead = together("down", n=3, failed=3)
    plot = latency_summary(dead)
    assert plot.summary == "down: no responses"
    assert "no responses" in [t.get_text() for t in plot.figure.axes[0].texts]


def test_palette_is_okabe_ito():
    assert set(SERIES_COLOURS) <= set(OKABE_ITO.values()) and len(set(SERIES_COLOURS)) == len(SERIES_COLOURS)


@pytest.mark.parametrize("call, error, message", [
    (lambda: timeline([]), ValueError, "empty"),
    (lambda: timeline("results"), TypeError, "LoadResult"),
    (lambda: timeline([together("a"), {"wall": 1}]), TypeError, "LoadResult items"),
    (lambda: timeline(together("a"), ideal=-1), ValueError, "ideal must be a number of seconds"),
    (lambda: timeline(together("a"), prediction="2"), ValueError, "prediction must be a number of seconds"),
    (lambda: latency_summary(42), TypeError, "LoadResult"),
])
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_plot_is_a_plain_container():
    plot = timeline(together("a"))
    again = Plot(plot.figure, "alt", "summary")
    assert again.png().startswith(PNG_SIGNATURE) and repr(again) == "summary"


def test_legend_times_are_in_seconds_like_the_axis():
    # An axis in seconds with "ideal: 50 ms" in its legend makes the reader convert; the summary may say ms.
    from gatewaylab.plots import axis_seconds
    assert axis_seconds(0.05) == "0.05 s" and axis_seconds(2.0) == "2 s" and axis_seconds(0.125) == "0.125 s"
