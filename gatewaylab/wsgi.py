"""A WSGI server (PEP 3333) on raw sockets: lesson 03 builds it, lesson 04 makes it concurrent.

    python -m gatewaylab.wsgi module:app --port 8000 --threads 10

It reads each request head with lesson 01's gatewaylab.http1, turns the request into an environ, calls the application
and streams the body it returns back to the client. It is small on purpose (no TLS, no HTTP/2, no worker processes),
but what it does, it does by the rules of PEP 3333 and RFC 9112.
"""
import argparse
import errno
import importlib
import io
import logging
import os
import re
import selectors
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_to_bytes

from gatewaylab.http1 import (CONTINUE, HOP_BY_HOP, LAST_CHUNK, MAX_BODY, HTTPError, build_head, check_field,
                              choose_framing, encode_chunk, error_response, parse_request, read_chunked,
                              request_body_length, wants_continue, with_date)

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds a client may stay silent, between requests or in the middle of one


class ClientDisconnected(ConnectionError):
    """The client went away (closed, reset, or stopped reading) while the server was reading or writing."""


# --- The request body ---------------------------------------------------------------------------------------------

class InputStream:
    """wsgi.input for a body with a Content-Length: it reads from the connection, but ends where the body ends.

    After the body the connection stays open for the next request, so an app calling read() without this limit
    would wait for bytes that belong to the next request, or that never come.
    """

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.remaining = length  # bytes of the body not read yet

    def limit(self, size):
        """A request for `size` bytes, cut to what is left of the body; -1 or None mean all of it."""
        if size is None or size < 0:
            return self.remaining
        return min(size, self.remaining)

    def read(self, size=-1):
        size = self.limit(size)
        try:
            data = self.rfile.read(size)
        except OSError as error:  # reset, or silent for longer than the timeout
            raise ClientDisconnected(str(error)) from error
        if len(data) < size:  # read(n) returns fewer than n bytes only at the end of the stream
            raise ClientDisconnected("the client closed the connection in the middle of the request body")
        self.remaining -= len(data)
        return data

    def readline(self, size=-1):
        size = self.limit(size)
        try:
            line = self.rfile.readline(size)
        except OSError as error:
            raise ClientDisconnected(str(error)) from error
        if size and not line:
            raise ClientDisconnected("the client closed the connection in the middle of the request body")
        self.remaining -= len(line)
        return line

    def readlines(self, hint=-1):
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def open_body(request, rfile, sock, max_body):
    """The request body as a file for wsgi.input, and its length (the core's request_body_length frames it)."""
    length = request_body_length(request, max_body)  # None: chunked
    if length != 0 and wants_continue(request):
        sock.sendall(CONTINUE)  # the client waits for this before it sends its body
    if length is None:
        # The whole chunked body is read before the app runs: the size limit and a 400 for a broken chunk happen in
        # the server, and the environ can give CONTENT_LENGTH, which many apps (Flask's among them) want before reading.
        body = read_chunked(rfile, max_body)
        return io.BytesIO(body), len(body)
    return InputStream(rfile, length), (length if request.header("Content-Length") is not None else None)


# --- The environ --------------------------------------------------------------------------------------------------

def make_environ(request, body, length, server_address, client_address, multithread):
    """The PEP 3333 environ of one request: CGI variables as latin-1 strings, then the wsgi.* keys."""
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # Percent-decoded to bytes, kept as latin-1 (as wsgiref does): an app re-encodes to latin-1 to get UTF-8 back.
        "PATH_INFO": unquote_to_bytes(request.path).decode("latin-1"),
        "QUERY_STRING": request.query,
        "SERVER_NAME": server_address[0],
        "SERVER_PORT": str(server_address[1]),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": client_address[0],
        "REMOTE_PORT": str(client_address[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    for name, value in request.headers:
        if "_" in name:
            # "X_User" would become HTTP_X_USER like "X-User": a client could pass one off as the other, e.g. past a
            # proxy that sets X-User itself. Such headers are dropped, as nginx and gunicorn do.
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            # (Both describe the body as it came on the wire; the app gets it de-chunked, with CONTENT_LENGTH set
            # above. Left in, "chunked" would tell apps such as Flask that the length is unknown.)
            key = "HTTP_" + key
            environ[key] = environ[key] + "," + value if key in environ else value
    if request.host is not None:
        environ["HTTP_HOST"] = request.host  # an absolute-form target's authority wins over Host (RFC 9112 3.2.2)
    return environ


# --- The response -------------------------------------------------------------------------------------------------

def check_status(status):
    """The app's status must be a str like "404 Not Found" (PEP 3333). A broken rule raises AssertionError, as in
    wsgiref, and the server answers 500."""
    if not (isinstance(status, str) and re.fullmatch(r"[1-5][0-9][0-9] [^\r\n]*", status)):
        raise AssertionError(f"status must be a str like '200 OK', got {status!r}")


def check_headers(headers):
    """The app's headers must be a list of (name, value) str tuples, and not hop-by-hop ones."""
    if type(headers) is not list:
        raise AssertionError(f"headers must be a list, got {type(headers).__name__}")
    for header in headers:
        if type(header) is not tuple or len(header) != 2:
            raise AssertionError(f"each header must be a (name, value) tuple, got {header!r}")
        try:
            name, value = check_field(*header)
        except ValueError as error:
            raise AssertionError(str(error)) from None
        if name.lower() in HOP_BY_HOP:
            raise AssertionError(f"hop-by-hop header {name!r} is not allowed: the server manages the connection")


def send_bytes(sock, data):
    """sock.sendall(data), where a client that has gone away raises ClientDisconnected."""
    if not data:
        return
    try:
        sock.sendall(data)
    except OSError as error:  # reset, broken pipe, or a client that stopped reading for `timeout` seconds
        raise ClientDisconnected(str(error)) from error


class Response:
    """One response: the app's start_response() and write(), and its body on the way to the client.

    Nothing is sent before the body's first bytes (PEP 3333): until then the app may still change its mind.
    """

    def __init__(self, sock, request, server_allows_keep_alive):
        self.sock, self.request = sock, request
        self.server_allows_keep_alive = server_allows_keep_alive  # asked when the headers go out
        self.status, self.headers = None, []  # from start_response: "200 OK", [(name, value)]
        self.framing = None  # a Framing, from the moment the headers go out
        self.remaining = None  # bytes the app's Content-Length still allows; None: no limit

    @property
    def headers_sent(self):
        return self.framing is not None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    # Too late to replace the response: re-raise, and the server will close the connection.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # a traceback kept in a local makes a reference cycle
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        check_status(status)
        check_headers(headers)
        self.status, self.headers = status, headers
        return self.write

    def write(self, data):
        """The write() callable start_response() returns, for old-style apps: sends a piece of the body at once."""
        self.send(data)

    def send(self, data, body_length=None):
        """Send a piece of the body, and the headers first if they have not gone yet."""
        if not isinstance(data, bytes):
            raise AssertionError(f"the body must be bytes, got {type(data).__name__}")
        if self.status is None:
            raise AssertionError("the body started before start_response() was called")
        head = b"" if self.headers_sent else self.head(body_length)
        send_bytes(self.sock, head + self.frame(data))

    def finish(self):
        """End the response. Returns True if the connection may carry another request."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        head = b"" if self.headers_sent else self.head(body_length=0)
        send_bytes(self.sock, head + (LAST_CHUNK if self.framing.chunked else b""))
        # A body shorter than its Content-Length leaves the client waiting for the rest: only closing ends that.
        return self.framing.keep_alive and not self.remaining

    def head(self, body_length):
        """Fix the framing, now that the headers go out, and return them as bytes."""
        keep_alive = self.request.keep_alive and self.server_allows_keep_alive()
        try:
            framing = choose_framing(self.request.method, self.request.version, int(self.status[:3]), self.headers,
                                     body_length, keep_alive)
        except ValueError as error:  # the app's own Content-Length is broken
            raise AssertionError(str(error)) from None
        self.framing, self.remaining = framing, framing.limit
        return build_head(self.status, self.headers + framing.headers)

    def frame(self, data):
        """A piece of the body as it goes on the wire: cut to the declared length, or wrapped as one chunk."""
        if not self.framing.has_body:
            return b""
        if self.remaining is not None:
            data = data[:self.remaining]  # never more than the app's Content-Length
            self.remaining -= len(data)
        return encode_chunk(data) if self.framing.chunked else data


# --- Running the app ----------------------------------------------------------------------------------------------

def has_one_item(result):
    """len(result) == 1: then the first piece is the whole body, and the server may give its Content-Length."""
    try:
        return len(result) == 1
    except TypeError:  # a generator has no length
        return False


def run_app(app, environ, response):
    """Call the app and stream its body. Returns True if the connection may carry another request.

    PEP 3333 asks the server to call the iterable's close(), if it has one, however the response ends: that is where
    apps release what they hold for the request (files, database connections).
    """
    result = app(environ, response.start_response)
    try:
        whole = has_one_item(result)
        for data in result:
            if data:  # headers go out with the first non-empty piece, never before
                response.send(data, body_length=len(data) if whole else None)
        return response.finish()
    finally:
        if hasattr(result, "close"):
            result.close()


def close_gently(sock):
    """Prepare to close a connection on which the client may still be sending.

    Closing a socket with unread data makes the kernel reset the connection, and the reset can destroy our answer
    before the client has read it (RFC 9112 section 9.6). So: stop writing, and read and drop what still comes for a
    moment (a client reads the answer, sees our end of the stream, and closes its side).
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        deadline = time.monotonic() + 0.5
        while sock.recv(65536) and time.monotonic() < deadline:
            pass
    except OSError:
        pass  # the client is gone already


def send_error(sock, error):
    """Answer a request the server refuses (or an app that failed) with lesson 01's error response, plus a Date."""
    try:
        sock.sendall(with_date(error_response(error)))
    except OSError:
        pass  # the client is gone already


# --- The server ---------------------------------------------------------------------------------------------------

class SocketReader(io.RawIOBase):
    """A connection's bytes, for its buffered reader, with an optional deadline that no read may wait past.

    The socket's timeout bounds each wait; it cannot stop a client that sends a byte just before each timeout runs
    out (slowloris). While a request head is read, a deadline bounds all the waits together, as nginx's
    client_header_timeout does.
    """

    def __init__(self, sock, timeout):
        self.sock, self.timeout = sock, timeout
        self.deadline = None  # time.monotonic() by which the current read must be done; None: no deadline

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is not None:
            wait = min(self.timeout, self.deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("the deadline passed")
            self.sock.settimeout(wait)
        try:
            return self.sock.recv_into(buffer)
        except BlockingIOError:
            return None  # nothing there yet (request_waiting() looks without waiting): the buffered reader's word
        finally:
            if self.deadline is not None:
                self.sock.settimeout(self.timeout)


class Connection:
    """One client's connection: its socket with a timeout on every read, a buffered reader on it with a deadline for
    request heads, and since when it has been idle (waiting for the client's next request)."""

    def __init__(self, sock, client_address, timeout):
        sock.settimeout(timeout)  # a client silent half-way through a request is dropped
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stall between two small writes
        except OSError:
            pass  # macOS refuses it on a connection the client has reset already; the first read will tell
        self.sock, self.client_address, self.timeout = sock, client_address, timeout
        self.reader = SocketReader(sock, timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.idle_since = time.monotonic()
        self.watched = False  # registered with the server's selector?

    def request_waiting(self):
        """Has the client sent (part of) its next request already? Looks without waiting.

        A selector only sees bytes still in the kernel. A client that sent two requests at once (pipelining) may have
        its second one in our buffer already, where no selector will ever report it.
        """
        self.sock.settimeout(0)  # for a moment: a read that would wait fails at once instead
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False  # the selector will report the reset or the close, and the next read will see it
        finally:
            self.sock.settimeout(self.timeout)

    def cut(self):
        """Shut the connection down from another thread: the thread serving it finds its next read or write fails."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already, by us or by the client

    def close(self):
        self.rfile.close()
        self.sock.close()


class IdleConnections:
    """The open connections that wait for their client's next request, all watched by one selector, so that an idle
    client holds no thread. Each one is closed once it has been idle for `timeout` seconds.

    A dict keeps insertion order, so the connection idle the longest comes first: the timeouts are checked from the
    front, and the check stops at the first connection that still has time.
    """

    def __init__(self, selector, timeout):
        self.selector, self.timeout = selector, timeout
        self.connections = {}  # socket -> Connection

    def __len__(self):
        return len(self.connections)

    def watch(self, connection):
        """The connection is idle from now on: watch it until its client sends something."""
        connection.idle_since = time.monotonic()
        self.connections[connection.sock] = connection
        if not connection.watched:
            self.selector.register(connection.sock, selectors.EVENT_READ, connection)
            connection.watched = True

    def busy(self, connection, keep_watching=False):
        """The connection is being served; the selector stops watching it, unless told to keep watching."""
        self.connections.pop(connection.sock, None)
        if connection.watched and not keep_watching:
            self.selector.unregister(connection.sock)
            connection.watched = False

    def close(self, connection):
        self.busy(connection)
        connection.close()

    def wait_time(self, longest):
        """Seconds until the longest-idle connection times out, at most `longest`: how long select() may wait."""
        for connection in self.connections.values():
            return max(0.0, min(longest, connection.idle_since + self.timeout - time.monotonic()))
        return longest

    def close_expired(self, timeout=None):
        """Close, without a word (as clients expect), the connections idle for `timeout` seconds or more."""
        oldest_allowed = time.monotonic() - (self.timeout if timeout is None else timeout)
        while self.connections:
            connection = next(iter(self.connections.values()))  # the longest idle
            if connection.idle_since > oldest_allowed:
                return
            self.close(connection)


class Workers:
    """A pool of worker threads (threads > 1). A worker serves a connection while its client has requests, then
    hands it back to the server, to wait among the idle connections."""

    def __init__(self, server, threads):
        self.server = server
        self.pool = ThreadPoolExecutor(threads, "gatewaylab-wsgi")
        self.lock = threading.Condition()  # guards what the workers share with serve_forever():
        self.busy = set()  # connections a worker serves, or that wait for a free worker
        self.done = []  # connections served and idle again, for serve_forever() to watch
        self.stopping = False

    def serve(self, connection):
        with self.lock:
            self.busy.add(connection)
        self.pool.submit(self.work, connection)

    def work(self, connection):
        keep = False
        try:
            keep = serve_connection(self.server, connection)
        finally:  # (even if an app called sys.exit())
            self.give_back(connection, keep)

    def give_back(self, connection, keep):
        """A worker is done with a connection: close it, or hand it to serve_forever() to wait among the idle ones."""
        with self.lock:
            self.busy.discard(connection)
            keep = keep and not self.stopping
            first = keep and not self.done  # (if not, a wake-up is on its way already)
            if keep:
                self.done.append(connection)
            self.lock.notify_all()
        if not keep:
            connection.close()
        elif first:
            self.server.wake()

    def take_done(self):
        with self.lock:
            done, self.done = self.done, []
        return done

    def stop(self, grace):
        """Give the busy connections `grace` seconds to finish, then cut them off; wait until every worker is done."""
        with self.lock:
            self.stopping = True
            if not self.lock.wait_for(lambda: not self.busy, grace):
                for connection in self.busy:
                    connection.cut()
        self.pool.shutdown(wait=True)
        for connection in self.take_done():
            connection.close()


def read_request(connection):
    """The next request on a connection, or None if there is none: the client closed the connection, or stayed
    silent for the whole timeout. Once a request has started, its whole head must arrive within `timeout` seconds:
    a client that stops half-way, or trickles it, gets 408, as in lesson 01."""
    try:
        if not connection.rfile.peek(1):  # wait for the first byte: until it comes, the connection is idle
            return None
    except TimeoutError:
        return None  # an idle keep-alive connection is closed without a word, as clients expect
    connection.reader.deadline = time.monotonic() + connection.timeout
    try:
        return parse_request(connection.rfile)
    except TimeoutError:
        raise HTTPError(408, "the request head did not arrive in time") from None
    finally:
        connection.reader.deadline = None


def handle_request(server, request, connection):
    """Answer one request with server.app. Returns True if the connection may carry another one."""
    sock, rfile = connection.sock, connection.rfile
    body, length = open_body(request, rfile, sock, server.max_body)
    environ = make_environ(request, body, length, server.server_address, connection.client_address,
                           server.threads > 1)
    response = Response(sock, request, server_allows_keep_alive=lambda: not server.stopping)
    try:
        keep_alive = run_app(server.app, environ, response)
    except ClientDisconnected:
        return False
    except Exception:
        log.exception("error in the application, for %s %s", request.method, request.target)
        if not response.headers_sent:
            send_error(sock, HTTPError(500, "the application failed"))
        # After the headers, closing is the only way to tell the client: it sees a body cut short.
        return False
    if keep_alive:
        # Read what the app left of the body, or it would be taken for the next request (at most max_body bytes).
        while body.read(65536):
            pass
    return keep_alive


def serve_connection(server, connection):
    """Serve the requests a client has sent on a connection, one after another.

    Returns True when the client has asked for everything it wanted so far: the connection stays open, idle. Returns
    False when the connection is done with; the caller closes it.
    """
    try:
        while True:
            request = read_request(connection)
            if request is None:
                return False  # the client closed the connection (or, waiting here, stayed silent too long)
            if not handle_request(server, request, connection):
                if request.keep_alive or connection.request_waiting():
                    # The client may still be sending: its next request, or a body the app did not read.
                    close_gently(connection.sock)
                return False
            if not connection.request_waiting():
                return True
    except HTTPError as error:
        # A malformed or stalled request. After an answer we close: we can't tell where the next request would begin.
        send_error(connection.sock, error)
        close_gently(connection.sock)
    except OSError:
        pass  # the client closed or reset the connection, or went silent in the middle of a request body
    except Exception:
        log.exception("error while serving %s:%s", *connection.client_address[:2])  # a bug must not stop the server
    return False


def check_options(app, threads, backlog, timeout, max_body):
    """Refuse bad arguments for a server with a clear message, before it binds a port."""
    if not callable(app):
        raise TypeError(f"app must be a WSGI application (a callable), got {app!r}")
    if not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if not (isinstance(backlog, int) and backlog >= 0):
        raise ValueError(f"backlog must be an int >= 0, got {backlog!r}")
    if not timeout > 0 or not max_body >= 0:
        raise ValueError(f"timeout must be > 0 and max_body >= 0, got {timeout!r} and {max_body!r}")


class WSGIServer:
    """Listens on a socket and serves its connections: in the serving thread itself (threads=1, the sequential
    server), or with a pool of `threads` worker threads."""

    def __init__(self, app, host="127.0.0.1", port=8000, *, threads=1, backlog=1024, timeout=TIMEOUT,
                 max_body=MAX_BODY):
        check_options(app, threads, backlog, timeout, max_body)
        self.app, self.threads, self.timeout, self.max_body = app, threads, timeout, max_body
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # The backlog is how many connections the kernel keeps waiting for accept(); beyond it, clients are refused
        # or retry later. (create_server also sets SO_REUSEADDR, so a restarted server can bind the port again.)
        self.socket = socket.create_server((host, port), family=family, backlog=backlog)
        self.server_address = self.socket.getsockname()[:2]
        self.waker, self.wakeup = socket.socketpair()  # a byte on it wakes serve_forever(): see wake()
        self.waker.setblocking(False)
        self.wakeup.setblocking(False)
        self.selector = selectors.DefaultSelector()  # epoll on Linux, kqueue on macOS, select on Windows
        self.selector.register(self.socket, selectors.EVENT_READ)
        self.selector.register(self.wakeup, selectors.EVENT_READ)
        self.idle = IdleConnections(self.selector, timeout)
        self.workers = None  # a Workers pool while serve_forever() runs, if threads > 1
        self.serving = None  # the connection the sequential server is serving, if any
        self.stopping = False
        self.stopped = threading.Event()
        self.stopped.set()

    def serve_forever(self, poll_interval=0.5):
        """Serve until shutdown() is called (or Ctrl-C in this thread), then close every connection."""
        self.stopped.clear()
        self.workers = Workers(self, self.threads) if self.threads > 1 else None
        try:
            while not self.stopping:
                for key, _ in self.selector.select(self.idle.wait_time(poll_interval)):
                    if key.fileobj is self.socket:
                        self.accept()
                    elif key.fileobj is self.wakeup:
                        self.wakeup.recv(4096)
                        for connection in self.workers.take_done() if self.workers else []:
                            self.idle.watch(connection)
                    else:
                        self.serve(key.data)  # the client of an idle connection sent something
                self.idle.close_expired()
        finally:
            self.stopping = True  # (Ctrl-C has not set it)
            try:
                self.idle.close_expired(timeout=0)  # all of them
                if self.workers is not None:
                    self.workers.stop(grace=self.timeout)
            finally:
                self.stopping = False  # (so that serve_forever() may run again)
                self.stopped.set()

    def accept(self):
        try:
            sock, client_address = self.socket.accept()
        except OSError as error:
            log.warning("accept() failed: %s", error)
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of file descriptors or memory: the connection stays in the backlog, the listening socket stays
                # ready, and trying again at once would spin. Give the open connections a moment to close.
                time.sleep(0.1)
            return
        try:
            connection = Connection(sock, client_address, self.timeout)
        except OSError:  # the client is gone already
            sock.close()
            return
        if connection.request_waiting():
            self.serve(connection)  # most clients send their request at once: no need to wait for it
        else:
            self.idle.watch(connection)

    def serve(self, connection):
        """Serve a connection whose client has sent something: here (the sequential server), or in a worker."""
        if self.workers is None:
            # The selector may go on watching it, since nothing else reads meanwhile. Unwatching it and watching it
            # again costs two system calls a request: with wrk and a hello-world app, 25,000 requests a second
            # instead of 32,000.
            self.idle.busy(connection, keep_watching=True)
            self.serving, keep = connection, False
            try:
                keep = serve_connection(self, connection)
            finally:  # (even on Ctrl-C)
                self.serving = None
                if keep:
                    self.idle.watch(connection)
                else:
                    self.idle.close(connection)
        else:
            self.idle.busy(connection)  # (a worker reads it now: the selector must not report the same bytes again)
            self.workers.serve(connection)

    def wake(self):
        """Wake serve_forever() from its select(): to stop, or to watch the connections workers are done with."""
        try:
            self.waker.send(b"x")
        except BlockingIOError:
            pass  # the socketpair is full of wake-ups already

    def handle_connection(self, sock, client_address):
        """Serve one connection in this thread from start to end, waiting for each request in turn (lesson 04's
        forked workers do this: each is a sequential server without a selector)."""
        connection = Connection(sock, client_address, self.timeout)
        try:
            while serve_connection(self, connection):
                pass  # the next read_request() waits for the next request, up to the timeout
        finally:
            connection.close()

    def shutdown(self):
        """Stop serve_forever() and return once it has, with every connection closed and every worker done.

        Busy connections get `timeout` seconds to finish their response; then they are cut off, so that their next
        read or write fails. (An app that never touches its connection, say one that sleeps, still runs to its end.)
        """
        self.stopping = True
        self.wake()
        if not self.stopped.wait(self.timeout):
            serving = self.serving  # the sequential server's request (the workers' are cut by Workers.stop)
            if serving is not None:
                serving.cut()
        self.stopped.wait()

    def server_close(self):
        """Release the listening socket (after shutdown(), or if serve_forever() never ran)."""
        self.selector.close()
        self.socket.close()
        self.waker.close()
        self.wakeup.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()


def make_server(app, host="127.0.0.1", port=8000, *, threads=1, backlog=1024, timeout=TIMEOUT, max_body=MAX_BODY):
    """A WSGIServer for `app` listening on host:port (port 0: a free one); run it with .serve_forever()."""
    return WSGIServer(app, host, port, threads=threads, backlog=backlog, timeout=timeout, max_body=max_body)


# --- The command line ---------------------------------------------------------------------------------------------

def load_app(spec):
    """The object "module:name" names, as gunicorn and uvicorn take it. Raises ValueError with a one-line reason."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"expected module:name (for example hello:app), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # find modules in the current directory, as gunicorn does
    try:
        app = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(f"cannot import {module_name!r}: {type(error).__name__}: {error}") from None
    for part in name.split("."):
        if not hasattr(app, part):
            raise ValueError(f"{module_name!r} has no attribute {name!r}")
        app = getattr(app, part)
    if not callable(app):
        raise ValueError(f"{spec!r} is not a callable WSGI application (found {app!r})")
    return app


def stop_on_signal(signum, frame):
    raise KeyboardInterrupt  # serve_forever() then closes the connections and returns


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.wsgi", description="Serve a WSGI application.")
    parser.add_argument("app", help="the application, as module:name (for example hello:app)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0: any free port)")
    parser.add_argument("--threads", type=int, default=1, help="worker threads (default: 1, the sequential server)")
    parser.add_argument("--backlog", type=int, default=1024, help="connections waiting to be accepted (default: 1024)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds (default: {TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        server = make_server(load_app(args.app), args.host, args.port, threads=args.threads, backlog=args.backlog,
                             timeout=args.timeout)
    except (ValueError, OSError) as error:  # a bad module:name, a bad option, or a port already in use
        parser.exit(1, f"error: {error}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Ctrl-C (SIGINT) and SIGTERM both stop the server. SIGINT is set explicitly because a process started in the
    # background by a shell inherits it as ignored.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    host, port = server.server_address
    print(f"Serving {args.app} on http://{host}:{port} with {args.threads} thread(s); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
