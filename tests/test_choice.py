"""gatewaylab.choice: each rule of the decision, with and without the learner's measurements, and the panel."""

import html

import pytest

from gatewaylab import measurements
from gatewaylab.choice import HIGH_CONCURRENCY, LOW_CONCURRENCY, Advice, decision_panel, recommend

# Figures of every key, in the shapes gatewaylab.measurements documents.
MEASURED = {key: {"figures": figures, "summary": "s", "time": "2026-01-01T00:00:00+00:00"} for key, figures in {
    "04.slow_requests": {"clients": 8, "delay_s": 0.25, "wall_s": {"sequential": 2.02, "pool": 0.76},
                         "pool_size": 3},
    "05.loop_lag": {"blocking_ms": 501.2, "fixed_ms": 3.1},
    "07.race": {"clients": 100, "delay_s": 0.5, "wall_s": {"gatewaylab": 0.61, "uvicorn": 0.55}},
    "08.showdown": {"workload": "io", "rows": [
        {"server": "gunicorn gthread", "clients": 10, "rps": 90, "p50_s": 0.1, "p99_s": 0.12},
        {"server": "gunicorn gthread", "clients": 200, "rps": 310, "p50_s": 0.6, "p99_s": 1.4},
        {"server": "uvicorn", "clients": 200, "rps": 1450, "p50_s": 0.11, "p99_s": 0.2}]},
    "08.memory": {"connections": 1000, "kib_per_connection": {"threads": 64.0, "tasks": 4.0}},
    "08.cpu_stall": {"cpu_ms": 50, "p99_s": {"threads": 0.9, "asgi": 2.1}},
    "08.notes_app": {"clients": 50, "wall_s": {"blocking": 5.1, "fixed": 0.3},
                     "max_lag_ms": {"blocking": 4900, "fixed": 4}},
    "09.sse_streams": {"streams": 50, "threads": {"wsgi": 51, "asgi": 1}},
    "09.websocket": {"clients": 100, "broadcast_s": 0.03},
    "10.bridges": {"requests": 4, "delay_s": 1, "wall_s": {"WsgiToAsgi": 4.01, "a2wsgi": 1.02}},
}.items()}

# One application per rule: (io_ms, cpu_ms, long_lived, framework, concurrency), the interface, words of the set-up.
CASES = {
    "cpu": ((5, 80, False, "Flask", 4), "WSGI", "gunicorn with 2 sync worker processes"),
    "cpu-asgi": ((5, 80, False, "FastAPI", 4), "ASGI", "uvicorn with 2 worker processes"),
    "realtime": ((50, 2, True, "Starlette", 500), "ASGI", "uvicorn --workers 2"),
    "realtime-django": ((50, 2, True, "Django", 500), "ASGI", "WebSocket needs Channels"),
    "realtime-flask": ((50, 2, True, "Flask", 500), "ASGI", "keep the Flask app under WSGI"),
    "waiting-many": ((50, 2, False, "FastAPI", 5000), "ASGI", "uvicorn --workers 2"),
    "waiting-many-django": ((50, 2, False, "Django", 5000), "ASGI", "async views"),
    "waiting-many-flask": ((50, 2, False, "Flask", 5000), "ASGI", "Quart"),
    "waiting-few": ((80, 5, False, "Flask", 40), "WSGI", "gunicorn with gthread workers: 4 workers x 10 threads"),
    "waiting-few-django": ((80, 5, False, "Django", 40), "WSGI", "gunicorn -k gthread -w 4 --threads 10 project.wsgi"),
    "waiting-few-asgi": ((80, 5, False, "Starlette", 40), "ASGI", "uvicorn"),
    "judgement": ((50, 2, False, "Flask", 300), "WSGI", "4 workers x 75 threads"),
    "judgement-django": ((50, 2, False, "Django", 300), "ASGI", "or WSGI with threads"),
    "waiting-few-other": ((80, 5, False, "other", 40), "WSGI", "gthread"),
    "realtime-other": ((80, 5, True, "other", 40), "ASGI", "uvicorn --workers 2 app:app"),
    "cpu-other-realtime": ((5, 80, True, "other", 4), "ASGI", "process pool"),
}


RULES = ("cpu", "realtime", "waiting-many", "waiting-few", "judgement")


def rule_of(case):
    """The rule a case is named after: "waiting-few-django" -> "waiting-few"."""
    return max((rule for rule in RULES if case.startswith(rule)), key=len)


def advise(case, measured):
    args, _, _ = CASES[case]
    return recommend(*args, cores=2, measured=measured)


@pytest.mark.parametrize("case", CASES)
def test_each_rule_without_measurements_says_which_demo_measures_each_reason(case):
    advice = advise(case, {})
    _, interface, words = CASES[case]
    assert isinstance(advice, Advice) and advice.rule == rule_of(case)
    assert advice.interface == interface and words in advice.setup, advice
    assert advice.measured == 0
    keyed = [r for r in advice.reasons if r.key]
    assert keyed and all(r.missing.startswith("run lesson ") and r.missing.endswith(" to measure this")
                         for r in keyed)
    assert advice.to_measure and all(html.escape(m) in advice.html() for m in advice.to_measure)
    assert "to measure this" in str(advice) and "your run:" not in advice.html()


@pytest.mark.parametrize("case", CASES)
def test_each_rule_with_measurements_shows_the_learners_figures_beside_the_reasons(case):
    advice = advise(case, MEASURED)
    _, interface, words = CASES[case]
    assert advice.interface == interface and words in advice.setup
    keyed = [r for r in advice.reasons if r.key]
    assert advice.measured == len(keyed) > 0 and advice.to_measure == []
    assert "to measure this" not in str(advice) and str(advice).count("Your run:") == len(keyed)
    assert advice.html().count("your run:") == len(keyed)


def test_the_rules_are_the_courses_facts():
    assert {advise(case, MEASURED).rule for case in CASES} == set(RULES)  # figures never change the rule
    # CPU-bound: processes either way, and async gains nothing (myth 2, claim 8)
    cpu = advise("cpu-asgi", {})
    assert "Async gains nothing" in str(cpu) and "process" in cpu.setup
    # WebSocket needs ASGI, whatever the framework (myth 5)
    for case in ("realtime", "realtime-django", "realtime-flask"):
        assert advise(case, {}).interface == "ASGI"
    # a Flask app with modest concurrency: WSGI with threads (claim 12), no judgement call
    few = advise("waiting-few", {})
    assert few.rule == "waiting-few" and few.judgement is None and "gthread" in few.setup
    # in between: said to be a judgement call
    assert advise("judgement", {}).judgement and advise("judgement-django", {}).judgement
    # an ASGI framework never gets a WSGI server, a WSGI-only one never gets told to run under uvicorn as it is
    for case in CASES:
        framework = CASES[case][0][3]
        advice = advise(case, {})
        if framework in ("Starlette", "FastAPI"):
            assert advice.interface == "ASGI" and "gunicorn -k gthread" not in advice.setup
        if framework == "Flask" and advice.interface == "ASGI":
            assert advice.judgement  # Flask is WSGI only: ASGI means another framework or a second app


def test_the_boundaries_between_the_rules():
    def rule(io, cpu, concurrency, long_lived=False, framework="Flask"):
        return recommend(io, cpu, long_lived, framework, concurrency, cores=2, measured={}).rule

    assert rule(50, 50, 10) == "cpu" and rule(51, 50, 10) == "waiting-few"  # CPU at least the wait: processes
    assert rule(100, 1, LOW_CONCURRENCY) == "waiting-few" and rule(100, 1, LOW_CONCURRENCY + 1) == "judgement"
    assert rule(100, 1, HIGH_CONCURRENCY) == "judgement" and rule(100, 1, HIGH_CONCURRENCY + 1) == "waiting-many"
    assert rule(100, 1, 1, long_lived=True) == "realtime"  # even one WebSocket needs ASGI
    assert rule(0, 10, 1, long_lived=True) == "cpu"  # computing comes first, and says where the connections go


def test_cpu_bound_beyond_the_cores_says_no_server_fixes_it():
    advice = recommend(1, 100, False, "Flask", 40, cores=2, measured={})
    assert advice.rule == "cpu" and "20 requests/s" in str(advice)
    assert "whatever the server" in advice.judgement
    assert recommend(1, 100, False, "Flask", 1, cores=2, measured={}).judgement is None


def test_the_figures_say_what_was_measured():
    text = str(advise("judgement", MEASURED))
    assert "8 requests of 0.25 s: sequential 2.02 s, pool of 3 0.76 s" in text
    assert "at 300 at once, about 19 MiB against 1 MiB" in text  # 300 x 64 KiB and 300 x 4 KiB
    assert "io at 200 clients: uvicorn 1450 req/s, p99 0.20 s; gunicorn gthread 310 req/s, p99 1.40 s" in text
    assert "WsgiToAsgi 4.01 s, a2wsgi 1.02 s" in str(advise("realtime-flask", MEASURED))
    assert "stalled the loop 501 ms; in asyncio.to_thread 3 ms" in str(advise("cpu", MEASURED))


@pytest.mark.parametrize("broken", [
    {"figures": {"clients": 8}},  # fields missing
    {"figures": {"clients": 8, "delay_s": 0.25, "wall_s": {"sequential": 2.0}}},  # no pool run yet
    {"figures": "not a dict"}, "not an entry",
])
def test_incomplete_figures_count_as_not_measured(broken):
    advice = advise("waiting-few", {**MEASURED, "04.slow_requests": broken})
    reason = next(r for r in advice.reasons if r.key == "04.slow_requests")
    assert reason.figure is None and reason.missing == ("run lesson 04's slow-requests panels (sequential, then "
                                                        "pool) to measure this")


def test_without_measured_the_file_is_read():
    assert advise("waiting-few", None).measured == 0
    measurements.record("04.slow_requests", MEASURED["04.slow_requests"]["figures"], "s")
    advice = recommend(80, 5, False, "Flask", 40, cores=2)
    assert advice.measured == 1 and "pool of 3 0.76 s" in advice.html()


@pytest.mark.parametrize("args, error", [
    ((-1, 5, False, "Flask", 10), ValueError), ((float("nan"), 5, False, "Flask", 10), ValueError),
    ((0, 0, False, "Flask", 10), ValueError), ((10, 5, "yes", "Flask", 10), TypeError),
    ((10, 5, False, "Rails", 10), ValueError), ((10, 5, False, "Flask", 0), ValueError),
    ((10, 5, False, "Flask", 2.5), ValueError), ((True, 5, False, "Flask", 10), ValueError),
])
def test_bad_inputs_are_refused(args, error):
    with pytest.raises(error):
        recommend(*args, cores=2, measured={})


def test_the_framework_is_matched_without_case():
    assert recommend(80, 5, False, "fastapi", 40, cores=2, measured={}).inputs["framework"] == "FastAPI"


def test_the_panel_builds_and_follows_every_change():
    measurements.record("09.websocket", MEASURED["09.websocket"]["figures"], "s")
    panel = decision_panel(cores=2)
    assert panel.advice.interface == "WSGI" and "gthread" in panel.output.value
    assert "gatewaylab-decision" in panel.widget._dom_classes
    panel.long_lived.value = True
    assert panel.advice.rule == "realtime" and "<b>ASGI</b>" in panel.output.value
    assert "a broadcast reached 100 WebSocket clients in 0.03 s" in panel.output.value  # the learner's own figure
    panel.long_lived.value = False
    panel.cpu_ms.value = 200.0
    assert panel.advice.rule == "cpu" and "Async gains nothing" in panel.output.value
    panel.cpu_ms.value, panel.io_ms.value = 2.0, 100.0
    panel.framework.value = "FastAPI"
    panel.concurrency.value = 5000
    assert panel.advice.rule == "waiting-many" and "uvicorn --workers 2" in panel.output.value
    panel.framework.value = "Flask"
    panel.concurrency.value = 300
    assert "A judgement call." in panel.output.value
    panel.io_ms.value = panel.cpu_ms.value = 0.0
    assert panel.advice is None and "some time" in panel.output.value  # said in the panel, not raised
    bundle = panel._repr_mimebundle_()
    assert "recommend(" in bundle["text/plain"] and "application/vnd.jupyter.widget-view+json" in bundle
