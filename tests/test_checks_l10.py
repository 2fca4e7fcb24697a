"""Lesson 10's checks, both ways: the notebook's reference answers pass, and wrong answers (the mistakes learners
make) fail with a message that says what to fix. The bridges are measured under real servers, so these tests are
too, and make sure that no server or thread is left behind."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, fails_with, nothing_left_running

NOTEBOOK = SolutionNotebook("10_bridges_and_the_choice.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l10-checks"),  # timing checks: not beside each other on the same cores
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


# asgiref's SyncToAsync keeps one thread for the whole process (its single_thread_executor), started at its first use:
# started here, so that the wrong answer using it leaves no *new* thread behind.
asyncio.run(sync_to_async(lambda: None)())


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-10"):
        yield


def case_failed(report, name_part, *fragments, expected=None):
    """The case whose name holds `name_part` failed, with each fragment in its message (and `expected`, the repr
    of what it expected, when given)."""
    [result] = [r for r in report.results if name_part in r.name]
    assert not result.passed, result
    for fragment in fragments:
        assert fragment in result.message, result.message
    assert expected is None or result.expected == expected, result


@pytest.mark.parametrize("name, exercise_id", [("wsgi_to_asgi", "10.1"), ("asgi_to_wsgi", "10.2"),
                                               ("adapter_verdict", "10.3"), ("choose_setup", "10.4")])
def test_reference_passes(name, exercise_id):
    report = run_check(exercise_id, reference(name))
    assert report.passed, str(report)


# --- 10.1 ---

RUN_IN_POOL = "await loop.run_in_executor(pool, call, environ)"


def test_a_bridge_that_runs_the_app_on_the_loop_thread_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", (RUN_IN_POOL, "call(environ)")))
    case_failed(report, "well under 4 s", "ran on the event loop's own thread", "run_in_executor")


def test_a_bridge_with_one_shared_thread_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ("ThreadPoolExecutor(max_workers=workers,",
                                                         "ThreadPoolExecutor(max_workers=1,")))
    case_failed(report, "well under 4 s", "in one thread", "a pool of one", "thread_sensitive=True")


def test_asgiref_s_sync_to_async_is_one_shared_thread_too():
    answer = variant("wsgi_to_asgi", (RUN_IN_POOL, "await sync_to_async(call)(environ)"),
                     ("    pool = ThreadPoolExecutor", "    from asgiref.sync import sync_to_async\n"
                                                         "    pool = ThreadPoolExecutor"))
    report = fails_with("10.1", answer)
    case_failed(report, "well under 4 s", "sync_to_async with its default thread_sensitive=True")


def test_a_bridge_on_the_loop_s_default_executor_ignores_workers():
    report = fails_with("10.1", variant("wsgi_to_asgi", (RUN_IN_POOL, "await asyncio.to_thread(call, environ)")))
    case_failed(report, "workers=2", "the pool's size is `workers`")
    assert report.results[0].passed  # concurrent it is


def test_a_bridge_that_drops_the_response_headers_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", (
        'pairs = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]', "pairs = []")))
    case_failed(report, "status, response headers", "the app's headers must reach the client")


def test_a_bridge_that_keeps_header_names_as_they_are_fails_the_validator():
    fails_with("10.1", variant("wsgi_to_asgi", ("(n.lower().encode(", "(n.encode(")), "must be lower-case")


def test_a_bridge_that_always_says_200_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ('"status": int(status.split()[0])', '"status": 200')))
    case_failed(report, "status, response headers", "int(status.split()[0])")


def test_a_bridge_that_does_not_close_the_iterable_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ("            if hasattr(chunks, \"close\"):\n"
                                                         "                chunks.close()\n",
                                                         "            pass\n")))
    case_failed(report, "close() is called", "PEP 3333 says it must be called")


def test_a_bridge_that_reads_one_body_event_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ("        while more_body:\n", "        if more_body:\n")))
    case_failed(report, "request body", "read until more_body is False")


def test_a_bridge_that_drops_the_request_body_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ("environ = environ_for(scope, body)",
                                                         'environ = environ_for(scope, b"")')))
    case_failed(report, "request body", "no body reached wsgi.input", expected="b'hello|q=1|one two three'")


def test_a_bridge_that_lets_the_app_s_error_out_fails():
    report = fails_with("10.1", variant("wsgi_to_asgi", ("except Exception:", "except ZeroDivisionError:")))
    case_failed(report, "raises gets a 500", "came out of your bridge", "send a 500")


def test_a_bridge_that_is_not_async_fails():
    answer = NOTEBOOK.define("def wsgi_to_asgi(app, workers=4):\n    def bridged(scope, receive, send):\n"
                             "        return None\n    return bridged\n", "wsgi_to_asgi")
    fails_with("10.1", answer, "an ASGI app is an `async def")


def test_a_bridge_that_never_answers_is_reported_within_the_time_limit():
    answer = NOTEBOOK.define("def wsgi_to_asgi(app, workers=4):\n    async def bridged(scope, receive, send):\n"
                             "        await asyncio.sleep(3600)\n    return bridged\n", "wsgi_to_asgi")
    started = time.monotonic()
    report = fails_with("10.1", answer, "not every request was answered")
    assert time.monotonic() - started < 60 and not any(r.timed_out for r in report.results[:1])


# --- 10.2 ---

def test_a_bridge_whose_receive_never_gives_the_body_is_reported_within_the_time_limit():
    answer = variant("asgi_to_wsgi", ('                    return {"type": "http.request", "body": body, '
                                      '"more_body": False}', "                    await asyncio.Event().wait()"))
    started = time.monotonic()
    report = fails_with("10.2", answer, "the ASGI app was still waiting after 5 s")
    assert time.monotonic() - started < 45
    case_failed(report, "4 threads", "the ASGI app was still waiting after 5 s")


def test_a_bridge_with_a_lock_around_the_loop_serialises_and_fails():
    answer = variant("asgi_to_wsgi", ("        asyncio.run(run())", "        with LOCK:\n            asyncio.run(run())"),
                     ("def asgi_to_wsgi(app):\n", "import threading\nLOCK = threading.Lock()\n\n\n"
                                                  "def asgi_to_wsgi(app):\n"))
    report = fails_with("10.2", answer)
    case_failed(report, "4 threads", "one after another", "a lock around the loop")


def test_one_shared_loop_for_every_thread_fails():
    answer = variant("asgi_to_wsgi", ("        asyncio.run(run())", "        SHARED.run_until_complete(run())"),
                     ("def asgi_to_wsgi(app):\n", "SHARED = asyncio.new_event_loop()\n\n\ndef asgi_to_wsgi(app):\n"))
    report = fails_with("10.2", answer)
    case_failed(report, "4 threads", "RuntimeError", "a loop of its own")


def test_a_bridge_that_says_disconnect_at_once_fails():
    answer = variant("asgi_to_wsgi", ("                await done.wait()  # until the response is complete\n", ""))
    report = fails_with("10.2", answer)
    case_failed(report, "http.disconnect only after", "right after the body",
                "receive() must wait until the response is complete")


def test_a_bridge_that_keeps_one_body_event_fails():
    answer = variant("asgi_to_wsgi", ('return [b"".join(bodies)]', "return [bodies[0]]"))
    report = fails_with("10.2", answer)
    case_failed(report, "three events", "keep every body until more_body is False")


def test_a_bridge_that_passes_no_request_body_fails():
    answer = variant("asgi_to_wsgi", ('"body": body, "more_body": False', '"body": b"", "more_body": False'))
    report = fails_with("10.2", answer)
    case_failed(report, "request body", "the whole body read from wsgi.input")


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
def test_a_bridge_with_a_bare_status_code_fails():
    report = fails_with("10.2", variant("asgi_to_wsgi", ('f"{status} {HTTPStatus(status).phrase}"', 'f"{status}"')))
    case_failed(report, "three events", "the code and its reason phrase", expected="'201 Created'")


def test_a_bridge_with_bytes_headers_fails_wsgiref_validate():
    fails_with("10.2", variant("asgi_to_wsgi", ('[(n.decode("latin-1"), v.decode("latin-1")) for n, v in',
                                                "[(n, v) for n, v in")), "wsgiref.validate: Header name")


def test_a_bridge_with_a_wrong_reason_phrase_fails():
    report = fails_with("10.2", variant("asgi_to_wsgi", ('f"{status} {HTTPStatus(status).phrase}"',
                                                         'f"{status} OK"')))
    case_failed(report, "three events", "the code and its reason phrase", expected="'201 Created'")


def test_a_bridge_whose_receive_gives_str_bodies_fails_the_asgi_validator():
    answer = variant("asgi_to_wsgi", ('"body": body, "more_body": False', '"body": body.decode("latin-1"), '
                                                                         '"more_body": False'))
    fails_with("10.2", answer, "the ASGI validator")


# --- 10.3 ---

def test_comparing_the_adapters_with_each_other_fails():
    answer = NOTEBOOK.define('''def adapter_verdict(figures):
    if not figures or not {"WsgiToAsgi", "a2wsgi"} <= set(figures.get("wall_s", {})):
        return None
    walls = figures["wall_s"]
    return "half true" if walls["WsgiToAsgi"] > 2 * walls["a2wsgi"] else "true"
''', "adapter_verdict")
    case_failed(fails_with("10.3", answer), "4 requests of 1 s", "neither 'false'", expected="'false'")


def test_a_fixed_line_in_seconds_fails():
    answer = variant("adapter_verdict", ('line = figures["requests"] * figures["delay_s"] / 2', "line = 2.0"))
    report = fails_with("10.3", answer, "not a fixed number of seconds")
    assert report.results[0].passed


def test_on_the_line_counted_as_concurrent_fails():
    answer = variant("adapter_verdict", ("figures[\"wall_s\"][name] < line", "figures[\"wall_s\"][name] <= line"))
    report = fails_with("10.3", answer)
    case_failed(report, "exactly on the line", "*less than* half")


def test_a_verdict_without_figures_that_raises_fails():
    answer = variant("adapter_verdict", ('    if not figures or not {"WsgiToAsgi", "a2wsgi"} <= '
                                         'set(figures.get("wall_s", {})):\n        return None\n', ""))
    report = fails_with("10.3", answer)
    case_failed(report, "no figures give None", "raised TypeError")


def test_a_verdict_as_a_bool_fails():
    answer = variant("adapter_verdict", ('{2: "true", 1: "half true", 0: "false"}[fast]', "fast == 2"))
    case_failed(fails_with("10.3", answer), "4 requests of 1 s", expected="'half true'")


# --- 10.4 ---

def test_any_stream_means_asgi_fails():
    answer = variant("choose_setup", ('app["open_streams"] > app["threads"]', 'app["open_streams"] > 0'))
    report = fails_with("10.4", answer)
    case_failed(report, "WSGI with threads is enough", "as many streams as threads fit")


def test_blocking_calls_in_sync_views_need_no_to_thread():
    answer = variant("choose_setup", ('if app["views"] == "async" and app["blocking_calls"]:',
                                      'if app["blocking_calls"]:'))
    report = fails_with("10.4", answer)
    case_failed(report, "a WebSocket, more streams", "Sync views run in threads under ASGI")


def test_a_websocket_on_wsgi_fails():
    answer = variant("choose_setup", ('needs_asgi = app["websocket"] or ', "needs_asgi = "))
    report = fails_with("10.4", answer)
    case_failed(report, "a WebSocket, more streams", "WSGI has none")


def test_async_views_on_wsgi_fail():
    answer = variant("choose_setup", (' or app["views"] == "async"\n', "\n"))
    report = fails_with("10.4", answer)
    case_failed(report, "a WebSocket, more streams", "under WSGI each still holds a thread")
    case_failed(report, "ASGI + to_thread", "asyncio.to_thread")


def test_no_validation_fails():
    answer = variant("choose_setup", ('    if app["views"] not in ("sync", "async") or app["open_streams"] < 0 or '
                                      'app["threads"] < 1:\n        raise ValueError(', "    if 0:\n        print("))
    report = fails_with("10.4", answer)
    case_failed(report, "bad descriptions", "raise ValueError")


# --- wrong answers a newcomer's review found accepted ---

CLOSE_IN_FINALLY = ("        try:\n            body = b\"\".join(chunks)\n        finally:\n"
                    "            if hasattr(chunks, \"close\"):\n                chunks.close()\n")


def test_a_bridge_that_goes_through_the_body_on_the_loop_fails():
    answer = NOTEBOOK.define('''def wsgi_to_asgi(app, workers=4):
    pool = ThreadPoolExecutor(max_workers=workers)

    def call(environ):
        kept = {}

        def start_response(status, headers, exc_info=None):
            kept["status"], kept["headers"] = status, headers
            return lambda data: None
        return kept, app(environ, start_response)

    async def bridged(scope, receive, send):
        body, more_body = b"", True
        while more_body:
            message = await receive()
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
        loop = asyncio.get_running_loop()
        try:
            kept, result = await loop.run_in_executor(pool, call, environ_for(scope, body))
            content = b"".join(result)  # on the loop
            if hasattr(result, "close"):
                result.close()
            status, headers = kept["status"], kept["headers"]
        except Exception:
            status, headers, content = "500 Internal Server Error", [], b"error"
        pairs = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        await send({"type": "http.response.start", "status": int(status.split()[0]), "headers": pairs})
        await send({"type": "http.response.body", "body": content})
    return bridged
''', "wsgi_to_asgi")
    report = fails_with("10.1", answer)
    case_failed(report, "a generator app", "the app's body ran on the event loop's own thread",
                "inside the call you give run_in_executor")
    assert report.results[0].passed  # a list body: concurrent it is


def test_a_bridge_that_reads_the_status_before_the_body_fails():
    answer = variant("wsgi_to_asgi", (
        "        chunks = app(environ, start_response)\n",
        "        chunks = app(environ, start_response)\n"
        "        status, headers = started[\"status\"], started[\"headers\"]\n"),
        ('        return started["status"], started["headers"], body', "        return status, headers, body"))
    report = fails_with("10.1", answer)
    case_failed(report, "a generator app", "answered 500", "start_response runs only when the body is first "
                "iterated", "Join the chunks first")
    assert report.results[0].passed


def test_a_bridge_that_closes_the_body_outside_a_finally_fails():
    answer = variant("wsgi_to_asgi", (CLOSE_IN_FINALLY, "        body = b\"\".join(chunks)\n"
                                                        "        if hasattr(chunks, \"close\"):\n"
                                                        "            chunks.close()\n"))
    report = fails_with("10.1", answer)
    case_failed(report, "a body that raises", "close() was never called", "finally:")
    assert [r.passed for r in report.results].count(False) == 1, str(report)


def test_a_bridge_that_reads_an_empty_content_length_as_a_number_fails():
    answer = variant("asgi_to_wsgi", ('int(environ.get("CONTENT_LENGTH") or 0)',
                                      'int(environ.get("CONTENT_LENGTH", 0))'))
    report = fails_with("10.2", answer)
    case_failed(report, "CONTENT_LENGTH there but empty", "raised ValueError",
                "int(environ.get('CONTENT_LENGTH') or 0)")


def test_a_bridge_that_reads_wsgi_input_with_no_size_is_told_what_wsgiref_refused():
    answer = variant("asgi_to_wsgi", ('environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))',
                                      'environ["wsgi.input"].read()'))
    report = fails_with("10.2", answer)
    case_failed(report, "three events", "wsgiref.validate refused wsgi.input.read() with no size",
                "PEP 3333 defines read(size)")


def test_a_bridge_that_says_disconnect_at_the_response_start_fails():
    answer = variant("asgi_to_wsgi", ("                    start.update(message)\n",
                                      "                    start.update(message)\n"
                                      "                    done.set()\n"))
    report = fails_with("10.2", answer)
    case_failed(report, "streams its body", "after the app had sent http.response.start",
                "not at http.response.start", expected="b'one two three'")
    assert [r.passed for r in report.results].count(False) == 1, str(report)


def test_one_shared_loop_s_errors_stay_out_of_the_log(caplog):
    answer = variant("asgi_to_wsgi", ("        asyncio.run(run())", "        SHARED.run_until_complete(run())"),
                     ("def asgi_to_wsgi(app):\n", "SHARED = asyncio.new_event_loop()\n\n\ndef asgi_to_wsgi(app):\n"))
    with caplog.at_level("DEBUG"):
        report = fails_with("10.2", answer)
    case_failed(report, "4 threads", "RuntimeError")
    assert not [record for record in caplog.records if record.name.startswith("gatewaylab.wsgi")], caplog.text


def test_a_verdict_that_takes_wall_s_for_granted_fails():
    answer = variant("adapter_verdict", ('set(figures.get("wall_s", {}))', 'set(figures["wall_s"])'))
    report = fails_with("10.3", answer)
    case_failed(report, "no figures give None", "raised KeyError", "return None")


def test_one_thread_refused_fails():
    answer = variant("choose_setup", ('app["threads"] < 1', 'app["threads"] <= 1'))
    report = fails_with("10.4", answer)
    case_failed(report, "WSGI with threads is enough", "one thread is a WSGI server's smallest pool",
                expected="'WSGI + threads'")
