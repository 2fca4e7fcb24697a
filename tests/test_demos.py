"""gatewaylab.demos: the teaser race measures what it claims, and the panel works from its button and as a call."""

import re
import threading
import time

import ipywidgets as widgets
import pytest

from gatewaylab import measurements, servers
from gatewaylab.demos import (PredictRun, Race, loop_lag_record, show_when, slow_asgi_app, slow_requests_record,
                              slow_wsgi_app, teaser_race)
from gatewaylab.load import load
from gatewaylab.load import LoadResult, RequestRecord
from gatewaylab.plots import timeline

CLIENTS, DELAY = 8, 0.25  # 2 s sequential: short for CI, long enough to tell apart from one delay


@pytest.fixture(autouse=True)
def nothing_left_running():
    before = threading.active_count()
    yield
    assert servers.running() == {}
    deadline = time.monotonic() + 5  # a finished thread may take a moment to be reaped
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before, threading.enumerate()


def test_teaser_race_sequential_wsgi_takes_clients_times_delay_and_uvicorn_one_delay():
    demo = teaser_race(clients=CLIENTS, delay=DELAY)
    race = demo.run(prediction=1.0)
    assert isinstance(race, Race) and race is demo.result
    assert race.wsgi.ok == CLIENTS and race.asgi.ok == CLIENTS, (race.wsgi, race.asgi)
    # wsgiref serves one request at a time: the last of the clients waits for all the others
    assert 0.9 * CLIENTS * DELAY <= race.wsgi.wall <= CLIENTS * DELAY + 1.5, race.wsgi
    # uvicorn waits for all of them at once
    assert DELAY <= race.asgi.wall <= DELAY + 1.0 < 0.9 * CLIENTS * DELAY, race.asgi
    assert demo.output.value.count("<img") == 1
    assert f"you predicted 1.0 s; measured {race.wsgi.wall:.1f} s" in demo.output.value
    assert "wsgiref (WSGI, sequential): all 8 OK" in demo.output.value  # the plot's summary line
    assert demo.progress.value == demo.progress.max == 2 * CLIENTS
    assert demo.button.disabled is False and demo.status.value.startswith("done")
    assert demo.button.description == "Run the race" and "gatewaylab-race" in demo.widget._dom_classes


def test_teaser_rejects_settings_that_would_not_finish_in_seconds():
    with pytest.raises(ValueError, match="clients"):
        teaser_race(clients=0)
    with pytest.raises(ValueError, match="delay"):
        teaser_race(delay=60)


@pytest.mark.parametrize("serve", [lambda: servers.serve_wsgi(slow_wsgi_app, name="test-slow-wsgi"),
                                   lambda: servers.serve_asgi(slow_asgi_app, name="test-slow-asgi", lifespan="off")])
def test_slow_apps_wait_as_asked_and_refuse_a_bad_delay(serve):
    with serve() as server:
        waited = load(f"{server.url}/?delay=0.2", clients=1)
        assert waited.ok == 1 and 0.2 <= waited.wall < 1.5, waited
        assert load(f"{server.url}/?delay=soon", clients=1).records[0].status == 400
        assert load(f"{server.url}/?delay=60", clients=1).records[0].status == 400


def fake_result(wall):
    return LoadResult("fake", "http://x/", 1, [RequestRecord(0, 0, 0.0, wall, 200, None)], wall)


def test_run_button_measures_in_the_background_and_fills_the_panel():
    release, progressed = threading.Event(), []

    def run(progress):
        # progress from yet another thread, as a load driver's would be
        worker = threading.Thread(target=lambda: [progress(done, 4) for done in range(5)])
        worker.start()
        worker.join()
        progressed.append(True)
        release.wait(5)
        return fake_result(3.2)

    demo = PredictRun("How long?", "s", run, lambda result, prediction: timeline(result, prediction=prediction),
                      default=1.5, title="Fake")
    assert demo.prediction.value == "1.5"
    started = time.perf_counter()
    demo.button.click()
    assert time.perf_counter() - started < 0.5  # returned at once
    deadline = time.monotonic() + 5
    while not progressed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert demo.button.disabled is True and demo.status.value == "running…"
    assert demo.start() is None  # a second press while running starts nothing
    release.set()
    demo.wait(5)
    assert demo.button.disabled is False
    assert (demo.progress.value, demo.progress.max) == (4, 4)
    assert "you predicted 1.5 s; measured 3.2 s" in demo.output.value and "<img" in demo.output.value
    assert 'alt="Timeline of 1 requests' in demo.output.value


def test_an_error_is_shown_in_the_panel_and_raised_by_the_plain_call():
    def run(progress):
        raise ConnectionError("server went away")

    demo = PredictRun("How long?", "s", run, lambda result, prediction: timeline(result))
    demo.prediction.value = "1"
    demo.button.click()
    demo.wait(5)
    assert "failed: ConnectionError: server went away" in demo.status.value
    assert "Traceback" in demo.output.value and demo.button.disabled is False
    with pytest.raises(ConnectionError, match="server went away"):
        demo.run()
    assert demo.button.disabled is False


def test_a_plot_function_that_returns_no_plot_is_reported():
    demo = PredictRun("How long?", "s", lambda progress: fake_result(1.0), lambda result, prediction: "a picture")
    with pytest.raises(TypeError, match="returned str, not a Plot"):
        demo.run()
    assert "returned str, not a Plot" in demo.status.value


def test_comparison_without_a_prediction_or_a_number():
    demo = PredictRun("Q", "s", lambda progress: "no number", lambda result, prediction: timeline(fake_result(1)))
    assert demo.run() == "no number" and "<b>done</b></p>" in demo.output.value
    assert demo.comparison(None, 12.34) == "no prediction; measured 12.3 s"
    assert demo.comparison(0.5, 0.123) == "you predicted 0.50 s; measured 0.12 s"


def recording_panel(**options):
    """A panel whose plot function records the prediction it was given."""
    given = []

    def plot(result, prediction):
        given.append(prediction)
        return timeline(result, ideal=1.0, prediction=prediction)

    return PredictRun("How long?", "s", lambda progress: fake_result(2.0), plot, button="Go", **options), given


@pytest.mark.parametrize("typed", ["", "   "])
def test_a_blank_prediction_is_refused_by_the_button_with_a_message(typed):
    demo, given = recording_panel()
    demo.prediction.value = typed
    demo.button.click()
    assert demo.thread is None and given == [] and demo.result is None  # nothing ran
    assert "Type your prediction in the box first: a number, in s" in demo.status.value
    assert "“Go”" in demo.status.value and demo.button.disabled is False
    demo.prediction.value = "2,5"  # a decimal comma is a decimal point
    demo.button.click()
    demo.wait(5)
    assert given == [2.5] and "you predicted 2.5 s; measured 2.0 s" in demo.output.value


@pytest.mark.parametrize("typed, message", [("ten", "“ten” is not a number"), ("-1", "0 or more"),
                                            ("nan", "0 or more"), ("inf", "0 or more")])
def test_a_prediction_that_is_not_a_number_of_0_or_more_is_refused(typed, message):
    demo, given = recording_panel()
    demo.prediction.value = typed
    assert demo.start() is None
    assert message in demo.status.value and given == []


def test_run_without_a_prediction_records_no_prediction_and_draws_none():
    demo, given = recording_panel(default=3.0)
    assert demo.prediction.value == "3"
    demo.run()  # a call without a prediction: none, not the box's 3 nor 0
    assert given == [None] and demo.last_prediction is None and demo.prediction.value == ""
    assert "no prediction; measured 2.0 s" in demo.output.value and "you predicted" not in demo.output.value
    assert not any(line.get_marker() == "v" for line in demo.last_plot.figure.axes[0].lines)
    demo.run(prediction=1.0)  # a prediction equal to the ideal is drawn (and kept in the box)
    assert given[-1] == 1.0 and demo.prediction.value == "1"
    with pytest.raises(ValueError, match="0 or more"):
        demo.run(prediction=-2)


def test_panel_shows_as_a_widget_with_normal_line_spacing_and_code_in_the_code_font():
    demo = PredictRun("Q <b>?</b> is `app(environ, start_response)` called?", "ms", lambda progress: None,
                      lambda result, prediction: None, title="The `wsgi` title")
    bundle = demo._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    title, question = demo.widget.children[:2]
    assert "<h4" in title.value and "<code style='font-family:var(--jp-code-font-family,monospace)" in title.value
    assert "Q &lt;b&gt;?&lt;/b&gt; is <code style='font-family:var(--jp-code-font-family,monospace);" \
           "font-size:0.92em'>app(environ, start_response)</code> called?" in question.value
    assert "line-height:1.45" in question.value and "`" not in question.value
    assert demo.prediction.description == "Your prediction (ms):" and demo.prediction.value == ""
    unpaired = PredictRun("a ` b", "s", lambda progress: None, lambda result, prediction: None)
    assert "a ` b" in unpaired.widget.children[0].value and "<code" not in unpaired.widget.children[0].value


class FakeShell:
    def __init__(self, names):
        self.user_ns = names


def test_where_widgets_cannot_show_the_panel_says_how_to_run_it_as_a_call(monkeypatch):
    demo = teaser_race()
    text = demo._repr_mimebundle_()["text/plain"]
    assert text == repr(demo)
    assert text.startswith("Teaser: one slow endpoint, two servers: a predict-then-run panel\n20 clients send")
    assert "wsgiref.simple_server" in text and "`" not in text
    words = " ".join(text.split())
    assert "Where widgets cannot show" in words and "run it as a call with your prediction, in s:" in words
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.endswith("\n    panel.run(prediction=2.5)")
    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell({"_": demo, "other": 1, "race": demo}))
    assert repr(demo).endswith("\n    race.run(prediction=2.5)")  # the name the learner gave it
    assert "run(prediction=" in PredictRun.__doc__ and "run(prediction=" in teaser_race.__doc__
    assert "run(prediction=" in PredictRun.run.__doc__ or "prediction" in PredictRun.run.__doc__


def test_the_text_says_what_the_last_run_measured():
    demo, _ = recording_panel()
    demo.run(prediction=1.5)
    assert repr(demo).splitlines()[-1] == ("Last run: you predicted 1.5 s; measured 2.0 s; "
                                           "fake: all 1 OK by 2.00 s; ideal 1.00 s; you predicted 1.50 s")
    assert repr(demo).splitlines()[-2] == "    panel.run(prediction=1.5)"


def test_displayed_the_panel_brings_a_note_for_when_it_cannot_show_which_the_live_panel_hides(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append((data, raw)))
    demo = PredictRun("Q", "s", lambda progress: None, lambda result, prediction: None)
    demo._ipython_display_()
    (panel, raw_panel), (note, raw_note) = shown
    assert raw_panel and raw_note
    assert panel["application/vnd.jupyter.widget-view+json"]["model_id"] == demo.widget.model_id
    assert "run it as a call" in panel["text/plain"]
    assert set(note) == {"text/html"}  # a text front end shows the panel's text, and nothing more
    page = note["text/html"]
    assert "Error displaying widget" in page and "Run the cells above from the top" in page
    note_class = re.search(r"gatewaylab-note-[0-9a-f]{12}", page).group()
    # The live panel's style sheet hides exactly this panel's note...
    sheet = demo.stale.value
    assert f".{note_class} {{display:none !important}}" in sheet
    other = PredictRun("Q", "s", lambda progress: None, lambda result, prediction: None)
    assert note_class not in other.stale.value  # ...not another panel's
    # ...and shows the lost-kernel box only where ipywidgets marks the view as cut off from its kernel.
    assert demo.stale.layout.display == "none" and "gatewaylab-stale" in demo.stale._dom_classes
    assert ".gatewaylab-stale.jupyter-widgets-disconnected {display:flex !important" in sheet
    assert "lost its kernel" in sheet and "Run the cells above from the top" in sheet
    assert demo.stale in demo.widget.children


def test_controls_show_above_the_prediction_and_show_when_hides_what_does_not_act():
    kind = widgets.Dropdown(options=["sequential", "pool"], value="sequential")
    pool = widgets.IntSlider(3)
    demo = PredictRun("Q", "s", lambda progress: None, lambda result, prediction: None, title="T",
                      controls=[widgets.HBox([kind, pool])])
    children = demo.widget.children
    assert children[2].children == (kind, pool) and demo.prediction in children[3].children
    show_when(pool, kind, "pool")
    assert pool.layout.display == "none"
    kind.value = "pool"
    assert pool.layout.display is None
    kind.value = "sequential"
    assert pool.layout.display == "none"
    with pytest.raises(TypeError, match="controls must be widgets"):
        PredictRun("Q", "s", lambda progress: None, lambda result, prediction: None, controls=["pool"])
    with pytest.raises(ValueError, match="values"):
        show_when(pool, kind)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="run must be a function"):
        PredictRun("Q", "s", "not callable", lambda r, p: None)
    demo = PredictRun("Q", "s", lambda progress: None, lambda r, p: None)
    with pytest.raises(TypeError, match="prediction must be a number"):
        demo.run("ten")
    with pytest.raises(ValueError, match="default must be a number of 0 or more"):
        PredictRun("Q", "s", lambda progress: None, lambda r, p: None, default=-1)


# --- recording for lesson 10 -------------------------------------------------------------------------------------------

def test_bad_arguments_are_refused_record_too():
    with pytest.raises(TypeError, match="record must be a function"):
        PredictRun("Q", "s", lambda progress: None, lambda r, p: None, record="04.slow_requests")


def test_a_panel_with_record_keeps_each_runs_figures():
    walls = iter([2.0, 3.0])
    demo = PredictRun("How long?", "s", lambda progress: fake_result(next(walls)),
                      lambda result, prediction: timeline(result),
                      record=lambda result: ("99.fake", {"wall_s": result.wall}, f"took {result.wall:g} s"))
    demo.run(prediction=1.0)
    assert measurements.load()["99.fake"]["figures"] == {"wall_s": 2.0}
    demo.button.click()  # from the button too (a background thread)
    demo.wait(5)
    kept = measurements.load()["99.fake"]
    assert kept["figures"] == {"wall_s": 3.0} and kept["summary"] == "took 3 s"
    assert demo.status.value.startswith("done in") and "not kept" not in demo.status.value


def test_a_panel_without_record_keeps_nothing_and_none_means_nothing_to_keep():
    PredictRun("Q", "s", lambda progress: fake_result(1.0), lambda r, p: timeline(r)).run()
    PredictRun("Q", "s", lambda progress: fake_result(1.0), lambda r, p: timeline(r), record=lambda r: None).run()
    assert measurements.load() == {}


def broken_records():
    def raises(result):
        raise KeyError("blocking")

    return [raises, lambda result: ("99.fake", {"wall": {1, 2}}, "a set is no JSON"),
            lambda result: ("no key", {"wall": 1.0}, "x"), lambda result: "not a triple"]


@pytest.mark.parametrize("record", broken_records())
def test_a_record_that_fails_never_fails_the_demo_and_says_so(record):
    demo = PredictRun("Q", "s", lambda progress: fake_result(1.5), lambda r, p: timeline(r), record=record)
    result = demo.run(prediction=1.0)
    assert result.wall == 1.5 and "measured 1.5 s" in demo.output.value
    assert demo.status.value.startswith("done in") and "not kept for lesson 10" in demo.status.value
    demo.button.click()
    demo.wait(5)
    assert "not kept for lesson 10" in demo.status.value and demo.button.disabled is False
    assert measurements.load() == {}


def test_an_unwritable_home_never_fails_a_recording_demo(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GATEWAYLAB_PROGRESS", str(blocker / "progress.json"))
    monkeypatch.setattr(measurements, "_warned", set())
    demo = PredictRun("Q", "s", lambda progress: fake_result(1.5), lambda r, p: timeline(r),
                      record=lambda result: ("99.fake", {"wall_s": 1.5}, "x"))
    with pytest.warns(UserWarning, match="could not save the measurement"):
        assert demo.run().wall == 1.5
    assert demo.status.value.startswith("done in")


def loaded(wall, clients=8, failed=0):
    records = [RequestRecord(0, n, 0.0, wall, None if n < failed else 200, "refused" if n < failed else None)
               for n in range(clients)]
    return LoadResult("fake", "http://x/?delay=0.25", clients, records, wall)


def test_slow_requests_record_merges_the_kinds_run_with_the_same_load():
    measurements.record(*slow_requests_record(loaded(2.0123), "sequential", 8, 0.25))
    measurements.record(*slow_requests_record(loaded(0.26), "threaded", 8, 0.25, pool=3))
    key, figures, summary = slow_requests_record(loaded(0.76), "pool", 8, 0.25, pool=3)
    assert key == "04.slow_requests"
    assert figures == {"clients": 8, "delay_s": 0.25, "pool_size": 3,
                       "wall_s": {"sequential": 2.012, "threaded": 0.26, "pool": 0.76}}
    assert summary == "8 clients x 0.25 s: sequential 2.01 s, a thread per connection 0.26 s, pool of 3 0.76 s"
    measurements.record(key, figures, summary)
    # another sequential run with the same load keeps the pool's figures and its size
    figures = slow_requests_record(loaded(2.1), "sequential", 8, 0.25)[1]
    assert figures["pool_size"] == 3 and figures["wall_s"]["pool"] == 0.76 and figures["wall_s"]["sequential"] == 2.1
    # a different load starts afresh: the old runs measured something else
    key, figures, summary = slow_requests_record(loaded(4.0, clients=16), "sequential", 16, 0.25)
    assert figures == {"clients": 16, "delay_s": 0.25, "wall_s": {"sequential": 4.0}}
    assert summary == "16 clients x 0.25 s: sequential 4.00 s"


def test_slow_requests_record_refuses_a_run_with_failures_and_unknown_kinds():
    with pytest.raises(ValueError, match="2 of 8 requests failed"):
        slow_requests_record(loaded(0.5, failed=2), "pool", 8, 0.25, pool=3)
    with pytest.raises(ValueError, match="kind must be one of"):
        slow_requests_record(loaded(0.5), "uvicorn", 8, 0.25)


def test_loop_lag_record():
    key, figures, summary = loop_lag_record(0.5012, 0.0031)
    assert key == "05.loop_lag" and figures == {"blocking_ms": 501.2, "fixed_ms": 3.1, "calls": 5, "call_ms": 100}
    assert summary == "5 blocking calls of 100 ms: worst loop lag 501.2 ms in async def, 3.1 ms in asyncio.to_thread"
