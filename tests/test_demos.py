"""gatewaylab.demos: the teaser race measures what it claims, and the panel works from its button and as a call."""

import threading
import time

import pytest

from gatewaylab import servers
from gatewaylab.demos import PredictRun, Race, slow_asgi_app, slow_wsgi_app, teaser_race
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
    assert demo.prediction.value == 1.5
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
    assert demo.run() == "no number" and "<p><b>done</b></p>" in demo.output.value
    assert demo.comparison(None, 12.34) == "measured 12.3 s"
    assert demo.comparison(0.5, 0.123) == "you predicted 0.50 s; measured 0.12 s"


def test_panel_shows_as_a_widget():
    demo = PredictRun("Q <b>?</b>", "ms", lambda progress: None, lambda result, prediction: None)
    assert "application/vnd.jupyter.widget-view+json" in demo._repr_mimebundle_()
    question = demo.widget.children[0]
    assert question.value == "<p>Q &lt;b&gt;?&lt;/b&gt;</p>"
    assert demo.prediction.description == "Your prediction (ms):"


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="run must be a function"):
        PredictRun("Q", "s", "not callable", lambda r, p: None)
    demo = PredictRun("Q", "s", lambda progress: None, lambda r, p: None)
    with pytest.raises(TypeError, match="prediction must be a number"):
        demo.run("ten")
