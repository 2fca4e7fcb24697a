"""Lesson 03's checks, both ways: the notebook's reference answers pass, the stubs are "not solved", and wrong answers
(the mistakes learners make with environ, start_response, the body and the server loop) fail with a message that says
what to fix. Also tests the check's own tools: the strict responder, the response parser, and the clean-up.

Exercise 03.4's server uses the answers of 03.1 to 03.3, so answers are defined here the way a kernel runs the
notebook: the setup cell, then every answer cell in order, each with the mistakes a test puts in."""

import threading
import time

import pytest

from gatewaylab import servers
from gatewaylab.checks import l03_server
from gatewaylab.grading import CaseFailed, get_exercise, run_check
from solution_answers import SolutionNotebook, failure_messages

NOTEBOOK = SolutionNotebook("03_build_a_wsgi_server.ipynb")
EXERCISES = {"03.1": "make_environ", "03.2": "Responder", "03.3": "send_body", "03.4": "serve"}
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


# --- every exercise -----------------------------------------------------------------------------------------------

def test_the_notebook_has_the_four_exercises():
    assert NOTEBOOK.exercises == EXERCISES
    assert list(NOTEBOOK.answers) == list(EXERCISES.values())  # in the order serve depends on them


@pytest.mark.parametrize("exercise_id, name", EXERCISES.items())
def test_reference_answer_passes(exercise_id, name):
    report = run_check(exercise_id, answer(name))
    assert report.passed, str(report)
    assert report.score == report.points >= 3


@pytest.mark.parametrize("exercise_id, name", EXERCISES.items())
def test_stub_is_not_solved(exercise_id, name):
    report = run_check(exercise_id, NOTEBOOK.stub(exercise_id))
    assert report.not_solved and report.score == 0


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_has_points_three_hints_and_cases(exercise_id):
    exercise = get_exercise(exercise_id)
    assert 2 <= exercise.points <= 4 and len(exercise.hints) == 3 and len(exercise.cases) >= 4


def test_checks_leave_no_server_or_thread_running():
    before = threading.active_count()
    run_check("03.4", answer("serve"))
    run_check("03.4", answer("serve", ("conn.settimeout(1.0)", "pass")))  # fails, with the silent client still there
    assert "check-03.4" not in servers.running()
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, threading.enumerate()


# --- 03.1 make_environ --------------------------------------------------------------------------------------------

PATH = 'unquote_to_bytes(request.path).decode("latin-1")'
HEADER_KEY = 'if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):\n            key = "HTTP_" + key'


@pytest.mark.parametrize("replacements, message", [
    ([(PATH, '__import__("urllib.parse").parse.unquote(request.path)')], "was decoded as UTF-8"),
    ([(PATH, "request.target")], "the query string, after '?', goes in QUERY_STRING"),
    ([(PATH, "request.path")], "environ['PATH_INFO'] is not what was expected"),              # not decoded at all
    ([('"QUERY_STRING": request.query', '"QUERY_STRING": request.query.replace("%C3%A9", "é")')],
     "environ['QUERY_STRING']"),
    ([("str(server_address[1])", "server_address[1]")], "SERVER_PORT is of type int"),
    ([('"SERVER_PROTOCOL": request.version', '"SERVER_PROTOCOL": "HTTP/1.1"')], "the version of the request"),
    ([('"wsgi.version": (1, 0)', '"wsgi.version": [1, 0]')], "should be of type tuple, not list"),
    ([('"wsgi.input": body', '"wsgi.input": io.BytesIO(body.read())')], "wsgi.input must be the body stream"),
    ([('"wsgi.errors": sys.stderr,\n', "")], "lacks keys PEP 3333 requires: wsgi.errors"),
    ([('"wsgi.multithread": False', '"wsgi.multithread": True')], "environ['wsgi.multithread']"),
    ([(HEADER_KEY, 'key = "HTTP_" + key')], "HTTP_CONTENT_TYPE must not be in the environ"),
    ([(HEADER_KEY, 'key = key')], "the environ has no 'HTTP_HOST' key"),
    ([('environ[key] + "," + value if key in environ else value', "value")], "X-Tag came twice"),
    ([("return environ", "return list(environ.items())")], "must return the environ, a dict"),
    ([('if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):', 'if name not in ("Content-Type", "Content-Length"):')],
     "sent the header in lower case (content-type) and your environ has HTTP_CONTENT_TYPE"),  # matches the spelling
    ([(PATH, '__import__("urllib.parse").parse.unquote_plus(request.path, encoding="latin-1")')],
     "a '+' in the path was turned into a space"),
])
def test_make_environ_mistakes_fail_with_advice(replacements, message):
    assert message in messages("03.1", "make_environ", *replacements)


def test_repeated_headers_may_be_joined_with_a_comma_and_a_space():
    # RFC 9110 5.3 allows optional whitespace after the comma: every case, the Flask one too, accepts both joins.
    spaced = answer("make_environ", ('environ[key] + "," + value', 'environ[key] + ", " + value'))
    report = run_check("03.1", spaced)
    assert report.passed, str(report)


def test_the_flask_case_names_the_environ_key_flask_read_wrong():
    flask_case = get_exercise("03.1").cases[-1]
    assert "Flask" in flask_case.name
    with pytest.raises(CaseFailed, match="request.name .* PATH_INFO") as failure:
        flask_case.func(answer("make_environ", (PATH, '__import__("urllib.parse").parse.unquote(request.path)')))
    assert failure.value.expected == "José" and failure.value.got == "Jos\ufffd"  # é was no longer one latin-1 byte
    with pytest.raises(CaseFailed, match="Flask answered 404"):
        flask_case.func(answer("make_environ", (PATH, "request.path.upper()")))
    with pytest.raises(CaseFailed, match="wsgiref.validate rejected the environ: .*SERVER_PORT"):
        flask_case.func(answer("make_environ", ("str(server_address[1])", "server_address[1]")))
    with pytest.raises(CaseFailed, match="Flask answered 400 BAD REQUEST: it could not read the request body. Check "
                                         "CONTENT_LENGTH") as failure:  # the body is gone: Flask's read comes up short
        flask_case.func(answer("make_environ", ('"wsgi.input": body', '"wsgi.input": io.BytesIO()')))
    assert "no route" not in failure.value.message
    flask_case.func(answer("make_environ"))  # and the reference passes it


# --- 03.2 Responder -------------------------------------------------------------------------------------------------

STORE = "self.status, self.headers = status, headers\n        return self.write"
SEND_HEAD = ("if not self.headers_sent:\n            self.sock.sendall(self.head())\n"
             "            self.headers_sent = True\n        self.sock.sendall(data)")


@pytest.mark.parametrize("replacements, message", [
    ([(STORE, "self.status, self.headers = status, headers\n        self.sock.sendall(self.head())\n"
              "        self.headers_sent = True\n        return self.write")],
     "bytes went on the wire after start_response"),
    ([(STORE, "self.status, self.headers = status, headers")], "must return the write() callable"),
    ([("if exc_info is not None:", "if False:")], "WITH exc_info is allowed before the headers go out"),
    ([("raise exc_info[1].with_traceback(exc_info[2])", "pass")], "returned: it must re-raise exc_info[1]"),
    ([("raise exc_info[1].with_traceback(exc_info[2])", 'raise RuntimeError("too late")')],
     "must re-raise the app's own exception"),
    ([("raise exc_info[1].with_traceback(exc_info[2])", "raise type(exc_info[1])('again')")], "raised a new AppCrash"),
    ([('elif self.status is not None:\n            raise AssertionError("start_response() called a second time '
       'without exc_info")\n', "")], "called a second time without exc_info and did not raise"),
    ([(SEND_HEAD, "self.sock.sendall(self.head())\n        self.headers_sent = True\n        self.sock.sendall(data)")],
     "the head went out more than once"),
    ([("self.sock.sendall(self.head())  # an empty body", "pass  # an empty body")], "an empty body still needs"),
    ([('        if self.status is None:\n            raise AssertionError("write() before start_response()")\n', ""),
      ("def head(self):\n", "def head(self):\n        self.headers = self.headers or []\n")],
     "write() before start_response() must raise"),
    ([('"Connection: close\\r\\n\\r\\n"', '"\\r\\n"')], "Connection: close"),
    ([('f"{name}: {value}\\r\\n"', 'f"{name}: {value}\\n"')], "must end with CRLF"),
])
def test_responder_mistakes_fail_with_advice(replacements, message):
    assert message in messages("03.2", "Responder", *replacements)


def test_parse_response_reads_a_response_that_ends_with_the_connection():
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello"
    assert l03_server.parse_response(raw, "it") == ("HTTP/1.1 200 OK", [("Content-Type", "text/plain"),
                                                                        ("Connection", "close")], b"hello")
    with pytest.raises(CaseFailed, match="empty line"):
        l03_server.parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n", "it")
    with pytest.raises(CaseFailed, match="not a valid HTTP/1.1 response"):
        l03_server.parse_response(b"HTTP/1.1 OK\r\n\r\n", "it")


# --- 03.3 send_body -----------------------------------------------------------------------------------------------

LOOP = "for piece in result:\n            if piece:  # an empty piece must not make the headers go out\n" \
       "                responder.write(piece)"
FIVE_HUNDRED = '"500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")]'
CLOSE = "    finally:\n        if hasattr(result, \"close\"):\n            result.close()"


@pytest.mark.parametrize("replacements, message", [
    ([(LOOP, "for piece in [b''.join(result)]:\n            if piece:\n                responder.write(piece)")],
     "before piece 1 had been written"),                                                     # buffers the whole body
    ([(LOOP, "for piece in result:\n            responder.write(piece)")], "an empty piece (b'') was passed"),
    ([(CLOSE, "    if True:\n        if hasattr(result, \"close\"):\n            result.close()")],
     "after the app failed, the body's close() was never called"),                         # closes only on success
    ([('if hasattr(result, "close"):\n            result.close()', "result.close()")], "need not have close()"),
    ([("if responder.headers_sent:\n            raise", "if True:\n            raise")],
     "escaped send_body although nothing had been sent"),                                 # no 500
    ([(',\n                                 sys.exc_info())', ")")], "without exc_info"),  # a 500 without exc_info
    ([("raise  # too late", "return  # too late")], "send_body returned as if all went well"),
    ([("        responder.finish()\n    except", "    except")], "finish() was never called"),
    ([("except Exception:", "except (ValueError, RuntimeError):")], "escaped send_body"),  # catches too little
    ([(FIVE_HUNDRED, '"500", []')], "start_response got the status '500': a status is the code, a space and a "
                                    "reason phrase"),
    ([(FIVE_HUNDRED, '"500 Internal Server Error", []')], "the 500 has no Content-Type header"),
    ([("        responder.finish()\n    except",
       "        result.close() if hasattr(result, 'close') else None\n        responder.finish()\n    except"),
      ('if hasattr(result, "close"):\n            result.close()', "pass")], "close() was called before finish()"),
    ([('if hasattr(result, "close"):\n            result.close()',
       'if hasattr(result, "close"):\n            result.close()\n            result.close()')],
     "the body's close() was called 2 times: call it exactly once"),
    ([(',\n                                 sys.exc_info())', ")"),                   # hides the second call
      ('responder.start_response("500', 'responder.status = None\n        responder.start_response("500')],
     "start_response was called a second time without exc_info"),
])
def test_send_body_mistakes_fail_with_advice(replacements, message):
    assert message in messages("03.3", "send_body", *replacements)


def test_send_body_that_ignores_a_gone_client_is_told_to_stop():
    swallows = answer("send_body", ("responder.write(piece)", "try:\n                    responder.write(piece)\n"
                                                              "                except OSError:\n"
                                                              "                    pass"))
    text = failure_messages(run_check("03.3", swallows))
    assert "BrokenPipeError (the client left), and send_body returned normally" in text


def test_check_responder_enforces_the_rules():
    responder = l03_server._started(l03_server.CheckResponder())
    responder.status = None  # an answer that resets the status still makes a second call
    with pytest.raises(AssertionError, match="second time without exc_info"):
        responder.start_response("500 Internal Server Error", [])
    with pytest.raises(AssertionError, match="reason phrase"):
        l03_server.CheckResponder().start_response("500", [])
    responder = l03_server.CheckResponder()
    with pytest.raises(AssertionError, match="before start_response"):
        responder.write(b"x")
    responder = l03_server._started(l03_server.CheckResponder())
    with pytest.raises(AssertionError, match="second time without exc_info"):
        responder.start_response("500 Internal Server Error", [])
    responder.write(b"")
    assert responder.headers_sent and "empty piece" in responder.problems[-1]
    try:
        raise l03_server.AppCrash("late")
    except l03_server.AppCrash as crash:
        with pytest.raises(l03_server.AppCrash) as raised:
            responder.start_response("500 Internal Server Error", [], (type(crash), crash, crash.__traceback__))
        assert raised.value is crash


# --- 03.4 serve -----------------------------------------------------------------------------------------------------

def test_serve_without_its_pieces_is_told_to_run_or_solve_them_first():
    missing = kernel(skip={"send_body"})["serve"]
    assert "serve uses send_body, which is not defined: run the cell of exercise 03.3" in \
        failure_messages(run_check("03.4", missing))
    with_stub = kernel()
    with_stub["make_environ"] = NOTEBOOK.stub("03.1")
    text = failure_messages(run_check("03.4", with_stub["serve"]))
    assert "serve uses your make_environ, which is still the exercise stub: solve exercise 03.1 first" in text


TE_STATUS = "501 if chunked_last and length is None else 400"
LATE_500 = ("send_body(result, responder)",
            "try:\n                        send_body(result, responder)\n                    except Exception:\n"
            '                        send_error(conn, HTTPError(500, "the application failed"))')


@pytest.mark.parametrize("changes, message", [
    ({"serve": [("conn.settimeout(1.0)", "pass")]}, "kept your server from answering anyone else"),
    ({"serve": [("send_error(conn, error)\n", "")]},                                  # no answer to a bad request
     "The first, 'bad request line', got an answer other than the expected one, shown below."),
    ({"serve": [('send_error(conn, HTTPError(500, "the application failed"))', "pass")]}, "should get a 500"),
    ({"serve": [("            except Exception:\n                pass  # a timeout",
                 "            except HTTPError:\n                pass  # a timeout")]},
     "crashed with TimeoutError"),                                                         # one error ends the loop
    ({"serve": [("if int(length or 0) > MAX_BODY:", "if False:")]}, "'1 GB body announced'"),
    ({"serve": [(TE_STATUS, "400 if length is not None else 501")]},             # 501 for any coding
     "a request with Transfer-Encoding: gzip: the last transfer coding is not chunked"),
    ({"serve": [(TE_STATUS, "400")]}, "a request with Transfer-Encoding: chunked: chunked is a valid framing this "
                                      "server does not implement: 501"),
    ({"serve": [(TE_STATUS, "501")]}, "'Content-Length and Transfer-Encoding'"),
    ({"serve": [("            except Exception:\n                pass  # a timeout",
                 "            except (HTTPError, TimeoutError):\n                pass  # a timeout")]},
     "Your server's thread crashed with AppCrash"),                         # an app failing mid-body ends the loop
    ({"serve": [LATE_500]}, "GET /late: the app failed after its 200 and first piece were on the wire, and your "
                            "server then sent a 500"),
    ({"serve": [("make_environ(request, body,", "make_environ(request, rfile,")]},
     "POST /echo: the app read environ['wsgi.input'].read() and echoed it. wsgi.input must hold exactly"),
    ({"serve": [("                close_gently(conn)\n", "")]}, "the connection was reset"),
    ({"make_environ": [(PATH, "request.path")]}, "'percent-encoded path'"),            # a piece's mistake shows too
    ({"send_body": [(LOOP, "for piece in [b''.join(result)]:\n            responder.write(piece)")]}, "'streaming'"),
])
def test_serve_mistakes_fail_with_advice(changes, message):
    assert message in failure_messages(run_check("03.4", kernel(changes)["serve"]))


def test_a_server_that_dies_on_a_silent_client_is_told_so():
    fragile = answer("serve", ("            except Exception:\n                pass  # a timeout",
                               "            except HTTPError:\n                pass  # a timeout"))
    text = failure_messages(run_check("03.4", fragile))
    assert "catch OSError (TimeoutError is one) around the work on one connection" in text


def test_a_server_that_outlives_its_listener_is_stopped_and_told_so():
    immortal = answer("serve", ("        conn, client_address = listener.accept()  # OSError",
                                "        try:\n            conn, client_address = listener.accept()\n"
                                "        except OSError:\n            continue  # OSError"))
    before = threading.active_count()
    report = run_check("03.4", immortal)
    assert "did not stop when its listening socket was closed" in failure_messages(report)
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


def test_the_late_failure_message_names_the_cause_for_each_wrong_server():
    """A server whose loop dies on the late error, and one that answers it with a 500, fail that case, each told
    why; the reference passes it."""
    late = next(case for case in get_exercise("03.4").cases if "after its first piece" in case.name)
    late.func(answer("serve"))
    dies = answer("serve", ("            except Exception:\n                pass  # a timeout",
                            "            except (HTTPError, TimeoutError):\n                pass  # a timeout"))
    with pytest.raises(CaseFailed, match="the next request got no answer .*your server stopped serving") as failure:
        late.func(dies)
    assert "crashed with AppCrash: cannot reach the database" in failure.value.message
    with pytest.raises(CaseFailed, match="must not become a 500: just close the connection"):
        late.func(answer("serve", LATE_500))


def test_wire_reads_what_was_sent_without_waiting():
    with l03_server.Wire() as wire:
        assert wire.new() == b""
        wire.server.sendall(b"abc")
        assert wire.new() == b"abc" and wire.received == b"abc"
        started = time.monotonic()
        assert wire.new() == b""
        assert time.monotonic() - started < 0.1
