"""Lesson 01's checks, both ways: the notebook's reference answers pass, the stubs are "not solved", and wrong answers
(the mistakes learners make) fail with a message that says what to fix."""

import re
import threading
import time

import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages

NOTEBOOK = SolutionNotebook("01_http_on_the_wire.ipynb")
EXERCISES, reference, variant = NOTEBOOK.exercises, NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = pytest.mark.xdist_group("l01-checks")


def case_message(report, case_start: str) -> str:
    """The failure message of the one case whose name starts with `case_start`."""
    [result] = [r for r in report.results if r.name.startswith(case_start)]
    assert not result.passed, str(report)
    return result.message


# --- 01.1 build_request -----------------------------------------------------------------------------------------------

def _request_text(method, target, host, headers=(), body=b"", *, newline="\r\n", end="\r\n", version="HTTP/1.1",
                  host_line=True, host_last=False, length=len):
    lines = [f"{method} {target} {version}"] + ([f"Host: {host}"] if host_line and not host_last else [])
    lines += [f"{n}: {v}" for n, v in headers] + ([f"Host: {host}"] if host_last else [])
    if body and length is not None:
        lines.append(f"Content-Length: {length(body)}")
    return (newline.join(lines) + newline + end).encode("latin-1") + body


@pytest.mark.parametrize("mistake, expected_message", [
    (dict(newline="\n", end="\n"), "bare"),                                 # LF instead of CRLF
    (dict(end=""), "must end with an empty line"),                         # forgot the blank line
    (dict(length=None), "needs a Content-Length"),                         # no Content-Length for a body
    (dict(length=lambda body: len(body.decode())), "Content-Length value"),  # counted characters, not bytes
    (dict(host_line=False), "missing Host header"),
    (dict(host_last=True), "first header line must be Host"),
    (dict(version="HTTP/1.0"), "request line must be"),
])
def test_build_request_mistakes_fail_with_advice(mistake, expected_message):
    def build_request(method, target, host, headers=(), body=b""):
        return _request_text(method, target, host, headers, body, **mistake)

    assert expected_message in failure_messages(run_check("01.1", build_request))


def test_build_request_without_the_empty_line_before_a_body_is_told_where_it_goes():
    def build_request(method, target, host, headers=(), body=b""):
        return _request_text(method, target, host, headers, body, end="")  # the body's own CRLFCRLF ends the head

    message = case_message(run_check("01.1", build_request), "a body is announced")
    assert "the head must end with an empty line before the body" in message
    assert "invalid header name" not in message


def test_build_request_returning_str_is_told_to_encode():
    def build_request(method, target, host, headers=(), body=b""):
        return _request_text(method, target, host, headers, body).decode("latin-1")

    assert "must return bytes" in failure_messages(run_check("01.1", build_request))


def test_build_request_with_a_body_too_short_for_its_length_is_caught_by_uvicorn():
    def build_request(method, target, host, headers=(), body=b""):
        return _request_text(method, target, host, headers, body, length=lambda b: len(b) + 1)

    assert "Content-Length" in failure_messages(run_check("01.1", build_request))


def test_build_request_always_sending_content_length_fails():
    def build_request(method, target, host, headers=(), body=b""):  # "Content-Length: 0" for a GET too
        return _request_text(method, target, host, headers, body) if body else \
            _request_text(method, target, host, headers).replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")

    message = case_message(run_check("01.1", build_request), "a GET")
    assert "a request without a body gets no Content-Length" in message and "RFC 9110 section 8.6" in message


def test_build_request_with_host_last_shows_expected_and_got_alike():
    def build_request(method, target, host, headers=(), body=b""):
        return _request_text(method, target, host, headers, body, host_last=True)

    report = run_check("01.1", build_request)
    [result] = [r for r in report.results if r.name.startswith("extra headers")]
    assert "first header line must be Host" in result.message
    assert result.expected == "[('Host', 'localhost:8000')]" and result.got == "[('Accept', 'text/plain')]"


# --- 01.2 parse_status_line -------------------------------------------------------------------------------------------

def test_parse_status_line_trusting_int_fails():
    def parse_status_line(line):
        version, code, reason = line.decode().split(" ", 2)
        return version, int(code), reason  # int() accepts "+20" and "1_0"

    assert "must raise ValueError" in failure_messages(run_check("01.2", parse_status_line))


def test_parse_status_line_returning_the_code_as_str_fails():
    def parse_status_line(line):
        parts = line.decode().split(" ", 2)
        if len(parts) != 3 or not re.fullmatch(r"HTTP/\d\.\d", parts[0]) or not re.fullmatch(r"\d{3}", parts[1]):
            raise ValueError("malformed")
        return tuple(parts)

    report = run_check("01.2", parse_status_line)
    assert "differ first at index 1" in failure_messages(report)
    assert report.results[0].expected == "('HTTP/1.1', 200, 'OK')"


def test_parse_status_line_splitting_the_reason_fails():
    def parse_status_line(line):
        version, code, reason = line.decode().split()  # a reason with spaces, or none, breaks this
        return version, int(code), reason

    assert "is a valid status line" in failure_messages(run_check("01.2", parse_status_line))


def test_parse_status_line_raising_the_wrong_exception_is_told_which_one():
    def parse_status_line(line):
        parts = line.decode().split(" ", 2)
        if not parts[1].isdigit() or len(parts[1]) != 3 or not parts[0].startswith("HTTP/"):  # IndexError on b""
            raise ValueError("malformed")
        return parts[0], int(parts[1]), parts[2]

    assert "raise ValueError" in failure_messages(run_check("01.2", parse_status_line))
    assert "IndexError" in failure_messages(run_check("01.2", parse_status_line))


def _utf8_isdigit(line):
    parts = line.decode().split(" ", 2)  # UTF-8: fails on obs-text, and lets other scripts' digits through
    if len(parts) != 3 or not parts[0].startswith("HTTP/") or not parts[0][5:].replace(".", "", 1).isdigit() \
            or len(parts[0]) != 8 or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise ValueError("malformed")
    return parts[0], int(parts[1]), parts[2]


def test_parse_status_line_decoding_utf8_crashes_on_a_latin1_reason():
    message = case_message(run_check("01.2", _utf8_isdigit), "reason phrases")
    assert "b'HTTP/1.1 200 \\xff' is a valid status line" in message
    assert 'decode with .decode("latin-1")' in message and "UnicodeDecodeError" in message


def test_parse_status_line_taking_other_scripts_digits_fails():
    message = case_message(run_check("01.2", _utf8_isdigit), "malformed lines")
    assert "its digits are not ASCII" in message and "must raise ValueError" in message
    assert _utf8_isdigit("HTTP/1.1 ٢٠٠ OK".encode()) == ("HTTP/1.1", 200, "OK")  # the wrong answer it catches


# --- 01.3 read_response -----------------------------------------------------------------------------------------------

def test_read_response_waiting_for_close_times_out_with_advice():
    def read_response(sock):
        data = b""
        while chunk := sock.recv(4096):  # ignores Content-Length: hangs on a keep-alive server
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        return int(lines[0].split(" ")[1]), [tuple(x.split(": ", 1)) for x in lines[1:]], body

    report = run_check("01.3", read_response)
    assert "never came" in failure_messages(report)
    # its body has an empty line of its own, but the fault here is the wait: the advice names it first
    assert "stop reading when the body has Content-Length bytes" in case_message(report, "head and body in one piece")


def test_read_response_with_a_single_recv_fails_on_trickled_bytes():
    def read_response(sock):
        data = sock.recv(65536)  # assumes the whole response arrives at once
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        return int(lines[0].split(" ")[1]), [tuple(x.split(": ", 1)) for x in lines[1:]], body

    report = run_check("01.3", read_response)
    failed = [r for r in report.results if not r.passed]
    assert any("pieces" in r.name for r in failed), str(report)
    assert "your code raised" in failure_messages(report) or "exactly Content-Length" in failure_messages(report)


def test_read_response_ignoring_a_missing_content_length_loses_the_body():
    answer = variant("read_response", ("        while chunk := sock.recv(4096):\n            body += chunk\n", ""))
    assert "read until recv() returns" in failure_messages(run_check("01.3", answer))


def test_read_response_splitting_at_every_empty_line_cuts_a_body_that_has_one():
    def read_response(sock):
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, body = data.split(b"\r\n\r\n")[0], data.split(b"\r\n\r\n")[1]  # drops all after the 2nd one
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines)]
        length = int(dict((name.lower(), value) for name, value in headers).get("content-length", "0"))
        while len(body) < length:
            body += sock.recv(length - len(body))
        return int(status_line.split(" ")[1]), headers, body

    report = run_check("01.3", read_response)
    assert [r.passed for r in report.results if "3-byte pieces" in r.name] == [True]  # why the one-piece case exists
    assert "only the first one ends the head" in case_message(report, "head and body in one piece")


def test_read_response_that_keeps_reading_after_an_early_close_is_stopped_and_told():
    answer = variant("read_response", ("""        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError(f"the connection closed after {len(body)} of {length} body bytes")
        body += chunk
""", "        body += sock.recv(length - len(body))\n"))
    started = time.monotonic()
    report = run_check("01.3", answer)
    assert time.monotonic() - started < 20 and not any(r.timed_out for r in report.results), str(report)
    message = case_message(report, "the server closes in the middle")
    assert 'recv() returns b"" at once, every time' in message
    assert "closed the connection after 21 of the 100 body bytes Content-Length announced: raise ConnectionError" \
        in message


def test_read_response_raising_another_exception_on_an_early_close_is_told_which_one():
    answer = variant("read_response", ("raise ConnectionError(", "raise ValueError("))
    message = case_message(run_check("01.3", answer), "the server closes in the middle")
    assert "raise ConnectionError, as the task asks; yours raised ValueError" in message


def test_read_response_returning_a_short_body_on_an_early_close_fails():
    answer = variant("read_response", ('raise ConnectionError(f"the connection closed after', 'break  # (f"'))
    message = case_message(run_check("01.3", answer), "the server closes in the middle")
    assert "raise ConnectionError instead of returning a result" in message


def test_read_response_looking_up_content_length_case_sensitively_is_told_why_it_waits():
    answer = variant("read_response", ('name.lower() == "content-length"', 'name == "Content-Length"'))
    message = case_message(run_check("01.3", answer), "uvicorn keeps the connection open")
    assert "header names are case-insensitive; uvicorn sends them lower-case" in message.lower()


def test_read_response_trusting_int_with_a_content_length_fails():
    answer = variant("read_response", ("if not (lengths[0].isascii() and lengths[0].isdigit()):", "if False:"))
    message = case_message(run_check("01.3", answer), "a malformed Content-Length")
    assert "'Content-Length: -1' is not a valid Content-Length" in message and "raise ValueError" in message


def test_read_response_raising_another_exception_for_a_bad_content_length_is_told_which_one():
    answer = variant("read_response", ('raise ValueError(f"invalid Content-Length', 'raise KeyError(f"invalid'))
    message = case_message(run_check("01.3", answer), "a malformed Content-Length")
    assert "raise ValueError, as the task asks; yours raised KeyError" in message


def test_read_response_returning_the_status_as_str_fails():
    answer = variant("read_response", ('status = int(status_line.split(" ")[1])', 'status = status_line.split(" ")[1]'))
    assert "must be an int" in failure_messages(run_check("01.3", answer))


def test_read_response_keeping_the_space_after_the_colon_fails():
    answer = variant("read_response", ("(name, value.strip())", "(name, value)"),
                     ("lengths = [value for", "lengths = [value.strip() for"))  # the body is still read right
    assert "X-Lesson" in failure_messages(run_check("01.3", answer))


# --- 01.4 serve_keep_alive --------------------------------------------------------------------------------------------

def test_one_request_per_connection_fails():
    answer = variant("serve_keep_alive", ("while (request := parse_request(rfile)) is not None:",
                     "if (request := parse_request(rfile)) is not None:"))
    messages = failure_messages(run_check("01.4", answer))
    assert "closed without a response" in messages
    assert "no longer accepts connections" in messages  # its `break` now leaves the accept loop


def test_a_loop_that_ended_is_named_even_when_the_backlog_took_the_next_connection():
    """A server that serves its first connection, then returns a moment later: meanwhile the kernel still completes
    the next client's handshake, and that client sees a close rather than a refusal. The check says why all the same."""
    from gatewaylab.http1 import build_response, parse_request

    def first_connection_only(listener):
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as rfile:
            while (request := parse_request(rfile)) is not None:
                conn.sendall(build_response(200, [("Connection", "close")], request.path.encode()))
                break
        time.sleep(0.5)  # the listener stays open a while after the loop ended

    messages = failure_messages(run_check("01.4", first_connection_only))
    assert "closed without a response" in messages
    assert "no longer accepts connections: its loop ended" in messages


def test_not_skipping_the_body_fails():
    answer = variant("serve_keep_alive", ("rfile.read(int(length))", "int(length)"))
    assert "read and discard the POST's body" in failure_messages(run_check("01.4", answer))


def test_ignoring_connection_close_fails():
    answer = variant("serve_keep_alive", ("                    if not request.keep_alive:\n                        break\n",
                     ""))
    assert "close the connection after the response" in failure_messages(run_check("01.4", answer))


def test_closing_conn_but_not_its_makefile_is_told_that_the_file_keeps_it_open():
    answer = variant("serve_keep_alive", ('with conn, conn.makefile("rb") as rfile:',
                     'rfile = conn.makefile("rb")\n        with conn:'))  # the file stays open after `with conn`
    message = case_message(run_check("01.4", answer), "Connection: close")
    assert "the client asked to close" in message
    assert "a file from conn.makefile() keeps the socket open until it is closed too" in message


def test_a_thread_killed_by_a_timeout_is_told_to_close_quietly_not_to_answer_400():
    answer = variant("serve_keep_alive", ("            except OSError:\n                pass", ""))
    message = case_message(run_check("01.4", answer), "a client that connects and stays silent")
    assert "crashed with TimeoutError" in message and "close that connection quietly" in message
    assert "400" not in message


def test_a_server_killed_by_a_client_reset_is_told_to_catch_oserror():
    answer = variant("serve_keep_alive", ("            except OSError:\n", "            except TimeoutError:\n"))
    report = run_check("01.4", answer)
    assert [r.name for r in report.results if not r.passed] == \
        ["a client that resets its connection after a request does not stop the server"], str(report)
    message = case_message(report, "a client that resets")
    assert "crashed with ConnectionResetError" in message or "crashed with BrokenPipeError" in message
    assert "catch OSError, which includes them" in message


def test_crashing_on_a_bad_content_length_is_reported():
    answer = variant("serve_keep_alive", ("if not (length.isascii() and length.isdigit()):", "if False:"))
    assert "crashed with ValueError" in failure_messages(run_check("01.4", answer))


def test_no_timeout_lets_a_silent_client_block_everyone():
    answer = variant("serve_keep_alive", ("conn.settimeout(1.0)", "conn.settimeout(None)"))
    assert "conn.settimeout(1)" in failure_messages(run_check("01.4", answer))


def test_the_checks_leave_no_server_or_thread_running():
    from gatewaylab.servers import running

    for exercise_id, name in EXERCISES.items():
        assert run_check(exercise_id, reference(name)).passed
    assert not [name for name in running() if name.startswith("check-01")]
    assert not [t.name for t in threading.enumerate() if "check-01" in t.name]


@pytest.mark.parametrize("guard", [
    "if not length.lstrip('+-').replace('_', '').isdigit():",  # what int() takes: "+3", "1_0", "-1" pass
    "if not length.lstrip('+').isdigit():",  # a sign allowed
    "if not length.replace('_', '').lstrip('-').isdigit():",  # -1 reaches rfile.read(-1), which waits for the close
])
def test_trusting_int_with_a_content_length_fails_with_advice(guard):
    answer = variant("serve_keep_alive", ("if not (length.isascii() and length.isdigit()):", guard))
    assert "RFC 9110 section 8.6" in failure_messages(run_check("01.4", answer))
