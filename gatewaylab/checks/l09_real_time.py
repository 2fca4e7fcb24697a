"""Lesson 09's exercises: an SSE endpoint, an SSE parser, the WebSocket accept key, a frame encoder and a frame
reader, each checked by what it does.

09.1 serves the learner's app on the course's ASGI server (under the lesson's ASGI validator), under a name beginning
with "check-09", and reads it with a real client (gatewaylab.sse.Client, every read bounded by a timeout); the server
is stopped, its thread too if the app blocks its loop, before the case returns. 09.2 compares the learner's parser
with gatewaylab.sse on streams written to catch the usual slips. 09.3 and 09.4 are checked against websockets (the
library's sans-I/O client protocol and frame parser), 09.5 against frames websockets writes and hostile frames made by
hand, fed to an asyncio.StreamReader in a fresh loop with a deadline.
"""

import asyncio
import base64
import hashlib
import inspect
import logging
import os
import threading
import time
import weakref

from gatewaylab import asgi
from gatewaylab.asgi_validate import ASGIValidationError, validator
from gatewaylab.grading import CaseFailed, Exercise, expect_equal, short_repr, stop_thread
from gatewaylab.servers import serve_asgi
from gatewaylab.sse import Client, StreamFailed, parse

DEADLINE = 3.0  # seconds a client waits beyond what the case expects
STOP_WAIT = 7.0  # seconds the course's server may take to stop: its grace period for open requests (5 s), and more


# --- 09.1 an SSE endpoint ---------------------------------------------------------------------------------------------

sse_endpoint = Exercise(
    "09.1", "An SSE endpoint",
    points=3,
    answer="an async function ticks(scope, receive, send), an ASGI app",
    params=3,
    timeout=25.0,
    hints=[
        "Start the response at once: await send({'type': 'http.response.start', 'status': 200, 'headers': "
        "[(b'content-type', b'text/event-stream'), (b'cache-control', b'no-cache')]}). Then each piece of the "
        "stream is an http.response.body event with more_body True, and one last body without it ends the stream.",
        "The first body is a comment line, b': hello\\n'. Then for each number n from 1 to 5: "
        "await asyncio.sleep(0.1), then send f'id: {n}\\ndata: tick {n}\\n\\n'.encode(). The blank line "
        "(the second \\n) is what makes the client fire the event. A Last-Event-ID header is in scope['headers'] "
        "as (b'last-event-id', b'3'): start after it.",
        "headers = dict(scope[\"headers\"])\nfirst = int(headers.get(b\"last-event-id\", b\"0\")) + 1\n"
        "await send({\"type\": \"http.response.start\", \"status\": 200,\n"
        "            \"headers\": [(b\"content-type\", b\"text/event-stream\")]})\n"
        "await send({\"type\": \"http.response.body\", \"body\": b\": hello\\n\", \"more_body\": True})\n"
        "for n in range(first, 6):\n    await asyncio.sleep(0.1)\n"
        "    event = f\"id: {n}\\ndata: tick {n}\\n\\n\".encode()\n"
        "    await send({\"type\": \"http.response.body\", \"body\": event, \"more_body\": True})\n"
        "await send({\"type\": \"http.response.body\", \"body\": b\"\"})",
    ],
)


class Kept(logging.Handler):
    """Keeps what the server logs while a case runs: its tracebacks would fill the learner's notebook, and the case
    reports what went wrong itself."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


class ServedStream:
    """The answer, under the validator, on the course's ASGI server, its log kept (not printed); `read()` reads one
    stream with the course's SSE client and notes when each event came; `sent` holds (seconds since the app was
    called, event) for every event the app sent."""

    def __init__(self, app, name):
        if app in _BLOCKED:
            raise CaseFailed("not run: your app blocked the server's event loop in a case before, and would again")
        self.app, self.errors, self.sent = app, [], []
        checked = validator(app)

        async def served(scope, receive, send):
            called = time.monotonic()

            async def noted(message):
                self.sent.append((time.monotonic() - called, message))
                await send(message)

            try:
                await checked(scope, receive, noted)
            except Exception as error:
                self.errors.append(error)
                raise

        self.kept, self.propagated = Kept(), asgi.log.propagate
        asgi.log.addHandler(self.kept)
        asgi.log.propagate = False  # (a root handler, if the notebook set one, would print it all the same)
        try:
            self.server = serve_asgi(served, name=name, server="gatewaylab", lifespan="off")
        except BaseException:
            self._release_log()
            raise

    def _release_log(self):
        asgi.log.removeHandler(self.kept)
        asgi.log.propagate = self.propagated

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._stop()
        finally:
            self._release_log()

    def _stop(self):
        # Stopping waits for the server's thread, which an app that never gives its loop back holds for ever: the
        # stop runs in a thread of its own, and the server's thread is stopped if it has not ended by then.
        stopping = threading.Thread(target=self.server.stop, kwargs={"timeout": STOP_WAIT}, daemon=True)
        stopping.start()
        stopping.join(STOP_WAIT)
        blocked = self.server.thread is not None and self.server.thread.is_alive()
        if blocked:
            stop_thread(self.server.thread)
            stopping.join(DEADLINE)
        if blocked:
            _BLOCKED.add(self.app)
            raise CaseFailed("the server could not stop: your app blocks its event loop (time.sleep, a busy "
                             "loop?). Wait with await asyncio.sleep(), never with a blocking call") from None

    def verdict(self, left_early=False):
        """Fail with what the app raised; `left_early`: the client hung up before the stream ended, so the
        OSError that send() raises then (HTTP spec 2.4) is expected."""
        for error in self.errors:
            if left_early and isinstance(error, OSError):
                continue
            if isinstance(error, ASGIValidationError):
                raise CaseFailed(f"the ASGI validator: {error}")
            raise CaseFailed(f"your app raised {type(error).__name__}: {error}")

    def read(self, last_event_id=""):
        """(events, arrival times from the request, comments, seconds until the stream ended)."""
        client = Client(self.server.url + "/ticks", last_event_id=last_event_id, timeout=DEADLINE, reconnects=0)
        started = time.monotonic()
        events, times = [], []
        try:
            for event in client.events():
                events.append(event)
                times.append(time.monotonic() - started)
        except StreamFailed as error:
            self.verdict()
            raise CaseFailed(f"a browser's EventSource would give up: {error}. An event stream is a 200 with "
                             "the header (b'content-type', b'text/event-stream')") from None
        self.verdict()
        return events, times, client.comments, time.monotonic() - started


TICKS = [f"tick {n}" for n in range(1, 6)]
_BLOCKED = weakref.WeakSet()  # answers that blocked the server's loop: the cases after the first are not run


def _ticks_read(answer, last_event_id=""):
    with ServedStream(answer, "check-09.1") as served:
        return served.read(last_event_id)


@sse_endpoint.case("a client gets 5 events, ids 1-5, data 'tick 1' to 'tick 5', then the stream ends")
def _(answer):
    events, _, _, took = _ticks_read(answer)
    if not events:
        raise CaseFailed("the client got no event. Each event ends with a blank line: "
                         "b'id: 1\\ndata: tick 1\\n\\n'")
    expect_equal([e.data for e in events], TICKS, "the events' data")
    expect_equal([e.id for e in events], [str(n) for n in range(1, 6)], "the events' ids (an id: line in each)")
    if took > 2.0:
        raise CaseFailed(f"the stream ended {took:.1f} s after the request, not about 0.5 s: send a last "
                         "http.response.body without more_body, after the fifth event")


@sse_endpoint.case("each event arrives as it is made, about 0.1 s apart, not all at the end")
def _(answer):
    events, times, _, took = _ticks_read(answer)
    if len(events) != 5:
        raise CaseFailed("expected 5 events", expected=5, got=len(events))
    if times[0] > took - 0.25 or times[-1] - times[0] < 0.25:
        raise CaseFailed(f"the events came at {', '.join(f'{t:.2f}' for t in times)} s and the stream ended at "
                         f"{took:.2f} s: they were sent together. Send each event in an http.response.body of its "
                         "own, with more_body True, as soon as it is ready")


@sse_endpoint.case("a comment line (a heartbeat) comes first, before the first event")
def _(answer):
    with ServedStream(answer, "check-09.1") as served:
        client = Client(served.server.url, timeout=DEADLINE, reconnects=0)
        events = client.events()
        try:
            first = next(events, None)
        except StreamFailed as error:
            served.verdict(left_early=True)  # the validator's reason, if it refused the app's response
            raise CaseFailed(f"{error}: answer 200 with content-type text/event-stream") from None
        finally:
            events.close()
        served.verdict(left_early=True)
        sent = list(served.sent)
    if client.comments < 1:
        raise CaseFailed("no comment line came before the first event: send b': hello\\n' (a line starting with "
                         "a colon, which clients ignore) as the stream's first body")
    if first is None:
        raise CaseFailed("no event came after the comment line")
    _heartbeat_first(sent)


def _heartbeat_first(sent):
    """The response's start and the comment went out at once, each before the first event, which came after the
    first asyncio.sleep(0.1): the server-side times of the app's send() calls, which no load on the client shifts
    (a late start that came with the first event, or a comment in the first event's body, is sent with it)."""
    bodies = [(at, message.get("body", b"")) for at, message in sent if message["type"] == "http.response.body"]
    started = next((at for at, message in sent if message["type"] == "http.response.start"), None)
    event_at = next((at for at, body in bodies if b"data:" in body), None)
    comment_at = next((at for at, body in bodies
                       if any(line.startswith(b":") for line in body.splitlines())), None)
    if started is None or event_at is None or comment_at is None:
        return  # the cases before say what is missing
    if comment_at >= event_at:
        raise CaseFailed(f"the comment line went out with the first event, {event_at:.2f} s after the request: "
                         "send it (b': hello\\n') in an http.response.body of its own at once, before you wait "
                         "for the first event, so the client sees the stream open before any event")
    if event_at - started < 0.05 or event_at - comment_at < 0.05:
        raise CaseFailed(f"your app sent http.response.start at {started:.2f} s, the comment at {comment_at:.2f} "
                         f"s and the first event at {event_at:.2f} s after the request: send the start and the "
                         "comment at once, then await asyncio.sleep(0.1) before the first event")


@sse_endpoint.case("a client that reconnects with Last-Event-ID: 3 gets events 4 and 5 only")
def _(answer):
    events, _, _, _ = _ticks_read(answer, last_event_id="3")
    got = [e.id for e in events]
    if got == [str(n) for n in range(1, 6)]:
        raise CaseFailed("it started again at 1: read the header (b'last-event-id', b'3') from scope['headers'] "
                         "and start after it", expected=["4", "5"], got=got)
    expect_equal(got, ["4", "5"], "the ids after Last-Event-ID: 3")


@sse_endpoint.case("four clients at once are served at once: each stream still takes about 0.5 s")
def _(answer):
    with ServedStream(answer, "check-09.1") as served:
        took, errors = [], []

        def one():
            client = Client(served.server.url, timeout=DEADLINE, reconnects=0)
            started = time.monotonic()
            try:
                if len(list(client.events())) == 5:
                    took.append(time.monotonic() - started)
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE + 5)
        served.verdict()
    if errors or len(took) != 4:
        raise CaseFailed(f"four clients at once did not all get their 5 events ({short_repr(errors, 100)})")
    if max(took) > 1.3:  # 0.5 s each when the waits overlap; 2 s when each blocks the loop in turn
        raise CaseFailed(f"the four streams took {', '.join(f'{t:.2f}' for t in sorted(took))} s: the clients "
                         "waited for each other. time.sleep blocks the whole event loop: await asyncio.sleep()")


# --- 09.2 an SSE parser -------------------------------------------------------------------------------------------

sse_parser = Exercise(
    "09.2", "An event-stream parser",
    points=3,
    answer="a function parse_stream(text) returning a list of dicts with keys type, data, id and retry",
    params=1,
    timeout=5.0,
    hints=[
        "Split into lines on any of \\r\\n, \\n or \\r (text.splitlines() also splits on other characters such "
        "as \\x0b, which an event stream does not). A blank line dispatches the event; a line that starts with "
        "':' is a comment; otherwise the field is what comes before the first ':', the value what comes after, "
        "minus one leading space.",
        "Keep four things between lines: the data lines (a list), the event type, the last event id and the retry "
        "time. 'data' appends; 'event' sets the type; 'id' sets the id (unless it holds '\\0'), and the id stays "
        "for later events; 'retry' sets the time only if the value is all ASCII digits. On a blank line: no data, "
        "no event (but the id stays); else an event with the data lines joined by '\\n', the type or 'message'; "
        "then clear the data and the type.",
        "for line in re.split(r\"\\r\\n|\\r|\\n\", text)[:-1]:  # the last piece is not a whole line\n"
        "    if not line:\n        if data:\n            events.append({\"type\": kind or \"message\", "
        "\"data\": \"\\n\".join(data),\n                           \"id\": last_id, \"retry\": retry})\n"
        "        data, kind = [], \"\"\n        continue\n    if line.startswith(\":\"):\n        continue\n"
        "    name, colon, value = line.partition(\":\")\n    value = value[1:] if value.startswith(\" \") else value",
    ],
)


def _expected(text):
    return [{"type": e.event, "data": e.data, "id": e.id, "retry": e.retry} for e in parse(text)]


def _compare(answer, text, what):
    got = answer(text)
    expected = _expected(text)
    if not isinstance(got, list) or not all(isinstance(item, dict) for item in got):
        raise CaseFailed("parse_stream returns a list of dicts, one per event", expected=expected, got=got)
    if got == expected:
        return
    # The first event that differs, whole: two lists cut in the middle would hide it.
    index = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    counts = f"{len(expected)} event{'s' * (len(expected) != 1)} expected, {len(got)} from yours"
    if index < len(got) and index < len(expected):
        fields = ", ".join(key for key in expected[index] if got[index].get(key, ...) != expected[index][key])
        where, shown = f"event {index + 1} differs (in {fields or 'its keys'})", (expected[index], got[index])
    elif index < len(expected):
        where, shown = f"yours has no event {index + 1}", (expected[index], "(no event)")
    else:
        where, shown = f"yours has an event {index + 1} too many", ("(no event)", got[index])
    raise CaseFailed(f"{what}: for the stream {short_repr(text, 120)}, {where} ({counts})",
                     expected=shown[0], got=shown[1])


@sse_parser.case("events with several data lines, an event type, ids kept from one event to the next")
def _(answer):
    _compare(answer, "event: reading\ndata: line one\ndata: at 12:30: two\nid: 7\n\ndata: next\n\n",
             "data lines join with '\\n', the value is all after the first ':', the id stays for later events, "
             "the type is 'message' by default")


@sse_parser.case("one space after the colon is dropped, no more; a line with no colon is a field with no value")
def _(answer):
    _compare(answer, "data:no space\n\ndata:  two spaces\n\ndata\n\ndata:\ndata\n\n",
             "drop one leading space only; 'data' alone adds an empty line")


@sse_parser.case("comment lines (heartbeats) and unknown fields are ignored; an event with no data is not fired")
def _(answer):
    _compare(answer, ": heartbeat\n\nid: 1\n\n:\nfoo: bar\ndata: x\n\nevent: empty\n\n",
             "comments, unknown fields and data-less events make no event (an id alone still sets the last id)")


@sse_parser.case("retry: takes only ASCII digits; an id with NULL is ignored; 'id' alone resets the id")
def _(answer):
    _compare(answer, "retry: 2500\nid: 4\ndata: a\n\nretry: 1.5\nid: x\0y\ndata: b\n\nid\nretry: soon\ndata: c\n\n",
             "retry is kept from 'retry: 2500' (ignored when not all digits); the id with NULL is ignored")


@sse_parser.case("retry: only a value of ASCII digits counts (not '-5', '+5', ' 7', '1_000', '4e2', nor digits of "
                 "other scripts)")
def _(answer):
    text = "".join(f"retry: {value}\ndata: {n}\n\n" for n, value in enumerate(
        ("300", "-5", "+5", " 7", "1_000", "\u0661\u0660\u0660", "\u00b2", "4e2", "12")))
    _compare(answer, text, "retry changes only for a value of ASCII digits (value.isascii() and value.isdigit()): "
             "int() also takes '-5', '+5', ' 7' and '1_000', str.isdigit() also '\u0661\u0660\u0660' "
             "(Arabic-Indic) and '\u00b2', which int() then refuses")


@sse_parser.case("nothing else is trimmed: spaces at a value's end or around a field name, a second ': ', a BOM "
                 "inside")
def _(answer):
    for text, what in (
            ("data: a  \n\ndata:\tb\n\n", "only one space after the colon is dropped: spaces (and tabs) at the "
             "end of a value, or a tab after the colon, stay"),
            (" data: x\n\ndata : y\n\ndata: z\n\n", "' data' and 'data ' are not the field 'data' (a field "
             "name is what comes before the colon, as it is): they are ignored"),
            ("data:12: 30\n\n", "the field is what comes before the first ':', the value all after it "
             "(split at the first ':', not at ': ')"),
            ("\ufeffdata: a\ufeffb\n\n\ufeffdata: c\n\n", "only a BOM at the very start of the stream is "
             "dropped (text.removeprefix('\\ufeff')): one elsewhere is kept, or makes a field name no field has"),
            ("\ufeff\ufeffdata: x\n\ndata: y\n\n", "one leading BOM is dropped, not two")):
        _compare(answer, text, what)


@sse_parser.case("lines end with \\r\\n, \\n or \\r (even mixed); an event the stream does not end is dropped")
def _(answer):
    for text in ("data: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\rdata: d\n\r\n",
                 "data: x\n\ndata: cut off", "\ufeffdata: bom\n\n", "data: a\x1cb\u2028c\x0bd\n\n"):
        _compare(answer, text, "a line ends at \\r\\n, \\n or a lone \\r, and nowhere else (str.splitlines() "
                 "also splits at \\x0b, \\x1c, \\u2028 and more)")


# --- 09.3 the accept key ------------------------------------------------------------------------------------------

accept = Exercise(
    "09.3", "The WebSocket accept key",
    points=2,
    answer="a function accept_key(key) taking the Sec-WebSocket-Key (str) and returning Sec-WebSocket-Accept (str)",
    params=1,
    timeout=5.0,
    hints=[
        "RFC 6455 section 4.2.2: append the GUID 258EAFA5-E914-47DA-95CA-C5AB0DC85B11 to the key (the key as the "
        "client sent it, base64 text, not decoded), take the SHA-1 of that, and base64-encode the 20-byte digest.",
        "hashlib.sha1(...).digest() gives the 20 bytes; .hexdigest() gives 40 hex characters, which is not what "
        "is base64-encoded. base64.b64encode() returns bytes: decode them to a str.",
        "digest = hashlib.sha1((key + GUID).encode(\"ascii\")).digest()\n"
        "return base64.b64encode(digest).decode(\"ascii\")",
    ],
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _diagnose_accept(answer, key, got):
    if isinstance(got, bytes):
        return "accept_key returns a str (the header's value): .decode('ascii') the bytes b64encode gives"
    if not isinstance(got, str):
        return "accept_key returns a str"
    if got == base64.b64encode(hashlib.sha1(key.encode()).digest()).decode():
        return "that is the SHA-1 of the key alone: append the GUID 258EAFA5-E914-47DA-95CA-C5AB0DC85B11 first"
    if got == base64.b64encode(hashlib.sha1((key + GUID).encode()).hexdigest().encode()).decode():
        return "that is base64 of the hex digest: base64-encode the 20 bytes of .digest(), not .hexdigest()"
    if got == hashlib.sha1((key + GUID).encode()).hexdigest():
        return "that is the hex digest: base64-encode the 20 bytes of .digest()"
    if got == base64.b64encode(hashlib.sha1(base64.b64decode(key) + GUID.encode()).digest()).decode():
        return "the key is used as the client sent it (base64 text), not decoded"
    return "the accept key is base64(sha1(key + GUID)), RFC 6455 section 4.2.2"


@accept.case("RFC 6455's own example: dGhlIHNhbXBsZSBub25jZQ== gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
def _(answer):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    got = answer(key)
    if got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=":
        raise CaseFailed(_diagnose_accept(answer, key, got), expected="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", got=got)


@accept.case("20 random keys give what the websockets library computes")
def _(answer):
    from websockets.utils import accept_key as library_accept

    for _ in range(20):
        key = base64.b64encode(os.urandom(16)).decode()
        got, expected = answer(key), library_accept(key)
        if got != expected:
            raise CaseFailed(f"for the key {key!r}: " + _diagnose_accept(answer, key, got),
                             expected=expected, got=got)


@accept.case("a real client (websockets' client protocol) accepts the 101 your key goes into")
def _(answer):
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/chat"))
    handshake = client.connect()
    key = handshake.headers["Sec-WebSocket-Key"]
    value = answer(key)
    if not isinstance(value, str):
        raise CaseFailed(_diagnose_accept(answer, key, value), expected=_accept(key), got=value)
    client.send_request(handshake)
    client.receive_data(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {value}\r\n\r\n".encode())
    if client.handshake_exc is not None:
        raise CaseFailed(f"the client refused the handshake: {client.handshake_exc}. "
                         + _diagnose_accept(answer, key, value), expected=_accept(key), got=value)


# --- 09.4 a frame encoder -----------------------------------------------------------------------------------------

encoder = Exercise(
    "09.4", "A frame encoder",
    points=3,
    answer="a function encode_frame(opcode, payload, fin=True, mask=None) returning the frame's bytes",
    params=2,
    timeout=5.0,
    hints=[
        "The first byte is FIN (0x80 when fin) | the opcode. The second is MASK (0x80 when a mask is given) | the "
        "length: the length itself up to 125; 126 and then the length in 2 bytes, big-endian, up to 65535; "
        "else 127 and 8 bytes. Then the 4 mask bytes, if any, then the payload.",
        "int.to_bytes(n, 2, 'big') or struct.pack('!H', n) writes 2 bytes in network order ('!Q' for 8). A masked "
        "payload is bytes(b ^ mask[i % 4] for i, b in enumerate(payload)).",
        "head = bytes([(0x80 if fin else 0) | opcode])\nbit = 0x80 if mask else 0\nsize = len(payload)\n"
        "if size < 126:\n    head += bytes([bit | size])\nelif size < 65536:\n"
        "    head += bytes([bit | 126]) + size.to_bytes(2, \"big\")\nelse:\n"
        "    head += bytes([bit | 127]) + size.to_bytes(8, \"big\")\nif mask:\n"
        "    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))\n    head += mask\n"
        "return head + payload",
    ],
)


def _library_parse(data, mask):
    """What websockets reads from `data`: (fin, opcode, payload, bytes left over)."""
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(bytes(data))
    reader.feed_eof()
    from websockets.frames import Frame

    parser = Frame.parse(reader.read_exact, mask=mask)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:
        raise CaseFailed(f"websockets could not read a whole frame from {short_repr(bytes(data), 80)}: the frame "
                         "is shorter than its length field says")
    leftover = len(reader.buffer)
    return frame.fin, int(frame.opcode), bytes(frame.data), leftover


def _reference_frame(opcode, payload, fin=True, mask=None):
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    size = len(payload)
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + size.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def _extended(frame):
    """How many extended length bytes follow a frame's second byte: 0, 2 (length 126) or 8 (127)."""
    return {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)


def _encoded(answer, opcode, payload, fin=True, mask=None):
    got = answer(opcode, payload, fin=fin, mask=mask)
    expected = _reference_frame(opcode, payload, fin, mask)
    if not isinstance(got, (bytes, bytearray)):
        raise CaseFailed("encode_frame returns bytes", expected=expected, got=got)
    if got == expected:
        return
    what = f"encode_frame({opcode}, <{len(payload)} bytes>, fin={fin}, mask={mask!r})"
    if got[:1] != expected[:1]:
        detail = (f"the first byte is {got[0]:#010b}, not {expected[0]:#010b}: FIN (0x80) when fin is True, "
                  "then the opcode in the low 4 bits")
    elif got[1:2] != expected[1:2]:
        detail = (f"the second byte is {got[1]:#010b}, not {expected[1]:#010b}: MASK (0x80) when a mask is "
                  f"given, then the length if under 126, else 126 (2 length bytes follow) or 127 (8 follow)")
    elif got[2:2 + _extended(expected)] != expected[2:2 + _extended(expected)]:
        detail = ("the extended length is wrong: a length of 126 to 65535 is the byte 126 then 2 length bytes, a "
                  "longer one 127 then 8 bytes, big-endian (network order)")
    elif mask and got[2 + _extended(expected):6 + _extended(expected)] != mask:
        at = 2 + _extended(expected)
        detail = (f"bytes {at} to {at + 3} are not the mask: the 4 mask bytes, as given, come right after the "
                  "length, before the payload"
                  + (" (yours is 4 bytes short: the mask is missing)" if len(got) == len(expected) - 4 else ""))
    else:
        detail = "the payload is wrong: masked, byte i is payload[i] ^ mask[i % 4]; unmasked, as it is"
    raise CaseFailed(f"{what}: {detail}", expected=short_repr(expected, 60), got=short_repr(bytes(got), 60))


@encoder.case("a server's text frame, b'\\x81\\x05hello', which websockets reads back")
def _(answer):
    _encoded(answer, 0x1, b"hello")
    fin, opcode, payload, left = _library_parse(answer(0x1, b"hello"), mask=False)
    expect_equal((fin, opcode, payload, left), (True, 1, b"hello", 0), "what websockets reads")


@encoder.case("the three length forms: 0, 125, 126, 65535, 65536 and 70000 bytes")
def _(answer):
    for size in (0, 125, 126, 65535, 65536, 70000):
        payload = bytes(i % 251 for i in range(size))
        _encoded(answer, 0x2, payload)
        fin, opcode, got, left = _library_parse(answer(0x2, payload), mask=False)
        if (fin, opcode, got, left) != (True, 2, payload, 0):
            raise CaseFailed(f"websockets read a {size}-byte binary frame back wrong")


@encoder.case("a client's masked frame, with a given mask, which websockets reads as a server")
def _(answer):
    for mask in (b"\x37\xfa\x21\x3d", b"\x00\x00\x00\x01"):
        _encoded(answer, 0x1, b"Hello, masked world", mask=mask)
        got = _library_parse(answer(0x1, b"Hello, masked world", mask=mask), mask=True)
        expect_equal(got, (True, 1, b"Hello, masked world", 0), "what websockets reads as a server")


@encoder.case("fragments (fin=False, then continuation frames) and control frames (close with a code, ping)")
def _(answer):
    _encoded(answer, 0x1, b"Hel", fin=False)
    _encoded(answer, 0x0, b"lo", fin=True)
    _encoded(answer, 0x8, (1000).to_bytes(2, "big") + b"bye")
    _encoded(answer, 0x9, b"are you there?", mask=b"\x01\x02\x03\x04")


# --- 09.5 a frame reader ------------------------------------------------------------------------------------------

reader_exercise = Exercise(
    "09.5", "A frame reader that refuses hostile frames",
    points=4,
    answer="an async function read_frame(reader, max_size) returning Frame(fin, opcode, payload)",
    params=2,
    timeout=10.0,
    hints=[
        "Read the two first bytes with await reader.readexactly(2). First byte: FIN is 0x80, the RSV bits 0x70 "
        "(must be 0), the opcode the low 4 bits (only 0, 1, 2, 8, 9, 10 exist). Second byte: MASK is 0x80 (a "
        "client's frame must have it), the length the low 7 bits: 126 means 2 more length bytes, 127 means 8, "
        "big-endian. Each broken rule: raise ProtocolError(1002, 'why').",
        "Check the size before you read the payload: a control frame (opcode 8 and up) must have FIN and at most "
        "125 bytes (else 1002); a frame longer than max_size is refused with ProtocolError(1009, ...) without "
        "reading it, or a client could make the server wait for (and hold) gigabytes. Then the 4 mask bytes, then "
        "the payload, and unmask it: payload[i] ^ mask[i % 4].",
        "first, second = await reader.readexactly(2)\nif first & 0x70 or first & 0x0F not in (0, 1, 2, 8, 9, 10):\n"
        "    raise ProtocolError(1002, \"reserved bits or opcode\")\nif not second & 0x80:\n"
        "    raise ProtocolError(1002, \"a client frame must be masked\")\n"
        "fin, opcode, length = bool(first & 0x80), first & 0x0F, second & 0x7F\n"
        "if length == 126:\n    length = int.from_bytes(await reader.readexactly(2), \"big\")\n"
        "elif length == 127:\n    length = int.from_bytes(await reader.readexactly(8), \"big\")\n"
        "if opcode >= 8 and (not fin or length > 125): raise ProtocolError(1002, ...)\n"
        "if length > max_size: raise ProtocolError(1009, ...)\n"
        "mask = await reader.readexactly(4)\npayload = await reader.readexactly(length)\n"
        "return Frame(fin, opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))",
    ],
)

MAX_SIZE = 100_000


def _client_frame(opcode, payload, fin=True):
    """A frame as the websockets library writes it for a client: masked, with a random mask."""
    from websockets.frames import Frame as LibraryFrame, Opcode

    return LibraryFrame(Opcode(opcode), payload, fin).serialize(mask=True)


def _fields(result):
    """(fin, opcode, payload) of what read_frame returned: a Frame, or a tuple of the three."""
    if all(hasattr(result, name) for name in ("fin", "opcode", "payload")):
        return bool(result.fin), result.opcode, result.payload
    if isinstance(result, tuple) and len(result) == 3:
        return bool(result[0]), result[1], result[2]
    raise CaseFailed("read_frame returns Frame(fin, opcode, payload)", got=result)


def _read(answer, pieces, max_size=MAX_SIZE, pause=0.0, frames=1):
    """Feed `pieces` to a StreamReader (`pause` s apart) and await the answer `frames` times, in a fresh loop with a
    deadline: what each call returned, or the exception one raised (the last item), and whether it timed out."""

    async def main():
        reader = asyncio.StreamReader()

        async def feed():
            for piece in pieces:
                reader.feed_data(piece)
                await asyncio.sleep(pause)

        feeding = asyncio.ensure_future(feed())
        results = []
        try:
            async with asyncio.timeout(DEADLINE):
                for _ in range(frames):
                    call = answer(reader, max_size)
                    if not inspect.isawaitable(call):
                        raise CaseFailed("read_frame is an `async def`: the check awaits it", got=call)
                    results.append(_fields(await call))
        except TimeoutError:
            results.append(TimeoutError())
        except CaseFailed:
            raise
        except Exception as error:  # noqa: BLE001 - what the answer raised is what the case looks at
            results.append(error)
        finally:
            feeding.cancel()
        return results

    return asyncio.run(main())


def _what_went_wrong(error, pieces=False):
    """What an exception read_frame raised (or the deadline it ran into) on a good frame says about the answer."""
    if isinstance(error, TimeoutError):
        return (f"was still waiting after {DEADLINE:g} s for bytes the frame does not have: was a length read "
                "wrong (126 means 2 more length bytes, 127 means 8, both big-endian: int.from_bytes(..., 'big')), "
                "or was something read twice?")
    if isinstance(error, asyncio.IncompleteReadError):
        return (f"read past the end of the frames sent ({error}): was a length read wrong (big-endian, "
                "int.from_bytes(..., 'big')), or the mask or the payload read twice?")
    said = f"raised {type(error).__name__}: {error}"
    if pieces and isinstance(error, (IndexError, ValueError)):
        return (f"{said}. reader.read(n) returns what has arrived so far, up to n bytes, maybe fewer: "
                "await reader.readexactly(n) waits for all n")
    return said


def _refused(answer, frame, code, why, max_size=MAX_SIZE):
    [result] = _read(answer, [frame], max_size)[-1:]
    if isinstance(result, TimeoutError):
        raise CaseFailed(f"{why}; your read_frame was still waiting after {DEADLINE:g} s"
                         + (" (for a payload that never comes: refuse the frame from its length, before reading)"
                            if code == 1009 else ""))
    if not isinstance(result, Exception):
        raise CaseFailed(f"{why}; your read_frame returned a frame: raise ProtocolError({code}, '...')",
                         expected=f"ProtocolError({code}, ...)", got=result)
    if getattr(result, "code", None) != code:
        raise CaseFailed(f"{why}: raise ProtocolError({code}, '...'), not {type(result).__name__}",
                         expected=f"ProtocolError({code}, ...)",
                         got=f"{type(result).__name__}({short_repr(str(result), 60)}), code "
                             f"{getattr(result, 'code', None)!r}")


@reader_exercise.case("frames the websockets client writes: text, binary of 126 and 70000 bytes, fragments, ping")
def _(answer):
    sent = [(0x1, "héllo".encode(), True), (0x2, bytes(range(126)), True), (0x2, os.urandom(70000), True),
            (0x1, b"frag", False), (0x9, b"ping!", True), (0x0, b"ment", True), (0x8, b"\x03\xe8bye", True)]
    results = _read(answer, [b"".join(_client_frame(o, p, f) for o, p, f in sent)], frames=len(sent))
    for (opcode, payload, fin), got in zip(sent, results):
        if isinstance(got, BaseException):
            raise CaseFailed(f"reading a {len(payload)}-byte frame (opcode {opcode:#x}), your read_frame "
                             + _what_went_wrong(got))
        if got[:2] == (fin, opcode) and len(got[2]) != len(payload):
            raise CaseFailed(f"your read_frame read a payload of {len(got[2])} bytes from a {len(payload)}-byte "
                             f"frame (opcode {opcode:#x}): the length is the low 7 bits of the second byte, or, if "
                             "they say 126, the next 2 bytes, if 127 the next 8, big-endian "
                             "(int.from_bytes(..., 'big'))")
        if got[:2] == (fin, opcode) and got[2] != payload and len(got[2]) == len(payload):
            raise CaseFailed(f"the payload of a {len(payload)}-byte frame is still masked: unmask it, byte i "
                             "^ mask[i % 4]", expected=short_repr(payload, 40), got=short_repr(got[2], 40))
        expect_equal(got, (fin, opcode, payload), f"the {len(payload)}-byte frame (opcode {opcode:#x})")


@reader_exercise.case("a frame that arrives a few bytes at a time is read whole (readexactly, not read)")
def _(answer):
    frame = _client_frame(0x1, b"x" * 300)
    pieces = [frame[i:i + 7] for i in range(0, len(frame), 7)]
    [got] = _read(answer, pieces, pause=0.002)
    if isinstance(got, BaseException):
        raise CaseFailed("reading a 300-byte text frame that came in 7-byte pieces, your read_frame "
                         + _what_went_wrong(got, pieces=True))
    if got != (True, 1, b"x" * 300):
        raise CaseFailed("a frame in 7-byte pieces came out wrong: reader.read(n) returns what has arrived, up to "
                         "n bytes; await reader.readexactly(n) waits for all n", expected=(True, 1, "b'x' * 300"),
                         got=(got[0], got[1], short_repr(got[2], 40)))


@reader_exercise.case("an unmasked client frame, reserved bits or a reserved opcode: ProtocolError(1002)")
def _(answer):
    _refused(answer, b"\x81\x05hello", 1002, "an unmasked frame from a client must close the connection with 1002")
    masked = bytearray(_client_frame(0x1, b"hello"))
    for bit, name in ((0x40, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3")):
        _refused(answer, bytes([masked[0] | bit]) + bytes(masked[1:]), 1002,
                 f"{name} ({bit:#04x}) set with no extension agreed (all three RSV bits, first & 0x70, must be 0)")
    for opcode in (0x3, 0xB):
        _refused(answer, bytes([0x80 | opcode]) + bytes(masked[1:]), 1002, f"the reserved opcode {opcode:#x}")


@reader_exercise.case("a fragmented control frame (close, ping, pong), or one over 125 bytes: ProtocolError(1002)")
def _(answer):
    # (websockets will not write these: made by hand)
    for opcode, name in ((0x9, "a ping"), (0x8, "a close frame"), (0xA, "a pong")):
        _refused(answer, _reference_frame(opcode, b"\x03\xe8", fin=False, mask=os.urandom(4)), 1002,
                 f"{name} with FIN unset (control frames, opcode 0x8 and up, close included, are never fragmented)")
    for opcode, name in ((0x9, "a ping"), (0x8, "a close frame")):
        _refused(answer, _reference_frame(opcode, b"\x03\xe8" + b"p" * 124, mask=os.urandom(4)), 1002,
                 f"{name} of 126 bytes (a control frame, opcode 0x8 and up, carries at most 125)")


@reader_exercise.case("a frame longer than max_size: ProtocolError(1009), before its payload is read")
def _(answer):
    head = bytes([0x82, 0x80 | 127]) + (2 ** 32).to_bytes(8, "big") + os.urandom(4)  # 4 GiB announced, none sent
    _refused(answer, head, 1009, "a frame announcing 4 GiB, over max_size")
    _refused(answer, _client_frame(0x2, b"y" * 2000), 1009, "a 2000-byte frame with max_size 1000", max_size=1000)
    [got] = _read(answer, [_client_frame(0x2, b"z" * 1000)], max_size=1000)
    if isinstance(got, BaseException):
        raise CaseFailed("a frame of exactly max_size (1000 bytes, max_size 1000) is allowed: refuse only a "
                         f"length over max_size (length > max_size); your read_frame {_what_went_wrong(got)}")
    expect_equal(got, (True, 2, b"z" * 1000), "a frame of exactly max_size bytes")
