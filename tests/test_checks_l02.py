"""Lesson 02's checks, both ways: the notebook's reference answers pass, the stubs are "not solved", and wrong answers
(the mistakes learners make, including the lesson's own flawed middleware) fail with a message that says what to fix.
Also tests the strict stand-in for a server that the checks call apps with."""

import ast
import sys
import threading
import time

import nbformat
import pytest

from gatewaylab import servers
from gatewaylab.checks import l02_wsgi
from gatewaylab.grading import CaseFailed, run_check
from solution_answers import ROOT, SolutionNotebook, failure_messages

NOTEBOOK = SolutionNotebook("02_wsgi_the_interface.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant
LESSON = ROOT / "notebooks" / "02_wsgi_the_interface.ipynb"
EXERCISES = {"02.1": "hello_app", "02.2": "echo_form", "02.3": "countdown", "02.4": "timing_middleware",
             "02.5": "error_catcher"}

def _lesson_functions() -> dict[str, str]:
    """The lesson notebook's functions by name, each its own source without the demo code around it."""
    found = {}
    for cell in nbformat.read(LESSON, as_version=4).cells:
        if cell.cell_type == "code":
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = ast.get_source_segment(cell.source, node)
    return found


LESSON_FUNCTIONS = _lesson_functions()


def from_lesson(name: str):
    """A function the lesson notebook defines (its cells rely on the lesson's first cell for these imports)."""
    return NOTEBOOK.define("import sys, time, traceback\n" + LESSON_FUNCTIONS[name], name)


def test_checks_leave_no_server_or_thread_running():
    before = threading.active_count()
    run_check("02.1", variant("hello_app", ("return [body]", 'return ["Hello, WSGI!"]')))  # fails under wsgiref too
    run_check("02.4", reference("timing_middleware"))
    assert not any(name.startswith("check-") for name in servers.running())
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, threading.enumerate()


# --- 02.1 hello_app -----------------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # the validator warns about a status "200"
@pytest.mark.parametrize("replacements, message", [
    ([("return [body]", 'return ["Hello, WSGI!"]')], "non-bytestring"),                       # a str body
    ([("return [body]", "return body")], "single-item list"),                                  # bytes, not a list
    ([('start_response("200 OK", [', '("200 OK", [')], "start_response has not yet been called"),  # forgot it
    ([("str(len(body))", "str(len(body) - 1)")], "Content-Length says 11 but the body is 12 bytes"),
    ([("str(len(body))", "len(body)")], "Header value must be of type str"),                   # an int header value
    ([('("Content-Type", "text/plain; charset=utf-8"),', "")], "No Content-Type header"),
    ([('"200 OK"', '"200"')], "a code, a space and a reason phrase"),
])
def test_hello_app_mistakes_fail_with_advice(replacements, message):
    assert message in failure_messages(run_check("02.1", variant("hello_app", *replacements)))


def test_hello_app_without_content_length_is_told_to_add_it():
    answer = variant("hello_app", ('        ("Content-Length", str(len(body))),  # bytes, not characters, written as a '
                                   'str\n', ""))
    report = run_check("02.1", answer)
    assert "no Content-Length header" in failure_messages(report)
    assert report.results[0].passed  # the rest of the answer is right, and the report says so


# --- 02.2 echo_form -----------------------------------------------------------------------------------------------------

READ = 'data = environ["wsgi.input"].read(length)'


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # the validator warns about a status " 405 ..."
@pytest.mark.parametrize("replacements, message", [
    ([(READ, 'data = environ["wsgi.input"].read()')], "read() was called without a size"),
    ([(READ, 'data = b"".join(environ["wsgi.input"])')], "wsgi.input.readline()"),      # iterates to the end
    ([(READ, 'data = environ["wsgi.input"].read(1024)')], "read only part of the body"),
    ([('int(environ.get("CONTENT_LENGTH") or 0)', 'int(environ["CONTENT_LENGTH"])')], "KeyError"),
    ([('int(environ.get("CONTENT_LENGTH") or 0)', 'int(environ.get("CONTENT_LENGTH", 0))')], "invalid literal"),
    ([('[("Allow", "POST"), ', "[")], "Allow header"),
    ([('("Allow", "POST")', '("Allow", "post")')], "case-sensitive"),                 # methods are case-sensitive
    ([('start_response("405 Method Not Allowed"', 'start_response(" 405 Method Not Allowed"')],
     "a code, a space and a reason phrase"),                                          # int() would take " 405"
    ([('if environ["REQUEST_METHOD"] != "POST":', "if False:")], "should have code 405"),
    ([("json.dumps(fields)", "json.dumps(fields, ensure_ascii=False)"), ("str(len(body))", "str(len(body.decode()))")],
     "count the encoded bytes"),                                                          # characters, not bytes
    ([('"application/json"', '"text/plain"')], "should say application/json"),
])
def test_echo_form_mistakes_fail_with_advice(replacements, message):
    assert message in failure_messages(run_check("02.2", variant("echo_form", *replacements)))


def test_echo_form_reading_past_content_length_is_stopped_in_time():
    answer = variant("echo_form", (READ, 'data = environ["wsgi.input"].read(-1)'))
    started = time.perf_counter()
    report = run_check("02.2", answer)
    # Three direct calls stall for STALL each, the server case waits HTTP_TIMEOUT: the check never hangs.
    assert time.perf_counter() - started < 3 * l02_wsgi.STALL + l02_wsgi.HTTP_TIMEOUT + 5
    assert not any(r.timed_out for r in report.results)
    messages = failure_messages(report)
    assert "bytes the client never sends" in messages
    assert "no answer within" in messages  # under wsgiref, the read really blocks


# --- 02.3 countdown -----------------------------------------------------------------------------------------------------

def buffered_countdown(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    lines = []
    for line in (b"3\n", b"2\n", b"1\n"):
        lines.append(line)
        time.sleep(0.2)
    return lines + [b"liftoff\n"]  # every chunk is ready before the server gets the first


def one_chunk_countdown(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"3\n2\n1\nliftoff\n"]


def test_countdown_prepared_in_advance_fails_on_timing():
    report = run_check("02.3", buffered_countdown)
    assert report.results[0].passed  # right chunks...
    messages = failure_messages(report)  # ...wrong moment, seen both directly and through wsgiref
    assert "prepared the whole countdown" in messages and "arrived in one go" in messages


def countdown_pausing_before_each_line(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    for line in (b"3\n", b"2\n", b"1\n"):
        time.sleep(0.2)  # the mistake: the pause comes before the line, so '3' is 0.2 s late
        yield line
    yield b"liftoff\n"


def test_countdown_pausing_before_each_line_is_told_so_not_that_it_prepared_everything():
    report = run_check("02.3", countdown_pausing_before_each_line)
    failed = {r.name for r in report.results if not r.passed}
    assert failed == {"hands over each chunk at once, then pauses about 0.2 s"}, str(report)  # it does stream
    messages = failure_messages(report)
    assert "paused before yielding '3'" in messages and "Pause after each" in messages
    assert "prepared the whole countdown" not in messages


def countdown_pausing_after_liftoff_too(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    for line in (b"3\n", b"2\n", b"1\n", b"liftoff\n"):
        yield line
        time.sleep(0.2)  # the mistake: a pause after the last line as well, so the response ends 0.2 s late


def test_countdown_pausing_after_liftoff_too_is_told_the_body_ended_late():
    report = run_check("02.3", countdown_pausing_after_liftoff_too)
    failed = {r.name for r in report.results if not r.passed}
    assert failed == {"hands over each chunk at once, then pauses about 0.2 s"}, str(report)
    assert "the body ended 0.2" in failure_messages(report) and "first three lines only" in failure_messages(report)


def test_countdown_in_one_chunk_fails():
    assert "they differ first at index 0" in failure_messages(run_check("02.3", one_chunk_countdown))


def test_countdown_that_never_ends_is_stopped_with_a_message():
    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        n = 3
        while True:  # forgot to stop at liftoff
            yield f"{n}\n".encode()
            n -= 1

    report = run_check("02.3", endless)
    assert "did not end after" in failure_messages(report)
    assert not any(r.timed_out for r in report.results)  # stopped by the check, not by the time limit


@pytest.mark.parametrize("replacements, message", [
    ([("time.sleep(0.2)", "pass")], "about 0.2 s apart"),
    ([("yield line ", "yield line.decode() ")], "non-bytestring"),
    ([('[("Content-Type", "text/plain; charset=utf-8")]',
       '[("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "10")]')], "Content-Length says 10"),
    ([('start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])', "")],
     "start_response has not yet been called"),
])
def test_countdown_mistakes_fail_with_advice(replacements, message):
    assert message in failure_messages(run_check("02.3", variant("countdown", *replacements)))


# --- 02.4 timing_middleware ---------------------------------------------------------------------------------------------

def test_the_lessons_naive_timing_fails_exactly_where_the_lesson_says():
    report = run_check("02.4", from_lesson("naive_timing"))
    failed = {r.name for r in report.results if not r.passed}
    assert failed == {"keeps streaming: each chunk passes as soon as the app yields it",
                      "returns the server's write() to apps that use it",
                      "passes close() on: the app's iterable is closed when the server closes yours",
                      "passes close() on when the client leaves after the first chunk"}, str(report)
    messages = failure_messages(report)
    assert "collected the body" in messages and "write() callable" in messages and "never closed" in messages


@pytest.mark.parametrize("replacements, message", [
    ([("return start_response(status, headers, exc_info)", "return start_response(status, headers)")],
     "second time without exc_info"),
    ([("def timed_start_response(status, headers, exc_info=None):", "def timed_start_response(status, headers):"),
      ("return start_response(status, headers, exc_info)", "return start_response(status, headers)")],
     "must accept exc_info"),
    ([("return start_response(status, headers, exc_info)", "start_response(status, headers, exc_info)")],
     "write() callable"),
    ([("return app(environ, timed_start_response)", "yield from app(environ, timed_start_response)")],
     "never closed"),                                                       # a generator wrapper drops close()
    ([(" * 1000", "")], "about 100"),                                       # seconds, not milliseconds
    ([('f"{elapsed_ms:.1f}ms"', 'f"{elapsed_ms:.1f} milliseconds"')], "followed by ms"),
    ([('f"{elapsed_ms:.1f}ms"', 'f"{elapsed_ms:.1f} ms"')], "no spaces"),         # 103.2 ms, not 103.2ms
    ([("headers + [(", "headers + [["), ('f"{elapsed_ms:.1f}ms")]', 'f"{elapsed_ms:.1f}ms"]]')],
     "must be of type tuple"),                                              # a header as a list, not a tuple
    ([("return timed_app", "return timed_app(None, None)")], "your code raised"),  # calls the app instead
])
def test_timing_middleware_mistakes_fail_with_advice(replacements, message):
    assert message in failure_messages(run_check("02.4", variant("timing_middleware", *replacements)))


def timing_measured_too_early(app):
    def timed(environ, start_response):
        started = time.perf_counter()
        elapsed_ms = (time.perf_counter() - started) * 1000  # the mistake: measured before the app has run

        def timed_start_response(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Response-Time", f"{elapsed_ms:.1f}ms")], exc_info)

        return app(environ, timed_start_response)
    return timed


def timing_started_at_wrap_time(app):
    started = time.perf_counter()  # the mistake: one timer, started when the app is wrapped, for every request

    def timed(environ, start_response):
        def timed_start_response(status, headers, exc_info=None):
            elapsed_ms = (time.perf_counter() - started) * 1000
            return start_response(status, headers + [("X-Response-Time", f"{elapsed_ms:.1f}ms")], exc_info)

        return app(environ, timed_start_response)
    return timed


def timing_closing_after_the_loop(app):
    def timed(environ, start_response):
        started = time.perf_counter()

        def timed_start_response(status, headers, exc_info=None):
            elapsed_ms = (time.perf_counter() - started) * 1000
            return start_response(status, headers + [("X-Response-Time", f"{elapsed_ms:.1f}ms")], exc_info)

        body = app(environ, timed_start_response)
        yield from body
        if hasattr(body, "close"):
            body.close()  # the mistake: skipped when the server closes this generator half-way (the client left)
    return timed


def test_timing_middleware_closing_after_its_loop_fails_when_the_client_leaves():
    report = run_check("02.4", timing_closing_after_the_loop)
    failed = {r.name for r in report.results if not r.passed}
    assert failed == {"passes close() on when the client leaves after the first chunk"}, str(report)
    assert "`finally:` block" in failure_messages(report)


def test_timing_middleware_timed_from_wrap_time_fails_saying_so():
    report = run_check("02.4", timing_started_at_wrap_time)
    failed = [r.name for r in report.results if not r.passed]
    assert failed == [f"times each request from its own call: wrapped once, called twice {l02_wsgi.PAUSE:g} s apart"]
    assert "the timer started when timing_middleware wrapped the app" in failure_messages(report)


def test_timing_middleware_measuring_the_wrong_moment_fails():
    assert "measured at the wrong moment" in failure_messages(run_check("02.4", timing_measured_too_early))


# --- 02.5 error_catcher -------------------------------------------------------------------------------------------------

def swallowing_catcher(app):
    """Catches errors during iteration, but hides one that comes after the headers went out."""
    def guarded(environ, start_response):
        def body(inner):
            try:
                yield from inner
            except Exception:
                try:
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                except Exception:
                    pass  # the mistake: PEP 3333 says not to trap what start_response re-raises
                yield b"Internal Server Error\n"
            finally:
                inner.close()
        return body(app(environ, start_response))
    return guarded


def catcher_with_bare_excepts(app):
    """swallowing_catcher written with bare excepts: they also catch the GeneratorExit that close() raises inside it."""
    def guarded(environ, start_response):
        def body(inner):
            try:
                yield from inner
            except:  # noqa: E722 -- catches GeneratorExit too
                try:
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                except:  # noqa: E722
                    pass
                yield b"Internal Server Error\n"
            finally:
                inner.close()
        return body(app(environ, start_response))
    return guarded


def test_error_catcher_with_bare_excepts_is_told_about_generator_exit():
    report = run_check("02.5", catcher_with_bare_excepts)
    assert "passes close() on when the client leaves after the first chunk" in {
        r.name for r in report.results if not r.passed}, str(report)
    assert "a bare `except:`" in failure_messages(report) and "Catch Exception" in failure_messages(report)


def test_the_lessons_catch_errors_misses_errors_during_iteration():
    report = run_check("02.5", from_lesson("catch_errors"))
    assert "after your function has returned" in failure_messages(report)


def test_error_catcher_that_hides_a_late_error_fails():
    assert "let it raise" in failure_messages(run_check("02.5", swallowing_catcher))


@pytest.mark.parametrize("replacements, message", [
    ([("sys.exc_info())  # replaces", ")  # replaces")], "second time without exc_info"),
    ([('return [b"Internal Server Error\\n"]', "return [traceback.format_exc().encode()]")],
     "shows the exception's text"),
    ([("                body.close()", "                pass")], "never closed"),
    ([("        environ[\"wsgi.errors\"].write(traceback.format_exc())\n", "")], "nothing about the error reached"),
    ([('"Content-Type", "text/plain; charset=utf-8"', '"Content-Type", "text/html"')], "should say text/plain"),
])
def test_error_catcher_mistakes_fail_with_advice(replacements, message):
    assert message in failure_messages(run_check("02.5", variant("error_catcher", *replacements)))


# --- the stand-in server ------------------------------------------------------------------------------------------------

def _text_app(body=b"ok"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return app


def test_stalled_input_gives_exactly_the_body_then_fails_after_waiting():
    stream = l02_wsgi.StalledInput(b"a=1\nb=2", "7", stall=0.1)
    assert stream.readline() == b"a=1\n" and stream.read(3) == b"b=2" and stream.read(0) == b""
    started = time.perf_counter()
    with pytest.raises(CaseFailed, match="after reading 7 of the 7 bytes"):
        stream.read(1)
    assert time.perf_counter() - started >= 0.1
    with pytest.raises(CaseFailed, match="CONTENT_LENGTH is missing"):
        l02_wsgi.StalledInput(b"", None, stall=0).readline()


def test_make_environ_is_a_valid_pep_3333_environ():
    environ = l02_wsgi.make_environ("POST", "/form", "a=1", b"x=1", content_type="application/x-www-form-urlencoded",
                                    headers=[("X-Test", "yes")])
    response = l02_wsgi.call_app(_text_app(), environ)  # call_app runs wsgiref.validate, which checks the environ
    assert response.status == "200 OK" and response.body == b"ok"
    assert environ["CONTENT_LENGTH"] == "3" and environ["HTTP_X_TEST"] == "yes" and environ["QUERY_STRING"] == "a=1"
    assert "CONTENT_LENGTH" not in l02_wsgi.make_environ("POST", content_length=None)


def test_call_app_refuses_a_second_start_response_without_exc_info_even_if_the_app_hides_the_error():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        except Exception:
            pass
        return [b"x"]

    with pytest.raises(CaseFailed, match="second time without exc_info"):
        l02_wsgi.call_app(app, l02_wsgi.make_environ())


class LateFailure:
    """A body that sends one chunk, then fails and asks for a 500 with exc_info: too late for that."""

    def __init__(self, start_response):
        self.start_response, self.closed = start_response, False

    def __iter__(self):
        yield b"partial"
        try:
            raise ValueError("late")
        except ValueError:
            self.start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never sent"

    def close(self):
        self.closed = True


def test_call_app_re_raises_exc_info_once_headers_are_sent_and_still_closes_the_body():
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(LateFailure(start_response))
        return bodies[-1]

    response = l02_wsgi.Response()
    with pytest.raises(ValueError, match="late"):
        l02_wsgi.call_app(app, l02_wsgi.make_environ(), response)
    assert response.status == "200 OK" and response.body == b"partial" and bodies[0].closed


@pytest.mark.parametrize("name", ["Connection", "Trailer", "Proxy-Authenticate", "Transfer-Encoding"])
def test_call_app_rejects_hop_by_hop_headers(name):
    # Trailer is RFC 2616's list's "Trailers" (a misspelling that wsgiref.util.is_hop_by_hop keeps).
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), (name, "x")])
        return [b"x"]

    with pytest.raises(CaseFailed, match=f"hop-by-hop header '{name}'"):
        l02_wsgi.call_app(app, l02_wsgi.make_environ())


def test_call_app_accepts_proxy_fields_outside_the_hop_by_hop_list():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Proxy-Status", "x")])  # not in the list
        return [b"x"]

    assert l02_wsgi.call_app(app, l02_wsgi.make_environ()).status == "200 OK"


def test_call_app_stops_iterating_when_the_client_leaves_and_still_closes():
    body = l02_wsgi.RecordedBody([b"a", b"", b"b", b"c"])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    response = l02_wsgi.call_app(app, l02_wsgi.make_environ(), leave_after=2)
    assert response.chunks == [b"a", b"", b"b"] and body.closed and response.finished is None


def test_validator_message_only_explains_wsgiref_validate_errors():
    assert l02_wsgi.validator_message(AssertionError("mine")) is None
    with pytest.raises(CaseFailed, match="wsgiref.validate rejected the app: No Content-Type"):
        l02_wsgi.call_app(lambda environ, start_response: start_response("200 OK", []) or [b""],
                          l02_wsgi.make_environ())


def test_over_http_reports_an_app_error_instead_of_printing_it(capsys):
    def crashing(environ, start_response):
        environ["wsgi.errors"].write("app log line\n")
        raise RuntimeError("boom")

    with pytest.raises(CaseFailed, match="served by wsgiref, your app failed: RuntimeError: boom"):
        l02_wsgi.over_http(crashing, "test", lambda client, url: client.get(url))
    captured = capsys.readouterr()
    assert "boom" not in captured.err and "app log line" not in captured.err
    assert "check-test" not in servers.running()
