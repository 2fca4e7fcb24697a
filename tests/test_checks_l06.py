"""Lesson 06's checks, both ways: the notebook's reference answers pass, and wrong answers (the mistakes learners
make) fail with a message that says what to fix. The checks serve the answers under uvicorn, so these tests do too,
and make sure no server or thread is left behind."""

import time

import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, fails_with, nothing_left_running

NOTEBOOK = SolutionNotebook("06_asgi_the_interface.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l06-checks"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-06"):
        yield


def case_failed(report, name_part, *fragments):
    """The case whose name holds `name_part` failed, with each fragment in its message."""
    [result] = [r for r in report.results if name_part in r.name]
    assert not result.passed, result
    for fragment in fragments:
        assert fragment in result.message, result.message


@pytest.mark.parametrize("name, exercise_id", [("echo", "06.1"), ("add_header", "06.2"), ("visits", "06.3"),
                                               ("long_poll", "06.4")])
def test_reference_passes(name, exercise_id):
    report = run_check(exercise_id, reference(name))
    assert report.passed, str(report)


# --- 06.1 ---

def test_echo_that_reads_one_event_only():
    fails_with("06.1", variant("echo", ("    while more_body:\n", "    if more_body:\n")),
               "your app read 1 of them", "Read until more_body is False")


def test_echo_that_reads_one_event_only_fails_under_uvicorn_too():
    report = fails_with("06.1", variant("echo", ("    while more_body:\n", "    if more_body:\n")))
    case_failed(report, "under uvicorn", "should come back whole", "read until more_body is False")


def test_echo_with_a_str_body_or_header():
    fails_with("06.1", variant("echo", ('"body": body}', '"body": body.decode()}')),
               "the ASGI validator: app: http.response.body's body must be bytes")
    fails_with("06.1", variant("echo", ('(b"content-type", b"application/octet-stream")',
                                        '("content-type", "application/octet-stream")')),
               "must be bytes")


def test_echo_with_a_capitalised_header_name():
    fails_with("06.1", variant("echo", ('b"content-type"', 'b"Content-Type"')),
               "must be lower-case (b'content-type')")


def test_echo_that_forgets_the_start():
    fails_with("06.1", variant("echo", ('    await send({"type": "http.response.start", "status": 200,\n'
                                        '                "headers": [(b"content-type", b"application/octet-stream")]})\n',
                                        "")),
               "http.response.body before http.response.start")


def test_echo_that_is_not_async():
    answer = NOTEBOOK.define("def echo(scope, receive, send):\n    return None\n", "echo")
    fails_with("06.1", answer, "not something to await: an ASGI app is an `async def")


# --- 06.2 ---

def test_add_header_that_replaces_the_headers():
    fails_with("06.2", variant("add_header", ('[*message.get("headers", []), pair]', "[pair]")),
               "append to them, don't replace them")


def test_add_header_that_prepends_the_header():
    fails_with("06.2", variant("add_header", ('[*message.get("headers", []), pair]',
                                              '[pair, *message.get("headers", [])]')),
               "the header goes after the app's own")


def test_add_header_that_changes_the_app_s_dict_in_place():
    for change in ('message["headers"].append(pair)',
                   'message["headers"] = [*message.get("headers", []), pair]'):
        fails_with("06.2", variant("add_header", (
            'message = {**message, "headers": [*message.get("headers", []), pair]}', change)),
                   "changed the app's own message dict", "Send a copy")


def test_add_header_that_changes_the_message_after_sending_it():
    report = fails_with("06.2", variant("add_header", (
        '            if message["type"] == "http.response.start":\n'
        '                message = {**message, "headers": [*message.get("headers", []), pair]}\n'
        '            await send(message)\n',
        '            await send(message)\n'
        '            if message["type"] == "http.response.start":\n'
        '                message["headers"].append(pair)\n')))
    case_failed(report, "after the app's own", "should add (b'x-served-by', b'gatewaylab')")


def test_add_header_that_returns_the_app_s_coroutine():
    fails_with("06.2", variant("add_header", ("        await app(scope, receive, send_with_header)",
                                              "        return app(scope, receive, send_with_header)")),
               "coroutine, not awaited", "`await` it")


def test_add_header_with_str_or_capitalised_names():
    fails_with("06.2", variant("add_header", ('pair = (name.lower().encode("latin-1"), value.encode("latin-1"))',
                                              "pair = (name.lower(), value)")), "must be bytes")
    fails_with("06.2", variant("add_header", ('name.lower().encode("latin-1")', 'name.encode("latin-1")')),
               "must be lower-case (b'x-served-by')")


def test_add_header_that_puts_headers_on_every_event():
    fails_with("06.2", variant("add_header", ('            if message["type"] == "http.response.start":\n'
                                              '                message', "            message")),
               "body events carry no headers")


def test_add_header_that_swallows_the_lifespan():
    # Returning at once on a scope it does not know leaves the server waiting for lifespan.startup.complete.
    fails_with("06.2", variant("add_header", ("        await app(scope, receive, send_with_header)",
                                              '        if scope["type"] != "http":\n            return\n'
                                              "        await app(scope, receive, send_with_header)")),
               "the lifespan's events must reach the server")


def test_add_header_that_forgets_to_await_send():
    fails_with("06.2", variant("add_header", ("            await send(message)", "            send(message)")),
               "a send() that is not awaited sends nothing")


# --- 06.3 ---

def test_visits_with_an_int_in_the_state():
    answer = variant("visits", ('scope["state"]["visits"] = []', 'scope["state"]["visits"] = 0'),
                     ("    seen = scope[\"state\"][\"visits\"]\n    seen.append(scope[\"path\"])\n",
                      "    scope[\"state\"][\"visits\"] += 1\n    seen = [None] * scope[\"state\"][\"visits\"]\n"))
    fails_with("06.3", answer, "a list is shared")


def test_visits_in_a_global():
    answer = NOTEBOOK.define(NOTEBOOK.answers["visits"].replace(
        '    seen = scope["state"]["visits"]', '    seen = SEEN').replace("async def visits", "SEEN = []\n\n\nasync def visits"),
        "visits")
    fails_with("06.3", answer, "not in a global")


def test_visits_in_a_global_reset_at_startup():
    source = NOTEBOOK.answers["visits"].replace(
        '                scope["state"]["visits"] = []', '                SEEN.clear()').replace(
        '    seen = scope["state"]["visits"]', '    seen = SEEN').replace(
        "async def visits", "SEEN = []\n\n\nasync def visits")
    assert "SEEN.clear()" in source and "seen = SEEN" in source
    fails_with("06.3", NOTEBOOK.define(source, "visits"), "a second lifespan", "not in a global")


def test_visits_that_never_answers_shutdown():
    fails_with("06.3", variant("visits", ('                await send({"type": "lifespan.shutdown.complete"})\n', "")),
               "lifespan.shutdown.complete")


def test_visits_that_returns_after_startup():
    fails_with("06.3", variant("visits", ('                await send({"type": "lifespan.startup.complete"})\n',
                                          '                await send({"type": "lifespan.startup.complete"})\n'
                                          "                return\n")),
               "lifespan.shutdown.complete")


# --- 06.4 ---

def test_long_poll_that_only_sleeps():
    answer = NOTEBOOK.define('''
async def long_poll(scope, receive, send):
    seconds = float(scope["query_string"].decode().partition("=")[2] or 5)
    await receive()
    await asyncio.sleep(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"no news"})
''', "long_poll")
    fails_with("06.4", answer, "returned after", "wait for receive() (http.disconnect) and the sleep at once")


def test_long_poll_that_blocks_the_loop():
    answer = variant("long_poll", ("    waited = asyncio.ensure_future(asyncio.sleep(seconds))",
                                   "    time.sleep(seconds)\n    waited = asyncio.ensure_future(asyncio.sleep(0))"))
    answer.__globals__["time"] = time
    fails_with("06.4", answer, "blocked the event loop", "time.sleep stops the whole loop")


def test_long_poll_that_leaves_its_tasks_running():
    report = fails_with("06.4", variant("long_poll", ("        left.cancel()\n        waited.cancel()\n",
                                                      "        pass\n")),
                        "left 1 task(s) running", "Cancel the tasks it started")
    case_failed(report, "when nothing happens", "left 1 task(s) running")
    case_failed(report, "when the client leaves", "left 1 task(s) running")


def test_long_poll_that_takes_the_request_for_a_disconnect():
    fails_with("06.4", variant("long_poll", ("    more_body = True\n    while more_body:\n"
                                             "        more_body = (await receive()).get(\"more_body\", False)\n", "")),
               "returned with the response not started")


def test_long_poll_that_answers_the_client_who_left():
    report = fails_with("06.4", variant("long_poll", ("        return  # the client has gone: no one to answer",
                                                      "        pass")),
                        "send nothing")
    case_failed(report, "under uvicorn", "sent it an answer anyway")


def test_long_poll_that_ignores_the_query():
    fails_with("06.4", variant("long_poll", ('partition("=")[2] or 5', 'partition("=")[2] and 5')),
               "?wait=0.3 should answer after about 0.3 s")


def test_an_app_that_blocks_its_loop_for_ever_is_timed_out_and_leaves_nothing_running():
    answer = NOTEBOOK.define("async def echo(scope, receive, send):\n    while True:\n        pass\n", "echo")
    started = time.monotonic()
    report = run_check("06.1", answer)
    assert not report.passed and time.monotonic() - started < 40
    messages = "\n".join(r.message for r in report.results)
    assert "did not finish within" in messages or "blocks its event loop" in messages, messages
