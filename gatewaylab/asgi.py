"""The course's minimal ASGI server (ASGI 3.0, HTTP spec 2.4, lifespan 2.0) on asyncio streams.

    python -m gatewaylab.asgi module:app --host 127.0.0.1 --port 8000 --lifespan auto|on|off

The path of one request through it:

    bytes on the stream -> read_head (to the blank line; http1.parse_request) -> a Request
    Request -> http1.request_body_length and make_scope -> the scope
    app(scope, receive, send): receive() gives the body piece by piece, as it arrives
    each http.response.body event -> http1.choose_framing, build_head, ResponseBody -> the stream

One task serves each connection, its requests one after another. The rules of HTTP/1.1 come from
the course's core, gatewaylab.http1, which the WSGI server (gatewaylab.wsgi) shares. ASGIServer
runs in a script (await serve()) or in a thread beside a notebook (start() and shutdown()).
"""
import argparse
import asyncio
import functools
import io
import logging
import signal
import socket
import sys
import threading
from urllib.parse import unquote

from gatewaylab.http1 import (CONTINUE, HOP_BY_HOP, LINE, MAX_BODY, MAX_HEAD, MAX_LINE, PIECE,
                              REASONS, ChunkedBody, HTTPError, ResponseBody, build_head,
                              check_field, choose_framing, connection_options, error_answer,
                              parse_request, request_body_length, wants_continue)
from gatewaylab.wsgi import ClientDisconnected, listen, load_app

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds: an idle keep-alive connection, a request head, a client silent mid-body
GRACE = 5.0  # seconds the requests in flight get to finish when the server stops
POLL = 0.2  # seconds between two looks at the connection, while an app waits for http.disconnect
# HTTP spec 2.4: send() on a closed connection raises an OSError (here ClientDisconnected). The
# spec is at 2.5, which only adds a key to a WebSocket event (lesson 09's, gatewaylab.websocket).
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


# --- Reading the request ----------------------------------------------------------------------

async def read_line(reader, limit):
    """A line with its ending; what came before the stream ended; or, for a line longer than the
    stream's limit, its first `limit` bytes. The core says what a short or long line means."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        return error.partial
    except asyncio.LimitOverrunError:
        return await reader.readexactly(limit)


async def read_exactly(reader, size):
    """`size` bytes, or fewer if the stream ended first (the chunked decoder calls that a 400)."""
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as error:
        return error.partial


async def read_head(reader, first):
    """Buffer a request head (`first` is its first byte) line by line to its blank line (a bare
    LF may end a line, or the head); parse it with the core.

    Only the buffering is done here. Every rule of a head (its limits, its syntax, what an early
    end means) is the core's, which parses these bytes as it parses a socket's file.
    """
    head, line = bytearray(), first
    while len(head) <= MAX_HEAD:
        if not line.endswith(b"\n"):
            line += await read_line(reader, MAX_LINE + 2)
        head += line
        if not line.endswith(b"\n"):
            break  # the stream ended, or the line is too long: the core says which status fits
        if line in (b"\r\n", b"\n"):
            request = parse_request(io.BytesIO(head))
            if request is not None:  # (None: empty lines only, which come before a request line)
                return request
        line = b""
    return parse_request(io.BytesIO(head))  # raises the core's HTTPError; None: nothing came


class RequestBody:
    """The request body, read from the stream piece by piece as the app asks for it."""

    def __init__(self, reader, length, max_body, timeout):
        self.reader, self.timeout = reader, timeout
        self.left = length  # bytes still to come, with Content-Length; None: chunked
        self.chunks = ChunkedBody(max_body) if length is None else None

    @property
    def done(self):
        return self.chunks.done if self.chunks is not None else self.left == 0

    async def read(self):
        """The next piece of the body, as much as has arrived; b"" at its end. A broken chunked
        body raises the core's HTTPError; a client that leaves, or is silent for `timeout`
        seconds, raises ClientDisconnected."""
        try:
            async with asyncio.timeout(self.timeout):
                if self.chunks is not None:
                    return await self.next_chunk()
                data = await self.reader.read(min(self.left, PIECE))
        except TimeoutError:
            raise ClientDisconnected("the client went silent in the request body") from None
        except OSError as error:  # a reset: the app hears http.disconnect, as after a close
            raise ClientDisconnected(f"the client has gone ({error!r})") from error
        if self.left and not data:
            raise ClientDisconnected("the client closed the connection in the request body")
        self.left -= len(data)
        return data

    async def next_chunk(self):
        """Drive the core's pull decoder with the stream until it gives body bytes, or ends."""
        while not self.chunks.done:
            kind, size = self.chunks.next_read()
            if kind == LINE:
                data = self.chunks.feed(await read_line(self.reader, size))
            else:
                data = self.chunks.feed(await read_exactly(self.reader, size))
            if data:
                return data
        return b""


def make_scope(request, server_address, client_address, state):
    """The scope of one HTTP request (asgiref's specs/www.rst)."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in request.headers]
    if not request.target.startswith("/") and request.host != request.header("Host"):
        # An absolute-form target's authority replaces Host (RFC 9112 3.2.2); it goes first, as
        # the spec puts HTTP/2's :authority. (The usual target, "/path...", names no host.)
        headers = [(b"host", request.host.encode("latin-1"))] + [
            header for header in headers if header[0] != b"host"]
    return {
        "type": "http",
        "asgi": dict(ASGI_VERSION),
        "http_version": request.version.removeprefix("HTTP/"),
        "method": request.method,  # as sent: method names are case-sensitive (RFC 9110 9.1)
        "scheme": "http",
        "path": unquote(request.path),  # %-decoded, then UTF-8 (bad bytes become U+FFFD)
        "raw_path": request.path.encode("latin-1"),
        "query_string": request.query.encode("latin-1"),  # still %-encoded
        "root_path": "",
        "headers": headers,
        "client": tuple(client_address[:2]),
        "server": tuple(server_address[:2]),
        "state": dict(state),  # a shallow copy: one request's changes stay its own (lifespan.rst)
    }


# --- Checking the app's events ----------------------------------------------------------------

def event_type(message):
    if not (isinstance(message, dict) and isinstance(message.get("type"), str)):
        raise ValueError(f"an ASGI event is a dict with a 'type' string, got {message!r}")
    return message["type"]


def response_start(message):
    """http.response.start's status and headers, the headers as the core's (str, str) fields."""
    status, headers = message.get("status"), message.get("headers", [])
    # RFC 9110 15: codes run from 100 to 599; a 1xx is an interim answer, which this event is not.
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"http.response.start needs 'status', an int from 200 to 599, "
                         f"got {status!r}")
    if message.get("trailers", False):
        raise ValueError("this server sends no trailers (the scope offers no such extension)")
    try:
        fields = [response_field(pair) for pair in headers]
    except TypeError:
        raise ValueError(f"headers must be an iterable of pairs, got {headers!r}") from None
    choose_framing("GET", "HTTP/1.1", status, fields, None, True)  # refuses a bad Content-Length
    return status, fields


def response_field(pair):
    """One [name, value] pair of bytes as the core's checked (str, str) field."""
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2
            and isinstance(pair[0], bytes) and isinstance(pair[1], bytes)):
        raise ValueError(f"each header must be a [name, value] pair of bytes, got {pair!r}")
    return checked_field(*pair)


@functools.lru_cache(maxsize=1024)
def checked_field(name, value):
    """An app sends the same few headers with every response: each is checked only once."""
    return check_field(name.decode("latin-1"), value.decode("latin-1"))


def response_body(message):
    body, more_body = message.get("body", b""), message.get("more_body", False)
    if not isinstance(body, bytes):
        raise ValueError(f"http.response.body's body must be bytes, got {type(body).__name__}")
    if not isinstance(more_body, bool):
        raise ValueError(f"http.response.body's more_body must be a bool, got {more_body!r}")
    return body, more_body


def asks_to_close(fields):
    """Did the app send Connection: close? The core reads the options, as it does a request's."""
    values = [value for name, value in fields if name.lower() == "connection"]
    return bool(values) and "close" in connection_options(", ".join(values))


# --- One request and its response -------------------------------------------------------------

class Exchange:
    """One request and its response: the app's receive() and send().

    The head goes out with the first body event, not with http.response.start (the spec allows
    it): until then the server can still answer 500, and a body sent in one event gets a
    Content-Length.
    """

    def __init__(self, connection, request, length):
        self.connection, self.request = connection, request
        server = connection.server
        self.body = RequestBody(connection.reader, length, server.max_body, server.timeout)
        self.continue_due = length != 0 and wants_continue(request)  # at the first receive()
        self.body_given = False  # has the app had the http.request with more_body False?
        self.reading = asyncio.Lock()  # one read at a time, however many tasks call receive()
        self.status, self.fields, self.closes = None, None, False  # from http.response.start
        self.framing, self.out = None, None  # once the head has gone out: a Framing, a ResponseBody
        self.complete = False  # the last body event has gone out
        self.gone = False  # the client has left (or its body was refused): send() raises
        self.refused = None  # the core's HTTPError for a broken request body
        self.over = asyncio.Event()  # the response is complete or the client gone: disconnect

    async def receive(self):
        async with self.reading:
            if not (self.body_given or self.over.is_set()):
                try:
                    return await self.next_piece()
                except HTTPError as error:  # a broken chunked body: answered after the app
                    self.refused = error
                except ClientDisconnected:
                    pass
                self.hang_up()
        await self.until_over()
        return {"type": "http.disconnect"}

    async def next_piece(self):
        if self.continue_due and self.framing is None:  # the client waits for it to send the body
            self.continue_due = False
            await self.connection.write(CONTINUE)  # (never after the final head: it comes first)
        data = await self.body.read()
        self.body_given = self.body.done
        return {"type": "http.request", "body": data, "more_body": not self.body.done}

    def hang_up(self):
        self.gone = True
        self.over.set()

    async def until_over(self):
        """Wait until the response is complete or the client has gone. A client that leaves
        shows only as the stream's end or reset: look every POLL seconds (a long poll waits)."""
        while not self.over.is_set():
            if self.connection.client_gone():
                self.hang_up()
            else:
                # Not wait_for: on Python 3.11 it loses a cancellation that comes as the wait
                # ends, and the app (Django cancels its disconnect listener) gets an event instead.
                try:
                    async with asyncio.timeout(POLL):
                        await self.over.wait()
                except TimeoutError:
                    pass

    async def send(self, message):
        kind = event_type(message)
        if self.complete:
            raise RuntimeError(f"{kind!r} sent after the response was complete")
        if self.status is None:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start' first, got {kind!r}")
            self.status, fields = response_start(message)
            self.closes = asks_to_close(fields)
            # The server owns the connection: the app's hop-by-hop headers (Transfer-Encoding,
            # which the spec says a server must ignore, Connection...) give way to its own.
            self.fields = [field for field in fields if field[0].lower() not in HOP_BY_HOP]
        elif kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        if self.gone:
            raise ClientDisconnected("the client has gone")
        if kind == "http.response.body":
            await self.send_body(*response_body(message))

    async def send_body(self, body, more_body):
        data = self.head(None if more_body else len(body)) if self.framing is None else b""
        data += self.out.frame(body)
        if not more_body:
            data += self.out.end()
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
        """Fix the framing with the core, now that the head goes out; the head's bytes."""
        request, stopping = self.request, self.connection.server.stopping
        # A final answer before the app asked for a body the client holds back until 100
        # Continue: the body may never come, so the head says the connection closes after it
        # (RFC 9110 10.1.1: a server answering before the content says whether it will close).
        keep_alive = request.keep_alive and not (stopping or self.closes or self.continue_due)
        self.framing = choose_framing(request.method, request.version, self.status, self.fields,
                                      body_length, keep_alive)
        self.out = ResponseBody(self.framing)
        status = f"{self.status} {REASONS.get(self.status, '')}"  # (a reason may be empty)
        return build_head(status, self.fields + self.framing.headers)

    async def run(self, app, scope):
        """Call the app, and answer for it if it failed early. True if the connection goes on."""
        failed = False
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            self.gone = True  # raised by send(), let through by the app: nothing to log
        except Exception:
            failed = True
            target = f"{self.request.method} {self.request.target}"
            if self.gone:  # most likely the app's answer to http.disconnect
                log.info("the application raised after its client left, for %s", target)
            else:
                log.exception("error in the application, for %s", target)
        else:
            if not (self.complete or self.gone):
                failed = True
                log.error("the application returned without completing its response")
        self.over.set()  # an app's task still waiting in receive() hears http.disconnect
        return await self.finish(failed)

    async def finish(self, failed):
        if self.framing is None and (failed or self.refused):
            # Nothing has gone out yet: the client can still get a proper answer.
            error = self.refused or HTTPError(500, "the application failed")
            await self.connection.write_quietly(error_answer(error, self.request.method))
            return False
        if failed or self.gone or not self.framing.keep_alive:
            return False  # after the head, only a close tells the client that the body is cut
        if self.out.cut_short:
            return False  # shorter than its Content-Length: only the close ends it
        if self.continue_due:
            return False  # no 100 Continue sent: close, not drain (one of RFC 9110 10.1.1's ways)
        if self.body.done:
            return True  # (a GET: no body, nothing to drain)
        try:
            async with self.reading:  # what the app left of the body would pass for a request
                while await self.body.read():
                    pass
        except (HTTPError, ClientDisconnected):
            return False
        return True


# --- Connections ------------------------------------------------------------------------------

class Stream(asyncio.StreamReader):
    """asyncio's stream, which also remembers that the client has ended its side. at_eof() says
    so only once every byte before the end has been read, and a request pipelined behind a long
    poll stays unread until the poll is over."""

    ended = False

    def feed_eof(self):
        self.ended = True
        super().feed_eof()

    def crlf_head_size(self):
        """The size of the head buffered, if it ends in CRLF CRLF with no bare LF before that end
        (then it ends there); else 0. StreamReader cannot peek: this looks into its private buffer
        without taking anything out of it."""
        end = self._buffer.find(b"\r\n\r\n") + 4
        if end > 3 and self._buffer.count(b"\n", 0, end) == self._buffer.count(b"\r\n", 0, end):
            return end
        return 0


class Connection:
    """One client's connection: its stream, and its requests, one after another."""

    def __init__(self, server, reader, writer):
        self.server, self.reader, self.writer = server, reader, writer
        self.client_address = writer.get_extra_info("peername")[:2]
        try:
            # asyncio sets TCP_NODELAY only on a socket whose proto is IPPROTO_TCP, and one accepted
            # from socket.create_server's has proto 0. Without it, on a kept-alive connection,
            # Nagle holds each small write until the client's delayed ACK: about 40 ms a chunk.
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the client has reset the connection already: the first read will tell
        self.idle = True  # waiting for a request: a stopping server may close it at once
        self.task = asyncio.current_task()
        self.high_water = writer.transport.get_write_buffer_limits()[1]  # drain() waits above it

    def client_gone(self):
        """Has the client closed or reset the connection? (Bytes it sent before the end, a
        pipelined request, may still wait to be read: they do not keep it here.)"""
        return self.reader.ended or self.writer.is_closing()

    async def write(self, data):
        """Write, then wait for the transport to drain: a client that stops reading holds up the
        app's send() (for `timeout` seconds, then it counts as gone) instead of filling memory."""
        if self.writer.is_closing():
            raise ClientDisconnected("the connection is closed")
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() <= self.high_water:
            return  # drain() would not wait: spare the timer
        try:
            async with asyncio.timeout(self.server.timeout):
                await self.writer.drain()
        except TimeoutError:
            # What waits in the buffer will never go out, and a close would wait for it to go:
            # drop it, and the connection with it.
            self.writer.transport.abort()
            raise ClientDisconnected("the client has stopped reading") from None
        except OSError as error:
            raise ClientDisconnected(f"the client has gone ({error!r})") from error

    async def write_quietly(self, data):
        try:
            await self.write(data)
        except ClientDisconnected:
            pass  # the client has gone already

    async def next_request(self):
        """The next request; None if the client closed the connection, stayed silent for
        `timeout` seconds, or the server is stopping. A request's whole head must come within
        `timeout` seconds of its first byte, or it gets 408. (One timer for both waits, and
        rescheduled only for a head that is still coming: a timer costs as much as a head.)"""
        if self.server.stopping:
            return None
        first, self.idle = b"", True
        try:
            async with asyncio.timeout(self.server.timeout) as deadline:
                first = await self.reader.read(1)  # until the first byte, the connection is idle
                self.idle = False
                if not first:
                    return None
                size = self.reader.crlf_head_size() if first != b"\n" else 0
                if size:  # the usual case: the whole head has come, with CRLFs: one read, no wait
                    return parse_request(io.BytesIO(first + await self.reader.readexactly(size)))
                deadline.reschedule(asyncio.get_running_loop().time() + self.server.timeout)
                return await read_head(self.reader, first)
        except TimeoutError:
            if first:
                raise HTTPError(408, "the request head did not arrive in time") from None
            return None  # an idle connection is closed without a word, as clients expect
        except OSError:
            return None  # the client reset the connection
        finally:
            self.idle = False

    async def serve(self):
        """Serve the requests in order (pipelined ones too) until one ends the connection."""
        linger = True
        try:
            while True:
                request = await self.next_request()
                if request is None:
                    linger = False  # every request was answered: nothing to protect at the close
                    break
                if not await self.respond(request):
                    break
                del request  # while the connection waits for the next one, it keeps nothing of it
        except asyncio.CancelledError:
            linger = False  # cut off by stop()
            raise
        except HTTPError as error:
            # A malformed or stalled request: answer, then close (where would the next one begin?)
            await self.write_quietly(error_answer(error))
        except OSError:
            pass  # the client closed or reset the connection
        except Exception:  # a bug of the server's must not stop it
            log.exception("error while serving %s:%s", *self.client_address)
        finally:
            await self.close(linger)

    async def respond(self, request):
        """Serve one request; True if the connection goes on. A function of its own so that the
        request's scope and Exchange are gone once it returns: thousands of idle connections would
        otherwise each keep their last request alive (about a third of their memory)."""
        server = self.server
        upgrade = server.upgrade(request)
        if upgrade is not None:
            await upgrade(self, request)
            return False  # the other protocol had the connection until its end
        exchange = Exchange(self, request, request_body_length(request, server.max_body))
        scope = make_scope(request, server.server_address, self.client_address, server.state)
        return await exchange.run(server.app, scope)

    async def close(self, linger):
        """Close without destroying an answer the client has not read yet: closing with its
        bytes unread sends a reset (RFC 9112 9.6). So: end our side, drop what comes for a
        moment, then close (with `linger`)."""
        try:
            if linger and self.writer.can_write_eof() and not self.writer.is_closing():
                self.writer.write_eof()
                async with asyncio.timeout(0.5):
                    while await self.reader.read(PIECE):
                        pass
        except (OSError, TimeoutError):
            pass  # the client has gone already, or keeps sending
        finally:
            self.writer.close()  # which waits until the buffer has gone out
            try:
                async with asyncio.timeout(self.server.timeout):
                    await self.writer.wait_closed()
            except TimeoutError:
                self.writer.transport.abort()  # a client that stopped reading after the last drain
            except OSError:
                pass


# --- Lifespan ---------------------------------------------------------------------------------

class StartupFailed(RuntimeError):
    """The app's lifespan startup failed: the server does not serve."""


class Lifespan:
    """The lifespan protocol (asgiref's specs/lifespan.rst): startup before the first request,
    shutdown after the last, in the loop that serves the requests.

    "on": the app must take part. "auto": an app that raises (or returns) before it answers
    startup does not support lifespan, and is served without it, as the spec says. "off": no
    lifespan scope at all.
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
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.send)
            error = "the app returned from the lifespan scope"
        except Exception as exception:
            error = f"the app raised {exception!r}"
            if self.mode == "on" or self.answered["startup"].is_set():
                log.exception("error in the application's lifespan")
        if not self.answered["startup"].is_set():
            if self.mode == "auto":
                log.info("%s before it answered lifespan.startup: serving without lifespan",
                         error)
            else:
                self.failure = f"{error} before it sent lifespan.startup.complete"
        for answered in self.answered.values():
            answered.set()  # nobody waits for an answer that cannot come

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
        """Send lifespan.shutdown (unless startup failed); wait `grace` seconds for the answer."""
        if self.task is None:
            return
        if self.failure is None and not self.task.done():
            await self.inbox.put({"type": "lifespan.shutdown"})
            try:
                await asyncio.wait_for(self.answered["shutdown"].wait(), grace)
            except TimeoutError:
                log.warning("the app did not answer lifespan.shutdown within %g s", grace)
        self.task.cancel()  # an app still in its lifespan scope stops waiting
        await asyncio.gather(self.task, return_exceptions=True)


# --- The server -------------------------------------------------------------------------------

class ASGIServer:
    """Serves an ASGI app: `await serve()` in a running loop, or start() and shutdown() from
    another thread (a notebook, a test). The port is bound at once: server_address is known."""

    def __init__(self, app, host="127.0.0.1", port=8000, *, lifespan="auto", backlog=1024,
                 timeout=TIMEOUT, grace=GRACE, max_body=MAX_BODY):
        if not callable(app):
            raise TypeError(f"app must be an ASGI application (an async callable), got {app!r}")
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', got {lifespan!r}")
        if not (timeout > 0 and grace >= 0 and max_body >= 0):
            raise ValueError("timeout must be > 0, grace and max_body >= 0")
        self.app, self.lifespan = app, lifespan
        self.timeout, self.grace, self.max_body = timeout, grace, max_body
        self.backlog = backlog
        self.socket = listen(host, port, backlog)
        self.server_address = self.socket.getsockname()[:2]
        self.state = {}  # the lifespan state, copied into every request's scope
        self.connections = set()
        self.stopping = False
        self.loop, self.task, self.thread, self.error = None, None, None, None
        self.stop_requested = asyncio.Event()
        self.ready = threading.Event()  # start() waits for it: serving, or failed to start

    def upgrade(self, request):
        """A handler to switch the connection to another protocol, or None to serve HTTP. A
        WebSocket handshake (Upgrade: websocket) would get one that runs the app with a scope of
        type "websocket": lesson 09's WebSocketServer (gatewaylab.websocket) overrides this. This
        server has none: it serves HTTP, as RFC 9110 7.8 allows."""
        return None

    async def serve(self, on_ready=None):
        """Lifespan startup; serve until shutdown is requested; stop(); lifespan shutdown."""
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        lifespan = Lifespan(self.app, self.lifespan)
        try:
            await lifespan.startup()
        except BaseException:
            self.socket.close()
            await lifespan.shutdown(0)
            raise
        self.state = lifespan.state
        # What asyncio.start_server does, with a Stream for each connection's reader. It calls
        # listen() again, with a backlog of 100 unless given ours.
        server = await self.loop.create_server(
            lambda: asyncio.StreamReaderProtocol(Stream(MAX_LINE + 2), self.connected),
            sock=self.socket, backlog=self.backlog)
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
            pass  # cut off by stop(), and closed: end quietly (asyncio logs a cancelled task here)
        finally:
            self.connections.discard(connection)

    async def stop(self, server):
        """Stop accepting; close idle connections; give the requests in flight `grace` seconds to
        finish (their responses say Connection: close); then cut off the rest."""
        self.stopping = True
        server.close()
        for connection in list(self.connections):
            if connection.idle:
                connection.task.cancel()
        tasks = {connection.task for connection in self.connections}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.grace)
            if late:
                log.warning("%d request(s) cut off %g s after shutdown", len(late), self.grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def start(self, timeout=10.0):
        """Serve in a daemon thread with its own event loop; return once it serves. A failed
        startup raises here (StartupFailed) and leaves no thread behind."""
        def run():
            try:
                asyncio.run(self.serve(on_ready=self.ready.set))
            except BaseException as error:  # kept: a dead server thread must not be silent
                self.error = error
            finally:
                self.ready.set()
        self.thread = threading.Thread(target=run, name="gatewaylab-asgi", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout):  # a lifespan startup that never ends, say
            self.loop.call_soon_threadsafe(self.task.cancel)
            self.thread.join()
            raise TimeoutError(f"the ASGI server did not start within {timeout:g} s")
        if self.error is not None:
            self.thread.join()
            raise self.error
        return self

    def request_shutdown(self):
        """Ask serve() to stop, from any thread (or from a signal handler in the loop's)."""
        self.stopping = True
        try:
            self.loop.call_soon_threadsafe(self.stop_requested.set)
        except (AttributeError, RuntimeError):  # no loop yet, or closed: nobody waits on it
            self.stop_requested.set()

    def shutdown(self):
        """Stop a server started with start(); return once its thread has ended."""
        self.request_shutdown()
        if self.thread is not None:
            self.thread.join()
        if self.loop is None:
            self.socket.close()  # serve() never ran: nothing else will free the port

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.shutdown()


# --- The command line -------------------------------------------------------------------------

def main(argv=None, server_class=ASGIServer, prog="python -m gatewaylab.asgi"):
    """The command line. A subclass of ASGIServer (lesson 09's WebSocketServer) reuses it."""
    parser = argparse.ArgumentParser(prog=prog, description="Serve an ASGI application.")
    parser.add_argument("app", help="the application, as module:name (for example hello:app)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any)")
    parser.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                        help="the lifespan protocol (default: auto, if the app supports it)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds (default: {TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        server = server_class(load_app(args.app), args.host, args.port, lifespan=args.lifespan,
                              timeout=args.timeout)
    except (ValueError, OSError) as error:  # a bad module:name or option, a port in use
        parser.exit(1, f"error: {error}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    host, port = server.server_address

    def ready():
        print(f"Serving {args.app} on http://{host}:{port}; Ctrl-C to stop", flush=True)

    async def run():
        # Ctrl-C (SIGINT) and SIGTERM both stop the server gracefully.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(stop_signal, server.request_shutdown)
        await server.serve(on_ready=ready)
    try:
        asyncio.run(run())
    except StartupFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    # The command serves WebSocket too: lesson 09 adds it in a module of its own, which imports
    # this one (never the other way, but for this line). Its main() is this module's, run as
    # gatewaylab.asgi, the module WebSocketServer's classes come from (here, this file runs as
    # __main__: a second copy, whose StartupFailed would not be the one raised).
    from gatewaylab.websocket import main as main_with_websocket
    sys.exit(main_with_websocket(prog="python -m gatewaylab.asgi"))
