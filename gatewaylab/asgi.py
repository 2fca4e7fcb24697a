"""The course's minimal ASGI server (asgiref's specs: ASGI 3.0, HTTP 2.4, lifespan 2.0) on asyncio streams.

    python -m gatewaylab.asgi module:app --host 127.0.0.1 --port 8000 --lifespan auto|on|off

The path of one request through it:

    bytes on the stream -> read_request (buffered to the blank line, http1.parse_request) -> a Request
    Request -> http1.request_body_length, make_scope -> the scope
    scope -> app(scope, exchange.receive, exchange.send): body pieces in, response events out
    each body event -> Exchange.send (http1.choose_framing, build_head, encode_chunk) -> bytes on the stream

One task serves each connection, one request after another. The rules of HTTP/1.1 come from the course's core,
gatewaylab.http1, which the WSGI server (gatewaylab.wsgi) shares. ASGIServer runs it from a script (serve()) or in
a thread beside a notebook (start(), shutdown()).
"""
import argparse
import asyncio
import io
import logging
import signal
import sys
import threading
from urllib.parse import unquote

from gatewaylab.http1 import (CONTINUE, HOP_BY_HOP, LAST_CHUNK, LINE, MAX_BODY, MAX_HEAD, MAX_LINE, PIECE,
                              REASONS, ChunkedBody, HTTPError, Request, build_head, check_field,
                              choose_framing, encode_chunk, error_response, parse_request,
                              request_body_length, wants_continue, with_date)
from gatewaylab.wsgi import ClientDisconnected, listen, load_app

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds: an idle keep-alive connection, a whole request head, a silent client mid-body
GRACE = 5.0  # seconds the requests in flight get to finish when the server stops
POLL = 0.2  # seconds between two looks at the connection of an app that waits for http.disconnect
# spec_version 2.4: send() on a closed connection raises an OSError (ClientDisconnected). The HTTP
# spec is at 2.5, which only adds a key to a WebSocket event, and this server speaks no WebSocket.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


# --- Reading from the stream
# --------------------------------------------------------------------------------

async def read_line(reader, limit):
    """One line, its ending included; what came before the stream ended; or, for a line with no end in sight,
    its first `limit` bytes. The core decides what a short or long line means (400, 414, 431)."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        return error.partial
    except asyncio.LimitOverrunError:  # more than the stream's limit without a line ending
        return await reader.readexactly(limit)


async def read_exactly(reader, size):
    """`size` bytes, or fewer if the stream ended first (the chunked decoder calls that a 400)."""
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as error:
        return error.partial


async def read_head(reader, first):
    """Buffer one request head up to its blank line, and parse it with the core. `first` is its first byte.

    Only the buffering is done here: every rule of a head (limits, syntax, what an early end means) is the
    core's, which parses the buffered bytes as it parses a socket's file.
    """
    head, line = bytearray(), first
    while len(head) <= MAX_HEAD:
        if not line.endswith(b"\n"):
            line += await read_line(reader, MAX_LINE + 2)
        head += line
        if not line.endswith(b"\n"):
            break  # the stream ended, or a line is too long: parse_request below says which status that is
        if line in (b"\r\n", b"\n"):
            request = parse_request(io.BytesIO(bytes(head)))
            if request is not None:
                return request
            # None: only empty lines so far, which the core skips before a request line (RFC 9112
            # 2.2)
        line = b""
    return parse_request(io.BytesIO(bytes(head)))  # raises the core's HTTPError, or None: nothing was sent


class RequestBody:
    """The request body, read from the stream piece by piece as the app asks: never held whole in memory."""

    def __init__(self, reader, length, max_body, timeout):
        self.reader, self.timeout = reader, timeout
        self.left = length  # bytes not read yet, with Content-Length; None: chunked
        self.chunks = ChunkedBody(max_body) if length is None else None

    @property
    def done(self):
        return self.chunks.done if self.chunks is not None else self.left == 0

    async def read(self):
        """The next piece of the body; b"" once it has ended. A broken chunked body raises the core's HTTPError;
        a client that leaves half-way, or is silent for `timeout` seconds, raises ClientDisconnected."""
        try:
            async with asyncio.timeout(self.timeout):
                return await (self.read_chunks() if self.chunks is not None else self.read_some())
        except TimeoutError:
            raise ClientDisconnected("the client went silent in the middle of the request body") from None

    async def read_some(self):
        data = await self.reader.read(min(self.left, PIECE))  # what has arrived, up to PIECE bytes
        if self.left and not data:
            raise ClientDisconnected("the client closed the connection in the middle of the request body")
        self.left -= len(data)
        return data

    async def read_chunks(self):
        """Drive the core's pull decoder with the stream's reads until it gives body bytes, or ends."""
        while not self.chunks.done:
            kind, size = self.chunks.next_read()
            read = read_line(self.reader, size) if kind == LINE else read_exactly(self.reader, size)
            data = self.chunks.feed(await read)
            if data:
                return data
        return b""


# --- The scope and the app's events
# -------------------------------------------------------------------------

def make_scope(request, server_address, client_address, state):
    """The scope of one HTTP request (asgiref's specs/www.rst): strings decoded, the rest as bytes."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
    if request.host != request.header("Host"):
        # An absolute-form target's authority replaces Host (RFC 9112 3.2.2), first, as ASGI does
        # for HTTP/2's :authority.
        headers = [(b"host", request.host.encode("latin-1"))] + [h for h in headers if h[0] != b"host"]
    return {
        "type": "http",
        "asgi": dict(ASGI_VERSION),
        "http_version": request.version.removeprefix("HTTP/"),
        # As sent: methods are case-sensitive (RFC 9110 9.1), and the standard ones are upper-case
        # already.
        "method": request.method,
        "scheme": "http",
        # Percent-decoded, and the bytes read as UTF-8 (invalid sequences become U+FFFD), as the
        # spec asks.
        "path": unquote(request.path),
        "raw_path": request.path.encode("latin-1"),
        "query_string": request.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": tuple(client_address[:2]),
        "server": tuple(server_address[:2]),
        "state": dict(state),  # a shallow copy, so one request's changes stay its own (lifespan.rst)
    }


def event_type(message):
    if not (isinstance(message, dict) and isinstance(message.get("type"), str)):
        raise ValueError(f"an ASGI event is a dict with a 'type' string, got {message!r}")
    return message["type"]


def response_status(message):
    """http.response.start's status: an int of a final response (RFC 9110 15: codes go from 100 to 599, and
    1xx are interim answers, which this event cannot carry)."""
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"http.response.start needs 'status', an int from 200 to 599, got {status!r}")
    return status


def response_headers(message):
    """http.response.start's headers, as the core's (name, value) strings, each field checked by the core."""
    headers = message.get("headers", [])
    try:
        pairs = list(headers)
    except TypeError:
        raise ValueError(f"headers must be an iterable of [name, value] pairs, got {headers!r}") from None
    fields = []
    for pair in pairs:
        if isinstance(pair, (bytes, str)) or not hasattr(pair, "__len__") or len(pair) != 2 \
                or not all(isinstance(part, bytes) for part in pair):
            raise ValueError(f"each header must be a [name, value] pair of byte strings, got {pair!r}")
        fields.append(check_field(pair[0].decode("latin-1"), pair[1].decode("latin-1")))
    return fields


def response_body(message):
    """http.response.body's body and more_body, checked."""
    body, more_body = message.get("body", b""), message.get("more_body", False)
    if not isinstance(body, bytes):
        raise ValueError(f"http.response.body's 'body' must be bytes, got {type(body).__name__}")
    if not isinstance(more_body, bool):
        raise ValueError(f"http.response.body's 'more_body' must be a bool, got {more_body!r}")
    return body, more_body


def asks_to_close(headers):
    """Did the app send Connection: close? The core reads the header's options, as it does a request's."""
    values = [value for name, value in headers if name.lower() == "connection"]
    return bool(values) and not Request("GET", "/", "HTTP/1.1", [("Connection", ", ".join(values))]).keep_alive


class Exchange:
    """One request and its response: the app's receive() and send() on a connection.

    The head goes out with the first body event, not with http.response.start (the spec allows the wait):
    until then the server can still answer 500, and a body sent in one event gets a Content-Length.
    """

    def __init__(self, connection, request, length):
        self.connection, self.request = connection, request
        self.body = RequestBody(connection.reader, length, connection.server.max_body, connection.timeout)
        self.continue_due = length != 0 and wants_continue(request)  # 100 Continue, at the first receive()
        self.last_piece_sent = False  # has the app had the http.request event with more_body False?
        self.reading = asyncio.Lock()  # one read of the stream at a time, however many tasks call receive()
        self.code, self.headers, self.closes = None, None, False  # from http.response.start
        self.framing, self.sent = None, 0  # once the head has gone out; body bytes sent
        self.complete = False  # the last body event has gone out
        self.gone = False  # the client has gone (or its request was refused): send() raises
        self.refused = None  # the core's HTTPError for a broken request body
        self.over = asyncio.Event()  # the response is complete, or the client has gone: http.disconnect is due

    async def receive(self):
        async with self.reading:
            if not (self.last_piece_sent or self.over.is_set()):
                return await self.next_piece()
        await self.until_over()
        return {"type": "http.disconnect"}

    async def next_piece(self):
        try:
            if self.continue_due:  # the client waits for this before it sends the body
                self.continue_due = False
                await self.connection.write(CONTINUE)
            data = await self.body.read()
        except HTTPError as error:  # a broken chunked body: answered once the app has finished
            self.refused = error
            return self.hang_up()
        except ClientDisconnected:
            return self.hang_up()
        self.last_piece_sent = self.body.done
        return {"type": "http.request", "body": data, "more_body": not self.body.done}

    def hang_up(self):
        self.gone = True
        self.over.set()
        return {"type": "http.disconnect"}

    async def until_over(self):
        """Wait until the response is complete or the client has gone. A client that leaves shows only as the
        stream's end or reset, so this looks every POLL seconds while the app waits (a long poll, say)."""
        while not self.over.is_set():
            if self.connection.client_gone():
                self.hang_up()
                break
            try:
                await asyncio.wait_for(self.over.wait(), POLL)
            except TimeoutError:
                pass

    async def send(self, message):
        kind = event_type(message)
        if self.complete:
            raise RuntimeError(f"{kind!r} sent after the response was complete (more_body was False)")
        if self.code is None:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start' first, got {kind!r}")
            self.start(message)
        elif kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body' after http.response.start, got {kind!r}")
        if self.gone:
            raise ClientDisconnected("the client has gone: the response cannot be sent")
        if kind == "http.response.body":
            await self.send_body(*response_body(message))

    def start(self, message):
        code, headers = response_status(message), response_headers(message)
        if message.get("trailers", False):
            raise ValueError("this server sends no trailers: the scope offers no http.response.trailers")
        choose_framing("GET", "HTTP/1.1", code, headers, None, True)  # the core refuses a bad Content-Length
        self.closes = asks_to_close(headers)
        # The server owns the connection: the app's hop-by-hop headers (Transfer-Encoding, which the
        # spec says the server must ignore, Connection, Keep-Alive...) give way to the ones
        # choose_framing adds.
        self.code = code
        self.headers = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]

    async def send_body(self, body, more_body):
        data = b"" if self.framing is not None else self.head(None if more_body else len(body))
        data += self.frame(body)
        if not more_body:
            data += LAST_CHUNK if self.framing.chunked else b""
            self.complete = True
        try:
            await self.connection.write(data)
        except ClientDisconnected:
            self.gone = True
            raise
        finally:
            if self.complete or self.gone:
                self.over.set()

    def head(self, body_length):
        """Fix the framing with the core, now that the head goes out, and return the head's bytes."""
        server, request = self.connection.server, self.request
        keep_alive = request.keep_alive and not (server.stopping or self.closes)
        self.framing = choose_framing(request.method, request.version, self.code, self.headers, body_length,
                                      keep_alive)
        return build_head(f"{self.code} {REASONS.get(self.code, '')}", self.headers + self.framing.headers)

    def frame(self, body):
        """A piece of the body as it goes on the wire: nothing for HEAD, 204 or 304, never more in all than
        the app's Content-Length, one chunk when chunked."""
        limit = self.framing.limit
        piece = body if limit is None else body[:limit - self.sent]
        self.sent += len(piece)
        if not self.framing.has_body:
            return b""
        return encode_chunk(piece) if self.framing.chunked else piece

    async def run(self, app, scope):
        """Call the app; then answer for it if it failed early. Returns True if the connection may go on."""
        failed = False
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            self.gone = True  # raised by send() and let through by the app: nobody to tell, nothing to log
        except Exception:
            log.exception("error in the application, for %s %s", self.request.method, self.request.target)
            failed = True
        else:
            if not (self.complete or self.gone):
                log.error("the application returned without completing its response, for %s %s",
                          self.request.method, self.request.target)
                failed = True
        self.over.set()  # any task of the app still waiting in receive() hears http.disconnect
        return await self.finish(failed)

    async def finish(self, failed):
        if self.framing is None and (failed or self.refused):
            # Nothing has gone out yet: the client can still get a proper answer.
            error = self.refused or HTTPError(500, "the application failed")
            await self.connection.write_quietly(with_date(error_response(error)))
            return False
        if failed or self.gone or self.refused:
            return False  # after the head, closing is the only way to tell the client: its body is cut short
        if self.framing.limit is not None and self.sent < self.framing.limit:
            return False  # a body shorter than its Content-Length: only closing tells the client it ended
        if not self.framing.keep_alive or self.continue_due:
            # (RFC 9110 10.1.1: without 100 Continue, the client may never send the body we would
            # have to drain)
            return False
        try:
            async with self.reading:
                while await self.body.read():  # what the app left of the body, or it would pass for the
                    pass  # next request (at most max_body bytes: the core refuses more)
        except (HTTPError, ClientDisconnected):
            return False
        return True


# --- Connections
# --------------------------------------------------------------------------------------------

class Connection:
    """One client's connection: its stream, and the requests on it, one after another."""

    def __init__(self, server, reader, writer):
        self.server, self.reader, self.writer = server, reader, writer
        self.timeout = server.timeout
        self.client_address = writer.get_extra_info("peername")[:2]
        self.idle = True  # waiting for the next request: a stopping server may close it at once
        self.task = asyncio.current_task()

    def client_gone(self):
        """Has the client closed or reset the connection? Bytes it sent before (a pipelined request) do not
        count as gone: at_eof() is true only once they are read."""
        return self.reader.at_eof() or self.writer.is_closing()

    async def write(self, data):
        """Write, then wait for the transport to drain: a client that stops reading holds this send() instead
        of making the server buffer without end (for `timeout` seconds, then it counts as gone)."""
        if self.writer.is_closing():
            raise ClientDisconnected("the connection is closed")
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except (OSError, TimeoutError) as error:
            raise ClientDisconnected(f"the client has gone: {error!r}") from error

    async def write_quietly(self, data):
        try:
            await self.write(data)
        except ClientDisconnected:
            pass  # the client is gone already

    async def next_request(self):
        """The next request, or None if there is none: the client closed the connection, stayed silent for
        `timeout` seconds, or the server is stopping. Once a request has started, its whole head must come
        within `timeout` seconds, or it gets 408."""
        if self.server.stopping:
            return None
        self.idle = True
        try:
            async with asyncio.timeout(self.timeout):
                first = await self.reader.read(1)  # until its first byte, the connection is idle
        except (TimeoutError, OSError):
            return None  # an idle keep-alive connection is closed without a word, as clients expect
        finally:
            self.idle = False
        if not first:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return await read_head(self.reader, first)
        except TimeoutError:
            raise HTTPError(408, "the request head did not arrive in time") from None

    async def serve(self):
        """Serve the connection's requests in order (pipelined ones too) until one of them ends it."""
        try:
            while (request := await self.next_request()) is not None:
                upgrade = self.server.upgrade(request)
                if upgrade is not None:
                    return await upgrade(self, request)
                exchange = Exchange(self, request, request_body_length(request, self.server.max_body))
                scope = make_scope(request, self.server.server_address, self.client_address,
                                   self.server.state)
                if not await exchange.run(self.server.app, scope):
                    break
        except HTTPError as error:
            # A malformed or stalled request: answer, then close, since where the next one begins is
            # unknown.
            await self.write_quietly(with_date(error_response(error)))
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client closed or reset the connection
        except Exception:
            log.exception("error while serving %s:%s", *self.client_address)  # a bug must not stop the server
        finally:
            await self.close()

    async def close(self):
        """Close without destroying an answer the client has not read: closing with its bytes unread makes the
        kernel send a reset (RFC 9112 9.6). So: end our side, drop what still comes for a moment, then close."""
        try:
            if not self.writer.is_closing() and self.writer.can_write_eof():
                self.writer.write_eof()
                async with asyncio.timeout(0.5):
                    while await self.reader.read(PIECE):
                        pass
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client is gone already, or keeps sending
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


# --- Lifespan
# -----------------------------------------------------------------------------------------------

class StartupFailed(RuntimeError):
    """The app's lifespan startup failed: the server does not serve."""


class Lifespan:
    """The lifespan protocol (asgiref's specs/lifespan.rst): startup before the first request, shutdown after
    the last, both in the loop that serves the requests.

    mode "on": the app must take part. "auto": an app that raises (or returns) before it answers startup does
    not support lifespan, and is served without it, as the spec says. "off": no lifespan events at all.
    """

    def __init__(self, app, mode):
        self.app, self.mode = app, mode
        self.state = {}  # the app's namespace; each request gets a copy
        self.inbox = asyncio.Queue()
        self.answered = {"startup": asyncio.Event(), "shutdown": asyncio.Event()}
        self.failure = None  # why startup or shutdown failed
        self.task = None

    async def startup(self):
        if self.mode == "off":
            return
        self.task = asyncio.create_task(self.run())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.answered["startup"].wait()
        if self.failure is not None:
            raise StartupFailed(f"lifespan startup failed: {self.failure}")

    async def run(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.send)
            error = "the app returned from the lifespan scope"
        except Exception as exception:
            error = f"the app raised {exception!r}"
            if self.mode == "on" or self.answered["startup"].is_set():
                log.exception("error in the application's lifespan")
        if not self.answered["startup"].is_set():
            if self.mode == "auto":
                log.info("%s before it answered lifespan.startup: serving it without lifespan", error)
            else:
                self.failure = f"{error} before it sent lifespan.startup.complete"
        for event in self.answered.values():
            event.set()  # nobody waits for an answer that cannot come

    async def send(self, message):
        kind = event_type(message)
        phase = "shutdown" if self.answered["startup"].is_set() else "startup"
        if kind not in (f"lifespan.{phase}.complete", f"lifespan.{phase}.failed"):
            raise RuntimeError(f"expected lifespan.{phase}.complete or .failed, got {kind!r}")
        if self.answered[phase].is_set():
            raise RuntimeError(f"{kind!r} sent twice")
        if kind.endswith(".failed"):
            self.failure = str(message.get("message", "")) or "(no message)"
            log.error("lifespan %s failed: %s", phase, self.failure)
        self.answered[phase].set()

    async def shutdown(self, grace):
        """Send lifespan.shutdown, and wait (up to `grace` seconds) for the app's answer."""
        if self.task is None:
            return
        if self.failure is None and not self.task.done():  # (after a failed startup, no shutdown)
            await self.inbox.put({"type": "lifespan.shutdown"})
            try:
                await asyncio.wait_for(self.answered["shutdown"].wait(), grace)
            except TimeoutError:
                log.warning("the app did not answer lifespan.shutdown within %g s", grace)
        self.task.cancel()  # an app still in its lifespan scope is told to stop waiting
        await asyncio.gather(self.task, return_exceptions=True)


# --- The server
# ---------------------------------------------------------------------------------------------

class ASGIServer:
    """Serves an ASGI app: `await serve()` in a running loop, or start() and shutdown() from another thread
    (a notebook, a test). The port is bound at once, so server_address is known before serving."""

    def __init__(self, app, host="127.0.0.1", port=8000, *, lifespan="auto", backlog=1024, timeout=TIMEOUT,
                 grace=GRACE, max_body=MAX_BODY):
        if not callable(app):
            raise TypeError(f"app must be an ASGI application (an async callable), got {app!r}")
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', got {lifespan!r}")
        if not (timeout > 0 and grace >= 0 and max_body >= 0):
            raise ValueError(f"need timeout > 0, grace >= 0, max_body >= 0: {timeout!r} {grace!r} {max_body!r}")
        self.app, self.lifespan_mode = app, lifespan
        self.timeout, self.grace, self.max_body = timeout, grace, max_body
        self.socket = listen(host, port, backlog)
        self.server_address = self.socket.getsockname()[:2]
        self.state = {}  # the lifespan state, copied into every request's scope
        self.connections = set()
        self.stopping = False
        self.loop, self.thread, self.error = None, None, None
        self.stop_requested = asyncio.Event()
        self.serving = threading.Event()  # set once startup is over and the server accepts clients

    def upgrade(self, request):
        """The handler to switch this request's connection to another protocol, or None to serve it as HTTP.

        A WebSocket handshake (Upgrade: websocket) would get a handler that runs the app with a "websocket"
        scope. This server has none: it ignores Upgrade, as RFC 9110 7.8 allows, and serves plain HTTP.
        """
        return None

    async def serve(self, on_ready=None):
        """Run lifespan startup, serve until shutdown() is called, then stop gracefully (see stop())."""
        self.loop = asyncio.get_running_loop()
        lifespan = Lifespan(self.app, self.lifespan_mode)
        try:
            await lifespan.startup()
        except BaseException:
            self.socket.close()
            await lifespan.shutdown(0)
            raise
        self.state = lifespan.state
        server = await asyncio.start_server(self.connected, sock=self.socket, limit=MAX_LINE + 2)
        self.serving.set()
        if on_ready is not None:
            on_ready()
        try:
            await self.stop_requested.wait()
        finally:
            await self.stop(server)
            await lifespan.shutdown(self.grace)

    async def connected(self, reader, writer):
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            pass  # cut off by stop(): connection.serve() has closed it (a cancelled task here gets logged)
        finally:
            self.connections.discard(connection)

    async def stop(self, server):
        """Stop accepting, close the idle connections, give requests in flight `grace` seconds to finish
        (their responses say Connection: close), then cut off what is left."""
        self.stopping = True
        server.close()
        for connection in list(self.connections):
            if connection.idle:
                connection.task.cancel()
        tasks = {connection.task for connection in self.connections}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.grace)
            for task in late:
                log.warning("a request did not finish within %g s of shutdown: cut off", self.grace)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def start(self, timeout=10.0):
        """Serve in a daemon thread with its own event loop; return once the server accepts clients. A
        failed startup raises here (StartupFailed) and leaves no thread behind."""
        def run():
            try:
                asyncio.run(self.serve())
            except BaseException as error:  # kept for start() and the caller: a dead thread must not be silent
                self.error = error
        self.thread = threading.Thread(target=run, name="gatewaylab-asgi", daemon=True)
        self.thread.start()
        while not self.serving.wait(0.01):
            if not self.thread.is_alive() or timeout <= 0:
                self.shutdown()
                raise self.error or TimeoutError("the ASGI server did not start in time")
            timeout -= 0.01
        return self

    def request_shutdown(self):
        """Ask serve() to stop, from any thread (or a signal handler in the loop's thread)."""
        self.stopping = True
        try:
            self.loop.call_soon_threadsafe(self.stop_requested.set)
        except (AttributeError, RuntimeError):  # no loop yet, or it has ended: nobody waits on the event
            self.stop_requested.set()

    def shutdown(self):
        """Stop the server started with start(); return once its thread has ended and its port is free."""
        self.request_shutdown()
        if self.thread is not None:
            self.thread.join()
        if self.loop is None:
            self.socket.close()  # serve() never ran, so nothing else will release the port

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.shutdown()


# --- The command line
# ---------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.asgi", description="Serve an ASGI application.")
    parser.add_argument("app", help="the application, as module:name (for example hello:app)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    parser.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                        help="the lifespan protocol (default: auto, used if the app supports it)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds (default: {TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        server = ASGIServer(load_app(args.app), args.host, args.port, lifespan=args.lifespan,
                            timeout=args.timeout)
    except (ValueError, OSError) as error:  # a bad module:name, a bad option, or a port already in use
        parser.exit(1, f"error: {error}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    host, port = server.server_address

    async def run():
        # Ctrl-C (SIGINT) and SIGTERM both stop the server gracefully.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(stop_signal, server.request_shutdown)
        await server.serve(on_ready=lambda: print(f"Serving {args.app} on http://{host}:{port}; Ctrl-C to "
                                                  "stop", flush=True))
    try:
        asyncio.run(run())
    except StartupFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
