"""Lesson 07's checks, both ways: the solutions notebook's answers and the lesson's own code (gatewaylab.asgi) pass,
and wrong answers (the mistakes learners make) fail with a message that says what to fix. The checks run the
answers in the lesson's server, so these tests make sure no server or thread is left behind."""

import pytest

from gatewaylab import asgi
from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages, fails_with, nothing_left_running

NOTEBOOK = SolutionNotebook("07_build_an_asgi_server.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l07-checks"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-07"):
        yield


EXERCISES = [("make_scope", "07.1"), ("RequestBody", "07.2"), ("receive", "07.3"), ("send", "07.4"),
             ("finish", "07.5"), ("Lifespan", "07.6")]


@pytest.mark.parametrize("name, exercise_id", EXERCISES)
def test_reference_passes(name, exercise_id):
    report = run_check(exercise_id, reference(name))
    assert report.passed, str(report)


LESSONS = {"07.1": asgi.make_scope, "07.2": asgi.RequestBody, "07.3": asgi.Exchange.receive,
           "07.4": asgi.Exchange.send, "07.5": asgi.Exchange.finish, "07.6": asgi.Lifespan}


@pytest.mark.parametrize("exercise_id", LESSONS)
def test_the_lessons_own_code_passes(exercise_id):
    report = run_check(exercise_id, LESSONS[exercise_id])
    assert report.passed, str(report)


@pytest.mark.parametrize("exercise_id, name", [(e, n) for n, e in EXERCISES])
def test_the_stub_is_not_solved_yet(exercise_id, name):
    report = run_check(exercise_id, NOTEBOOK.stub(exercise_id))
    assert report.not_solved, str(report)


# --- 07.1 make_scope ---

def test_scope_with_the_path_not_decoded():
    fails_with("07.1", variant("make_scope", ('"path": unquote(request.path)', '"path": request.path')),
               "path must be percent-decoded")


def test_scope_with_the_query_string_decoded():
    fails_with("07.1", variant("make_scope", ('"query_string": request.query.encode("latin-1")',
                                              '"query_string": unquote(request.query).encode()')),
               "query_string stays as the client sent it")


def test_scope_with_header_names_as_sent():
    fails_with("07.1", variant("make_scope", ('(name.lower().encode("latin-1")', '(name.encode("latin-1")')),
               "header names lower-case in the scope")


def test_scope_with_repeated_headers_merged():
    fails_with("07.1", variant("make_scope", (
        '    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))\n'
        '               for name, value in request.headers]\n',
        '    headers = list({name.lower().encode("latin-1"): value.encode("latin-1")\n'
        '                    for name, value in request.headers}.items())\n')),
               "must stay two pairs")


def test_scope_with_str_headers():
    fails_with("07.1", variant("make_scope", ('(name.lower().encode("latin-1"), value.encode("latin-1"))',
                                              '(name.lower(), value)')),
               "each header is a pair of bytes")


def test_scope_whose_http_version_keeps_its_prefix():
    fails_with("07.1", variant("make_scope", ('request.version.removeprefix("HTTP/")', "request.version")),
               "without 'HTTP/'")


def test_scope_with_the_lifespan_state_itself():
    fails_with("07.1", variant("make_scope", ('"state": dict(state)', '"state": state')),
               "must be a copy of the state")


def test_scope_with_a_deep_copy_of_the_state():
    fails_with("07.1", variant("make_scope", ('"state": dict(state)',
                                              '"state": {k: list(v) if isinstance(v, list) else v '
                                              'for k, v in state.items()}')),
               "a *shallow* copy")


def test_scope_that_decodes_plus_as_a_space():
    fails_with("07.1", variant("make_scope", ('"path": unquote(request.path)',
                                              '"path": unquote(request.path.replace("+", " "))')),
               "a '+' in a path is a plus sign")


def test_scope_that_ignores_an_absolute_form_target():
    fails_with("07.1", variant("make_scope", ('if not request.target.startswith("/") and', "if False and")),
               "an absolute-form target names the host")


# --- 07.2 RequestBody ---

def test_body_read_whole_with_readexactly():
    fails_with("07.2", variant("RequestBody", ("data = await self.reader.read(min(self.left, PIECE))",
                                               "data = await self.reader.readexactly(self.left)")),
               "should return at once", "never more than PIECE")


def test_body_that_reads_past_its_end():
    fails_with("07.2", variant("RequestBody", ("self.reader.read(min(self.left, PIECE))",
                                               "self.reader.read(PIECE)")),
               "took bytes past the body's end")


def test_body_without_a_timeout():
    fails_with("07.2", variant("RequestBody", ("asyncio.timeout(self.timeout)", "asyncio.timeout(None)")),
               "wait at most self.timeout seconds")


def test_body_that_returns_nothing_when_the_client_closes():
    fails_with("07.2", variant("RequestBody", ("if self.left and not data:", "if False:")),
               "read() kept returning b''", "raise ClientDisconnected")


def test_body_whose_chunked_decoder_has_no_limit():
    fails_with("07.2", variant("RequestBody", ("ChunkedBody(max_body)", "ChunkedBody()")),
               "give max_body to ChunkedBody")


def test_body_whose_done_is_a_method():
    fails_with("07.2", variant("RequestBody", ("    @property\n    def done(self):", "    def done(self):")),
               "done is a property")


# --- 07.3 receive ---

def test_receive_with_more_body_always_false():
    fails_with("07.3", variant("receive", ('"more_body": not self.body.done', '"more_body": False')),
               "more_body is True while the body goes on")


def test_receive_that_never_says_disconnect():
    fails_with("07.3", variant("receive", ('    return {"type": "http.disconnect"}',
                                           '    return {"type": "http.request", "body": b"", "more_body": False}')),
               "never another http.request")


def test_receive_that_says_disconnect_at_once_after_the_body():
    fails_with("07.3", variant("receive", ("    await self.until_over()\n", "")),
               "while the client was still there")


def test_receive_without_100_continue():
    fails_with("07.3", variant("receive", ("if self.continue_due and self.framing is None:", "if False:")),
               "waits for HTTP/1.1 100 Continue")


def test_receive_that_lets_a_broken_body_pass_as_its_end():
    fails_with("07.3", variant("receive", ("                self.refused = error\n",
                                           "                self.refused = None\n")),
               "keep the core's HTTPError in self.refused")


# --- 07.4 send ---

def test_send_without_the_order_check():
    fails_with("07.4", variant("send", ("    elif kind != \"http.response.body\":\n"
                                        "        raise RuntimeError(f\"expected 'http.response.body', got "
                                        "{kind!r}\")\n", "")),
               "two starts: send() must raise")


def test_send_that_goes_on_after_the_last_body():
    fails_with("07.4", variant("send", ("    if self.complete:\n"
                                        "        raise RuntimeError(f\"{kind!r} sent after the response was "
                                        "complete\")\n", "")),
               "a body after the last: send() must raise")


def test_send_that_checks_nothing():
    fails_with("07.4", variant("send", ("self.status, fields = response_start(message)",
                                        "self.status, fields = message.get('status'), [(n.decode(), v.decode()) "
                                        "for n, v in message.get('headers', [])]")),
               "must raise on an event malformed")


def test_send_body_that_does_not_frame_the_body():
    fails_with("07.4", variant("send", ("data += self.out.frame(body)", "data += body")),
               "self.out.frame(body)")


def test_send_that_keeps_the_apps_hop_by_hop_headers():
    fails_with("07.4", variant("send", ("self.fields = [field for field in fields if field[0].lower() not in "
                                        "HOP_BY_HOP]", "self.fields = fields")),
               "transfer-encoding")


def test_send_that_ignores_a_client_that_left():
    fails_with("07.4", variant("send", ("    if self.gone:\n        raise ClientDisconnected(\"the client has "
                                        "gone\")\n", "")),
               "it must raise an OSError")


def test_send_that_raises_the_wrong_error_on_a_bad_event():
    fails_with("07.4", variant("send", ('raise RuntimeError(f"expected \'http.response.start\' first, got {kind!r}")',
                                        'raise ClientDisconnected("no start")')),
               "is the app's mistake")


# --- 07.5 finish ---

def test_finish_that_sends_a_500_after_the_response_started():
    fails_with("07.5", variant("finish", ("if self.framing is None and (failed or self.refused):",
                                          "if failed or self.refused:")),
               "a second status line would be read as part of the body")


def test_finish_that_keeps_the_connection_after_a_failure():
    fails_with("07.5", variant("finish", ("if failed or self.gone or not self.framing.keep_alive:",
                                          "if self.gone or not self.framing.keep_alive:")),
               "close the connection")


def test_finish_that_does_not_skip_an_unread_body():
    fails_with("07.5", variant("finish", ("            while await self.body.read():\n"
                                          "                pass\n", "            pass\n")),
               "must be read and dropped")


def test_finish_that_ignores_a_refused_body():
    fails_with("07.5", variant("finish", ("error = self.refused or HTTPError(500,",
                                          "error = HTTPError(500,")),
               "gets the core's answer, 400")


# --- 07.6 Lifespan ---

def test_lifespan_that_ignores_startup_failed():
    fails_with("07.6", variant("Lifespan", ('raise StartupFailed(f"lifespan startup failed: {self.failure}")',
                                            "pass")),
               "the server must not serve")


def test_lifespan_auto_treated_as_on():
    fails_with("07.6", variant("Lifespan", ('            if self.mode == "auto":', '            if False:')),
               "the server did not start")


def test_lifespan_off_ignored():
    fails_with("07.6", variant("Lifespan", ('        if self.mode == "off":\n            return\n', "")),
               "with mode 'off' the app gets no lifespan scope")


def test_lifespan_that_leaves_startup_waiting_when_the_app_raises():
    fails_with("07.6", variant("Lifespan", ("        for answered in self.answered.values():\n"
                                            "            answered.set()", "        pass")),
               "waited for an answer that never comes")


def test_lifespan_that_never_sends_shutdown():
    fails_with("07.6", variant("Lifespan", ('await self.inbox.put({"type": "lifespan.shutdown"})', "pass")),
               "lifespan.shutdown sent when the server stops")


# --- wrong answers a newcomer's review found accepted ---

def test_scope_that_encodes_header_values_as_utf8():
    fails_with("07.1", variant("make_scope", ('(name.lower().encode("latin-1"), value.encode("latin-1"))',
                                              '(name.lower().encode(), value.encode())')),
               "value.encode('latin-1')", "b'caf\\xe9'")


def test_scope_that_shares_the_modules_asgi_dict():
    fails_with("07.1", variant("make_scope", ('"asgi": dict(ASGI_VERSION)', '"asgi": ASGI_VERSION')),
               "a dict of its own")


def test_scope_maker_that_is_async():
    fails_with("07.1", variant("make_scope", ("def make_scope(", "async def make_scope(")),
               "a plain function (def, not async def)")


def test_body_whose_next_chunk_does_one_step():
    fails_with("07.2", variant("RequestBody", (
        "        while not self.chunks.done:\n"
        "            kind, size = self.chunks.next_read()\n"
        "            if kind == LINE:\n"
        "                data = self.chunks.feed(await read_line(self.reader, size))\n"
        "            else:\n"
        "                data = self.chunks.feed(await read_exactly(self.reader, size))\n"
        "            if data:\n"
        "                return data\n"
        "        return b\"\"\n",
        "        if self.chunks.done:\n"
        "            return b\"\"\n"
        "        kind, size = self.chunks.next_read()\n"
        "        if kind == LINE:\n"
        "            return self.chunks.feed(await read_line(self.reader, size))\n"
        "        return self.chunks.feed(await read_exactly(self.reader, size))\n")),
               "b'' while the body goes on", "loop")


def test_body_that_lets_a_reset_through():
    fails_with("07.2", variant("RequestBody", (
        "        except OSError as error:  # a reset: the app hears http.disconnect, as after a close\n"
        "            raise ClientDisconnected(f\"the client has gone ({error!r})\") from error\n", "")),
               "ConnectionResetError", "OSError")


def test_receive_that_skips_hang_up_on_a_broken_body():
    fails_with("07.3", variant("receive", ("                self.refused = error\n",
                                           "                self.refused = error\n"
                                           "                return {\"type\": \"http.disconnect\"}\n")),
               "self.hang_up()", "400")


def test_receive_that_reads_the_body_after_the_response():
    fails_with("07.3", variant("receive", ("if not (self.body_given or self.over.is_set()):",
                                           "if not self.body_given:")),
               "after the response was complete", "self.over.is_set()")


def test_receive_without_the_lock():
    fails_with("07.3", variant("receive", ("    async with self.reading:\n", "    if True:\n")),
               "async with self.reading")


def test_receive_that_sends_100_continue_after_the_head():
    fails_with("07.3", variant("receive", ("if self.continue_due and self.framing is None:",
                                           "if self.continue_due:")),
               "self.framing is None")


def test_send_that_ignores_the_apps_connection_close():
    fails_with("07.4", variant("send", ("self.closes = asks_to_close(fields)", "pass")),
               "asks_to_close(fields)")


def test_send_whose_hop_by_hop_filter_minds_case():
    fails_with("07.4", variant("send", ("field[0].lower() not in HOP_BY_HOP", "field[0] not in HOP_BY_HOP")),
               "whatever their case")


def test_send_body_that_never_says_the_response_is_over():
    fails_with("07.4", variant("send", ("        if self.complete or self.gone:\n"
                                        "            self.over.set()\n", "        pass\n")),
               "self.over.set()")


def test_send_body_without_the_last_chunk():
    report = fails_with("07.4", variant("send", ("data += self.out.end()", "pass")),
                        "after 1 good answer", "self.out.end()")
    assert "A HEAD response has no body" not in failure_messages(report)


def test_send_that_is_not_async():
    report = fails_with("07.4", variant("send", ("async def send(self, message):", "def send(self, message):"),
                                        ("await self.send_body(", "self.send_body(")),
                        "async def send")
    assert "NoneType" not in failure_messages(report)


def test_finish_that_keeps_a_body_cut_short():
    fails_with("07.5", variant("finish", ("    if self.out.cut_short:\n"
                                          "        return False  # shorter than its Content-Length: only the close "
                                          "ends it\n", "")),
               "self.out.cut_short")


def test_finish_whose_500_forgets_the_method():
    fails_with("07.5", variant("finish", ("error_answer(error, self.request.method)", "error_answer(error)")),
               "error_answer(error, self.request.method)")


def test_finish_that_keeps_the_connection_after_the_500():
    report = fails_with("07.5", variant("finish", (
        "        await self.connection.write_quietly(error_answer(error, self.request.method))\n"
        "        return False\n",
        "        await self.connection.write_quietly(error_answer(error, self.request.method))\n"
        "        return True\n")),
                        "stayed open after the 500")
    assert "False)" not in failure_messages(report)


def test_lifespan_that_waits_for_shutdown_without_a_limit():
    fails_with("07.6", variant("Lifespan", ('await asyncio.wait_for(self.answered["shutdown"].wait(), grace)',
                                            'await self.answered["shutdown"].wait()')),
               "at most grace seconds")


def test_lifespan_that_takes_any_answer_for_startup():
    fails_with("07.6", variant("Lifespan", (
        '        if kind not in (f"lifespan.{phase}.complete", f"lifespan.{phase}.failed"):\n'
        '            raise RuntimeError(f"expected lifespan.{phase}.complete or .failed, got {kind!r}")\n', "")),
               "lifespan.shutdown.complete")
