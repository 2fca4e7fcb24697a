"""Lesson 07's exercises: the lesson's own pieces of its ASGI server (``gatewaylab.asgi``), under the lesson's names
and signatures, each checked by what it does. The lesson's code is a right answer to every one of them.

* 07.1 ``make_scope(request, server_address, client_address, state)`` gets requests parsed by the core, as the server
  parses them; its scope is held to the www spec key by key, then it builds every scope of the lesson's server
  (:class:`YourServer`), which serves a Starlette app under lesson 06's validator and meets the probe.
* 07.2 ``RequestBody(reader, length, max_body, timeout)`` reads from a ``StreamReader`` fed by hand, piece by piece,
  with a request pipelined behind the body; then it reads every body of the lesson's server.
* 07.3 ``receive(self)`` (with ``next_piece(self)`` beside it, or the lesson's), 07.4 ``send(self, message)`` (with
  ``send_body(self, body, more_body)``, or the lesson's) and 07.5 ``finish(self, failed)`` replace those methods of the
  lesson's ``Exchange``: the lesson's server runs apps that read bodies, long-poll, send events out of order, fail
  early and late, and meet strict clients (h11) and the probe.
* 07.6 ``Lifespan(app, mode)`` runs lifespan scopes by hand, then in the lesson's server.

By hand, an answer runs in a fresh event loop (``asyncio.run``) in the case's own thread, with a deadline on the loop
and the grading's time limit on the thread. A server runs in a thread of its own and is stopped (its thread stopped
too, if the answer blocks its loop) before the case returns. Every client socket has a deadline (gatewaylab.wire).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import socket
import threading
import time

from gatewaylab import asgi, http1, probe
from gatewaylab.asgi_validate import ASGIValidationError, validator
from gatewaylab.grading import CaseFailed, Exercise, expect_equal, is_stub, short_repr, stop_thread
from gatewaylab.wire import Connection, request
from gatewaylab.wsgi import ClientDisconnected

DEADLINE = 3.0  # seconds a call by hand, or a request, may take beyond what the case expects
SERVER_TIMEOUT = 1.0  # the timeout of the check's servers: a silent client is dropped after a second
SERVER_ADDRESS, CLIENT_ADDRESS = ("127.0.0.1", 8000), ("127.0.0.1", 50123)
SERVER_CASE = 20.0  # a case that starts the server and sends it several requests


# --- The lesson's server, with the learner's pieces -------------------------------------------------------------

class YourConnection(asgi.Connection):
    """The lesson's Connection; each request gets the server's scope maker and Exchange class (the learner's)."""

    async def respond(self, request):
        server = self.server
        try:
            exchange = server.exchange_class(self, request, http1.request_body_length(request, server.max_body))
            scope = server.scope_maker(request, server.server_address, self.client_address, server.state)
        except http1.HTTPError:
            raise
        except Exception as error:
            server.errors.append(error)
            raise
        return await exchange.run(server.app, scope)


class YourServer(asgi.ASGIServer):
    """The lesson's ASGIServer with the learner's pieces in it: make_scope (07.1), RequestBody (07.2), Exchange's
    methods (07.3-07.5), Lifespan (07.6). `errors` keeps what the learner's pieces raised."""

    def __init__(self, app, *, scope_maker=asgi.make_scope, exchange_class=asgi.Exchange,
                 lifespan_class=asgi.Lifespan, **options):
        options.setdefault("timeout", SERVER_TIMEOUT)
        options.setdefault("grace", 1.0)
        super().__init__(app, "127.0.0.1", 0, **options)
        self.scope_maker, self.exchange_class, self.lifespan_class = scope_maker, exchange_class, lifespan_class
        self.errors = []

    async def connected(self, reader, writer):
        connection = YourConnection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            pass
        finally:
            self.connections.discard(connection)

    async def serve(self, on_ready=None):
        # The lesson's serve(), with the lifespan class the learner wrote.
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        lifespan = self.lifespan_class(self.app, self.lifespan)
        try:
            await lifespan.startup()
        except BaseException:
            self.socket.close()
            await asyncio.wait_for(lifespan.shutdown(0), DEADLINE)
            raise
        self.state = lifespan.state
        server = await self.loop.create_server(
            lambda: asyncio.StreamReaderProtocol(asgi.Stream(http1.MAX_LINE + 2), self.connected),
            sock=self.socket, backlog=self.backlog)
        if on_ready is not None:
            on_ready()
        try:
            await self.stop_requested.wait()
        finally:
            await self.stop(server)
            await asyncio.wait_for(lifespan.shutdown(self.grace), self.grace + DEADLINE)

    def __enter__(self):
        return self.start(timeout=DEADLINE + 2)

    def __exit__(self, *exc_info):
        self.halt()

    @property
    def url(self):
        host, port = self.server_address
        return f"http://{host}:{port}"

    def halt(self):
        """Stop; if the loop does not stop (the learner's code blocks it), stop its thread and say so."""
        self.request_shutdown()
        if self.thread is None:
            return
        self.thread.join(self.grace + DEADLINE)
        if self.thread.is_alive():
            stop_thread(self.thread)
            self.socket.close()
            raise CaseFailed("the server could not stop: your code blocks its event loop (a loop that never awaits, "
                             "time.sleep, a blocking read?). Everything the server does must be awaited")


PIECES = {"make_scope": "07.1", "RequestBody": "07.2", "receive": "07.3", "next_piece": "07.3", "send": "07.4",
          "send_body": "07.4", "finish": "07.5", "Lifespan": "07.6"}


def serve_yours(app, namespace, **options):
    """The lesson's server running `app`, with every piece of yours in `namespace` (your notebook's globals()) that is
    written, and the lesson's for the others; prints which are which. Use it in a ``with`` block: it stops at the end.
    """
    yours, lessons = {}, []
    for name, exercise in PIECES.items():
        value = namespace.get(name)
        written = (inspect.isfunction(value) or inspect.isclass(value)) and not is_stub(value) \
            and getattr(value, "__module__", None) != asgi.__name__
        if written:
            yours[name] = value
        else:
            lessons.append(name)
    methods = {name: yours[name] for name in ("receive", "next_piece", "send", "send_body", "finish") if name in yours}
    exchange_class = with_methods(**methods)
    if "RequestBody" in yours:
        body_class = yours["RequestBody"]

        def __init__(self, connection, request, length):
            asgi.Exchange.__init__(self, connection, request, length)
            server = connection.server
            self.body = body_class(connection.reader, length, server.max_body, server.timeout)
        exchange_class = type("YourExchange", (exchange_class,), {"__init__": __init__})
    print("your pieces:", ", ".join(yours) or "none yet", "-- the lesson's:", ", ".join(lessons) or "none")
    return YourServer(app, scope_maker=yours.get("make_scope", asgi.make_scope), exchange_class=exchange_class,
                      lifespan_class=yours.get("Lifespan", asgi.Lifespan), **options)


class Kept(logging.Handler):
    """Keeps what the server logs while a case runs (its tracebacks would fill the learner's notebook)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


class serving:
    """``with serving(app, ...) as server:`` runs a YourServer, its log kept (not printed); a failure to start is the
    learner's to read."""

    def __init__(self, app, **pieces):
        self.server = YourServer(app, **pieces)
        self.kept = Kept()

    def __enter__(self):
        asgi.log.addHandler(self.kept)
        try:
            return self.server.start(timeout=DEADLINE + 2)
        except asgi.StartupFailed as error:
            asgi.log.removeHandler(self.kept)
            raise CaseFailed(f"the server did not start: {error}") from None
        except TimeoutError:
            asgi.log.removeHandler(self.kept)
            raise CaseFailed(f"the server did not start within {DEADLINE + 2:g} s: does the lifespan startup wait for "
                             "an answer that never comes?") from None

    def __exit__(self, *exc):
        try:
            self.server.halt()
        finally:
            asgi.log.removeHandler(self.kept)


def with_methods(**methods):
    """The lesson's Exchange with some of its methods replaced by the learner's (each must be a coroutine function:
    the app awaits receive() and send(), the server finish(), and they await the others)."""
    for name, method in methods.items():
        if not inspect.iscoroutinefunction(method):
            params = ", ".join(inspect.signature(getattr(asgi.Exchange, name)).parameters)
            raise CaseFailed(f"{name} is awaited (`await {name}(...)`), so it must be a coroutine function: write it "
                             f"as `async def {name}({params}):`, and await what it calls")
    return type("YourExchange", (asgi.Exchange,), methods)


def beside(answer, name, exercise):
    """The learner's function `name` defined beside `answer` (in the same notebook), else the lesson's."""
    value = getattr(answer, "__globals__", {}).get(name)
    if not inspect.isfunction(value) or value.__module__ == asgi.__name__:
        return getattr(asgi.Exchange, name)
    if is_stub(value):
        raise CaseFailed(f"your {name} is still the exercise stub: write it too (exercise {exercise}), or delete "
                         f"its cell to use the lesson's")
    return value


def run_loop(make, limit=DEADLINE, late=""):
    """await make() in a fresh event loop in this thread, for at most `limit` seconds."""
    async def main():
        async with asyncio.timeout(limit):
            return await make()
    try:
        return asyncio.run(main())
    except TimeoutError:
        raise CaseFailed(f"your code had not finished after {limit:g} s. {late}".rstrip()) from None


def ask(server, raw, method="GET", deadline=DEADLINE):
    """One strict (h11) request and response on a new connection; a CaseFailed with the server's errors if none."""
    connection = Connection(server.server_address, time.monotonic() + deadline)
    try:
        connection.send(raw)
        return connection.read_response(method)
    except Exception as error:  # OSError, h11's errors, a deadline: the answer was not HTTP as it should be
        raise CaseFailed(f"no valid answer to {raw.split(b' HTTP')[0].decode('latin-1')!r}: {type(error).__name__}: "
                         f"{error}{learner_errors(server)}") from None
    finally:
        connection.close()


def raw_answer(address, data, wait=1.0, deadline=DEADLINE):
    """Everything that comes back until the server closes (or nothing more comes for `wait` s), and how many seconds
    after the request the server closed (None: it did not)."""
    answer, closed = b"", None
    end = time.monotonic() + deadline
    with socket.create_connection(address, timeout=wait) as sock:
        sent = time.monotonic()
        sock.sendall(data)
        try:
            while time.monotonic() < end:
                piece = sock.recv(65536)
                if not piece:
                    closed = time.monotonic() - sent
                    break
                answer += piece
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = time.monotonic() - sent
    return answer, closed


def learner_errors(server):
    return "".join(f"; your code raised {type(e).__name__}: {e}" for e in server.errors[:2])


# --- Apps the cases serve -----------------------------------------------------------------------------------------

async def read_all(receive):
    """The whole body, and the http.request events it came in."""
    events, more = [], True
    while more:
        message = await receive()
        events.append(message)
        if message.get("type") != "http.request":
            break
        more = message.get("more_body", False)
    return b"".join(m.get("body", b"") for m in events if m.get("type") == "http.request"), events


async def answer(send, status=200, body=b"", headers=((b"content-type", b"text/plain"),)):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


send_answer = answer  # (for the apps inside a case, whose argument `answer` is the learner's)


async def echo_app(scope, receive, send):
    """The body back, with how many events it came in."""
    if scope["type"] != "http":
        raise RuntimeError("http only")
    body, events = await read_all(receive)
    await answer(send, body=body, headers=[(b"content-type", b"application/octet-stream"),
                                           (b"x-events", str(len(events)).encode())])


def starlette_site():
    """A small Starlette app whose answers show what it read from the scope (imported on first use)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def dish(request):
        return JSONResponse({"name": request.path_params["name"], "path": request.url.path,
                             "query": dict(request.query_params), "tags": request.headers.getlist("x-tag"),
                             "host": request.headers.get("host"), "client": request.client.host,
                             "url": str(request.url)})

    async def echo(request):
        body = await request.body()
        return PlainTextResponse(f"{len(body)} {body[:20].decode('latin-1')}")

    return Starlette(routes=[Route("/dish/{name}", dish), Route("/echo", echo, methods=["POST"])])


def probe_failures(server, checks):
    report = probe.probe(server.url, checks=checks)
    return [f"{r.name} (expected {r.expected}; got {r.got})" for r in report.failed]


# --- 07.1 make_scope -------------------------------------------------------------------------------------------------

scope_exercise = Exercise(
    "07.1", "Build the scope",
    points=3,
    answer="a function make_scope(request, server_address, client_address, state) that returns a dict, the lesson's",
    params=4,
    timeout=10.0,
    hints=[
        "The scope is a dict: 'type' 'http', 'asgi' {'version': '3.0', 'spec_version': '2.4'}, 'http_version' is "
        "request.version without 'HTTP/', 'method' request.method, 'scheme' 'http', 'root_path' '', 'client' and "
        "'server' the (host, port) pairs given, 'state' a shallow copy of state (dict(state)).",
        "'path' is request.path percent-decoded to a str: urllib.parse.unquote (not unquote_plus: '+' is a plus sign "
        "in a path). 'raw_path' is request.path as bytes (latin-1), 'query_string' request.query as bytes, still "
        "encoded. 'headers': [(name.lower().encode('latin-1'), value.encode('latin-1')) for name, value in "
        "request.headers]: every header line, in order, repeats too.",
        "An absolute-form target (request.target does not start with '/') names the host: when request.host differs "
        "from request.header('Host'), the headers start with (b'host', request.host.encode('latin-1')) and keep no "
        "other host. -- return {'type': 'http', 'asgi': dict(ASGI_VERSION), 'http_version': "
        "request.version.removeprefix('HTTP/'), 'method': request.method, 'scheme': 'http', 'path': "
        "unquote(request.path), 'raw_path': request.path.encode('latin-1'), 'query_string': "
        "request.query.encode('latin-1'), 'root_path': '', 'headers': headers, 'client': tuple(client_address[:2]), "
        "'server': tuple(server_address[:2]), 'state': dict(state)}",
    ],
)

GET = (b"GET /caf%C3%A9/menu?dish=cr%C3%A8me+br%C3%BBl%C3%A9e&x=1 HTTP/1.1\r\nHost: example.org:8080\r\n"
       b"User-Agent: check/1.0\r\nX-Tag: red\r\nAccept: */*\r\nx-tag: blue\r\nX-Name: caf\xe9\r\n\r\n")
OLD = b"GET /a+b%2Fc%FF HTTP/1.0\r\nUser-Agent: old\r\n\r\n"  # HTTP/1.0, no Host; '+' is a plus; %FF is no UTF-8
ABSOLUTE = b"GET http://shop.example:8080/x?y=1 HTTP/1.1\r\nHost: other.example\r\nAccept: */*\r\n\r\n"
REQUIRED = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string", "root_path",
            "headers", "client", "server", "state")


def parsed(raw):
    return http1.parse_request(io.BytesIO(raw))


def plain_function(make_scope):
    """The server calls make_scope without await: a coroutine function would give it a coroutine, never a scope."""
    if inspect.iscoroutinefunction(make_scope):
        raise CaseFailed("make_scope must be a plain function (def, not async def): the server calls it without "
                         "await, as it calls the core's parse_request; it waits for nothing")


def your_scope(make_scope, raw, state=None):
    plain_function(make_scope)
    scope = make_scope(parsed(raw), SERVER_ADDRESS, CLIENT_ADDRESS, {} if state is None else state)
    if not isinstance(scope, dict):
        raise CaseFailed("make_scope must return the scope, a dict", got=short_repr(scope, 80))
    missing = [key for key in REQUIRED if key not in scope]
    if missing:
        raise CaseFailed(f"the scope lacks {missing}: the www spec's http scope has {list(REQUIRED)}")
    return scope


def pairs(headers):
    try:
        return [tuple(pair) for pair in headers]
    except TypeError:
        raise CaseFailed("scope['headers'] must be a list of (name, value) pairs",
                         got=short_repr(headers, 100)) from None


def check_headers(got, expected):
    got = pairs(got)
    if any(not (isinstance(n, bytes) and isinstance(v, bytes)) for n, v in got):
        raise CaseFailed("each header is a pair of bytes: name.lower().encode('latin-1'), value.encode('latin-1')",
                         got=short_repr(got, 120))
    if any(n != n.lower() for n, _ in got):
        raise CaseFailed("header names lower-case in the scope, as the www spec recommends (\"should be "
                         "lowercased\") and as the lesson's server gives them; frameworks look them up lower-case "
                         "(Starlette's request.headers does): name.lower()", got=short_repr(got, 120))
    if len(got) < len(expected):
        raise CaseFailed("a header sent twice (X-Tag: red, x-tag: blue) must stay two pairs: keep every header line, "
                         "repeats too, never joined or merged (a dict keeps only one)",
                         expected=expected, got=got)
    if sorted(got) == sorted(expected) and got != expected:
        raise CaseFailed("the headers must stay in the order they came", expected=expected, got=got)
    for (name, value), (_, wanted) in zip(got, expected):
        if value != wanted and value == wanted.decode("latin-1").encode("utf-8"):
            raise CaseFailed(f"header values are the bytes the client sent: value.encode('latin-1'), which undoes "
                             f"the core's decoding (one latin-1 character per byte). UTF-8 (.encode()) turns a byte "
                             f"such as \\xe9 into two: {name.decode()}: caf\\xe9 must reach the app as "
                             f"b'caf\\xe9'", expected=(name, wanted), got=(name, value))
    expect_equal(got, expected, "scope['headers']")


@scope_exercise.case("a GET: every key the spec asks for; path decoded, query_string not, headers as sent")
def _(answer):
    scope = your_scope(answer, GET)
    course = asgi.make_scope(parsed(GET), SERVER_ADDRESS, CLIENT_ADDRESS, {})
    expect_equal(scope["type"], "http", "scope['type']")
    asgi_key = scope["asgi"]
    if not (isinstance(asgi_key, dict) and asgi_key.get("version") == "3.0"):
        raise CaseFailed("scope['asgi'] is a dict with 'version' '3.0' (and 'spec_version', the HTTP spec's)",
                         expected=course["asgi"], got=asgi_key)
    if asgi_key is asgi.ASGI_VERSION or asgi_key is your_scope(answer, GET)["asgi"]:
        raise CaseFailed("scope['asgi'] must be a dict of its own in each scope (dict(ASGI_VERSION)): given the "
                         "module's ASGI_VERSION itself, every scope shares one dict, and an app that changes its "
                         "scope changes every later request's")
    if scope["http_version"] == "HTTP/1.1":
        raise CaseFailed("http_version is '1.1', without 'HTTP/': request.version.removeprefix('HTTP/')",
                         expected="1.1", got=scope["http_version"])
    for key in ("http_version", "method", "scheme", "root_path"):
        expect_equal(scope[key], course[key], f"scope[{key!r}]")
    if scope["path"] == "/caf%C3%A9/menu":
        raise CaseFailed("path must be percent-decoded: unquote(request.path) makes '/caf%C3%A9/menu' '/café/menu'",
                         expected="/café/menu", got=scope["path"])
    expect_equal(scope["path"], "/café/menu", "scope['path']")
    expect_equal(scope["raw_path"], b"/caf%C3%A9/menu", "scope['raw_path'] (the path as sent, as bytes, no query)")
    if isinstance(scope["query_string"], bytes) and scope["query_string"] != course["query_string"]:
        raise CaseFailed("query_string stays as the client sent it, still percent-encoded (the framework decodes "
                         "it): request.query.encode('latin-1')", expected=course["query_string"],
                         got=scope["query_string"])
    expect_equal(scope["query_string"], course["query_string"], "scope['query_string']")
    check_headers(scope["headers"], course["headers"])
    for key, address in (("client", CLIENT_ADDRESS), ("server", SERVER_ADDRESS)):
        try:
            expect_equal(tuple(scope[key]), address, f"scope[{key!r}]")
        except TypeError:
            raise CaseFailed(f"scope[{key!r}] is a (host, port) pair", expected=address, got=scope[key]) from None


@scope_exercise.case("state is a shallow copy of the lifespan's: a dict of its own, the same objects in it")
def _(answer):
    shared = {"visits": [], "db": object()}
    scope = your_scope(answer, GET, shared)
    state = scope["state"]
    if state is shared:
        raise CaseFailed("scope['state'] must be a copy of the state (dict(state)): given the lifespan's own dict, "
                         "one request's changes would reach every later request")
    if not isinstance(state, dict) or state.keys() != shared.keys():
        raise CaseFailed("scope['state'] is a copy of the state given", expected=list(shared), got=short_repr(state))
    if state["visits"] is not shared["visits"]:
        raise CaseFailed("a *shallow* copy (dict(state)): the objects in the state stay the lifespan's, shared by the "
                         "requests; a deep copy gives each request its own, and a list kept there counts nothing")


@scope_exercise.case("HTTP/1.0 without Host, a '+' and a bad %FF in the path, an absolute-form target")
def _(answer):
    scope = your_scope(answer, OLD)
    expect_equal(scope["http_version"], "1.0", "scope['http_version'] of an HTTP/1.0 request")
    if scope["path"] == "/a b/c\ufffd":
        raise CaseFailed("a '+' in a path is a plus sign: use unquote, not unquote_plus (only form-encoded query "
                         "strings use '+' for a space)", expected="/a+b/c\ufffd", got=scope["path"])
    expect_equal(scope["path"], "/a+b/c\ufffd", "scope['path'] for /a+b%2Fc%FF (%FF is no UTF-8: U+FFFD)")
    expect_equal(pairs(scope["headers"]), [(b"user-agent", b"old")], "scope['headers'] (HTTP/1.0, no Host)")
    scope = your_scope(answer, ABSOLUTE)
    expect_equal((scope["path"], scope["raw_path"], scope["query_string"]), ("/x", b"/x", b"y=1"),
                 "(path, raw_path, query_string) of http://shop.example:8080/x?y=1")
    wanted = [(b"host", b"shop.example:8080"), (b"accept", b"*/*")]
    if pairs(scope["headers"]) != wanted:
        raise CaseFailed("an absolute-form target names the host (RFC 9112 3.2.2): request.host replaces the Host "
                         "header, first in the list, and no other host stays", expected=wanted,
                         got=pairs(scope["headers"]))


@scope_exercise.case("in the lesson's server: Starlette, under the validator, and the probe's path and query",
                     timeout=SERVER_CASE)
def _(answer):
    errors = []

    async def checked(scope, receive, send):
        try:
            await validator(site)(scope, receive, send)
        except ASGIValidationError as error:
            errors.append(error)
            raise

    plain_function(answer)
    site = starlette_site()
    with serving(checked, scope_maker=answer, lifespan="off") as server:
        target = "/dish/cr%C3%A8me%20br%C3%BBl%C3%A9e?size=large&note=a%2Bb"
        reply = ask(server, request("GET", target, [("X-Tag", "red"), ("X-Tag", "blue")]))
        if errors:
            raise CaseFailed(f"the ASGI validator, on your scope: {errors[0]}")
        if reply.status != 200:
            raise CaseFailed(f"Starlette answered {reply.status}{learner_errors(server)}", got=reply.body[:200])
        got = json.loads(reply.body)
        wanted = {"name": "crème brûlée", "query": {"size": "large", "note": "a+b"}, "tags": ["red", "blue"],
                  "host": "probe"}
        seen = {key: got.get(key) for key in wanted}
        if seen != wanted:
            raise CaseFailed("Starlette read the request from your scope: its route parameter (from path), its query "
                             "(from query_string, which it decodes), both X-Tag headers and Host",
                             expected=wanted, got=seen)
    with serving(asgi_probe_app(), scope_maker=answer, lifespan="off") as server:
        failed = probe_failures(server, ["query string", "percent-encoded path", "GET /"])
    if failed:
        raise CaseFailed("the probe, on the lesson's server with your make_scope: " + "; ".join(failed))


def asgi_probe_app():
    return probe.probe_asgi_app


# --- 07.2 RequestBody ------------------------------------------------------------------------------------------------

body_exercise = Exercise(
    "07.2", "RequestBody: the body as it arrives",
    points=3,
    answer="a class RequestBody(reader, length, max_body, timeout) with read() (async) and done, the lesson's",
    params=4,
    timeout=15.0,
    hints=[
        "__init__ keeps the reader and the timeout; self.left = length (bytes still to come; None for chunked) and "
        "self.chunks = ChunkedBody(max_body) when length is None. done is a @property: self.chunks.done for a "
        "chunked body, else self.left == 0.",
        "read(): with a length, `await self.reader.read(min(self.left, PIECE))`: what has arrived, never more than is "
        "left of the body (what follows is the next request), never more than PIECE. If it gives b'' while bytes "
        "are still due, the client closed: raise ClientDisconnected. Wrap the wait in `async with "
        "asyncio.timeout(self.timeout)`, and turn TimeoutError and OSError into ClientDisconnected too.",
        "A chunked body: loop while not self.chunks.done: kind, size = self.chunks.next_read(); data = "
        "self.chunks.feed(await read_line(self.reader, size) if kind == LINE else await read_exactly(self.reader, "
        "size)); if data: return data -- and return b'' at the end. (The core raises HTTPError 400 or 413 itself.) "
        "Then self.left -= len(data) for a body with a length.",
    ],
)


def body_of(answer, reader, length, max_body=http1.MAX_BODY, timeout=1.0):
    body = answer(reader, length, max_body, timeout)
    for name in ("read", "done"):
        if not hasattr(body, name):
            raise CaseFailed(f"a RequestBody has `{name}`, as the lesson's has", got=short_repr(body, 80))
    if not isinstance(body.done, bool):
        raise CaseFailed("done is a property (@property def done(self)), so that body.done is True or False",
                         got=short_repr(body.done, 80))
    if not inspect.iscoroutinefunction(type(body).read):
        raise CaseFailed("read() is a coroutine (async def read(self)): it awaits the stream")
    return body


RESET = "reset"  # as a piece for later(): the client resets the connection


def later(reader, pieces):
    """Feed (delay, bytes) pieces into reader, each after its delay; None as bytes: the client closes; RESET: it
    resets the connection (the reader's next read raises ConnectionResetError, as asyncio's does)."""
    async def feed():
        for delay, data in pieces:
            await asyncio.sleep(delay)
            if data is None:
                reader.feed_eof()
            elif data == RESET:
                reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
            else:
                reader.feed_data(data)
    return asyncio.ensure_future(feed())


async def read_through(body, limit=50):
    """[(seconds, piece)] until done (at most `limit` reads)."""
    started, got = time.monotonic(), []
    for _ in range(limit):
        if body.done:
            return got
        got.append((time.monotonic() - started, await body.read()))
        if got[-1][1] == b"" and not body.done:
            raise CaseFailed("read() returned b'' while the body goes on (done is False). b'' means the end of the "
                             "body: an app stops reading there, and finish(), which reads and drops what the app "
                             "left, would leave the rest to pass for the next request. A chunked body's size line "
                             "or CRLF gives no bytes: in next_chunk, loop (while not self.chunks.done) until the "
                             "decoder gives bytes, and return b'' only at the end",
                             got=short_repr([piece for _, piece in got], 120))
    raise CaseFailed(f"after {limit} reads, done is still False: read() keeps returning "
                     f"{short_repr([p for _, p in got[-3:]], 80)}")


NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


@body_exercise.case("a body with a Content-Length, in 3 pieces 0.2 s apart: each read() gives what has arrived")
def _(answer):
    async def run():
        reader = asyncio.StreamReader()
        body = body_of(answer, reader, 15)
        reader.feed_data(b"aaaaa")
        feeding = later(reader, [(0.2, b"bbbbb"), (0.2, b"ccccc" + NEXT)])
        started, got = time.monotonic(), []
        while not body.done and len(got) < 20:
            got.append((time.monotonic() - started, await body.read()))
            if sum(len(piece) for _, piece in got) > 15:
                raise CaseFailed("read() took bytes past the body's end (15 bytes): the request pipelined after "
                                 "it lost them. Read at most min(self.left, PIECE) bytes",
                                 got=short_repr(b"".join(piece for _, piece in got), 80))
        await feeding
        rest = await asyncio.wait_for(reader.read(100), 0.5) if reader._buffer else b""
        return got, rest, await body.read()
    got, rest, after = run_loop(run, late="Read what has arrived: await self.reader.read(n), which returns as "
                                          "soon as some bytes are there.")
    joined = b"".join(piece for _, piece in got)
    if rest != NEXT:
        raise CaseFailed("read() took bytes past the body's end: the request pipelined after it lost them. Read at "
                         "most min(self.left, PIECE) bytes", expected=NEXT, got=rest)
    expect_equal(joined, b"aaaaabbbbbccccc", "the body read")
    if got[0][0] > 0.1 or len([p for _, p in got if p]) < 2:
        raise CaseFailed("the first read() should return at once with what had arrived (b'aaaaa'), not wait for the "
                         "whole body: reader.read(n), not readexactly", got=short_repr(got, 120))
    expect_equal(after, b"", "read() after the end of the body")


@body_exercise.case("a 1 MB body, all there already: no read() gives more than PIECE (64 KiB) bytes")
def _(answer):
    async def run():
        reader = asyncio.StreamReader(limit=2 ** 21)
        reader.feed_data(b"x" * 1_000_000)
        body = body_of(answer, reader, 1_000_000)
        return [len(piece) for _, piece in await read_through(body, limit=100)]
    sizes = run_loop(run)
    if max(sizes) > http1.PIECE:
        raise CaseFailed(f"a read() gave {max(sizes)} bytes at once: never more than PIECE ({http1.PIECE}), so that a "
                         "big body is never held whole in memory: min(self.left, PIECE)", got=max(sizes))
    expect_equal(sum(sizes), 1_000_000, "the bytes read in all")


@body_exercise.case("a chunked body: its pieces as they come, the trailer skipped; a broken chunk is a 400, a "
                    "chunked body beyond max_body a 413")
def _(answer):
    async def run():
        reader = asyncio.StreamReader()
        body = body_of(answer, reader, None)
        reader.feed_data(b"4\r\nWiki\r\n")
        feeding = later(reader, [(0.2, b"5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n" + NEXT)])
        got = await read_through(body)
        await feeding
        return b"".join(p for _, p in got), got[0][0], await asyncio.wait_for(reader.read(100), 0.5)
    joined, first, rest = run_loop(run, late="A chunked body (length None) is read with the core's ChunkedBody: "
                                             "next_read(), then feed() what was read.")
    expect_equal(joined, b"Wikipedia", "the chunked body read")
    expect_equal(rest, NEXT, "what is left on the stream after the body (the next request)")
    for raw, status, why in ((b"zz\r\n", 400, "a chunk size that is not hex"),
                             (b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n", 413, "2048 bytes with max_body 1000")):
        async def broken(raw=raw):
            reader = asyncio.StreamReader()
            reader.feed_data(raw)
            reader.feed_eof()
            body = body_of(answer, reader, None, max_body=1000)
            try:
                await read_through(body)
            except http1.HTTPError as error:
                return error.status
            return None
        got = run_loop(broken)
        if got != status:
            advice = " (give max_body to ChunkedBody(max_body))" if status == 413 else ""
            raise CaseFailed(f"{why}: read() should raise the core's HTTPError({status}){advice}",
                             expected=status, got=got)


@body_exercise.case("a client that closes half-way, resets the connection, or goes silent for the timeout, raises "
                    "ClientDisconnected")
def _(answer):
    for what, pieces, timeout in (("closes", [(0.0, None)], 5.0), ("resets the connection", [(0.0, RESET)], 5.0),
                                  ("goes silent", [], 0.3)):
        async def run(pieces=pieces, timeout=timeout):
            reader = asyncio.StreamReader()
            reader.feed_data(b"12345")
            body = body_of(answer, reader, 20, timeout=timeout)
            feeding = later(reader, pieces)
            started = time.monotonic()
            try:
                await read_through(body, limit=10)
            except ClientDisconnected:
                return time.monotonic() - started
            except OSError as error:  # (a ClientDisconnected is one too: caught above)
                return error
            finally:
                feeding.cancel()
            return None
        try:
            took = run_loop(run, limit=2.0, late=f"A client that {what} half-way through its body: wait at most "
                                                 "self.timeout seconds (asyncio.timeout), then raise "
                                                 "ClientDisconnected.")
        except CaseFailed as failure:
            if "done is still False" in failure.message or "while the body goes on" in failure.message:
                raise CaseFailed(f"the client {what} after 5 of 20 bytes, and read() kept returning b'': an app would "
                                 "ask for ever. When read() gives b'' while bytes are still due, raise "
                                 "ClientDisconnected") from None
            raise
        if isinstance(took, OSError):
            raise CaseFailed(f"the client reset the connection after 5 of 20 bytes, and read() let "
                             f"{type(took).__name__} through: the app would crash on it instead of hearing "
                             "http.disconnect. Turn an OSError from the stream into ClientDisconnected too (except "
                             "OSError as error: raise ClientDisconnected(...) from error)", got=repr(took))
        if took is None:
            raise CaseFailed(f"the client {what} after 5 of 20 bytes: read() should raise ClientDisconnected")
        if what == "goes silent" and took > 1.0:
            raise CaseFailed(f"with timeout 0.3 s, a silent client should be given up after about 0.3 s, not "
                             f"{took:.1f} s", expected="about 0.3 s", got=f"{took:.2f} s")


@body_exercise.case("in the lesson's server: bodies with a Content-Length and chunked, pipelined, to Starlette",
                    timeout=SERVER_CASE)
def _(answer):
    class Bodies(asgi.Exchange):
        def __init__(self, connection, request, length):
            super().__init__(connection, request, length)
            server = connection.server
            self.body = answer(connection.reader, length, server.max_body, server.timeout)

    with serving(starlette_site(), exchange_class=Bodies, lifespan="off") as server:
        big = bytes(range(256)) * 400
        pipelined = (request("POST", "/echo", [("Content-Length", "5")], b"hello")
                     + request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                               b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
                     + request("POST", "/echo", [("Content-Length", str(len(big)))], big))
        connection = Connection(server.server_address, time.monotonic() + DEADLINE)
        try:
            connection.send(pipelined)
            bodies = [connection.read_response("POST").body for _ in range(3)]
        except Exception as error:
            raise CaseFailed(f"three POSTs pipelined to Starlette got no valid answers: {type(error).__name__}: "
                             f"{error}{learner_errors(server)}") from None
        finally:
            connection.close()
    wanted = [b"5 hello", b"7 abcdefg", f"{len(big)} ".encode() + big[:20]]
    if bodies != wanted:
        raise CaseFailed("Starlette should read each body whole: the lesson's Exchange hands your read()'s pieces on "
                         "as http.request events", expected=wanted, got=bodies)


# --- 07.3 receive ------------------------------------------------------------------------------------------------------

receive_exercise = Exercise(
    "07.3", "receive(): the body, then http.disconnect",
    points=3,
    answer="an async function receive(self), Exchange's (with your next_piece(self) beside it, or the lesson's)",
    params=1,
    timeout=SERVER_CASE,
    hints=[
        "receive() has two parts. While the app has not had the whole body (not self.body_given) and the exchange is "
        "not over (not self.over.is_set()), it returns the next http.request event: `return await self.next_piece()`. "
        "After that, it waits until the response is complete or the client has gone (`await self.until_over()`) and "
        "returns {'type': 'http.disconnect'}. Hold `self.reading` (async with) around it all: one read at a time.",
        "next_piece(): send CONTINUE first if self.continue_due (and no head has gone out: self.framing is None), "
        "setting continue_due False; data = await self.body.read(); self.body_given = self.body.done; return "
        "{'type': 'http.request', 'body': data, 'more_body': not self.body.done}.",
        "In receive(): try: return await self.next_piece() -- except HTTPError as error: self.refused = error (a "
        "broken chunked body, answered after the app) -- except ClientDisconnected: pass -- then self.hang_up(), so "
        "the app hears http.disconnect at once and send() raises.",
    ],
)


def receive_exchange(answer):
    return with_methods(receive=answer, next_piece=beside(answer, "next_piece", "07.3"))


class Recorder:
    """An app that records what receive() gave it (and when), in a list per request."""

    def __init__(self, after_body=None):
        self.requests, self.after_body = [], after_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        events, started = [], time.monotonic()
        self.requests.append(events)
        more = True
        while more:
            message = await receive()
            events.append((time.monotonic() - started, message))
            more = message.get("type") == "http.request" and message.get("more_body", False)
        if self.after_body is not None:
            await self.after_body(receive, send, events, started)


def kinds(events):
    return [(m.get("type"), len(m.get("body", b"")), m.get("more_body")) if m.get("type") == "http.request"
            else m.get("type") for _, m in events]


async def respond_then_listen(receive, send, events, started):
    await answer(send, body=b"ok")
    try:
        message = await asyncio.wait_for(receive(), 2.0)
    except TimeoutError:
        message = {"type": "(nothing within 2 s)"}
    events.append((time.monotonic() - started, message))


@receive_exercise.case("a chunked body sent a chunk at a time: one http.request per piece, more_body True until the "
                       "last; then, after the response, http.disconnect")
def _(answer):
    app = Recorder(respond_then_listen)
    with serving(app, exchange_class=receive_exchange(answer), lifespan="off") as server:
        connection = Connection(server.server_address, time.monotonic() + DEADLINE + 2)
        try:
            connection.send(request("POST", "/", [("Transfer-Encoding", "chunked")]))
            for piece in (b"4\r\nabcd\r\n", b"3\r\nefg\r\n", b"1\r\nh\r\n0\r\n\r\n"):
                time.sleep(0.15)
                connection.send(piece)
            reply = connection.read_response("POST")
        except Exception as error:
            raise CaseFailed(f"no answer to a chunked POST: {type(error).__name__}: {error}"
                             f"{learner_errors(server)}") from None
        finally:
            connection.close()
        time.sleep(0.1)
    events = app.requests[0] if app.requests else []
    requests = [m for _, m in events if m.get("type") == "http.request"]
    ended = next((i for i, m in enumerate(requests) if m.get("more_body") is not True), len(requests))
    if requests[ended + 1:] and requests[0].get("more_body") is True:
        raise CaseFailed("after the body's last http.request (more_body False), receive() says http.disconnect once "
                         "the response is complete: never another http.request", got=kinds(events))
    body = b"".join(m.get("body", b"") for m in requests)
    if requests and requests[0].get("more_body") is not True and len(requests[0].get("body", b"")) < 8:
        raise CaseFailed("the first http.request carried only part of the body, yet said more_body "
                         f"{requests[0].get('more_body')!r}: the app stopped reading there. more_body is True while "
                         "the body goes on: not self.body.done", got=kinds(events))
    if body != b"abcdefgh":
        raise CaseFailed("the app should get the whole body, abcdefgh, in http.request events", got=kinds(events))
    flags = [m.get("more_body") for m in requests]
    if len(requests) < 3 or flags[-1] is not False or not all(flag is True for flag in flags[:-1]):
        raise CaseFailed("the body arrived in three pieces: each goes to the app as it comes, more_body True on all "
                         "but the last (more_body: not self.body.done)", got=kinds(events))
    last = events[-1][1]
    if last.get("type") != "http.disconnect":
        raise CaseFailed("after the body, and once the response is complete, receive() says http.disconnect "
                         "(never another http.request)", expected="http.disconnect", got=kinds(events)[-1])
    expect_equal(reply.status, 200, "the response's status")


@receive_exercise.case("a GET: one http.request, empty, more_body False")
def _(answer):
    app = Recorder(respond_then_listen)
    with serving(app, exchange_class=receive_exchange(answer), lifespan="off") as server:
        ask(server, request("GET", "/"))
        time.sleep(0.1)
    events = kinds(app.requests[0]) if app.requests else []
    if events[:1] != [("http.request", 0, False)] or events[1:] != ["http.disconnect"]:
        raise CaseFailed("a GET has no body: one http.request with body b'' and more_body False, then (after the "
                         "response) http.disconnect", expected=[("http.request", 0, False), "http.disconnect"],
                         got=events)


async def answers_first(scope, receive, send):
    """Answers without reading the body, then asks receive() (records what it got in scope's `heard`)."""
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await answer(send, body=b"ok")
    try:
        message = await asyncio.wait_for(receive(), 1.0)
    except TimeoutError:
        message = {"type": "(nothing within 1 s)"}
    HEARD.append(message)


HEARD = []  # what answers_first heard


@receive_exercise.case("an app that answers before it reads the body, then calls receive(), hears http.disconnect; "
                       "two tasks of one app may call receive() at once")
def _(answer):
    HEARD.clear()
    with serving(answers_first, exchange_class=receive_exchange(answer), lifespan="off") as server:
        ask(server, request("POST", "/", [("Content-Length", "5")], b"hello"))
        end = time.monotonic() + 2.0
        while not HEARD and time.monotonic() < end:
            time.sleep(0.02)
    heard = HEARD[0] if HEARD else {"type": "(nothing)"}
    if heard.get("type") != "http.disconnect":
        raise CaseFailed("the app's response was complete, then it called receive(): after the response was "
                         "complete, receive() says http.disconnect (www spec: 'if receive is called after a response "
                         "has been sent'), never the body. Read only while `not (self.body_given or "
                         "self.over.is_set())`", expected={"type": "http.disconnect"}, got=short_repr(heard, 100))

    async def two_readers(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        events = list(await asyncio.gather(receive(), receive()))
        while events[-1].get("type") == "http.request" and events[-1].get("more_body"):
            events.append(await receive())
        await send_answer(send, body=b"".join(m.get("body", b"") for m in events))

    with serving(two_readers, exchange_class=receive_exchange(answer), lifespan="off") as server:
        connection = Connection(server.server_address, time.monotonic() + DEADLINE + 2)
        try:
            connection.send(request("POST", "/", [("Transfer-Encoding", "chunked")]))
            for piece in (b"4\r\nabcd\r\n", b"3\r\nefg\r\n", b"1\r\nh\r\n0\r\n\r\n"):
                time.sleep(0.15)
                connection.send(piece)
            reply = connection.read_response("POST")
        except Exception as error:
            raise CaseFailed(f"no answer to a chunked POST: {type(error).__name__}: {error}"
                             f"{learner_errors(server)}") from None
        finally:
            connection.close()
    if (reply.status, reply.body) != (200, b"abcdefgh"):
        raise CaseFailed("two tasks of the app called receive() at once (asyncio.gather), while the body was still "
                         "coming: asyncio's StreamReader lets one coroutine at a time wait on it (the second one "
                         "gets RuntimeError), and the app failed. Let one read at a time: hold the lock around "
                         "receive()'s reading, `async with self.reading:`", expected=(200, b"abcdefgh"),
                         got=(reply.status, reply.body[:60]))


@receive_exercise.case("a long poll: http.disconnect comes when the client leaves (0.4 s), not before, not never")
def _(answer):
    async def poll(receive, send, events, started):
        message = await receive()  # the client leaves after 0.4 s: then, and not before
        events.append((time.monotonic() - started, message))

    app = Recorder(poll)
    with serving(app, exchange_class=receive_exchange(answer), lifespan="off") as server:
        with socket.create_connection(server.server_address, timeout=DEADLINE) as sock:
            sock.sendall(request("GET", "/poll"))
            time.sleep(0.4)
        left = time.monotonic()
        while len(app.requests and app.requests[0]) < 2 and time.monotonic() < left + 2.0:
            time.sleep(0.02)
    events = app.requests[0] if app.requests else []
    if len(events) < 2:
        raise CaseFailed("the client left 0.4 s into a long poll, but receive() never said http.disconnect: after "
                         "the body, wait until the response is over or the client gone (await self.until_over()), "
                         "then return {'type': 'http.disconnect'}", got=kinds(events))
    at, message = events[1]
    if message.get("type") != "http.disconnect":
        raise CaseFailed("after the body, receive() gives http.disconnect, nothing else", got=kinds(events))
    if at < 0.3:
        raise CaseFailed(f"receive() said http.disconnect after {at:.2f} s, while the client was still there and no "
                         "response had gone out: wait (await self.until_over()) until the response is complete or the "
                         "client has gone", expected="about 0.4 s", got=f"{at:.2f} s")
    if at > 1.5:
        raise CaseFailed(f"the client left after 0.4 s; receive() noticed after {at:.2f} s: until_over() looks every "
                         "POLL seconds", expected="within a second", got=f"{at:.2f} s")


@receive_exercise.case("a broken chunked body: the app hears http.disconnect, and the client gets 400")
def _(answer):
    app = Recorder()
    with serving(app, exchange_class=receive_exchange(answer), lifespan="off") as server:
        data, _closed = raw_answer(server.server_address, request("POST", "/", [("Transfer-Encoding", "chunked")],
                                                                 b"3\r\nabc\r\nzz\r\n"), wait=1.5)
    events = kinds(app.requests[0]) if app.requests else []
    if events[-1:] != ["http.disconnect"]:
        raise CaseFailed("a broken chunked body ends the request: receive() catches the core's HTTPError and hangs "
                         "up (self.hang_up()), so the app hears http.disconnect", got=events)
    if not data.startswith(b"HTTP/1.1 400"):
        raise CaseFailed("the client of a broken chunked body should get the core's 400 once the app is done: "
                         "receive() must keep the core's HTTPError in self.refused (finish() answers it)",
                         got=data[:80])
    raised = []

    async def answers_anyway(receive, send, events, started):  # after its http.disconnect
        try:
            await send_answer(send, body=b"ok")
        except Exception as error:
            raised.append(error)
            raise

    with serving(Recorder(answers_anyway), exchange_class=receive_exchange(answer), lifespan="off") as server:
        data, _closed = raw_answer(server.server_address, request("POST", "/", [("Transfer-Encoding", "chunked")],
                                                                 b"zz\r\nhello\r\n0\r\n\r\n"), wait=1.5)
    if not data.startswith(b"HTTP/1.1 400") or not raised:
        raise CaseFailed("a broken chunked body (zz is no chunk size), and an app that answers once it has heard "
                         "http.disconnect: the client must get the core's 400, not the app's 200. After the core's "
                         "HTTPError, receive() hangs up (self.hang_up(): the client counts as gone, so the app's "
                         "send() raises and finish() answers 400), rather than return http.disconnect at once",
                         got=data[:80])


@receive_exercise.case("Expect: 100-continue: the client gets 100 Continue when the app first asks for the body")
def _(answer):
    app = Recorder(respond_then_listen)
    with serving(app, exchange_class=receive_exchange(answer), lifespan="off") as server:
        with socket.create_connection(server.server_address, timeout=1.0) as sock:
            sock.sendall(request("POST", "/", [("Content-Length", "5"), ("Expect", "100-continue")]))
            try:
                interim = sock.recv(1000)
            except TimeoutError:
                interim = b""
            if not interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
                raise CaseFailed("a client that sent Expect: 100-continue waits for HTTP/1.1 100 Continue before its "
                                 "body: next_piece() writes CONTINUE first when self.continue_due (then sets it False)",
                                 expected=http1.CONTINUE, got=interim[:60])
            sock.sendall(b"hello")
            final = b""
            sock.settimeout(DEADLINE)
            while b"ok" not in final:
                piece = sock.recv(1000)
                if not piece:
                    break
                final += piece
    if not final.startswith(b"HTTP/1.1 200"):
        raise CaseFailed("after 100 Continue and the body, the app's answer (200) should come",
                         got=final[:80])

    async def starts_then_reads(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await send(START)
        await send(body(b"hel", True))  # the head and a chunk have gone out
        await read_all(receive)
        await send(body(b"lo"))

    with serving(starts_then_reads, exchange_class=receive_exchange(answer), lifespan="off") as server:
        with socket.create_connection(server.server_address, timeout=0.5) as sock:
            sock.sendall(request("POST", "/", [("Content-Length", "5"), ("Expect", "100-continue")]))
            data = b""
            try:
                while True:
                    piece = sock.recv(1000)  # the head and a chunk; the client waits, then sends its body
                    if not piece:
                        break
                    data += piece
            except TimeoutError:
                pass
            sock.sendall(b"hello")
            sock.settimeout(DEADLINE)
            try:
                while piece := sock.recv(1000):
                    data += piece
            except OSError:
                pass
    if b"100 Continue" in data:
        raise CaseFailed("the app sent its head and a chunk before it asked for the body: a 100 Continue then lands "
                         "in the middle of the response body, and the client reads garbage. It is an interim "
                         "answer, before the final head only: send it when `self.continue_due and self.framing is "
                         "None`", got=data[-120:])
    if not data.startswith(b"HTTP/1.1 200"):
        raise CaseFailed("the app's 200 should come", got=data[:80])


# --- 07.4 send -------------------------------------------------------------------------------------------------------

send_exercise = Exercise(
    "07.4", "send(): events in order, checked, framed",
    points=3,
    answer="an async function send(self, message), Exchange's (with your send_body(self, body, more_body) beside it, "
           "or the lesson's)",
    params=2,
    timeout=SERVER_CASE,
    hints=[
        "kind = event_type(message). After the last body (self.complete) nothing may be sent: raise RuntimeError. "
        "Before the start (self.status is None) only http.response.start may come: its status and fields come from "
        "response_start(message), which raises ValueError on a bad event; after it, only http.response.body.",
        "At the start: self.closes = asks_to_close(fields); keep only the fields whose lower-case name is not in "
        "HOP_BY_HOP (the connection is the server's). Then, if self.gone, raise ClientDisconnected (the client has "
        "left); for a body event, await self.send_body(*response_body(message)).",
        "send_body(body, more_body): data = self.head(None if more_body else len(body)) if self.framing is None else "
        "b''; data += self.out.frame(body) (nothing for HEAD, chunks when chunked); if not more_body: data += "
        "self.out.end() and self.complete = True; await self.connection.write(data), setting self.gone on "
        "ClientDisconnected (and re-raising), and self.over.set() in a finally when complete or gone.",
    ],
)


def send_exchange(answer):
    return with_methods(send=answer, send_body=beside(answer, "send_body", "07.4"))


def sending(*events, then=None):
    """An app that sends `events` in turn and records the first exception send() raised (then stops)."""
    raised = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await receive()
        for event in events:
            try:
                await send(event)
            except Exception as error:
                raised.append(error)
                raise
        if then is not None:
            await then(receive, send)
    return app, raised


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def body(data=b"hello", more=False):
    return {"type": "http.response.body", "body": data, "more_body": more}


@send_exercise.case("one body event gets a Content-Length; several go chunked; HEAD gets the head alone; all on one "
                    "connection, read by a strict client")
def _(answer):
    one, _ = sending(START, body(b"hello"))
    several, _ = sending(START, body(b"hel", True), body(b"lo", True), body(b""))

    async def by_path(scope, receive, send):
        app = several if scope["path"] == "/several" else one
        await app(scope, receive, send)

    with serving(by_path, exchange_class=send_exchange(answer), lifespan="off") as server:
        connection = Connection(server.server_address, time.monotonic() + DEADLINE)
        try:
            replies = []
            for method, path in (("GET", "/one"), ("GET", "/several"), ("HEAD", "/one"), ("HEAD", "/several"),
                                 ("GET", "/one")):
                connection.send(request(method, path))
                replies.append(connection.read_response(method))
        except Exception as error:
            good = f"{len(replies)} good answer{'' if len(replies) == 1 else 's'}"
            raise CaseFailed(f"a strict client (h11) could not read the answer to {method} {path} (after {good}): "
                             f"{type(error).__name__}: {error}. {STRICT_ADVICE[method, path]}"
                             f"{learner_errors(server)}") from None
        finally:
            connection.close()
    got = [(r.status, r.headers.get("content-length"), r.headers.get("transfer-encoding"), r.body) for r in replies]
    # (The core adds no length to a HEAD response: RFC 9110 9.3.2 lets a server leave out what a GET would get.)
    wanted = [(200, "5", None, b"hello"), (200, None, "chunked", b"hello"), (200, None, None, b""),
              (200, None, None, b""), (200, "5", None, b"hello")]
    if got != wanted:
        raise CaseFailed("(status, content-length, transfer-encoding, body) of GET /one, GET /several, HEAD /one, "
                         "HEAD /several, GET /one", expected=wanted, got=got)


STRICT_ADVICE = {
    ("GET", "/one"): "One body event: the head goes out with it (self.head(len(body)), a Content-Length), then "
                     "the body through self.out.frame(body), and self.out.end()",
    ("GET", "/several"): "Several body events (more_body True) go chunked: the head (self.head(None)) with the "
                         "first, each piece through self.out.frame(body), and after the last piece self.out.end(), "
                         "the last chunk (0) that tells the client the body is whole",
    ("HEAD", "/one"): "A HEAD response has no body: send each piece through self.out.frame(body), which gives "
                      "nothing for HEAD, as the core decided",
    ("HEAD", "/several"): "A HEAD response has no body, in one event or several: send each piece through "
                          "self.out.frame(body), and end with self.out.end(), which give nothing for HEAD",
}
OUT_OF_ORDER = {
    "a body before the start": [body()],
    "two starts": [START, START],
    "a body after the last": [START, body(b"done"), body(b"more")],
    "an unknown event after the start": [START, {"type": "http.response.trailers", "headers": []}, body()],
}
MALFORMED = {
    "status '200'": [{"type": "http.response.start", "status": "200", "headers": []}],
    "str headers": [{"type": "http.response.start", "status": 200, "headers": [("x-a", "1")]}],
    "Content-Length 'abc'": [{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"abc")]}],
    "a str body": [START, {"type": "http.response.body", "body": "hello"}],
    "an event that is not a dict": [START, "hello"],
}


@send_exercise.case("events out of order, or malformed, make send() raise; the client gets one answer (500 if "
                    "nothing had gone out), never two status lines")
def _(answer):
    for group, cases in (("out of order", OUT_OF_ORDER), ("malformed", MALFORMED)):
        for what, events in cases.items():
            app, raised = sending(*events)
            with serving(app, exchange_class=send_exchange(answer), lifespan="off") as server:
                data, _closed = raw_answer(server.server_address, request("GET", "/"), wait=0.5)
            if not raised:
                raise CaseFailed(f"{what}: send() must raise on an event {group} (the spec says so); yours "
                                 "accepted it. " + ("Check the order: only http.response.start first, then only "
                                                    "http.response.body until the last, then nothing"
                                                    if group == "out of order" else
                                                    "Check the event: response_start(message) and "
                                                    "response_body(message) raise ValueError"))
            if isinstance(raised[0], (ClientDisconnected, TypeError, AttributeError, KeyError)):
                raise CaseFailed(f"{what}: send() raised {type(raised[0]).__name__}: {raised[0]}; an event "
                                 f"{group} is the app's mistake: RuntimeError (out of order) or ValueError "
                                 "(malformed), with a message that says which rule")
            statuses = data.count(b"HTTP/1.1 ")
            if statuses != 1:
                raise CaseFailed(f"{what}: the client should get exactly one status line; it got {statuses}",
                                 got=data[:200])
            if what != "a body after the last" and not data.startswith(b"HTTP/1.1 500"):
                raise CaseFailed(f"{what}: nothing had gone out, so the client should get a 500 (the head goes out "
                                 "with the first body event, never with http.response.start)", got=data[:80])


@send_exercise.case("the app's hop-by-hop headers give way to the server's; a client that has left makes send() raise")
def _(answer):
    app, _ = sending({"type": "http.response.start", "status": 200,
                      "headers": [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"keep-alive"),
                                  (b"content-type", b"text/plain")]}, body(b"hello"))
    advice = ("the app sent Transfer-Encoding (transfer-encoding) and Connection headers: the connection is the "
              "server's, so drop the app's hop-by-hop headers, whatever their case: the name is a field's first item, "
              "as the app spelt it, so compare field[0].lower() with HOP_BY_HOP's lower-case names")
    with serving(app, exchange_class=send_exchange(answer), lifespan="off") as server:
        try:
            reply = ask(server, request("GET", "/"))
        except CaseFailed as failure:
            raise CaseFailed(f"{failure.message}. {advice[0].upper()}{advice[1:]}") from None
    if reply.headers.get("transfer-encoding") == "chunked" and "content-length" in reply.headers or \
            "keep-alive" in reply.headers.get("connection", ""):
        raise CaseFailed(advice, got=reply.headers)
    expect_equal(reply.body, b"hello", "the body")
    app, _ = sending({"type": "http.response.start", "status": 200,
                      "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")]}, body(b"bye"))
    with serving(app, exchange_class=send_exchange(answer), lifespan="off") as server:
        data, closed = raw_answer(server.server_address, request("GET", "/"), wait=1.5)
    head = data.partition(b"\r\n\r\n")[0].lower()
    if b"\r\nconnection: close" not in head or closed is None or closed > 0.7:
        raise CaseFailed("the app sent Connection: close. Its header is dropped with the other hop-by-hop ones, "
                         "but what it asks for must be done: note it before the filter, self.closes = "
                         "asks_to_close(fields), so that the head says Connection: close and the connection closes "
                         "after this response", got=(data[:160], "closed" if closed is not None and closed <= 0.7
                                                     else "still open after 0.7 s"))
    raised = []

    async def after_leaving(receive, send):  # the client has gone: the app heard http.disconnect
        try:
            await send(START)
            await send(body(b"too late"))
        except Exception as error:
            raised.append(error)

    async def poll(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await receive()
        await receive()  # http.disconnect, once the client leaves
        await after_leaving(receive, send)

    with serving(poll, exchange_class=send_exchange(answer), lifespan="off") as server:
        with socket.create_connection(server.server_address, timeout=DEADLINE) as sock:
            sock.sendall(request("GET", "/"))
            time.sleep(0.2)
        end = time.monotonic() + 2.0
        while not raised and time.monotonic() < end:
            time.sleep(0.02)
    if not raised or not isinstance(raised[0], OSError):
        raise CaseFailed("the client left (the app heard http.disconnect), and then the app called send(): it must "
                         "raise an OSError (the HTTP spec, 2.4), here ClientDisconnected: `if self.gone: raise "
                         "ClientDisconnected(...)`", got=short_repr(raised[:1]))


@send_exercise.case("after the last body event, the app's receive() says http.disconnect at once, on a kept-alive "
                    "connection")
def _(answer):
    heard = []

    async def listens_after(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await receive()
        await send(START)
        await send(body(b"done"))
        started = time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), 2.0)
        except TimeoutError:
            message = {"type": "(nothing within 2 s)"}
        heard.append((message.get("type"), time.monotonic() - started))

    with serving(listens_after, exchange_class=send_exchange(answer), lifespan="off") as server:
        connection = Connection(server.server_address, time.monotonic() + DEADLINE)
        try:
            connection.send(request("GET", "/"))
            reply = connection.read_response("GET")
            end = time.monotonic() + 1.0
            while not heard and time.monotonic() < end:  # the client stays connected meanwhile
                time.sleep(0.02)
        except Exception as error:
            raise CaseFailed(f"no valid answer to GET /: {type(error).__name__}: {error}"
                             f"{learner_errors(server)}") from None
        finally:
            connection.close()
        end = time.monotonic() + 2.5
        while not heard and time.monotonic() < end:
            time.sleep(0.02)
    expect_equal(reply.body, b"done", "the body")
    kind, after = heard[0] if heard else ("(nothing)", None)
    if kind != "http.disconnect" or after > 0.5:
        raise CaseFailed("the response was complete, and the client kept its connection open for the next request: "
                         "the app's receive() must say http.disconnect at once, not when the client leaves. "
                         "receive() waits for self.over: send_body() sets it when the response is complete (or the "
                         "client gone), self.over.set() in its finally",
                         got=f"{kind} after {after:.2f} s" if after is not None else kind)


# --- 07.5 finish -----------------------------------------------------------------------------------------------------

finish_exercise = Exercise(
    "07.5", "finish(): 500 only while nothing has gone out",
    points=3,
    answer="an async function finish(self, failed), Exchange's, returning whether the connection goes on",
    params=2,
    timeout=SERVER_CASE + 10,
    hints=[
        "If nothing has gone out yet (self.framing is None) and the app failed, or the body was refused "
        "(self.refused), answer now: error = self.refused or HTTPError(500, ...); await "
        "self.connection.write_quietly(error_answer(error, self.request.method)); return False.",
        "After the head, a failure can only close the connection: return False if failed, or self.gone, or the "
        "framing says no keep-alive, or the body went out shorter than its Content-Length (self.out.cut_short), or a "
        "100 Continue is still due (self.continue_due). Never a second status line.",
        "Otherwise the connection goes on, once what the app left of the request body is read and dropped (else it "
        "would pass for the next request): if self.body.done: return True -- try: async with self.reading: while "
        "await self.body.read(): pass -- except (HTTPError, ClientDisconnected): return False -- return True.",
    ],
)


def finish_exchange(answer):
    return with_methods(finish=answer)


async def fails_early(scope, receive, send):
    await send(START)
    raise RuntimeError("a bug, before any body")


async def fails_late(scope, receive, send):
    await send(START)
    await send(body(b"first rows\n", True))
    raise RuntimeError("a bug, half-way through the body")


async def ignores_body(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await answer(send, body=scope["path"].encode())


async def reads_body(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await read_all(receive)  # a broken chunked body: http.disconnect, and no answer


@finish_exercise.case("an app that fails before anything went out: 500 (the head alone for HEAD), and the "
                      "connection closes")
def _(answer):
    with serving(fails_early, exchange_class=finish_exchange(answer), lifespan="off") as server:
        data, closed = raw_answer(server.server_address, request("GET", "/"), wait=1.5)
        head_data, _ = raw_answer(server.server_address, request("HEAD", "/"), wait=1.5)
    if not data.startswith(b"HTTP/1.1 500"):
        raise CaseFailed("the app failed after http.response.start but before any body: the head had not gone out "
                         "(self.framing is None), so answer 500: error_answer(HTTPError(500, ...), method)",
                         got=data[:80])
    if data.count(b"HTTP/1.1 ") != 1:
        raise CaseFailed("one answer to one request: a single status line", got=data[:200])
    if closed is None or closed > 0.7:  # (the server drops an idle connection after 1 s anyway)
        raise CaseFailed("the 500 went out, but the connection stayed open after the 500, waiting for another "
                         "request: after a failure, return False, so that the server closes it",
                         got="open after 1.5 s" if closed is None else f"closed after {closed:.2f} s, by the "
                         "server's idle timeout (1 s), not at once")
    head, _, rest = head_data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 500") or rest:
        raise CaseFailed("the same failure on a HEAD request: a 500 with the head alone, no body (RFC 9110 9.3.2; a "
                         "body would be read as the start of the next response). The core does it when it knows "
                         "the method: error_answer(error, self.request.method)", got=head_data[-120:])


@finish_exercise.case("an app that fails half-way through its body: no second status line; the connection closes")
def _(answer):
    with serving(fails_late, exchange_class=finish_exchange(answer), lifespan="off") as server:
        data, closed = raw_answer(server.server_address, request("GET", "/"), wait=1.5)
    closed = closed is not None and closed < 0.7  # (the server drops an idle connection after 1 s anyway)
    if data.count(b"HTTP/1.1 ") != 1:
        raise CaseFailed("the head and a chunk had gone out already: a second status line would be read as part of "
                         "the body. Only closing the connection can say the body is cut (return False)",
                         got=data[-160:])
    if not closed:
        raise CaseFailed("after a failure half-way through the body, close the connection: the client sees the last "
                         "chunk missing, and knows the body is incomplete. finish() returned True, and the "
                         "connection waited for another request", got=data[-60:])
    if data.endswith(http1.LAST_CHUNK):
        raise CaseFailed("the body was cut short: it must not end with the last chunk (0), which says it is whole",
                         got=data[-40:])


@finish_exercise.case("complete responses keep the connection; a body the app did not read is skipped; a broken "
                      "chunked body gets 400")
def _(answer):
    with serving(ignores_body, exchange_class=finish_exchange(answer), lifespan="off") as server:
        connection = Connection(server.server_address, time.monotonic() + DEADLINE)
        try:
            connection.send(request("POST", "/first", [("Content-Length", "11")], b"GET /x HTTP")
                            + request("POST", "/second", [("Transfer-Encoding", "chunked")], b"2\r\nab\r\n0\r\n\r\n")
                            + request("GET", "/third"))
            bodies = [connection.read_response("POST").body for _ in range(3)]
        except Exception as error:
            raise CaseFailed(f"three requests pipelined, whose bodies the app never reads, got no valid answers: "
                             f"{type(error).__name__}: {error}. What the app left of a body must be read and dropped "
                             "(while await self.body.read(): pass) before the next request") from None
        finally:
            connection.close()
    if bodies != [b"/first", b"/second", b"/third"]:
        raise CaseFailed("three pipelined requests, the first two with bodies the app never read, should get their "
                         "three answers: read and drop what the app left of a body (while await self.body.read(): "
                         "pass), or it passes for the next request", expected=[b"/first", b"/second", b"/third"],
                         got=bodies)
    with serving(reads_body, exchange_class=finish_exchange(answer), lifespan="off") as server:
        data, closed = raw_answer(server.server_address, request("POST", "/", [("Transfer-Encoding", "chunked")],
                                                                 b"zz\r\n"), wait=1.5)
    if not data.startswith(b"HTTP/1.1 400"):
        raise CaseFailed("a broken chunked body (receive() kept the core's HTTPError in self.refused) gets the core's "
                         "answer, 400, once the app is done: error = self.refused or HTTPError(500, ...)",
                         got=data[:80])


async def cut_short(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send(body(b"short"))  # 5 of the 10 bytes promised, and the response is over


@finish_exercise.case("a body shorter than its Content-Length: the connection closes (else the next response would "
                      "pass for the rest of it)")
def _(answer):
    with serving(cut_short, exchange_class=finish_exchange(answer), lifespan="off") as server:
        data, closed = raw_answer(server.server_address, request("GET", "/first") + request("GET", "/second"),
                                  wait=1.5)
    if data.count(b"HTTP/1.1 ") != 1 or closed is None or closed > 0.7:
        raise CaseFailed("the app promised content-length: 10 and sent 5 bytes (b'short'). The client waits for the "
                         "5 others, and on a kept-alive connection the next response's first bytes would be read as "
                         "the rest of this body. Only closing the connection ends it: if self.out.cut_short: "
                         "return False", got=data[:200])


@finish_exercise.case("the conformance probe, on the lesson's server with your finish()", timeout=SERVER_CASE + 10)
def _(answer):
    with serving(probe.probe_asgi_app, exchange_class=finish_exchange(answer), lifespan="off") as server:
        failed = probe_failures(server, [one.name for one in probe.CHECKS if one.category != "concurrency"])
    if failed:
        raise CaseFailed("the probe, on the lesson's server with your finish(): " + "; ".join(failed[:3]))


# --- 07.6 Lifespan ---------------------------------------------------------------------------------------------------

lifespan_exercise = Exercise(
    "07.6", "Lifespan: startup, shutdown, and apps without it",
    points=3,
    answer="a class Lifespan(app, mode) with startup() and shutdown(grace) (async), state, the lesson's",
    params=2,
    timeout=SERVER_CASE,
    hints=[
        "startup(): nothing with mode 'off'. Else start the app in a task, `asyncio.create_task(self.run())`, put "
        "{'type': 'lifespan.startup'} in self.inbox (an asyncio.Queue whose get is the app's receive), and wait for "
        "the answer (self.answered['startup'], an asyncio.Event). If it failed, raise StartupFailed.",
        "run() awaits self.app(scope, self.inbox.get, self.send) with scope {'type': 'lifespan', 'asgi': {'version': "
        "'3.0', 'spec_version': '2.0'}, 'state': self.state}. An app that raises or returns before it answered "
        "startup: with mode 'auto' it has no lifespan (serve without it), with 'on' that is a failure "
        "(self.failure = ...). Either way set both events at the end, so nobody waits for an answer that cannot come.",
        "send(message): the phase is 'shutdown' once startup was answered; accept only lifespan.<phase>.complete or "
        ".failed (else RuntimeError), once; .failed keeps message['message'] in self.failure. shutdown(grace): if the "
        "task runs and startup did not fail, put lifespan.shutdown, wait for the answer at most grace seconds "
        "(asyncio.wait_for), then cancel the task and gather it.",
    ],
)


def lifespan_app(record, startup="lifespan.startup.complete", message=""):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                record.append(event["type"])
                if event["type"] == "lifespan.startup":
                    scope["state"]["ready"] = "yes"
                    await send({"type": startup, "message": message})
                    if startup.endswith("failed"):
                        return
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        record.append(f"request {scope['path']} ready={scope['state'].get('ready')}")
        await answer(send, body=b"hello")
    return app


async def no_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("this app knows only http")
    await answer(send, body=b"hello")


@lifespan_exercise.case("startup before the first request (its state reaches the request), shutdown after the last")
def _(answer):
    record = []
    with serving(lifespan_app(record), lifespan_class=answer, lifespan="auto") as server:
        record.append("started")
        ask(server, request("GET", "/x"))
    wanted = ["lifespan.startup", "started", "request /x ready=yes", "lifespan.shutdown"]
    if record != wanted:
        raise CaseFailed("the app's lifespan.startup must be answered before the server serves (startup() waits for "
                         "it), its state copied into each request, and lifespan.shutdown sent when the server stops",
                         expected=wanted, got=record)


@lifespan_exercise.case("lifespan.startup.failed stops the server before it serves; 'on' with an app that raises too")
def _(answer):
    for app, mode, why in ((lifespan_app([], "lifespan.startup.failed", "no database"), "auto",
                            "the app sent lifespan.startup.failed"),
                           (no_lifespan, "on", "lifespan 'on', and the app raised on the lifespan scope")):
        server, kept = YourServer(app, lifespan_class=answer, lifespan=mode), Kept()
        asgi.log.addHandler(kept)
        try:
            server.start(timeout=DEADLINE + 2)
        except asgi.StartupFailed:
            continue
        except TimeoutError:
            raise CaseFailed(f"{why}: startup() waited for an answer that never comes. When the app returns or "
                             "raises, set both answered events") from None
        finally:
            asgi.log.removeHandler(kept)
        server.halt()
        raise CaseFailed(f"{why}: the server must not serve. startup() raises StartupFailed when the startup failed "
                         "(self.failure)")


@lifespan_exercise.case("'auto': an app that raises on the lifespan scope is served without it; 'off' sends no "
                        "lifespan scope")
def _(answer):
    with serving(no_lifespan, lifespan_class=answer, lifespan="auto") as server:
        reply = ask(server, request("GET", "/"))
    expect_equal(reply.body, b"hello", "the answer of an app without lifespan, under 'auto'")
    record = []
    with serving(lifespan_app(record), lifespan_class=answer, lifespan="off") as server:
        ask(server, request("GET", "/"))
    if any(kind.startswith("lifespan") for kind in record):
        raise CaseFailed("with mode 'off' the app gets no lifespan scope: startup() does nothing", got=record)


@lifespan_exercise.case("an app that never answers lifespan.shutdown: shutdown(grace) returns after about grace "
                        "seconds, and the app's task is cancelled")
def _(answer):
    seen = []

    async def deaf_at_shutdown(scope, receive, send):
        if scope["type"] != "lifespan":
            raise RuntimeError("lifespan only")
        await receive()
        await send({"type": "lifespan.startup.complete"})
        seen.append((await receive())["type"])
        try:
            await asyncio.Event().wait()  # never answers
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def run():
        lifespan = answer(deaf_at_shutdown, "auto")
        await lifespan.startup()
        started = time.monotonic()
        await lifespan.shutdown(0.3)
        return time.monotonic() - started
    kept = Kept()
    asgi.log.addHandler(kept)  # (the warning that the app did not answer)
    try:
        took = run_loop(run, limit=2.5, late="The app never answered lifespan.shutdown, and your shutdown(0.3) was "
                        "still waiting: shutdown(grace) waits at most grace seconds for the answer "
                        "(asyncio.wait_for(..., grace), TimeoutError caught), then cancels the task, so that a "
                        "server always stops.")
    finally:
        asgi.log.removeHandler(kept)
    if seen[:1] != ["lifespan.shutdown"]:
        raise CaseFailed("shutdown(grace) sends lifespan.shutdown to the app", got=seen)
    if took > 1.0:
        raise CaseFailed(f"shutdown(0.3) took {took:.2f} s: it waits at most grace seconds for the answer",
                         expected="about 0.3 s", got=f"{took:.2f} s")
    if "cancelled" not in seen:
        raise CaseFailed("after the grace, the app's lifespan task must be cancelled (self.task.cancel(), then "
                         "await it), not left waiting for ever", got=seen)


@lifespan_exercise.case("an answer out of phase (lifespan.shutdown.complete during the startup) makes send() raise; "
                        "the startup has not succeeded")
def _(answer):
    raised = []

    async def wrong_phase(scope, receive, send):
        if scope["type"] != "lifespan":
            raise RuntimeError("lifespan only")
        await receive()
        try:
            await send({"type": "lifespan.shutdown.complete"})
        except Exception as error:
            raised.append(error)
            raise
        await receive()

    async def run():
        lifespan = answer(wrong_phase, "on")
        try:
            await lifespan.startup()
        except asgi.StartupFailed:
            return True
        finally:
            await lifespan.shutdown(0.2)
        return False
    kept = Kept()
    asgi.log.addHandler(kept)
    try:
        failed = run_loop(run)
    finally:
        asgi.log.removeHandler(kept)
    if not raised or not isinstance(raised[0], RuntimeError):
        raise CaseFailed("the app answered lifespan.startup with lifespan.shutdown.complete: during the startup, "
                         "send() accepts only lifespan.startup.complete or lifespan.startup.failed, and raises "
                         "RuntimeError on anything else (the phase is 'shutdown' only once startup was answered)",
                         got=short_repr(raised[0]) if raised else "send() raised nothing")
    if not failed:
        raise CaseFailed("with lifespan 'on', the app raised before it answered lifespan.startup: startup() raises "
                         "StartupFailed; an answer out of phase is no successful startup")
