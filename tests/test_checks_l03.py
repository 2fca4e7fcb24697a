"""Lesson 03's checks, both ways: the notebook's reference answers pass, and so do the lesson's own definitions (the
exercises ask for the lesson's pieces, under its names and signatures); the stubs are "not solved"; and wrong answers
(the mistakes learners make with the environ, start_response, the framing, the body and the server loop) fail with a
message that says what to fix. Also tests the check's own tools: the response parser, the wire, the learner's
server and the clean-up.

Exercise 03.4's handle_request uses the answers of 03.1 to 03.3, so answers are defined here the way a kernel runs the
notebook: the setup cell, then every answer cell in order, each with the mistakes a test puts in."""

import inspect
import threading
import time

import pytest

from gatewaylab import servers, wsgi
from gatewaylab.build import stub_source
from gatewaylab.checks import l03_server
from gatewaylab.grading import CaseFailed, _run_case, get_exercise, run_check
from solution_answers import SolutionNotebook, failure_messages

NOTEBOOK = SolutionNotebook("03_build_a_wsgi_server.ipynb")
EXERCISES = {"03.1": "make_environ", "03.2": "Response", "03.3": "run_app", "03.4": "serve_connection"}
ANSWERS = ["make_environ", "Response", "run_app", "handle_request", "serve_connection"]
pytestmark = pytest.mark.xdist_group("l03-checks")  # the server cases time things: keep them off each other's cores


def kernel(changes: dict | None = None, skip=()) -> dict:
    """The namespace after running the setup cell and the answer cells in order, as a kernel would; ``changes`` maps
    an answer's name to (old, new) replacements put into its source; answers named in ``skip`` are not run."""
    namespace: dict = {}
    exec(compile(NOTEBOOK.setup, "<setup cell>", "exec"), namespace)
    for name, source in NOTEBOOK.answers.items():
        if name in skip:
            continue
        for old, new in (changes or {}).get(name, ()):
            assert old in source, f"the reference answer of {name} no longer contains {old!r}; update this test"
            source = source.replace(old, new)
        exec(compile(source, f"<cell defining {name}>", "exec"), namespace)
    return namespace


def answer(name: str, *replacements: tuple[str, str]):
    return kernel({name: replacements})[name]


def messages(exercise_id: str, name: str, *replacements: tuple[str, str]) -> str:
    return failure_messages(run_check(exercise_id, answer(name, *replacements)))


def case_message(exercise_id: str, part: str, solution) -> str:
    """The message of the one case whose name contains ``part``, run with its time limit as run_check runs it; the
    case must fail."""
    exercise = get_exercise(exercise_id)
    case = next(case for case in exercise.cases if part in case.name)
    result = _run_case(exercise, case, solution)
    assert not result.passed, f"{case.name} passed"
    return result.message


# --- every exercise -----------------------------------------------------------------------------------------------

def test_the_notebook_asks_for_the_lessons_pieces_under_their_names_and_signatures():
    assert NOTEBOOK.exercises == EXERCISES
    assert list(NOTEBOOK.answers) == ANSWERS  # in the order handle_request depends on them
    namespace = kernel()
    for name in ANSWERS:
        assert inspect.signature(namespace[name]) == inspect.signature(getattr(wsgi, name)), name


@pytest.mark.parametrize("exercise_id, name", EXERCISES.items())
def test_reference_answer_passes(exercise_id, name):
    report = run_check(exercise_id, answer(name))
    assert report.passed, str(report)
    assert report.score == report.points >= 3


@pytest.mark.parametrize("exercise_id, name", EXERCISES.items())
def test_the_lessons_own_definition_passes(exercise_id, name):
    # The point of these exercises: the lesson's code, as gatewaylab.wsgi ships it, is a right answer to each.
    report = run_check(exercise_id, getattr(wsgi, name))
    assert report.passed, str(report)


@pytest.mark.parametrize("exercise_id, name", EXERCISES.items())
def test_stub_is_not_solved(exercise_id, name):
    report = run_check(exercise_id, NOTEBOOK.stub(exercise_id))
    assert report.not_solved and report.score == 0


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_has_points_three_hints_and_cases(exercise_id):
    exercise = get_exercise(exercise_id)
    assert 2 <= exercise.points <= 4 and len(exercise.hints) == 3 and len(exercise.cases) >= 4


def test_a_four_argument_make_environ_is_told_the_lessons_signature():
    # The exercises used to ask for other signatures; a learner's answer of that shape is told which one is wanted.
    def make_environ(request, body, server_address, client_address):
        return {}

    text = failure_messages(run_check("03.1", make_environ))
    assert "taking 6 positional arguments" in text and "the lesson's" in text


def test_checks_leave_no_server_or_thread_running():
    before = threading.active_count()
    run_check("03.4", answer("serve_connection"))
    run_check("03.4", answer("serve_connection", ("    except Exception:", "    except HTTPError:"),
                             ("    except OSError:", "    except HTTPError:")))  # fails, its loop dies
    assert "check-03.4" not in servers.running()
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, threading.enumerate()


# --- 03.1 make_environ --------------------------------------------------------------------------------------------

PATH = 'unquote_to_bytes(request.path).decode("latin-1")'
TYPE_ONLY = 'if key == "CONTENT_TYPE":\n            environ["CONTENT_TYPE"] = value\n        elif'
NOT_FRAMING = 'elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):'
JOIN = 'environ[key] = environ[key] + "," + value if key in environ else value'
LENGTH = 'if length is not None:\n        environ["CONTENT_LENGTH"] = str(length)'


@pytest.mark.parametrize("replacements, message", [
    ([(PATH, 'unquote_to_bytes(request.path).decode("utf-8")')], "was decoded as UTF-8"),
    ([(PATH, "request.target")], "the query string, after '?', goes in QUERY_STRING"),
    ([(PATH, "request.path")], "environ['PATH_INFO'] is not what was expected"),              # not decoded at all
    ([(PATH, '__import__("urllib.parse").parse.unquote_plus(request.path, encoding="latin-1")')],
     "a '+' in the path was turned into a space"),
    ([('"QUERY_STRING": request.query', '"QUERY_STRING": __import__("urllib.parse").parse.unquote(request.query)')],
     "environ['QUERY_STRING']"),                                                            # the query decoded
    ([('"SERVER_PORT": str(server_address[1])', '"SERVER_PORT": server_address[1]')], "SERVER_PORT is of type int"),
    ([('"REMOTE_PORT": str(client_address[1])', '"REMOTE_PORT": client_address[1]')], "REMOTE_PORT is of type int"),
    ([('"SERVER_PROTOCOL": request.version', '"SERVER_PROTOCOL": "HTTP/1.1"')], "the version of the request"),
    ([('"wsgi.version": (1, 0)', '"wsgi.version": [1, 0]')], "should be of type tuple, not list"),
    ([('"wsgi.input": body', '"wsgi.input": __import__("io").BytesIO(body.read())')],
     "wsgi.input must be the body stream"),
    ([('"wsgi.errors": sys.stderr,\n', "")], "lacks keys PEP 3333 requires: wsgi.errors"),
    ([('"wsgi.errors": sys.stderr', '"wsgi.errors": __import__("io").StringIO()')],       # a stream nobody reads
     "wsgi.errors must be sys.stderr"),
    ([('"REMOTE_ADDR": client_address[0],\n', ""), ('"REMOTE_PORT": str(client_address[1]),\n', "")],
     "the environ has no 'REMOTE_ADDR' key: the client's address, from client_address"),
    ([('"REMOTE_PORT": str(client_address[1]),\n', "")], "the environ has no 'REMOTE_PORT' key"),
    ([('"wsgi.multithread": multithread', '"wsgi.multithread": False')],
     "multithread=True) must give wsgi.multithread True"),
    ([(TYPE_ONLY, TYPE_ONLY.replace("elif", "if"))], "HTTP_CONTENT_TYPE must not be in the environ"),  # in both
    ([('key = "HTTP_" + key\n', "")], "the environ has no 'HTTP_X_REQUEST_ID' key"),       # no HTTP_ prefix
    ([(JOIN, "environ[key] = value")], "X-Tag came twice"),                                # the last one wins
    ([(JOIN, "environ.setdefault(key, value)")], "X-Tag came twice"),                      # the first one wins
    ([(JOIN, 'environ[key] = environ[key] + ";" + value if key in environ else value')], "X-Tag came twice"),
    ([("    return environ", "    return list(environ.items())")], "must return the environ, a dict"),
    ([('if key == "CONTENT_TYPE":', 'if name == "Content-Type":'),                          # compares the spelling
      (NOT_FRAMING, 'elif name not in ("Content-Length", "Transfer-Encoding"):')],
     "sent the header in lower case (content-type) and your environ has HTTP_CONTENT_TYPE"),
    ([(LENGTH, 'if request.header("Content-Length") is not None:\n'                          # the header, not length
               '        environ["CONTENT_LENGTH"] = request.header("Content-Length")')],
     "this body came chunked, without a Content-Length header"),
    ([(LENGTH, 'environ["CONTENT_LENGTH"] = str(length)')], "leave CONTENT_LENGTH out"),    # "None" for no body
    ([(NOT_FRAMING, 'elif key != "CONTENT_LENGTH":')], "HTTP_TRANSFER_ENCODING must not be in the environ"),
    ([('if "_" in name:', "if False:")], "a header with '_' in its name must be dropped, as nginx and gunicorn do"),
    ([("if request.host is not None:", "if False:")], "RFC 9112 3.2.2: the target's host wins over the Host header"),
])
def test_make_environ_mistakes_fail_with_advice(replacements, message):
    """Each entry: a mistake put into the lesson's make_environ (decoding, types, the keys PEP 3333 wants, header
    mapping, the '_' rule, CONTENT_LENGTH from length), and the advice the check must give for it."""
    assert message in messages("03.1", "make_environ", *replacements)


def test_repeated_headers_may_be_joined_with_a_comma_and_a_space():
    # RFC 9110 5.3: a comma and optional whitespace (and it recommends ", "). Every case, the Flask one too, takes
    # both; only the exercise text and the hints say ',', as wsgiref, gunicorn and the lesson join.
    spaced = answer("make_environ", ('environ[key] + "," + value', 'environ[key] + ", " + value'))
    report = run_check("03.1", spaced)
    assert report.passed, str(report)


def test_the_flask_case_names_the_environ_key_flask_read_wrong():
    flask_case = get_exercise("03.1").cases[-1]
    assert "Flask" in flask_case.name
    with pytest.raises(CaseFailed, match="request.name .* PATH_INFO") as failure:
        flask_case.func(answer("make_environ", (PATH, 'unquote_to_bytes(request.path).decode("utf-8")')))
    assert failure.value.expected == "José" and failure.value.got == "Jos\ufffd"  # é was no longer one latin-1 byte
    with pytest.raises(CaseFailed, match="Flask answered 404"):
        flask_case.func(answer("make_environ", (PATH, "request.path.upper()")))
    with pytest.raises(CaseFailed, match="wsgiref.validate rejected the environ: .*SERVER_PORT"):
        flask_case.func(answer("make_environ", ('str(server_address[1])', "server_address[1]")))
    with pytest.raises(CaseFailed, match="Flask answered 400 BAD REQUEST: it could not read the request body. Check "
                                         "CONTENT_LENGTH") as failure:  # the body is gone: Flask's read comes up short
        flask_case.func(answer("make_environ", ('"wsgi.input": body', '"wsgi.input": __import__("io").BytesIO()')))
    assert "no route" not in failure.value.message
    # Left in, Transfer-Encoding: chunked makes Flask read no body at all: its form comes out empty.
    with pytest.raises(CaseFailed, match=r"\(chunked\): Flask's request.form .*HTTP_TRANSFER_ENCODING"):
        flask_case.func(answer("make_environ", (NOT_FRAMING, 'elif key != "CONTENT_LENGTH":')))
    with pytest.raises(CaseFailed, match="request.user .*'_' in its name must be dropped"):
        flask_case.func(answer("make_environ", ('if "_" in name:', "if False:")))
    flask_case.func(answer("make_environ"))  # and the reference passes it


# --- 03.2 Response ------------------------------------------------------------------------------------------------

STORE = "self.status, self.headers = status, headers\n        return self.write"
RERAISE = "raise exc_info[1].with_traceback(exc_info[2])"
SECOND = ('elif self.status is not None:\n            raise AssertionError("start_response() called a second time '
          'without exc_info")\n')
KEEP = "keep_alive = self.request.keep_alive and self.server_allows_keep_alive()"
# A Response that frames its body itself, instead of with the core's ResponseBody, each time forgetting one rule.
OWN_BODY = ("self.framing, self.body = framing, ResponseBody(framing)",
            "self.framing, self.body, self.left = framing, ResponseBody(framing), framing.limit")
OWN_FRAME = ("head + self.body.frame(data)", "head + self.frame(data)")
NO_BODY = '        if not self.framing.has_body:\n            return b""\n'
LIMIT = "        if self.left is not None:\n            data = data[:self.left]\n            self.left -= len(data)\n"
CHUNK = "        return encode_chunk(data) if self.framing.chunked else data\n\n"
HEAD = "    def head(self, body_length):"


@pytest.mark.parametrize("replacements, message", [
    ([(STORE, "self.status, self.headers = status, headers\n        send_bytes(self.sock, self.head(None))\n"
              "        return self.write")], "bytes went on the wire after start_response"),  # headers sent at once
    ([(STORE, "self.status, self.headers = status, headers")], "must return the write() callable"),
    ([("if exc_info is not None:", "if False:")], "WITH exc_info is allowed before the headers go out"),
    ([(RERAISE, "pass")], "returned: it must re-raise exc_info[1]"),
    ([(RERAISE, 'raise RuntimeError("too late")')], "must re-raise the app's own exception"),
    ([(RERAISE, "raise type(exc_info[1])('again')")], "raised a new AppCrash"),
    ([(SECOND, "")], "a second start_response() without exc_info was accepted"),
    ([OWN_BODY, OWN_FRAME, (HEAD, "    def frame(self, data):\n" + LIMIT + CHUNK + HEAD)],  # a body after HEAD
     "HEAD /: bytes of body went out after the head"),
    ([OWN_BODY, OWN_FRAME, (HEAD, "    def frame(self, data):\n" + NO_BODY + CHUNK + HEAD)],  # past Content-Length
     "never send more bytes than the app's Content-Length"),
    ([(KEEP, "keep_alive = self.server_allows_keep_alive()")],                     # the client's wish ignored
     "the client asked to close (Connection: close)"),
    ([(KEEP, "keep_alive = self.request.keep_alive")], "server_allows_keep_alive() said no when the headers went out"),
    ([(STORE, "self.status, self.headers = status, headers\n        self.allowed = self.server_allows_keep_alive()\n"
              "        return self.write"),                                         # asked too early
      (KEEP, "keep_alive = self.request.keep_alive and self.allowed")], "Ask it in head(), when the headers go out"),
    ([("self.head(body_length)", "self.head(None)")], "body_length is the whole body's length"),
    ([("head + self.body.end()", "head")], "the client is still waiting for the end of the body"),  # no last chunk
    ([("return self.framing.keep_alive and not self.body.cut_short", "return self.framing.keep_alive")],
     "Content-Length: 10, and only 5 bytes sent"),                                 # a body cut short kept alive
    ([("head + self.body.frame(data)", "head + data")], "each piece goes out as one chunk"),  # not framed at all
    ([("        check_status(status)\n", "")], "start_response('200', [('Content-Type', 'text/plain; charset=utf-8')]) "
                                              "was accepted: a status is a code, a space and a reason phrase"),
    ([("        check_headers(headers)\n", "")], "the headers are a list of (name, value) tuples: check_headers"),
    ([("return build_head(self.status, self.headers + framing.headers)",            # a head of its own, no Date
       'return ("HTTP/1.1 " + self.status + "\\r\\n" + "".join(f"{n}: {v}\\r\\n" for n, v in self.headers + '
       'framing.headers) + "\\r\\n").encode("latin-1")')], "no Date header"),
])
def test_response_mistakes_fail_with_advice(replacements, message):
    """Each entry: a mistake put into the lesson's Response (when the head goes out, exc_info, a second call,
    framing, keep-alive, the checks on status and headers), and the advice the check must give for it."""
    text = messages("03.2", "Response", *replacements)
    assert message in text
    # The rule and where it goes, never the answer's own line: that is for the last hint.
    for line in ("return self.write", "self.framing.keep_alive", "self.body.frame(", "head(body_length=0)",
                 "keep_alive = self.request", "raise exc_info[1].with_traceback"):
        assert line not in text, line


def test_a_head_sent_from_start_response_is_told_only_that():
    # Every case that goes on to judge the framing or keep-alive first looks for bytes sent by start_response.
    sent_early = (STORE, "self.status, self.headers = status, headers\n        send_bytes(self.sock, "
                         "self.head(None))\n        return self.write")
    text = messages("03.2", "Response", sent_early)
    assert "bytes went on the wire after start_response" in text
    assert "body_length" not in text and "Ask it in head()" not in text and "re-raised" not in text, text


def test_parse_response_reads_one_response_strictly():
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello"
    parsed = l03_server.parse_response(raw, "it", closed=True)
    assert (parsed.status_line, parsed.headers, parsed.body) == (
        "HTTP/1.1 200 OK", [("Content-Type", "text/plain"), ("Connection", "close")], b"hello")
    assert parsed.complete and not parsed.keep_alive
    chunked = l03_server.parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                                        b"extra", "it")
    assert chunked.body == b"hi" and chunked.complete and chunked.keep_alive and chunked.extra == b"extra"
    assert not l03_server.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", "it").complete
    with pytest.raises(CaseFailed, match="empty line"):
        l03_server.parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n", "it")
    with pytest.raises(CaseFailed, match="CRLF"):
        l03_server.parse_response(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "it")
    with pytest.raises(CaseFailed, match="not a valid HTTP/1.1 response"):
        l03_server.parse_response(b"HTTP/1.1 OK\r\n\r\n", "it")


def test_wire_reads_what_was_sent_without_waiting():
    with l03_server.Wire() as wire:
        assert wire.new() == b""
        wire.server.sendall(b"abc")
        assert wire.new() == b"abc" and wire.received == b"abc"
        started = time.monotonic()
        assert wire.new() == b""
        assert time.monotonic() - started < 0.1


# --- 03.3 run_app -------------------------------------------------------------------------------------------------

SEND = "response.send(data, body_length=len(data) if whole else None)"
FINISH = "        return response.finish()\n"
CLOSE = '    finally:\n        if hasattr(result, "close"):\n            result.close()'


@pytest.mark.parametrize("replacements, message", [
    ([("for data in result:", 'for data in [b"".join(result)]:')],                     # buffers the whole body
     "the app was asked for piece 2 before piece 1 was on the wire"),
    ([("            if data:", "            if True:")], "an empty piece (b'') was passed to send()"),
    ([(FINISH + CLOSE, '        keep = response.finish()\n        if hasattr(result, "close"):\n'    # success only
                       "            result.close()\n        return keep\n    finally:\n        pass")],
     "after the app failed half-way, the body's close() was never called"),
    ([('if hasattr(result, "close"):\n            result.close()', "result.close()")], "need not have close()"),
    ([('result.close()', 'result.close()\n            result.close()')], "close() was called 2 times"),
    ([(FINISH + CLOSE, '        if hasattr(result, "close"):\n            result.close()\n'      # closes first
                       "        return response.finish()\n    finally:\n        pass")],
     "close() was called before finish()"),
    ([(SEND, "response.send(data, body_length=None)")], "a list of one item: its one piece is the whole body"),
    ([(SEND, "response.send(data, body_length=len(data))")],                           # a length for every piece
     "a tuple of two items: body_length is the length of the WHOLE body"),
    ([(SEND, "response.write(data)")], "a list of one item: its one piece is the whole body"),
    ([("whole = has_one_item(result)", "whole = isinstance(result, list) and len(result) == 1")],
     "a tuple of one item: PEP 3333: when the iterable's len() is 1"),               # a one-item tuple chunked
    ([(FINISH, "        response.finish()\n")], "run_app must return what response.finish() returned"),
    ([("    finally:\n", '    except Exception:\n        if response.headers_sent:\n            raise\n'  # a 500 here
                         '        response.start_response("500 Internal Server Error", [("Content-Type", '
                         '"text/plain")], sys.exc_info())\n        response.send(b"error")\n'
                         "        return response.finish()\n    finally:\n")],
     "an app that fails before its first byte of body: run_app returned normally"),
    ([(FINISH + "    finally:\n", "        pass\n    finally:\n        response.finish()\n")],  # finish() in finally
     "finish() was called after the app failed"),
    ([(SEND, f"try:\n                    {SEND}\n                except OSError:\n                    pass")],
     "though sending the first one failed: stop when send() raises"),               # a gone client ignored
])
def test_run_app_mistakes_fail_with_advice(replacements, message):
    """Each entry: a mistake put into the lesson's run_app (buffering, empty pieces, close(), the one-item length,
    the return value, a 500 or finish() where none belongs, a gone client), and the advice the check gives."""
    assert message in messages("03.3", "run_app", *replacements)


def test_a_buffered_body_is_told_it_was_buffered_not_about_body_length():
    text = messages("03.3", "run_app", ("for data in result:", 'for data in [b"".join(result)]:'))
    assert "pieces were joined and sent as one. Buffer nothing" in text
    assert "body_length" not in text, text


def test_the_recording_response_is_the_courses_and_records_what_run_app_does():
    with l03_server.Wire() as wire:
        response = l03_server.RecordingResponse(wire)
        body = l03_server.Body([b"a", b"", b"b"], log=response.events)
        assert wsgi.run_app(l03_server._app(body), l03_server._environ(), response) is True
        assert response.events == [("send", b"a", None), ("send", b"b", None), ("finish", True), ("close",)]
        assert l03_server._on_wire(wire, "it").body == b"ab"


# --- 03.4 handle_request and serve_connection ---------------------------------------------------------------------

RETURN_TRUE = "            if not connection.request_waiting():\n                return True"
FIVE_HUNDRED = ('        if not response.headers_sent:\n'
                '            send_error(sock, HTTPError(500, "the application failed"), request.method)')
HTTP_ERROR = "        send_error(connection.sock, error)\n        close_gently(connection.sock)"
KEEP_AFTER_500 = ("        # After the headers, closing is the only way to tell the client: it sees a body cut short.\n"
                  "        return False")
GENTLE = ("                if request.keep_alive or connection.request_waiting():\n"
          "                    # The client may still be sending:\n"
          "                    # its next request, or a body the app did not read.\n"
          "                    close_gently(connection.sock)\n")
ONLY_HTTP_ERRORS = [("    except OSError:", "    except HTTPError:"),
                    ("    except Exception:", "    except HTTPError:")]


def test_serve_connection_without_its_pieces_is_told_to_run_or_solve_them_first():
    missing = kernel(skip={"handle_request"})["serve_connection"]
    assert "serve_connection uses handle_request, which is not defined: run the cell of exercise 03.4 first" in \
        failure_messages(run_check("03.4", missing))
    namespace = kernel()  # then the exercises notebook's make_environ cell, run after the solved ones
    exec(compile(stub_source(NOTEBOOK.answers["make_environ"], "03.1"), "<stub>", "exec"), namespace)
    text = failure_messages(run_check("03.4", namespace["serve_connection"]))
    assert "handle_request uses your make_environ, which is still the exercise stub: solve exercise 03.1 first, " \
           "or take the lesson's: run `from gatewaylab.wsgi import make_environ`" in text
    namespace = kernel()  # then the exercises notebook's handle_request cell, run as it comes
    exec(compile(stub_source(NOTEBOOK.answers["handle_request"], "03.4"), "<stub>", "exec"), namespace)
    text = failure_messages(run_check("03.4", namespace["serve_connection"]))
    assert "serve_connection uses your handle_request, which is still the exercise stub: write it too" in text


@pytest.mark.parametrize("changes, message", [
    ({"serve_connection": [(RETURN_TRUE, "            return True")]},             # pipelined request left waiting
     "the second of two requests sent together"),
    ({"serve_connection": [(RETURN_TRUE, "            return False")]},            # keep-alive ignored
     "keep-alive was ignored"),
    ({"handle_request": [(FIVE_HUNDRED, '        send_error(sock, HTTPError(500, "the application failed"), request.method)')]},
     "GET /late: the app failed after its 200 and first piece were on the wire, and your server then sent a 500"),
    ({"handle_request": [('            send_error(sock, HTTPError(500, "the application failed"), request.method)',
                          "            pass")]}, "the client should get a 500"),
    ({"handle_request": [("log.exception(", "(")]}, "tracebacks were logged"),        # the app's bug goes unseen
    ({"handle_request": [("    except (Exception, SystemExit):", "    except Exception:")]},  # sys.exit() stops it
     "SystemExit is not an Exception"),
    ({"handle_request": [("        while body.read(65536):\n            pass\n", "        pass\n")]},
     "were taken for the start of the next request"),                               # the unread body not drained
    ({"handle_request": [("environ = make_environ(request, body,", "environ = make_environ(request, rfile,")]},
     "wsgi.input must end where the body ends"),                                    # the unbounded connection file
    ({"serve_connection": ONLY_HTTP_ERRORS},                                         # a reset ends the loop
     "Your server's loop ended with ConnectionResetError"),
    ({"serve_connection": [(HTTP_ERROR, "        send_error(connection.sock, error)")]},  # no gentle close
     "the 413 came, and then the connection was reset instead of closed"),
    ({"serve_connection": [(HTTP_ERROR, "        close_gently(connection.sock)")]},   # no answer to a bad request
     "an HTTPError (read_request and open_body raise it for a malformed request) is answered in serve_connection"),
    ({"handle_request": [(KEEP_AFTER_500, "        keep_alive = True")]},            # drains, keeps the connection
     "the 500 said Connection: close, and the server left the connection open"),
    ({"serve_connection": [(GENTLE, "")]},                                            # closes with unread bytes
     "the 500 came, and then the connection was reset instead of closed. The client was still sending"),
    ({"handle_request": [("    except (Exception, SystemExit):", "    except BaseException:")]},  # swallows Ctrl-C
     "an app raised KeyboardInterrupt (what Ctrl-C raises), and serve_connection returned False"),
    ({"serve_connection": [("    except Exception:", "    except BaseException:")]},
     "an app raised KeyboardInterrupt (what Ctrl-C raises), and serve_connection returned False"),
    ({"handle_request": [("    except ClientDisconnected:\n        return False\n", "")]},  # a gone client, an app bug
     "the app's read() raised ClientDisconnected, and your server treated it as the app's bug: it answered 500"),
    ({"make_environ": [(PATH, "request.path")]}, "'percent-encoded path'"),          # a piece's mistake shows too
    ({"Response": [OWN_BODY, OWN_FRAME, (HEAD, "    def frame(self, data):\n" + LIMIT + CHUNK + HEAD)]}, "'HEAD /'"),
    ({"run_app": [("for data in result:", 'for data in [b"".join(result)]:')]}, "'streaming'"),
])
def test_server_mistakes_fail_with_advice(changes, message):
    """Each entry: a mistake put into handle_request or serve_connection (pipelining, keep-alive, the 500 rule,
    logging, the unread body, errors that end the loop, the gentle close), or into a piece they use, and the
    advice the check gives: the learner's server is exercised by real clients."""
    assert message in failure_messages(run_check("03.4", kernel(changes)["serve_connection"]))


def test_a_server_ended_by_sys_exit_is_told_to_catch_it_in_handle_request():
    exits = kernel({"handle_request": [("    except (Exception, SystemExit):", "    except Exception:")]})
    text = case_message("03.4", "failing apps", exits["serve_connection"])
    assert "Your server's loop ended with SystemExit" in text and "Catch it there, beside Exception" in text
    assert "catch Exception in serve_connection" not in text, text


def test_a_server_whose_loop_dies_is_told_why_and_refuses_at_once():
    fragile = answer("serve_connection", *ONLY_HTTP_ERRORS)
    text = case_message("03.4", "clients that leave", fragile)
    assert "your server stopped serving" in text and "catch it in serve_connection (except OSError" in text


def test_a_serve_connection_that_never_returns_is_stopped_and_told_so():
    spins = answer("serve_connection", ("            if request is None:", "            if request is None:\n"
                                                                           "                continue"))
    before = threading.active_count()
    text = case_message("03.4", "request bodies", spins)  # its second connection finds the loop spinning
    assert "your server did not stop: serve_connection was still running" in text
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, threading.enumerate()


def test_the_check_apps_fail_as_intended():
    """The apps 03.4 uses to provoke a 500 really do fail, at the moment the case says."""
    with pytest.raises(l03_server.AppCrash):
        l03_server._crashes_when_called({}, None)
    pieces = l03_server._crashes_when_iterated({}, lambda status, headers: None)
    assert next(pieces) == b""
    with pytest.raises(l03_server.AppCrash):
        next(pieces)
    pieces = l03_server._crashes_after_a_piece({}, lambda status, headers: None)
    assert next(pieces) == l03_server.LATE_PIECE
    with pytest.raises(l03_server.AppCrash):
        next(pieces)


def test_serve_yours_says_once_what_is_missing_or_serves(capsys):
    assert l03_server.serve_yours(NOTEBOOK.stub("03.4"), l03_server._hello) is None
    assert capsys.readouterr().out == ("Your serve_connection (exercise 03.4) is not written yet: write it, run its "
                                       "cell, then this one.\n")
    with l03_server.serve_yours(wsgi.serve_connection, l03_server._hello, name="test-l03-yours") as server:
        assert "test-l03-yours" in servers.running()
        reply = l03_server._exchange(server, l03_server._request("GET", "/x"), "GET /x")
        assert (reply.status, reply.body) == (200, b"hello from /x")
        assert server.httpd.connections == 1 and isinstance(server.httpd, wsgi.WSGIServer)
    assert "test-l03-yours" not in servers.running() and not server.thread.is_alive()
