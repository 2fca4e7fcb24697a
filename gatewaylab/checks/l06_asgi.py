"""Lesson 06's exercises: raw ASGI apps and a middleware, each checked by what it does, through the lesson's ASGI
validator (gatewaylab.asgi_validate), by hand and over HTTP under uvicorn.

By hand, the answer runs in a fresh asyncio loop (asyncio.run) in the case's own thread, with a deadline on the loop
(asyncio.timeout) and the grading's time limit on the thread for code that blocks it. Over HTTP, it is served by
serve_asgi(server="uvicorn") under a name beginning with "check-06", stopped (its thread stopped too, if the answer
blocks it) before the case returns; the validator's verdicts are collected from the served app, not only logged.
"""

import asyncio
import copy
import socket
import time

from gatewaylab.asgi_validate import ASGIValidationError, validator
from gatewaylab.grading import CaseFailed, Exercise, short_repr, stop_thread
from gatewaylab.servers import serve_asgi
from gatewaylab.wire import Connection, request

DEADLINE = 3.0  # seconds a request or a call by hand may take, beyond what the case expects


def http_scope(method="GET", path="/", query=b"", headers=(), state=None):
    """An http scope as uvicorn gives one."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
             "root_path": "", "headers": [(b"host", b"check")] + list(headers),
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    if state is not None:
        scope["state"] = state
    return scope


class Call:
    """The answer called by hand, under the validator: `events` are handed to receive() in turn, each after its
    delay; then receive() waits until `disconnect_after` (None: for ever) and says http.disconnect."""

    def __init__(self, app, scope, events=(), disconnect_after=None, limit=DEADLINE, late=""):
        self.sent, self.received = [], []
        self.took = None
        self.left_running = []  # the tasks the app started and left running when it returned
        self.longest_block = 0.0
        started = time.monotonic()

        async def receive():
            if events[len(self.received):]:
                delay, message = events[len(self.received)]
                await asyncio.sleep(delay)
            elif disconnect_after is None:
                await asyncio.Event().wait()
                message = None
            else:
                await asyncio.sleep(max(0.0, started + disconnect_after - time.monotonic()))
                message = {"type": "http.disconnect"}
            self.received.append(message)
            return message

        async def send(message):
            self.sent.append(copy.deepcopy(message))  # as the server had it then, whatever the app does later

        beat = [time.monotonic()]

        def lag():  # how long the loop has not run the heartbeat beyond its 0.02 s: how long the app blocked it
            self.longest_block = max(self.longest_block, time.monotonic() - beat[0] - 0.02)

        async def heartbeat():
            while True:
                beat[0] = time.monotonic()
                await asyncio.sleep(0.02)
                lag()

        async def main():
            beating = asyncio.ensure_future(heartbeat())
            try:
                async with asyncio.timeout(limit):
                    await validator(app)(scope, receive, send)
            finally:
                lag()
                beating.cancel()
            await asyncio.sleep(0)  # let the tasks the app cancelled finish
            self.left_running = [task for task in asyncio.all_tasks()
                                 if task is not asyncio.current_task() and not task.cancelling()]

        try:
            asyncio.run(main())
        except ASGIValidationError as error:
            raise CaseFailed(f"the ASGI validator: {error}") from None
        except TimeoutError:
            self.blocked()
            raise CaseFailed(f"your app had not returned after {limit:g} s (it was still waiting in receive() or "
                             f"on something else); the events so far: it received {self.kinds(self.received)}, "
                             f"sent {self.kinds(self.sent)}. {late}".rstrip()) from None
        self.took = time.monotonic() - started
        self.blocked()

    def blocked(self):
        if self.longest_block > 0.25:  # a busy machine may delay a loop a little, not this much
            raise CaseFailed(f"your app blocked the event loop for {self.longest_block:.2f} s: time.sleep stops "
                             "the whole loop (and a busy loop does too), so nothing else runs. Wait with "
                             "await asyncio.sleep(), or await receive()")

    def still_running(self):
        """Fail if the app returned and left tasks of its own running."""
        if self.left_running:
            names = ", ".join(short_repr(task.get_coro(), 60) for task in self.left_running)
            raise CaseFailed(f"your app returned and left {len(self.left_running)} task(s) running: {names}. "
                             "Cancel the tasks it started (in a finally:), so nothing outlives the app")

    @staticmethod
    def kinds(messages):
        return [m.get("type") if isinstance(m, dict) else m for m in messages] or "nothing"

    def response(self):
        """(status, headers as a dict, body) of what the app sent."""
        start = next((m for m in self.sent if m.get("type") == "http.response.start"), {})
        body = b"".join(m.get("body", b"") for m in self.sent if m.get("type") == "http.response.body")
        return start.get("status"), dict(start.get("headers", [])), body


def request_events(*chunks, delay=0.0):
    """http.request events carrying `chunks`, more_body True on all but the last."""
    chunks = chunks or (b"",)
    return [(delay, {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
            for i, chunk in enumerate(chunks)]


class Served:
    """The answer (under the validator) served by uvicorn; `errors` holds what the app raised."""

    def __init__(self, app, name, **options):
        self.errors = []
        checked = validator(app)

        async def served(scope, receive, send):
            try:
                await checked(scope, receive, send)
            except Exception as error:
                self.errors.append(error)
                raise

        options.setdefault("lifespan", "off")  # the apps of 06.1 and 06.4 know only http scopes
        try:
            self.server = serve_asgi(served, name=name, server="uvicorn", log_level="critical", **options)
        except RuntimeError as error:
            self.verdict()
            raise CaseFailed(f"under uvicorn, the server did not start ({error}): is the lifespan scope "
                             "passed on to the app, and answered?") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop(timeout=DEADLINE)
        if self.server.thread is not None and self.server.thread.is_alive():
            stop_thread(self.server.thread)
            raise CaseFailed("uvicorn could not stop: your app blocks its event loop (time.sleep, a busy loop?). "
                             "Wait with await asyncio.sleep() or await receive(), never with a blocking call")

    def verdict(self):
        for error in self.errors:
            if isinstance(error, ASGIValidationError):
                raise CaseFailed(f"under uvicorn, the ASGI validator: {error}")
            raise CaseFailed(f"under uvicorn, your app raised {type(error).__name__}: {error}")

    def ask(self, raw, method="GET", pause=0.0):
        """Send `raw` (bytes, or pieces sent `pause` s apart, so the server hands them on in several events)."""
        pieces = [raw] if isinstance(raw, bytes) else raw
        try:
            connection = Connection(self.server.address, time.monotonic() + DEADLINE)
            try:
                for piece in pieces:
                    connection.send(piece)
                    time.sleep(pause)
                reply = connection.read_response(method)
            finally:
                connection.close()
        except (OSError, ValueError) as error:
            self.verdict()
            raise CaseFailed(f"under uvicorn, no complete answer: {type(error).__name__}: {error}") from None
        self.verdict()
        return reply


# --- 06.1 echo ------------------------------------------------------------------------------------------------------

echo = Exercise(
    "06.1", "Echo a body that arrives in pieces",
    points=3,
    answer="an async function echo(scope, receive, send)",
    params=3,
    timeout=5.0,
    hints=[
        "A request body reaches the app in one or more http.request events; every one but the last has "
        "more_body True. Call `await receive()` until an event's more_body is False (missing means False), "
        "joining the bodies; only then answer.",
        "The answer is two events: await send({'type': 'http.response.start', 'status': 200, 'headers': "
        "[(b'content-type', b'application/octet-stream')]}), then await send({'type': 'http.response.body', "
        "'body': body}). Header names and values are bytes, names lower-case.",
        "body, more_body = b\"\", True\nwhile more_body:\n    message = await receive()\n"
        "    body += message.get(\"body\", b\"\")\n    more_body = message.get(\"more_body\", False)\n"
        "await send({\"type\": \"http.response.start\", \"status\": 200,\n"
        "            \"headers\": [(b\"content-type\", b\"application/octet-stream\")]})\n"
        "await send({\"type\": \"http.response.body\", \"body\": body})",
    ],
)


def _echoed(call, expected):
    status, headers, body = call.response()
    if status != 200:
        raise CaseFailed("echo answers 200", expected=200, got=status)
    if headers.get(b"content-type") != b"application/octet-stream":
        raise CaseFailed("echo says what it sends back: content-type application/octet-stream (bytes, as a "
                         "(b'content-type', b'application/octet-stream') pair)",
                         expected=b"application/octet-stream", got=headers.get(b"content-type"))
    if body != expected:
        got_events = len([m for m in call.received if m and m.get("type") == "http.request"])
        raise CaseFailed(f"the body came in several http.request events; your app read {got_events} of them. "
                         "Read until more_body is False, joining the bodies", expected=expected, got=body)


@echo.case("a body in three http.request events comes back whole, in one response")
def _(answer):
    call = Call(answer, http_scope("POST"), request_events(b"one ", b"two ", b"three", delay=0.02))
    _echoed(call, b"one two three")


@echo.case("a request without a body (one event, no 'body' key) gets an empty 200")
def _(answer):
    call = Call(answer, http_scope("GET"), [(0.0, {"type": "http.request"})])
    _echoed(call, b"")


@echo.case("over HTTP under uvicorn: a chunked body of 3 chunks, and a 100 kB one, each sent in pieces",
           timeout=20.0)
def _(answer):
    with Served(answer, "check-06.1") as served:
        # Each piece is sent 0.1 s after the last, so uvicorn hands it on in an http.request of its own.
        chunked = [request("POST", "/", [("Transfer-Encoding", "chunked")]), b"4\r\nabcd\r\n",
                   b"3\r\nefg\r\n", b"1\r\nh\r\n0\r\n\r\n"]
        reply = served.ask(chunked, "POST", pause=0.1)
        if (reply.status, reply.body) != (200, b"abcdefgh"):
            raise CaseFailed("a chunked POST of abcdefgh, sent a chunk at a time, should come back whole: read "
                             "until more_body is False, joining the bodies",
                             expected=(200, b"abcdefgh"), got=(reply.status, short_repr(reply.body, 60)))
        big = bytes(range(256)) * 400
        pieces = [request("POST", "/", [("Content-Length", str(len(big)))])]
        pieces += [big[i:i + 25600] for i in range(0, len(big), 25600)]
        reply = served.ask(pieces, "POST", pause=0.1)
        if reply.body != big:
            raise CaseFailed("a 100 kB body, sent in 4 pieces (which uvicorn hands on in several events), should "
                             "come back whole: read until more_body is False",
                             expected=f"{len(big)} bytes", got=f"{len(reply.body)} bytes")


# --- 06.2 add_header ------------------------------------------------------------------------------------------------

add_header = Exercise(
    "06.2", "A middleware that adds a header",
    points=3,
    answer="a function add_header(app, name, value) returning an ASGI app",
    params=3,
    timeout=5.0,
    hints=[
        "add_header returns a new app, `async def wrapped(scope, receive, send)`, that calls `await app(scope, "
        "receive, send_with_header)`: the inner app sends through a function of yours, which adds the header to "
        "http.response.start and passes every event on with `await send(message)`.",
        "Only http.response.start carries headers: copy its list and append (name, value), as bytes, lower-case "
        "(name.lower().encode('latin-1')). Body events, and every scope that is not http (lifespan), pass "
        "through untouched.",
        "def add_header(app, name, value):\n    pair = (name.lower().encode(\"latin-1\"), value.encode(\"latin-1\"))\n"
        "    async def wrapped(scope, receive, send):\n        async def send_with_header(message):\n"
        "            if message[\"type\"] == \"http.response.start\":\n"
        "                message = {**message, \"headers\": [*message.get(\"headers\", []), pair]}\n"
        "            await send(message)\n        await app(scope, receive, send_with_header)\n    return wrapped",
    ],
)


OWN_HEADERS = [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")]


def _hello(sent=None):
    """The app the check wraps: streams its answer in two body events; each message it sends, and a copy of it
    as it was, go to `sent`, to see whether the middleware changed the app's own dict."""

    async def send_kept(send, message):
        if sent is not None:
            sent.append((message, copy.deepcopy(message)))
        await send(message)

    async def hello(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send_kept(send, {"type": "http.response.start", "status": 200, "headers": list(OWN_HEADERS)})
        await send_kept(send, {"type": "http.response.body", "body": b"hello, ", "more_body": True})
        await send_kept(send, {"type": "http.response.body", "body": b"world"})

    return hello


def _wrapped(answer, name="X-Served-By", value="gatewaylab", sent=None):
    wrapped = answer(_hello(sent), name, value)
    if not callable(wrapped):
        raise CaseFailed("add_header(app, name, value) must return an app (a function)", got=short_repr(wrapped, 80))
    return wrapped


@add_header.case("the header is added to http.response.start, lower-case bytes, after the app's own")
def _(answer):
    sent = []
    call = Call(_wrapped(answer, sent=sent), http_scope(), request_events())
    starts = [m for m in call.sent if m.get("type") == "http.response.start"]
    headers = [tuple(pair) for pair in starts[0].get("headers", [])] if starts else []
    if (b"x-served-by", b"gatewaylab") not in headers:
        raise CaseFailed("add_header(app, 'X-Served-By', 'gatewaylab') should add (b'x-served-by', b'gatewaylab') "
                         "to http.response.start's headers", got=short_repr(headers, 120))
    if not set(OWN_HEADERS) <= set(headers):
        raise CaseFailed("the app's own headers must stay: append to them, don't replace them",
                         got=short_repr(headers, 120))
    if headers != [*OWN_HEADERS, (b"x-served-by", b"gatewaylab")]:
        raise CaseFailed("the header goes after the app's own, once: append it to the end of the list",
                         expected=[*OWN_HEADERS, (b"x-served-by", b"gatewaylab")], got=short_repr(headers, 160))
    changed = [(message, kept) for message, kept in sent if message != kept]
    if changed:
        raise CaseFailed("your middleware changed the app's own message dict (or its headers list) in place: the "
                         "app may use it again. Send a copy instead: {**message, 'headers': [...]}",
                         expected=changed[0][1], got=short_repr(changed[0][0], 160))


@add_header.case("every other event passes through unchanged and in order; the body is the app's")
def _(answer):
    call = Call(_wrapped(answer), http_scope(), request_events())
    kinds = Call.kinds(call.sent)
    if kinds != ["http.response.start", "http.response.body", "http.response.body"]:
        raise CaseFailed("the app sent a start and two body events; the server should see the same",
                         expected=["http.response.start", "http.response.body", "http.response.body"], got=kinds)
    bodies = call.sent[1:]
    wanted = [{"type": "http.response.body", "body": b"hello, ", "more_body": True},
              {"type": "http.response.body", "body": b"world"}]
    if bodies != wanted:
        raise CaseFailed("body events carry no headers: pass them on as they are", expected=wanted, got=bodies)


@add_header.case("over HTTP under uvicorn, with lifespan: the header arrives, the app still starts and stops",
                 timeout=20.0)
def _(answer):
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    call = Call(_wrapped(answer), lifespan, [(0.0, {"type": "lifespan.startup"}),
                                             (0.0, {"type": "lifespan.shutdown"})])
    if Call.kinds(call.sent) != ["lifespan.startup.complete", "lifespan.shutdown.complete"]:
        raise CaseFailed("the lifespan's events must reach the server as the app sent them: pass every event on, "
                         "with await send(message)", got=Call.kinds(call.sent))
    with Served(_wrapped(answer, "X-Request-Source", "check"), "check-06.2", lifespan="on") as served:
        reply = served.ask(request("GET", "/"))
    if reply.headers.get("x-request-source") != "check" or reply.body != b"hello, world":
        raise CaseFailed("the response should carry x-request-source: check and the app's body",
                         expected=("check", b"hello, world"),
                         got=(reply.headers.get("x-request-source"), reply.body))


# --- 06.3 visits ----------------------------------------------------------------------------------------------------

visits = Exercise(
    "06.3", "Lifespan fills the state",
    points=3,
    answer="an async function visits(scope, receive, send)",
    params=3,
    timeout=5.0,
    hints=[
        "In the lifespan scope, the app loops: `message = await receive()`; on lifespan.startup it puts a new list "
        "in scope['state']['visits'] and sends lifespan.startup.complete; on lifespan.shutdown it sends "
        "lifespan.shutdown.complete and returns.",
        "Each request's scope['state'] is a *shallow copy* of the lifespan's state: an int stored there is copied, "
        "so adding 1 to it changes only this request's copy. A list is shared: append to it, and len() counts "
        "the requests. Keep nothing in a global: a second server's lifespan must start again from zero.",
        "if scope[\"type\"] == \"lifespan\":\n    while True:\n        message = await receive()\n"
        "        if message[\"type\"] == \"lifespan.startup\":\n            scope[\"state\"][\"visits\"] = []\n"
        "            await send({\"type\": \"lifespan.startup.complete\"})\n        else:\n"
        "            await send({\"type\": \"lifespan.shutdown.complete\"})\n            return\n"
        "await receive()\nscope[\"state\"][\"visits\"].append(scope[\"path\"])\n"
        "... send 200, text/plain, f\"visit {len(scope['state']['visits'])}\".encode()",
    ],
)


def _lifespan_by_hand(answer):
    state = {}
    call = Call(answer, {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state},
                [(0.0, {"type": "lifespan.startup"}), (0.05, {"type": "lifespan.shutdown"})])
    kinds = Call.kinds(call.sent)
    if kinds != ["lifespan.startup.complete", "lifespan.shutdown.complete"]:
        raise CaseFailed("the app answers lifespan.startup with lifespan.startup.complete, and lifespan.shutdown "
                         "with lifespan.shutdown.complete, then returns",
                         expected=["lifespan.startup.complete", "lifespan.shutdown.complete"], got=kinds)
    return state


@visits.case("by hand: startup puts a list in state['visits']; shutdown is answered, and the app returns")
def _(answer):
    state = _lifespan_by_hand(answer)
    if not isinstance(state.get("visits"), list):
        raise CaseFailed("after startup, scope['state']['visits'] should be a list (one the requests share)",
                         got=short_repr(state, 80))


@visits.case("by hand: each request gets a shallow copy of the state, and counts itself")
def _(answer):
    state = _lifespan_by_hand(answer)
    bodies = []
    for _ in range(3):
        call = Call(answer, http_scope(state=dict(state)), request_events())
        status, _headers, body = call.response()
        bodies.append((status, body))
    wanted = [(200, b"visit 1"), (200, b"visit 2"), (200, b"visit 3")]
    if bodies != wanted:
        raise CaseFailed("three requests, each given a copy of the lifespan's state (as servers do), should "
                         "count 1, 2, 3: an int in the state is copied for each request, a list is shared",
                         expected=wanted, got=bodies)
    # A second server in the same process (its own lifespan, its own state), then the first one again.
    other = _lifespan_by_hand(answer)
    bodies = [Call(answer, http_scope(state=dict(shared)), request_events()).response()[2]
              for shared in (other, state)]
    if bodies != [b"visit 1", b"visit 4"]:
        raise CaseFailed("a second lifespan (a second server in the same process) starts its own count, and the "
                         "first server's goes on: keep the count in the state that startup creates, not in a "
                         "global (a global is shared by every server of the process, even one reset at startup)",
                         expected=[b"visit 1", b"visit 4"], got=bodies)


@visits.case("over HTTP under uvicorn, twice: each server's lifespan starts counting from 1", timeout=25.0)
def _(answer):
    for run in ("first", "second"):
        with Served(answer, "check-06.3", lifespan="on") as served:
            got = [served.ask(request("GET", "/")).body for _ in range(2)]
        if got != [b"visit 1", b"visit 2"]:
            raise CaseFailed(f"the {run} server should answer visit 1, then visit 2: keep the count in the state "
                             "that startup creates, not in a global", expected=[b"visit 1", b"visit 2"], got=got)


# --- 06.4 long_poll -------------------------------------------------------------------------------------------------

long_poll = Exercise(
    "06.4", "A long poll that notices the client leave",
    points=3,
    answer="an async function long_poll(scope, receive, send)",
    params=3,
    timeout=5.0,
    hints=[
        "The app waits for two things at once: the time (asyncio.sleep(seconds)) and the next event "
        "(receive()), which is http.disconnect when the client leaves. Make each a task and "
        "`await asyncio.wait(..., return_when=asyncio.FIRST_COMPLETED)`.",
        "Read the request first (await receive() until more_body is False). Then, if the receive task finished "
        "first, the client has gone: cancel the sleep and return without sending. Otherwise cancel the receive "
        "task and answer 200 b\"no news\". Cancel what is left in a finally:, so nothing outlives the app.",
        "seconds = float(scope[\"query_string\"].decode().partition(\"=\")[2] or 5)\n... read the body ...\n"
        "left = asyncio.ensure_future(receive())\nwaited = asyncio.ensure_future(asyncio.sleep(seconds))\ntry:\n"
        "    await asyncio.wait([left, waited], return_when=asyncio.FIRST_COMPLETED)\nfinally:\n"
        "    left.cancel(); waited.cancel()\nif left.done() and not left.cancelled():\n    return\n"
        "... send 200, text/plain, b\"no news\"",
    ],
)


@long_poll.case("when nothing happens, it answers 200 b\"no news\" after the time asked (?wait=0.3)")
def _(answer):
    call = Call(answer, http_scope(query=b"wait=0.3"), request_events(),
                late="?wait=0.3 should answer after about 0.3 s: read the number from scope['query_string']")
    status, _headers, body = call.response()
    if (status, body) != (200, b"no news"):
        raise CaseFailed("after 0.3 s with no disconnect, answer 200 b\"no news\"", expected=(200, b"no news"),
                         got=(status, body))
    call.still_running()
    if not 0.25 < call.took < 1.0:
        raise CaseFailed(f"?wait=0.3 should answer after about 0.3 s; yours took {call.took:.2f} s (read the "
                         "number from scope['query_string'], bytes such as b'wait=0.3')",
                         expected="about 0.3 s", got=f"{call.took:.2f} s")


@long_poll.case("when the client leaves after 0.2 s of a 5 s wait, it returns at once, sending nothing",
                timeout=8.0)
def _(answer):
    call = Call(answer, http_scope(query=b"wait=5"), request_events(), disconnect_after=0.2, limit=1.5,
                late="The client left after 0.2 s: wait for receive() (http.disconnect) and the sleep at once, "
                     "and stop at the first (with asyncio.sleep: time.sleep stops the whole loop)")
    if call.sent:
        raise CaseFailed("the client left: there is no one to answer, so send nothing",
                         got=Call.kinds(call.sent))
    if call.took > 0.6:
        raise CaseFailed(f"the client left after 0.2 s, but your app returned after {call.took:.2f} s: wait for "
                         "receive() (http.disconnect) and the sleep at once, and stop at the first",
                         expected="about 0.2 s", got=f"{call.took:.2f} s")
    call.still_running()


@long_poll.case("over HTTP under uvicorn: a client that hangs up ends the poll; one that waits gets its answer",
                timeout=25.0)
def _(answer):
    returned, sent = [], []

    async def timed(scope, receive, send):
        kinds = []
        sent.append(kinds)

        async def noted(message):
            kinds.append(message.get("type") if isinstance(message, dict) else message)
            await send(message)

        await answer(scope, receive, noted)
        returned.append(time.monotonic())

    with Served(timed, "check-06.4") as served:
        reply = served.ask(request("GET", "/poll?wait=0.2"))
        if (reply.status, reply.body) != (200, b"no news"):
            raise CaseFailed("GET /poll?wait=0.2 should get 200 b\"no news\"",
                             expected=(200, b"no news"), got=(reply.status, reply.body))
        connection = Connection(served.server.address, time.monotonic() + DEADLINE)
        connection.send(request("GET", "/poll?wait=5"))
        time.sleep(0.2)
        hung_up = time.monotonic()
        connection.sock.shutdown(socket.SHUT_RDWR)
        connection.close()
        while len(returned) < 2 and time.monotonic() < hung_up + 2.0:
            time.sleep(0.02)
        served.verdict()
    if len(returned) < 2 or returned[1] - hung_up > 1.0:
        raise CaseFailed("a client hung up 0.2 s into a 5 s poll, but your app went on waiting: uvicorn's "
                         "receive() gives http.disconnect when the client leaves; wait for it and the time at once")
    if sent[1]:
        raise CaseFailed("a client hung up 0.2 s into a 5 s poll: your app noticed, but sent it an answer anyway "
                         "(uvicorn drops it). The client has gone: return without sending",
                         got=sent[1])
