"""Lesson 09's checks, both ways: the notebook's reference answers pass, and wrong answers (the mistakes learners
make) fail with a message that says what to fix. 09.1 serves the answers on the course's ASGI server, so these tests
make sure no server or thread is left behind."""

import time

import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages, fails_with, nothing_left_running

NOTEBOOK = SolutionNotebook("09_real_time.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l09-checks"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-09"):
        yield


@pytest.mark.parametrize("name, exercise_id", [("ticks", "09.1"), ("parse_stream", "09.2"),
                                               ("accept_key", "09.3"), ("encode_frame", "09.4"),
                                               ("read_frame", "09.5")])
def test_reference_passes(name, exercise_id):
    report = run_check(exercise_id, reference(name))
    assert report.passed, str(report)


# --- 09.1 an SSE endpoint ---

def test_ticks_with_the_wrong_content_type():
    fails_with("09.1", variant("ticks", ('b"text/event-stream"', 'b"text/plain"')),
               "a browser's EventSource would give up", "text/event-stream")


def test_ticks_that_sends_everything_at_the_end():
    answer = variant("ticks", ("    first = int(", '    stream = b""\n    first = int('), (
        '        await send({"type": "http.response.body", "body": event, "more_body": True})\n'
        '    await send({"type": "http.response.body", "body": b""})',
        '        stream += event\n'
        '    await send({"type": "http.response.body", "body": stream})'))
    fails_with("09.1", answer, "they were sent together", "with more_body True")


def test_ticks_without_ids():
    fails_with("09.1", variant("ticks", ('f"id: {n}\\ndata: tick {n}\\n\\n"', 'f"data: tick {n}\\n\\n"')),
               "the events' ids")


def test_ticks_without_the_blank_line_that_ends_an_event():
    fails_with("09.1", variant("ticks", ('f"id: {n}\\ndata: tick {n}\\n\\n"', 'f"id: {n}\\ndata: tick {n}\\n"')),
               "Each event ends with a blank line")


def test_ticks_that_ignores_last_event_id():
    fails_with("09.1", variant("ticks", ('int(headers.get(b"last-event-id", b"0")) + 1', "1")),
               "it started again at 1", "last-event-id")


def test_ticks_without_a_heartbeat():
    fails_with("09.1", variant("ticks", (
        '    await send({"type": "http.response.body", "body": b": hello\\n", "more_body": True})\n', "")),
               "no comment line came before the first event")


def test_ticks_that_blocks_the_loop_with_time_sleep():
    answer = variant("ticks", ("        await asyncio.sleep(0.1)", "        __import__('time').sleep(0.1)"))
    fails_with("09.1", answer, "the clients waited for each other", "time.sleep blocks the whole event loop")


def test_ticks_that_never_ends_the_stream():
    answer = variant("ticks", ('    await send({"type": "http.response.body", "body": b""})',
                               "    await asyncio.sleep(30)"))
    fails_with("09.1", answer, "the stream ended", "send a last http.response.body without more_body")


def test_ticks_with_a_str_body_is_told_by_the_validator():
    fails_with("09.1", variant("ticks", ('"body": event,', '"body": event.decode(),')),
               "the ASGI validator", "must be bytes")


def server_log(caplog):
    """What the course's ASGI server logged that reached the root logger (and so a notebook's output)."""
    return [record for record in caplog.records if record.name.startswith("gatewaylab.")]


def test_ticks_with_a_capitalised_header_is_told_the_validators_reason_in_every_case(caplog):
    report = fails_with("09.1", variant("ticks", ('(b"content-type", b"text/event-stream")',
                                                  '(b"Content-Type", b"text/event-stream")')))
    assert all(not r.passed and "must be lower-case" in r.message for r in report.results), str(report)
    assert not server_log(caplog)  # the server's log is kept, not printed


def test_ticks_without_the_last_body_prints_no_server_traceback(caplog):
    fails_with("09.1", variant("ticks", ('    await send({"type": "http.response.body", "body": b""})', "")),
               "the ASGI validator", "returned with the response started")
    assert not server_log(caplog)
    import logging
    assert logging.getLogger("gatewaylab.asgi").propagate and not logging.getLogger("gatewaylab.asgi").handlers


def test_ticks_that_starts_late_with_the_comment_in_the_first_events_body():
    answer = NOTEBOOK.define(
        "async def ticks(scope, receive, send):\n"
        "    first = int(dict(scope['headers']).get(b'last-event-id', b'0')) + 1\n"
        "    await asyncio.sleep(0.1)\n"
        "    await send({'type': 'http.response.start', 'status': 200,\n"
        "                'headers': [(b'content-type', b'text/event-stream')]})\n"
        "    for n in range(first, 6):\n"
        "        if n > first:\n"
        "            await asyncio.sleep(0.1)\n"
        "        event = f'id: {n}\\ndata: tick {n}\\n\\n'.encode()\n"
        "        body = b': hello\\n' + event if n == first else event\n"
        "        await send({'type': 'http.response.body', 'body': body, 'more_body': True})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n", "ticks")
    fails_with("09.1", answer, "the comment line went out with the first event", "of its own at once")


def test_ticks_that_sends_the_comment_alone_but_everything_only_after_a_wait():
    answer = variant("ticks", ("    headers = dict(", "    await asyncio.sleep(0.1)\n    headers = dict("),
                     ("        await asyncio.sleep(0.1)\n        event", "        event"),
                     ('        await send({"type": "http.response.body", "body": event, "more_body": True})',
                      '        await send({"type": "http.response.body", "body": event, "more_body": True})\n'
                      '        await asyncio.sleep(0.1)'))
    fails_with("09.1", answer, "send the start and the comment at once, then await asyncio.sleep(0.1)")


# --- 09.2 a parser ---

def test_parser_that_splits_on_newline_only():
    fails_with("09.2", variant("parse_stream", ('re.split(r"\\r\\n|\\r|\\n", text)', 'text.split("\\n")')),
               "a line ends at \\r\\n, \\n or a lone \\r")


def test_parser_that_strips_every_space():
    fails_with("09.2", variant("parse_stream", ('value[1:] if value.startswith(" ") else value', "value.strip()")),
               "drop one leading space only")


def test_parser_that_forgets_the_id_after_each_event():
    fails_with("09.2", variant("parse_stream", ("            data, kind = [], \"\"\n",
                                                "            data, kind, last_id = [], \"\", \"\"\n")),
               "the id stays for later events")


def test_parser_that_takes_any_retry_value():
    answer = variant("parse_stream", ('elif name == "retry" and value.isascii() and value.isdigit():\n'
                                      '            retry = int(value)',
                                      'elif name == "retry":\n            retry = int(float(value or 0))'))
    report = run_check("09.2", answer)
    assert not report.passed and "retry" in "\n".join(r.name for r in report.results if not r.passed)


def test_parser_that_fires_the_last_unended_event():
    fails_with("09.2", variant("parse_stream", ('re.split(r"\\r\\n|\\r|\\n", text)[:-1]',
                                                're.split(r"\\r\\n|\\r|\\n", text + "\\n\\n")')),
               "a line ends at")


def test_parser_that_fires_events_without_data():
    fails_with("09.2", variant("parse_stream", ("            if data:\n", "            if True:\n")),
               "data-less events make no event")


def test_parser_on_str_splitlines():
    fails_with("09.2", variant("parse_stream", ('re.split(r"\\r\\n|\\r|\\n", text)[:-1]', "text.splitlines()")),
               "str.splitlines() also splits")


RETRY = 'elif name == "retry" and value.isascii() and value.isdigit():\n            retry = int(value)'


def test_parser_whose_retry_takes_unicode_digits():
    fails_with("09.2", variant("parse_stream", (RETRY, 'elif name == "retry" and value.isdigit():\n'
                                                       '            retry = int(value)')),
               "ValueError")  # '\u00b2' is a digit to str.isdigit(), not to int()


def test_parser_whose_retry_takes_whatever_int_takes():
    answer = variant("parse_stream", (RETRY, 'elif name == "retry":\n            try:\n'
                                             '                retry = int(value)\n'
                                             '            except ValueError:\n                pass'))
    report = fails_with("09.2", answer, "retry changes only for a value of ASCII digits", "event 2 differs (in retry)")
    assert "'retry': -5" in next(r.got for r in report.results if not r.passed)


@pytest.mark.parametrize("old, new, fragments", [
    ("        if not line:\n", "        line = line.strip()\n        if not line:\n",
     ["spaces (and tabs) at the end of a value", "event 1 differs (in data)"]),
    ('name, _, value = line.partition(":")',
     'name, _, value = line.partition(": ") if ": " in line else line.partition(":")',
     ["split at the first ':', not at ': '", "yours has no event 1"]),
    ("        value = value[1:]", "        name = name.strip()\n        value = value[1:]",
     ["' data' and 'data ' are not the field 'data'"]),
    ('text = text.removeprefix("\\ufeff")', 'text = text.replace("\\ufeff", "")',
     ["only a BOM at the very start of the stream is dropped"]),
    ('text = text.removeprefix("\\ufeff")', 'text = text.lstrip("\\ufeff")', ["one leading BOM is dropped, not two"]),
])
def test_parser_that_trims_more_than_the_standard(old, new, fragments):
    fails_with("09.2", variant("parse_stream", (old, new)), *fragments)


def test_parser_failure_shows_the_first_event_that_differs_whole():
    report = fails_with("09.2", variant("parse_stream", ('elif name == "id" and "\\0" not in value:',
                                                         'elif name == "id":')),
                        "event 2 differs (in id)")
    failed = next(r for r in report.results if not r.passed)
    assert "x\\x00y" in failed.got and " ... " not in failed.got and " ... " not in failed.expected


def test_parser_that_cuts_the_value_at_a_second_colon():
    fails_with("09.2", variant("parse_stream", ('name, _, value = line.partition(":")',
                                                'name, value = (line.split(":") + [""])[:2]')),
               "the value is all after the first ':'")


# --- 09.3 the accept key ---

@pytest.mark.parametrize("old, new, fragment", [
    ('(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")', "(key)", "append the GUID"),
    (".digest()", ".hexdigest().encode()", "base64 of the hex digest"),
    ('base64.b64encode(digest).decode("ascii")', "digest.hex()", "that is the hex digest"),
    ('return base64.b64encode(digest).decode("ascii")', "return base64.b64encode(digest)", "returns a str"),
    ("hashlib.sha1(", "hashlib.sha256(", "base64(sha1(key + GUID))"),
])
def test_wrong_accept_keys(old, new, fragment):
    fails_with("09.3", variant("accept_key", (old, new)), fragment)


def test_accept_key_of_the_decoded_key():
    answer = NOTEBOOK.define(
        "def accept_key(key):\n    raw = base64.b64decode(key) + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'\n"
        "    return base64.b64encode(hashlib.sha1(raw).digest()).decode()\n", "accept_key")
    fails_with("09.3", answer, "not decoded")


def test_a_handshake_a_real_client_refuses_is_reported():
    answer = NOTEBOOK.define("def accept_key(key):\n    return 'x' * 28\n", "accept_key")
    fails_with("09.3", answer, "the accept key is base64(sha1(key + GUID))")


# --- 09.4 the encoder ---

def test_encoder_with_the_126_boundary_off_by_one():
    fails_with("09.4", variant("encode_frame", ("if size < 126:", "if size <= 126:")),
               "a length of 126 to 65535 is the byte 126 then 2 length bytes")


def test_encoder_with_a_little_endian_length():
    fails_with("09.4", variant("encode_frame", ('size.to_bytes(2, "big")', 'size.to_bytes(2, "little")')),
               "big-endian (network order)")


def test_encoder_without_the_mask_bit():
    fails_with("09.4", variant("encode_frame", ("bit = 0x80 if mask else 0", "bit = 0")),
               "MASK (0x80) when a mask is given")


def test_encoder_that_ignores_fin():
    fails_with("09.4", variant("encode_frame", ("(0x80 if fin else 0) | opcode", "0x80 | opcode")),
               "FIN (0x80) when fin is True")


def test_encoder_that_masks_with_the_wrong_index():
    fails_with("09.4", variant("encode_frame", ("mask[i % 4]", "mask[i % 3]")), "payload[i] ^ mask[i % 4]")


@pytest.mark.parametrize("old, new, short", [
    ("        head += mask\n", "", True),
    ("        head += mask\n    return head + payload", "    return head + payload + (mask or b'')", False),
])
def test_encoder_with_the_mask_missing_or_misplaced(old, new, short):
    report = fails_with("09.4", variant("encode_frame", (old, new)),
                        "bytes 2 to 5 are not the mask", "right after the length, before the payload")
    assert ("the mask is missing" in failure_messages(report)) == short
    assert "extended length" not in failure_messages(report)


def test_encoder_that_returns_str():
    answer = NOTEBOOK.define("def encode_frame(opcode, payload, fin=True, mask=None):\n"
                             "    return (bytes([0x80 | opcode, len(payload)]) + payload).decode('latin-1')\n",
                             "encode_frame")
    fails_with("09.4", answer, "encode_frame returns bytes")


# --- 09.5 the reader ---

def test_reader_that_does_not_unmask():
    fails_with("09.5", variant("read_frame", ("bytes(b ^ mask[i % 4] for i, b in enumerate(payload))", "payload")),
               "is still masked")


def test_reader_that_accepts_unmasked_frames():
    answer = variant("read_frame", ('    if not second & 0x80:\n        raise ProtocolError(1002, "a client frame '
                                    'must be masked")\n', ""))
    fails_with("09.5", answer, "an unmasked frame from a client must close the connection with 1002")


def test_reader_that_reads_the_payload_before_checking_its_size():
    answer = variant("read_frame", (
        '    if length > max_size:\n        raise ProtocolError(1009, f"a frame of {length} bytes, over the limit '
        'of {max_size}")\n    mask = await reader.readexactly(4)\n    payload = await reader.readexactly(length)\n',
        '    mask = await reader.readexactly(4)\n    payload = await reader.readexactly(length)\n'
        '    if length > max_size:\n        raise ProtocolError(1009, "too big")\n'))
    fails_with("09.5", answer, "still waiting", "refuse the frame from its length")


def test_reader_without_a_size_limit():
    answer = variant("read_frame", ("    if length > max_size:\n", "    if False:\n"))
    fails_with("09.5", answer, "refuse the frame from its length, before reading")


def test_reader_that_lets_control_frames_be_fragmented():
    answer = variant("read_frame", ("(not fin or length > 125)", "(length > 125)"))
    fails_with("09.5", answer, "a ping with FIN unset", "ProtocolError(1002")


def test_reader_that_accepts_reserved_opcodes():
    answer = variant("read_frame", (" or first & 0x0F not in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)", ""))
    fails_with("09.5", answer, "the reserved opcode 0x3")


def test_reader_with_read_instead_of_readexactly():
    answer = variant("read_frame", ("payload = await reader.readexactly(length)",
                                    "payload = await reader.read(length)"))
    fails_with("09.5", answer, "await reader.readexactly(n) waits for all n")


def test_reader_that_raises_another_error():
    answer = variant("read_frame", ('raise ProtocolError(1002, "a client frame must be masked")',
                                    'raise ValueError("unmasked")'))
    fails_with("09.5", answer, "raise ProtocolError(1002", "ValueError")


def test_reader_that_lets_a_close_frame_be_fragmented():
    answer = variant("read_frame", ("if opcode >= 0x8 and", "if opcode > 0x8 and"))
    fails_with("09.5", answer, "a close frame with FIN unset", "ProtocolError(1002")


def test_reader_that_checks_rsv1_only():
    fails_with("09.5", variant("read_frame", ("if first & 0x70 or", "if first & 0x40 or")), "RSV2 (0x20) set")


def test_reader_that_refuses_a_frame_of_exactly_max_size():
    fails_with("09.5", variant("read_frame", ("if length > max_size:", "if length >= max_size:")),
               "a frame of exactly max_size", "length > max_size")


def test_reader_with_a_truthy_fin_passes():
    # fin = first & 0x80 (128, not True): the check reads fin as a truth value, as the server does (if frame.fin)
    assert run_check("09.5", variant("read_frame", ("bool(first & 0x80)", "first & 0x80"))).passed


def test_reader_with_a_little_endian_length_is_told_the_length_is_wrong():
    answer = variant("read_frame", ('length = int.from_bytes(await reader.readexactly(2), "big")',
                                    'length = int.from_bytes(await reader.readexactly(2), "little")'))
    fails_with("09.5", answer, "read a payload of 32256 bytes from a 126-byte frame",
               "was still waiting after 3 s for bytes the frame does not have", "big-endian")


def test_reader_that_reads_the_head_with_read_is_told_to_use_readexactly():
    fails_with("09.5", variant("read_frame", ("readexactly", "read")),
               "raised IndexError", "reader.read(n) returns what has arrived so far", "readexactly(n)")


def test_reader_that_is_not_async():
    answer = NOTEBOOK.define("def read_frame(reader, max_size):\n    return None\n", "read_frame")
    fails_with("09.5", answer, "read_frame is an `async def`")


# --- code that never gives the loop back is stopped, not waited for ---

def test_ticks_that_blocks_its_loop_for_ever_is_stopped_within_the_time_limit():
    answer = NOTEBOOK.define("async def ticks(scope, receive, send):\n    while True:\n        pass\n", "ticks")
    started = time.monotonic()
    report = run_check("09.1", answer)
    assert not report.passed and time.monotonic() - started < 40
    assert "your app blocks its event loop" in report.results[0].message, str(report)
    assert all("not run" in result.message for result in report.results[1:]), str(report)


def test_a_reader_that_loops_for_ever_is_stopped():
    answer = NOTEBOOK.define("async def read_frame(reader, max_size):\n    while True:\n        pass\n",
                             "read_frame")
    report = run_check("09.5", answer)
    assert report.results[0].timed_out and "not run" in report.results[1].message
