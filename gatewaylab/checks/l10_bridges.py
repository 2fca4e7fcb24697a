"""Lesson 10's exercises: two bridges between the interfaces, a verdict from measurements, and a choice of set-up.

10.1's WSGI-to-ASGI bridge is served by uvicorn under lesson 06's ASGI validator (its Served helper: every event the
bridge sends is checked, and the server thread is stopped if the bridge blocks its loop) and measured with real
concurrent clients; the WSGI apps it carries note the threads that ran them. 10.2's ASGI-to-WSGI bridge is called by
hand under wsgiref.validate (so its start_response call and its body are checked), with ASGI apps under
gatewaylab.asgi_validate (so the events its receive() gives are checked), and measured under the course's pooled WSGI
server. Servers are named "check-10..." and stopped before a case returns; every wait has a deadline.
"""

import asyncio
import contextlib
import functools
import gc
import logging
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator as wsgi_validator

from gatewaylab.asgi_validate import ASGIValidationError, validator as asgi_validator
from gatewaylab.bridges import ThreadNoting
from gatewaylab.checks.l06_asgi import Served
from gatewaylab.grading import CaseFailed, Exercise, short_repr
from gatewaylab.load import load
from gatewaylab.servers import serve_wsgi

DEADLINE = 5.0  # seconds any one exchange may take beyond what the case expects


def _collected(case):
    """A case after which what the answer made is let go: a thread pool's idle workers end only when their pool
    is garbage-collected, and a failed case's traceback would keep the pool (through the case's frame) alive."""
    @functools.wraps(case)
    def run(answer):
        try:
            case(answer)
        except CaseFailed as failed:
            failed.__traceback__ = failed.__context__ = failed.__cause__ = None
            gc.collect()
            raise failed from None
        gc.collect()
    return run


# --- 10.1 wsgi_to_asgi ------------------------------------------------------------------------------------------------

wsgi_to_asgi = Exercise(
    "10.1", "A WSGI-to-ASGI bridge that does not serialise",
    points=4,
    answer="a function wsgi_to_asgi(app, workers=4) returning an ASGI app",
    params=1,
    timeout=20.0,
    hints=[
        "The ASGI app reads every http.request event (until more_body is False), builds the environ with "
        "environ_for(scope, body), and runs the WSGI call in a thread of a pool you make once, in "
        "wsgi_to_asgi: `await loop.run_in_executor(pool, call, environ)` with "
        "loop = asyncio.get_running_loop() and pool = ThreadPoolExecutor(max_workers=workers). Calling the "
        "WSGI app directly in the async function runs it on the event loop's thread and blocks every request.",
        "In the thread, `call(environ)` calls app(environ, start_response), where start_response keeps the "
        "status and headers it is given; it joins the body's chunks, closes the iterable if it has close() "
        "(in a finally:), and only then returns (status, headers, body). All of it in the thread: a generator "
        "app does its work, and may call start_response, only as its body is iterated (PEP 3333 allows it), "
        "so the status is known only after the body, and joining the body on the loop would block it. Catch "
        "an exception from the app there or around the await, and answer 500 Internal Server Error instead.",
        "status, headers, content = await loop.run_in_executor(pool, call, environ_for(scope, body))\n"
        "await send({\"type\": \"http.response.start\", \"status\": int(status.split()[0]),\n"
        "            \"headers\": [(n.lower().encode(\"latin-1\"), v.encode(\"latin-1\")) for n, v in "
        "headers]})\nawait send({\"type\": \"http.response.body\", \"body\": content})",
    ],
)


def _loop_thread(served):
    """The name of the thread running uvicorn's event loop."""
    return served.server.thread.name if served.server.thread is not None else None


@wsgi_to_asgi.case("four requests at once, each 1 s of time.sleep, under uvicorn: well under 4 s", timeout=20.0)
@_collected
def _(answer):
    requests, delay = 4, 1.0
    app = ThreadNoting()
    with Served(answer(app), "check-10.1") as served:
        result = load(f"{served.server.url}/?delay={delay:g}", requests, timeout=requests * delay + DEADLINE)
        served.verdict()
        loop_thread = _loop_thread(served)
    if result.ok != requests:
        raise CaseFailed(f"not every request was answered 200 ({result.summary()}): does the bridge send "
                         "http.response.start with the app's status, then the body?")
    threads = set(app.threads)
    if loop_thread in threads:
        raise CaseFailed(f"the WSGI app ran on the event loop's own thread ({loop_thread}): its time.sleep stopped "
                         f"the loop, so the {requests} requests took {result.wall:.1f} s, one after another. Run "
                         "the WSGI call in a thread pool: await loop.run_in_executor(pool, ...)",
                         expected=f"< {requests * delay / 2:g} s", got=f"{result.wall:.2f} s")
    if result.wall >= requests * delay / 2:
        why = (f"all {len(app.threads)} calls ran in one thread ({next(iter(threads))}): a pool of one "
               "(ThreadPoolExecutor(max_workers=1)), or asgiref's sync_to_async with its default "
               "thread_sensitive=True, is one shared thread, and serialises. Make a pool of `workers` threads"
               if len(threads) == 1 else "did each request wait for the one before it (a lock?)")
        raise CaseFailed(f"{requests} requests of {delay:g} s took {result.wall:.2f} s: {why}",
                         expected=f"< {requests * delay / 2:g} s", got=f"{result.wall:.2f} s")


@wsgi_to_asgi.case("workers=2: never more than two threads, so four requests of 0.3 s take two rounds",
                   timeout=15.0)
@_collected
def _(answer):
    requests, delay = 4, 0.3
    app = ThreadNoting()
    with Served(answer(app, workers=2), "check-10.1") as served:
        result = load(f"{served.server.url}/?delay={delay:g}", requests, timeout=requests * delay + DEADLINE)
        served.verdict()
    if result.ok != requests:
        raise CaseFailed(f"not every request was answered 200 ({result.summary()})")
    if len(set(app.threads)) > 2 or result.wall < 2 * delay * 0.9:
        raise CaseFailed(f"with workers=2 the app ran in {len(set(app.threads))} threads and {requests} requests "
                         f"took {result.wall:.2f} s: the pool's size is `workers` "
                         "(ThreadPoolExecutor(max_workers=workers)), not the loop's default executor "
                         "(asyncio.to_thread) or a thread per request",
                         expected=f"at most 2 threads, about {2 * delay:g} s", got=f"{len(set(app.threads))} "
                         f"threads, {result.wall:.2f} s")


class LazyApp(ThreadNoting):
    """A generator WSGI app: nothing runs until its body is iterated; then it calls start_response (PEP 3333
    allows it before the first block), waits ?delay= s (time.sleep) and notes the thread that ran the body."""

    def __call__(self, environ, start_response):
        delay = float(parse_qs(environ.get("QUERY_STRING", "")).get("delay", ["1"])[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        with self.lock:
            self.threads.append(threading.current_thread().name)
        time.sleep(delay)
        yield b"done"


@wsgi_to_asgi.case("a generator app (start_response on its first iteration, its time.sleep in the body): four "
                   "requests at once of 1 s, side by side too", timeout=20.0)
@_collected
def _(answer):
    requests, delay = 4, 1.0
    app = LazyApp()
    with Served(answer(app), "check-10.1") as served:
        result = load(f"{served.server.url}/?delay={delay:g}", requests, timeout=requests * delay + DEADLINE)
        try:
            served.verdict()
        except CaseFailed as failed:
            if "KeyError" not in failed.message:
                raise
            raise CaseFailed(f"{failed.message}: a generator app calls start_response only when its body is "
                             "first iterated (PEP 3333 allows that), so go through the body first, then read "
                             "the status and headers start_response kept") from None
        loop_thread = _loop_thread(served)
    statuses = dict(result.status_counts)
    if statuses.get(500):
        raise CaseFailed("a generator app's body answered 500 through your bridge: its start_response runs only "
                         "when the body is first iterated (PEP 3333 allows that), so the status and headers "
                         "are there only after you have gone through the body. Join the chunks first, then "
                         "read what start_response kept", expected={200: requests}, got=statuses)
    if result.ok != requests:
        raise CaseFailed(f"not every request was answered 200 ({result.summary()})")
    if loop_thread in set(app.threads):
        raise CaseFailed(f"the app's body ran on the event loop's own thread ({loop_thread}): a generator app "
                         "does its work as its body is iterated, so b\"\".join(...) on the loop blocked it, and "
                         f"the {requests} requests took {result.wall:.1f} s. Go through the body (and close it) "
                         "inside the call you give run_in_executor", expected=f"< {requests * delay / 2:g} s",
                         got=f"{result.wall:.2f} s")
    if result.wall >= requests * delay / 2:
        raise CaseFailed(f"{requests} requests to a generator app of {delay:g} s took {result.wall:.2f} s: is "
                         "its body iterated one request after another?", expected=f"< {requests * delay / 2:g} s",
                         got=f"{result.wall:.2f} s")


class ChunkedBody:
    """A WSGI response body in three chunks that notes whether the server closed it."""

    def __init__(self):
        self.closed = False

    def __iter__(self):
        yield from (b"one ", b"two ", b"three")

    def close(self):
        self.closed = True


@wsgi_to_asgi.case("status, response headers and a body in three chunks come through; close() is called")
@_collected
def _(answer):
    bodies = []

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Served-By", "check")])
        bodies.append(ChunkedBody())
        return bodies[-1]

    with Served(answer(app), "check-10.1") as served:
        reply = served.ask(b"GET /made HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
    if reply.status != 201:
        raise CaseFailed("the status is the number at the start of the app's status line: "
                         "int(status.split()[0])", expected=201, got=reply.status)
    if reply.headers.get("x-served-by") != "check" or reply.headers.get("content-type") != "text/plain":
        raise CaseFailed("the app's headers must reach the client, as (name, value) pairs of bytes with "
                         "lower-case names", expected={"content-type": "text/plain", "x-served-by": "check"},
                         got={k: v for k, v in reply.headers.items() if k in ("content-type", "x-served-by")})
    if reply.body != b"one two three":
        raise CaseFailed("the body is every chunk the app's iterable gives, joined",
                         expected=b"one two three", got=reply.body)
    if not (bodies and bodies[-1].closed):
        raise CaseFailed("the app's iterable has close(), and PEP 3333 says it must be called when the body "
                         "has been sent (or failed): call it in a finally: block")


@wsgi_to_asgi.case("the request body (sent chunked, in three pieces) and headers reach wsgi.input and environ")
@_collected
def _(answer):
    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        answer_ = b"%s|%s|%s" % (environ.get("HTTP_X_NOTE", "-").encode(), environ["QUERY_STRING"].encode(),
                                 body)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer_]

    head = (b"POST /echo?q=1 HTTP/1.1\r\nHost: check\r\nX-Note: hello\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")
    pieces = [head + b"4\r\none \r\n", b"4\r\ntwo \r\n", b"5\r\nthree\r\n0\r\n\r\n"]
    with Served(answer(app), "check-10.1") as served:
        reply = served.ask(pieces, method="POST", pause=0.05)
    expected = b"hello|q=1|one two three"
    if reply.body != expected:
        if reply.body == b"hello|q=1|":
            advice = ("no body reached wsgi.input: pass the body you read from the http.request events to "
                      "environ_for(scope, body)")
        elif reply.body.startswith(b"hello|q=1|"):
            advice = ("the body came in several http.request events: read until more_body is False, then pass "
                      "the whole body to environ_for(scope, body)")
        else:
            advice = "build the environ with environ_for(scope, body): it carries the headers and the query"
        raise CaseFailed(f"the app answers with its X-Note header, query and body; {advice}",
                         expected=expected, got=reply.body)


@wsgi_to_asgi.case("an app that raises gets a 500 from the bridge, and the next request is served")
@_collected
def _(answer):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("raised on purpose by the check")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    with Served(answer(app), "check-10.1") as served:
        try:
            boom = served.ask(b"GET /boom HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
        except CaseFailed as failed:
            if "ValueError" in failed.message:
                raise CaseFailed("the WSGI app's ValueError came out of your bridge, and uvicorn had to answer "
                                 "for it: catch the app's exception in the bridge and send a 500 Internal "
                                 "Server Error response yourself") from None
            raise
        fine = served.ask(b"GET /fine HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
    if boom.status != 500:
        raise CaseFailed("an app that raises before it starts its response gets 500", expected=500, got=boom.status)
    if (fine.status, fine.body) != (200, b"fine"):
        raise CaseFailed("after the error, the next request is served as usual", expected=(200, b"fine"),
                         got=(fine.status, fine.body))


class FailingBody(ChunkedBody):
    """A WSGI response body that raises after its first chunk, and notes whether it was closed."""

    def __iter__(self):
        yield b"one "
        raise ValueError("raised on purpose by the check, in the body")


@wsgi_to_asgi.case("a body that raises while it is gone through: 500, and its close() is still called")
@_collected
def _(answer):
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(FailingBody())
        return bodies[-1]

    with Served(answer(app), "check-10.1") as served:
        try:
            reply = served.ask(b"GET /fails HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
        except CaseFailed as failed:
            if "ValueError" in failed.message:
                raise CaseFailed("the body's ValueError came out of your bridge: catch an error raised while "
                                 "the body is gone through too, and send a 500 yourself") from None
            raise
    if not (bodies and bodies[-1].closed):
        raise CaseFailed("the body raised after its first chunk, and its close() was never called: PEP 3333 "
                         "wants close() called whether the body was sent or failed. Call it in a finally: "
                         "block around the join, so that it runs when the body raises too")
    if reply.status != 500:
        raise CaseFailed("a body that fails before the response has started gets 500", expected=500,
                         got=reply.status)


# --- 10.2 asgi_to_wsgi ------------------------------------------------------------------------------------------------

asgi_to_wsgi = Exercise(
    "10.2", "An ASGI-to-WSGI bridge: a loop per request",
    points=4,
    answer="a function asgi_to_wsgi(app) returning a WSGI app",
    params=1,
    timeout=15.0,
    hints=[
        "The WSGI app reads the body from wsgi.input (int(environ.get('CONTENT_LENGTH') or 0) bytes: the "
        "header may be missing or empty), makes the scope with scope_for(environ), and runs the ASGI app to its "
        "end on an event loop of its own: asyncio.run(app(scope, receive, send)), in the WSGI server's thread. "
        "Each request gets its own loop, so the server's threads run them side by side. (Django's asgiref does "
        "the same in a new thread, loop_executor.submit(asyncio.run, ...), while the WSGI thread waits: either "
        "is fine here.)",
        "receive() gives {'type': 'http.request', 'body': body, 'more_body': False} the first time; after "
        "that it waits until the response is complete (an asyncio.Event that send() sets on the last body), "
        "then gives {'type': 'http.disconnect'}: not at http.response.start, since an app that streams its "
        "body (as Starlette's StreamingResponse does) listens for the disconnect while it sends. send() keeps "
        "the http.response.start event and every http.response.body's body.",
        "After asyncio.run: status = f\"{start['status']} {HTTPStatus(start['status']).phrase}\"; "
        "start_response(status, [(n.decode('latin-1'), v.decode('latin-1')) for n, v in "
        "start.get('headers', [])]); return [b''.join(bodies)]",
    ],
)


STILL_WAITING = (f"the ASGI app was still waiting after {DEADLINE:g} s: does the first receive() give the "
                 "http.request event with the body, and does send() keep what it is given?")


def _in_time(app):
    """The check's ASGI app with a deadline: a bridge whose receive() never gives the body (or never returns)
    ends the app with TimeoutError instead of holding the case for ever."""
    async def timed(scope, receive, send):
        async with asyncio.timeout(DEADLINE):
            await app(scope, receive, send)
    return timed


def _refused(error):
    """What wsgiref.validate refused, in words: many of its assertions carry no message of their own."""
    if str(error):
        return f"wsgiref.validate: {error}"
    import traceback

    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename.replace("\\", "/").endswith("wsgiref/validate.py") and frame.name != "assert_"]
    if not frames:
        return "wsgiref.validate refused what your bridge did (its assertion has no message)"
    where = frames[-1]
    if where.name == "read" and "len(args) == 1" in (where.line or ""):
        return ("wsgiref.validate refused wsgi.input.read() with no size: PEP 3333 defines read(size), and an "
                "app should not read more than CONTENT_LENGTH bytes (a server may allow read() with no size, but "
                "need not; the validator holds apps to the strict reading). Read "
                "int(environ.get('CONTENT_LENGTH') or 0) bytes")
    return f"wsgiref.validate refused it, in its {where.name}(): {where.line}"


def _call_wsgi(app, method="GET", path="/", body=b"", headers=(), **environ_more):
    """Call a WSGI app by hand under wsgiref.validate; (status, headers, body)."""
    import io

    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "check", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.multithread": True,
               "wsgi.multiprocess": False, "wsgi.run_once": False}
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/octet-stream"
    for name, value in headers:
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    environ.update(environ_more)
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"], started["headers"] = status, response_headers
        return lambda data: None

    try:
        chunks = wsgi_validator(app)(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            chunks.close()
    except TimeoutError:
        raise CaseFailed(STILL_WAITING) from None
    except ASGIValidationError as error:  # (an AssertionError too: first)
        raise CaseFailed(f"the ASGI validator, on what your bridge gave the ASGI app: {error}") from None
    except AssertionError as error:
        raise CaseFailed(_refused(error)) from None
    return started.get("status"), started.get("headers", []), content


async def _three_pieces(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain"), (b"x-served-by", b"check")]})
    for piece in (b"one ", b"two "):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"three"})


@asgi_to_wsgi.case("status, headers and a body sent in three events, checked by wsgiref.validate")
@_collected
def _(answer):
    status, headers, body = _call_wsgi(answer(_in_time(asgi_validator(_three_pieces))))
    if status != "201 Created":
        raise CaseFailed("a WSGI status is the code and its reason phrase: "
                         "f\"{code} {HTTPStatus(code).phrase}\"", expected="201 Created", got=status)
    got = {name.lower(): value for name, value in headers}
    if got.get("x-served-by") != "check" or got.get("content-type") != "text/plain":
        raise CaseFailed("the app's headers go to start_response as (str, str) pairs",
                         expected=[("content-type", "text/plain"), ("x-served-by", "check")], got=headers)
    if body != b"one two three":
        raise CaseFailed("the body came in three http.response.body events (more_body True on the first two): "
                         "keep every body until more_body is False", expected=b"one two three", got=body)


@asgi_to_wsgi.case("CONTENT_LENGTH there but empty (as a GET may have it): no body, and the answer as usual")
@_collected
def _(answer):
    try:
        status, _headers, body = _call_wsgi(answer(_in_time(asgi_validator(_three_pieces))), CONTENT_LENGTH="")
    except ValueError as error:
        raise CaseFailed(f"your bridge raised ValueError ({error}) for CONTENT_LENGTH '': the header may be "
                         "there and empty, which means no body, as when it is missing: "
                         "int(environ.get('CONTENT_LENGTH') or 0)") from None
    if (status, body) != ("201 Created", b"one two three"):
        raise CaseFailed("with an empty CONTENT_LENGTH the request has no body; the response is as usual",
                         expected=("201 Created", b"one two three"), got=(status, body))


@asgi_to_wsgi.case("the request body and headers reach the app; receive() says http.disconnect only after the "
                   "response (an app that listens for it, as Django's does, still answers)")
@_collected
def _(answer):
    early = []  # the app heard http.disconnect before it could answer

    async def listening(scope, receive, send):
        body, more_body = b"", True
        while more_body:
            message = await receive()
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
        gone = asyncio.ensure_future(receive())  # as Django's ASGIHandler listens for a disconnect
        await asyncio.sleep(0.05)
        if gone.done():
            early.append(gone.result())
            return  # the client has gone: nobody to answer
        note = dict(scope["headers"]).get(b"x-note", b"-")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"%s|%d|%s" % (note, len(body), body[-5:])})
        await asyncio.wait_for(gone, DEADLINE)  # after the response: http.disconnect

    payload = bytes(range(256)) * 400 + b"final"
    try:
        status, _headers, body = _call_wsgi(answer(_in_time(asgi_validator(listening))), "POST", "/up", payload,
                                            [("X-Note", "hello")])
    except Exception:
        if not early:
            raise
        status, body = None, b""
    if early:
        raise CaseFailed(f"receive() gave {short_repr(early[0], 60)} right after the body, before the response "
                         "was sent, so the app took its client for gone and did not answer: after the body, "
                         "receive() must wait until the response is complete, then say http.disconnect")
    expected = b"hello|%d|final" % len(payload)
    if status is None or not status.startswith("200") or body != expected:
        raise CaseFailed("the app answers with its X-Note header, the body's length and its end: pass the whole "
                         "body read from wsgi.input (CONTENT_LENGTH bytes) in the first http.request, and the "
                         "scope from scope_for(environ), which carries the headers",
                         expected=("200 OK", expected), got=(status, short_repr(body, 80)))


@asgi_to_wsgi.case("an app that streams its body while it listens for http.disconnect (as Starlette's "
                   "StreamingResponse does) sends all of it: the disconnect comes after the last body")
@_collected
def _(answer):
    early = []  # the app heard http.disconnect while it was still sending

    async def streaming(scope, receive, send):
        await receive()  # the (empty) request body
        gone = asyncio.ensure_future(receive())  # listening for a disconnect while it streams
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        pieces = (b"one ", b"two ", b"three")
        for number, piece in enumerate(pieces, 1):
            await asyncio.sleep(0.02)  # making the next piece
            if gone.done():
                early.append((gone.result(), number - 1))
                await send({"type": "http.response.body", "body": b""})  # the client has gone: stop
                return
            await send({"type": "http.response.body", "body": piece, "more_body": number < len(pieces)})
        await asyncio.wait_for(gone, DEADLINE)

    status, _headers, body = _call_wsgi(answer(_in_time(asgi_validator(streaming))))
    if early:
        message, sent = early[0]
        raise CaseFailed(f"receive() gave {short_repr(message, 60)} after the app had sent "
                         f"http.response.start and {sent} of its 3 body pieces, so it stopped streaming: the "
                         "response is complete only at the http.response.body whose more_body is False. Say "
                         "http.disconnect then, not at http.response.start", expected=b"one two three", got=body)
    if body != b"one two three":
        raise CaseFailed("the body came in three http.response.body events: keep every one",
                         expected=b"one two three", got=body)


class _Loops:
    """An ASGI app that awaits asyncio.sleep(delay) and notes the loop and thread each request ran in."""

    def __init__(self, delay):
        self.delay, self.loops, self.threads, self.lock = delay, set(), set(), threading.Lock()

    async def __call__(self, scope, receive, send):
        await receive()
        with self.lock:
            self.loops.add(id(asyncio.get_running_loop()))
            self.threads.add(threading.current_thread().name)
        await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"slept"})


class _Kept(logging.Handler):
    """Keeps what a server logs while a case runs: its tracebacks would fill the learner's notebook, and the
    case reports the error itself."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _log_kept(name="gatewaylab.wsgi"):
    """The course's WSGI server's log kept (not printed) inside the block."""
    log, kept = logging.getLogger(name), _Kept()
    propagate = log.propagate
    log.addHandler(kept)
    log.propagate = False
    try:
        yield kept
    finally:
        log.removeHandler(kept)
        log.propagate = propagate


@asgi_to_wsgi.case("four requests at once to an app awaiting asyncio.sleep(0.5), under the course's WSGI server "
                   "with 4 threads: about 0.5 s, not 2 s", timeout=15.0)
@_collected
def _(answer):
    requests, delay = 4, 0.5
    app, errors = _Loops(delay), []
    bridged = answer(_in_time(app))

    def noted(environ, start_response):
        try:
            return bridged(environ, start_response)
        except Exception as error:
            errors.append(error)
            raise

    with _log_kept(), serve_wsgi(noted, name="check-10.2", server="gatewaylab", threads=requests) as server:
        result = load(server.url, requests, timeout=requests * delay + DEADLINE)
    if errors:
        error = errors[0]
        if isinstance(error, TimeoutError):
            raise CaseFailed(STILL_WAITING)
        advice = (": one loop cannot run two requests at once from two threads. Give each request a loop of "
                  "its own: asyncio.run(app(scope, receive, send))" if isinstance(error, RuntimeError) else "")
        raise CaseFailed(f"your bridge raised {type(error).__name__}: {error}{advice}")
    if result.ok != requests:
        raise CaseFailed(f"not every request was answered 200 ({result.summary()})")
    if result.wall >= requests * delay * 0.75:
        raise CaseFailed(f"{requests} requests of {delay:g} s in {requests} server threads took "
                         f"{result.wall:.2f} s, one after another: does every request wait for the one before it "
                         "(a lock around the loop, one shared loop)? Each request's thread can run its own loop",
                         expected=f"< {requests * delay * 0.75:g} s", got=f"{result.wall:.2f} s")


# --- 10.3 adapter_verdict ---------------------------------------------------------------------------------------------

VERDICTS = ("true", "half true", "false")

adapter_verdict = Exercise(
    "10.3", "A verdict from your measurements",
    points=3,
    answer="a function adapter_verdict(figures) returning 'true', 'half true', 'false', or None",
    params=1,
    timeout=5.0,
    hints=[
        "The claim is \"wrapping a WSGI app in an adapter makes it concurrent\". An adapter ran the requests "
        "concurrently when its wall time is less than half of requests x delay_s (all in turn would take "
        "requests x delay_s; all at once about one delay). Compare each adapter with that line, not the two "
        "adapters with each other, and not with a fixed number of seconds.",
        "Both concurrent: 'true'; neither: 'false'; one of them: 'half true'. Figures that are None, or have no "
        "wall time for \"WsgiToAsgi\" or \"a2wsgi\" (that demo was not run), give None. Other keys may be there: "
        "ignore them.",
        "if not figures or not {\"WsgiToAsgi\", \"a2wsgi\"} <= set(figures.get(\"wall_s\", {})): return None\n"
        "line = figures[\"requests\"] * figures[\"delay_s\"] / 2\n"
        "fast = sum(figures[\"wall_s\"][name] < line for name in (\"WsgiToAsgi\", \"a2wsgi\"))\n"
        "return {2: \"true\", 1: \"half true\", 0: \"false\"}[fast]",
    ],
)


def _verdict(figures):
    if not figures or not {"WsgiToAsgi", "a2wsgi"} <= set(figures.get("wall_s", {})):
        return None
    line = figures["requests"] * figures["delay_s"] / 2
    fast = sum(figures["wall_s"][name] < line for name in ("WsgiToAsgi", "a2wsgi"))
    return {2: "true", 1: "half true", 0: "false"}[fast]


def _figures(requests, delay, asgiref, a2wsgi, **more):
    return {"requests": requests, "delay_s": delay, "wall_s": {"WsgiToAsgi": asgiref, "a2wsgi": a2wsgi}, **more}


def _judge(answer, cases, what):
    for figures in cases:
        expected = _verdict(figures)
        try:
            got = answer(figures)
        except Exception as error:
            raise CaseFailed(f"adapter_verdict({short_repr(figures, 200)}) raised {type(error).__name__}: "
                             f"{error}. {what}") from None
        if got != expected:
            raise CaseFailed(f"adapter_verdict({short_repr(figures, 200)}): {what}", expected=expected, got=got)


@adapter_verdict.case("4 requests of 1 s: 4.0 s is in turn, 1.0 s at once; one of each is half true")
def _(answer):
    _judge(answer, [_figures(4, 1, 4.01, 1.01), _figures(4, 1, 1.02, 1.01), _figures(4, 1, 4.02, 4.01)],
           "each adapter is concurrent when its wall time is under half of requests x delay_s: both 'true', "
           "neither 'false', one 'half true'")


@adapter_verdict.case("other sizes: the line moves with requests x delay_s, not a fixed number of seconds")
def _(answer):
    _judge(answer, [_figures(8, 0.25, 2.02, 0.26), _figures(2, 3, 6.01, 3.02), _figures(20, 0.5, 1.2, 0.52),
                    _figures(3, 0.2, 0.61, 0.62)],
           "the line is half of requests x delay_s, not a fixed number of seconds: compare each adapter's wall "
           "time with it")


@adapter_verdict.case("exactly on the line is not concurrent; extra keys are fine; no figures give None")
def _(answer):
    _judge(answer, [_figures(4, 1, 2.0, 1.99), _figures(4, 1, 4.0, 1.0, threads={"WsgiToAsgi": 1, "a2wsgi": 4})],
           "concurrent means *less than* half of requests x delay_s; other keys (threads) are ignored")
    _judge(answer, [None, {}, {"requests": 4, "delay_s": 1, "wall_s": {"a2wsgi": 1.0}},
                    {"requests": 4, "delay_s": 1}, {"requests": 4, "delay_s": 1, "threads": {"a2wsgi": 4}}],
           "without both wall times (the race was not run, or figures has no \"wall_s\" at all) there is no "
           "verdict: return None (figures.get(\"wall_s\", {}) never raises)")


# --- 10.4 choose_setup ------------------------------------------------------------------------------------------------

SETUPS = ("WSGI + threads", "ASGI", "ASGI + to_thread")

choose_setup = Exercise(
    "10.4", "Choose a set-up for an app",
    points=3,
    answer="a function choose_setup(app) returning 'WSGI + threads', 'ASGI' or 'ASGI + to_thread'",
    params=1,
    timeout=5.0,
    hints=[
        "An app needs ASGI when it has a WebSocket (WSGI has none), or more open streams at once than the "
        "threads it would have under WSGI (each open stream holds a thread), or async views (under WSGI each "
        "request still ties up a thread, with a loop of its own). Otherwise: 'WSGI + threads'.",
        "Among the ASGI answers, 'ASGI + to_thread' is for async views that make blocking calls (they would "
        "stall the loop: move them to asyncio.to_thread). Sync views under ASGI already run in threads, so "
        "blocking_calls only matters for async views. Refuse bad values with ValueError.",
        "if app[\"views\"] not in (\"sync\", \"async\") or app[\"open_streams\"] < 0 or app[\"threads\"] < 1: "
        "raise ValueError(...)\nif not (app[\"websocket\"] or app[\"open_streams\"] > app[\"threads\"] or "
        "app[\"views\"] == \"async\"):\n    return \"WSGI + threads\"\n"
        "return \"ASGI + to_thread\" if app[\"views\"] == \"async\" and app[\"blocking_calls\"] else \"ASGI\"",
    ],
)


def _setup(app):
    if not (app["websocket"] or app["open_streams"] > app["threads"] or app["views"] == "async"):
        return "WSGI + threads"
    return "ASGI + to_thread" if app["views"] == "async" and app["blocking_calls"] else "ASGI"


def _app(views="sync", websocket=False, open_streams=0, threads=20, blocking_calls=False):
    return {"views": views, "websocket": websocket, "open_streams": open_streams, "threads": threads,
            "blocking_calls": blocking_calls}


def _choose(answer, apps, what):
    for app in apps:
        expected = _setup(app)
        try:
            got = answer(dict(app))
        except ValueError as error:
            raise CaseFailed(f"choose_setup({app}) raised ValueError ({error}), but this description is valid"
                             + (": one thread is a WSGI server's smallest pool, and fine; refuse fewer than "
                                "one (threads < 1)" if app["threads"] == 1 else ""),
                             expected=expected, got="ValueError") from None
        if got != expected:
            raise CaseFailed(f"choose_setup({app}): {what}", expected=expected, got=got)


@choose_setup.case("sync views, short requests, a few streams: WSGI with threads is enough")
def _(answer):
    _choose(answer, [_app(), _app(blocking_calls=True), _app(open_streams=5), _app(open_streams=20),
                     _app(threads=1), _app(open_streams=1, threads=1)],
            "sync views with no WebSocket and no more open streams than threads need nothing but a WSGI server's "
            "threads (a blocking call holds only its own thread there; as many streams as threads fit)")


@choose_setup.case("a WebSocket, more streams than threads, or async views: ASGI")
def _(answer):
    _choose(answer, [_app(websocket=True), _app(websocket=True, blocking_calls=True), _app(open_streams=500),
                     _app(views="async"), _app(open_streams=21, threads=20), _app(open_streams=2, threads=1)],
            "a WebSocket needs ASGI (WSGI has none); more open streams than threads need it (a thread each); "
            "async views need it to be worth writing (under WSGI each still holds a thread). Sync views run in "
            "threads under ASGI, so their blocking calls need no to_thread")


@choose_setup.case("async views that make blocking calls: ASGI + to_thread")
def _(answer):
    _choose(answer, [_app(views="async", blocking_calls=True),
                     _app(views="async", blocking_calls=True, websocket=True, open_streams=1000)],
            "a blocking call in an async view stalls every request on the loop: move it to asyncio.to_thread")


@choose_setup.case("bad descriptions raise ValueError")
def _(answer):
    for app in (_app(views="both"), _app(views="Async"), _app(open_streams=-1), _app(threads=0)):
        try:
            got = answer(dict(app))
        except ValueError:
            continue
        except Exception as error:
            raise CaseFailed(f"choose_setup({app}) should raise ValueError; yours raised "
                             f"{type(error).__name__}: {error}") from None
        raise CaseFailed(f"choose_setup({app}) has a bad value: raise ValueError", expected="ValueError", got=got)

