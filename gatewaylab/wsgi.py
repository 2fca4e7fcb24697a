"""The course's WSGI server (PEP 3333) on raw sockets,
the minimal, sequential one: lesson 03 builds it.

    python -m gatewaylab.wsgi module:app --port 8000 [--threads 10]
    (the command line runs lesson 04's server)

The path of one request through it:

    bytes on the socket -> read_request (http1.parse_request) -> a Request
    Request -> open_body (http1.request_body_length) and make_environ -> the environ
    environ -> run_app: app(environ, response.start_response) -> the body, piece by piece
    each piece -> Response.send (http1.choose_framing, build_head, ResponseBody)
               -> bytes on the socket

The rules of HTTP/1.1 come from the course's core, gatewaylab.http1, which the ASGI server shares.
WSGIServer serves one connection at a time; lesson 04's gatewaylab.wsgi_pool keeps everything here
but the server loop, and serves many. It is small on purpose (no TLS, no HTTP/2), but what it does,
it does by the rules of PEP 3333 and RFC 9112.
"""
import errno
import importlib
import io
import logging
import os
import re
import select
import socket
import sys
import threading
import time
from urllib.parse import unquote_to_bytes

from gatewaylab.http1 import (CONTINUE, HOP_BY_HOP, MAX_BODY, HTTPError, ResponseBody, build_head,
                              check_field, choose_framing, error_answer,
                              parse_request, read_chunked, request_body_length, wants_continue)

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds a client may stay silent, between requests or in the middle of one


class ClientDisconnected(ConnectionError):
    """The client went away (closed, reset, or stopped reading)
    while the server was reading or writing."""


# --- The request body -----------------------------------------------------------------------------

class InputStream:
    """wsgi.input for a body with a Content-Length:
    it reads from the connection, but ends where the body ends.

    After the body the connection stays open for the next request, so an app calling read() without
    this limit would wait for bytes that belong to the next request, or that never come.
    """

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.remaining = length  # bytes of the body not read yet

    def limit(self, size):
        """A request for `size` bytes, cut to what is left of the body;
        -1 or None mean all of it."""
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
            raise ClientDisconnected("the client closed the connection "
                                     "in the middle of the request body")
        self.remaining -= len(data)
        return data

    def readline(self, size=-1):
        size = self.limit(size)
        try:
            line = self.rfile.readline(size)
        except OSError as error:
            raise ClientDisconnected(str(error)) from error
        if size and not line:
            raise ClientDisconnected("the client closed the connection "
                                     "in the middle of the request body")
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
    """The request body as a file for wsgi.input,
    and its length (the core's request_body_length frames it)."""
    length = request_body_length(request, max_body)  # None: chunked
    if length != 0 and wants_continue(request):
        sock.sendall(CONTINUE)  # the client waits for this before it sends its body
    if length is None:
        # The whole chunked body is read before the app runs: the size limit and a 400 for a broken
        # chunk happen in the server, and the environ can give CONTENT_LENGTH, which many apps
        # (Flask's among them) want before reading.
        body = read_chunked(rfile, max_body)
        return io.BytesIO(body), len(body)
    return InputStream(rfile, length), (length if request.header("Content-Length") is not None
                                        else None)


# --- The environ ----------------------------------------------------------------------------------

def make_environ(request, body, length, server_address, client_address, multithread):
    """The PEP 3333 environ of one request:
    CGI variables as latin-1 strings, then the wsgi.* keys."""
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # Percent-decoded to bytes, kept as latin-1 (as wsgiref does):
        # an app re-encodes to latin-1 to get UTF-8 back.
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
            # "X_User" would become HTTP_X_USER like "X-User": a client could pass one off as the
            # other, e.g. past a proxy that sets X-User itself. Such headers are dropped, as nginx
            # and gunicorn do.
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            # (Both describe the body as it came on the wire; the app gets it de-chunked, with
            # CONTENT_LENGTH set above. Left in, "chunked" would tell apps such as Flask that the
            # length is unknown.)
            key = "HTTP_" + key
            environ[key] = environ[key] + "," + value if key in environ else value
    if request.host is not None:
        # an absolute-form target's authority wins over Host (RFC 9112 3.2.2)
        environ["HTTP_HOST"] = request.host
    return environ


# --- The response ---------------------------------------------------------------------------------

def check_status(status):
    """The app's status must be a str like "404 Not Found" (PEP 3333). A broken rule raises
    AssertionError, as in wsgiref, and the server answers 500."""
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
            raise AssertionError(f"hop-by-hop header {name!r} is not allowed: "
                                 "the server manages the connection")


def send_bytes(sock, data):
    """sock.sendall(data), where a client that has gone away raises ClientDisconnected."""
    if not data:
        return
    try:
        sock.sendall(data)
    except OSError as error:
        # reset, broken pipe, or a client that stopped reading for `timeout` seconds
        raise ClientDisconnected(str(error)) from error


class Response:
    """One response: the app's start_response() and write(), and its body on the way to the client.

    Nothing is sent before the body's first bytes (PEP 3333):
    until then the app may still change its mind.
    """

    def __init__(self, sock, request, server_allows_keep_alive):
        self.sock, self.request = sock, request
        self.server_allows_keep_alive = server_allows_keep_alive  # asked when the headers go out
        self.status, self.headers = None, []  # from start_response: "200 OK", [(name, value)]
        self.framing = None  # a Framing, from the moment the headers go out
        self.body = None  # the core's ResponseBody, which frames each piece, from then on too

    @property
    def headers_sent(self):
        return self.framing is not None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    # Too late to replace the response:
                    # re-raise, and the server will close the connection.
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
        """The write() callable start_response() returns, for old-style apps:
        sends a piece of the body at once."""
        self.send(data)

    def send(self, data, body_length=None):
        """Send a piece of the body, and the headers first if they have not gone yet."""
        if not isinstance(data, bytes):
            raise AssertionError(f"the body must be bytes, got {type(data).__name__}")
        if self.status is None:
            raise AssertionError("the body started before start_response() was called")
        head = b"" if self.headers_sent else self.head(body_length)
        send_bytes(self.sock, head + self.body.frame(data))

    def finish(self):
        """End the response. Returns True if the connection may carry another request."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        head = b"" if self.headers_sent else self.head(body_length=0)
        send_bytes(self.sock, head + self.body.end())
        # A body shorter than its Content-Length leaves the client waiting for the rest:
        # only closing ends that.
        return self.framing.keep_alive and not self.body.cut_short

    def head(self, body_length):
        """Fix the framing, now that the headers go out, and return them as bytes."""
        keep_alive = self.request.keep_alive and self.server_allows_keep_alive()
        try:
            framing = choose_framing(self.request.method, self.request.version,
                                     int(self.status[:3]), self.headers, body_length, keep_alive)
        except ValueError as error:  # the app's own Content-Length is broken
            raise AssertionError(str(error)) from None
        self.framing, self.body = framing, ResponseBody(framing)
        return build_head(self.status, self.headers + framing.headers)


# --- Running the app ------------------------------------------------------------------------------

def has_one_item(result):
    """len(result) == 1: then the first piece is the whole body,
    and the server may give its Content-Length."""
    try:
        return len(result) == 1
    except TypeError:  # a generator has no length
        return False


def run_app(app, environ, response):
    """Call the app and stream its body. Returns True if the connection may carry another request.

    PEP 3333 asks the server to call the iterable's close(), if it has one, however the response
    ends: that is where apps release what they hold for the request (files, database connections).
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

    Closing a socket with unread data makes the kernel reset the connection, and the reset can
    destroy our answer before the client has read it (RFC 9112 section 9.6). So: stop writing, and
    read and drop what still comes for a moment (a client reads the answer, sees our end of the
    stream, and closes its side).
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        deadline = time.monotonic() + 0.5
        while sock.recv(65536) and time.monotonic() < deadline:
            pass
    except OSError:
        pass  # the client is gone already


def send_error(sock, error, method="GET"):
    """Answer a request the server refuses (or an app that failed) with the core's error_answer:
    lesson 01's error response, plus a Date, and no body for HEAD."""
    try:
        sock.sendall(error_answer(error, method))
    except OSError:
        pass  # the client is gone already


# --- The server -----------------------------------------------------------------------------------

class SocketReader(io.RawIOBase):
    """A connection's bytes, for its buffered reader,
    with an optional deadline that no read may wait past.

    The socket's timeout bounds each wait; it cannot stop a client that sends a byte just before
    each timeout runs out (slowloris). While a request head is read, a deadline bounds all the waits
    together, as nginx's client_header_timeout does.
    """

    def __init__(self, sock, timeout):
        self.sock, self.timeout = sock, timeout
        # time.monotonic() by which the current read must be done; None: no deadline
        self.deadline = None

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
            # nothing there yet (request_waiting() looks without waiting):
            # the buffered reader's word
            return None
        finally:
            if self.deadline is not None:
                self.sock.settimeout(self.timeout)


class Connection:
    """One client's connection: its socket with a timeout on every read,
    and a buffered reader on it with a deadline for request heads."""

    def __init__(self, sock, client_address, timeout):
        sock.settimeout(timeout)  # a client silent half-way through a request is dropped
        try:
            # no Nagle stall between two small writes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            # macOS refuses it on a connection the client has reset already;
            # the first read will tell
            pass
        self.sock, self.client_address, self.timeout = sock, client_address, timeout
        self.reader = SocketReader(sock, timeout)
        self.rfile = io.BufferedReader(self.reader)

    def request_waiting(self):
        """Has the client sent (part of) its next request already? Looks without waiting.

        A selector only sees bytes still in the kernel. A client that sent two requests at once
        (pipelining) may have its second one in our buffer already, where no selector will ever
        report it.
        """
        self.sock.settimeout(0)  # for a moment: a read that would wait fails at once instead
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            # the selector will report the reset or the close, and the next read will see it
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def cut(self):
        """Shut the connection down from another thread:
        the thread serving it finds its next read or write fails."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already, by us or by the client

    def close(self):
        self.rfile.close()
        self.sock.close()


def read_request(connection):
    """The next request on a connection, or None if there is none: the client closed the connection,
    or stayed silent for the whole timeout. Once a request has started, its whole head must arrive
    within `timeout` seconds: a client that stops half-way, or trickles it, gets 408, as in
    lesson 01."""
    try:
        # wait for the first byte: until it comes, the connection is idle
        if not connection.rfile.peek(1):
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
                           server.multithread)
    response = Response(sock, request, server_allows_keep_alive=lambda: not server.stopping)
    try:
        keep_alive = run_app(server.app, environ, response)
    except ClientDisconnected:
        return False
    except (Exception, SystemExit):
        # SystemExit too: an app that calls sys.exit() has a bug, and must not stop the server
        # (wsgiref answers it with a 500 as well). Ctrl-C, KeyboardInterrupt, still stops it.
        log.exception("error in the application, for %s %s", request.method, request.target)
        if not response.headers_sent:
            send_error(sock, HTTPError(500, "the application failed"), request.method)
        # After the headers, closing is the only way to tell the client: it sees a body cut short.
        return False
    if keep_alive:
        # Read what the app left of the body,
        # or it would be taken for the next request (at most max_body bytes).
        while body.read(65536):
            pass
    return keep_alive


def serve_connection(server, connection):
    """Serve the requests a client has sent on a connection, one after another.

    Returns True when the client has asked for everything it wanted so far: the connection stays
    open, idle. Returns False when the connection is done with; the caller closes it.
    """
    try:
        while True:
            request = read_request(connection)
            if request is None:
                # the client closed the connection (or, waiting here, stayed silent too long)
                return False
            if not handle_request(server, request, connection):
                if request.keep_alive or connection.request_waiting():
                    # The client may still be sending:
                    # its next request, or a body the app did not read.
                    close_gently(connection.sock)
                return False
            if not connection.request_waiting():
                return True
    except HTTPError as error:
        # A malformed or stalled request. After an answer we close:
        # we can't tell where the next request would begin.
        send_error(connection.sock, error)
        close_gently(connection.sock)
    except OSError:
        # the client closed or reset the connection, or went silent in the middle of a request body
        pass
    except Exception:
        # a bug must not stop the server
        log.exception("error while serving %s:%s", *connection.client_address[:2])
    return False


def listen(host, port, backlog):
    """A listening socket on host:port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The backlog is how many connections the kernel keeps waiting for accept(); beyond it, clients
    # are refused or retry later. (create_server also sets SO_REUSEADDR, so a restarted server can
    # bind the port again.)
    return socket.create_server((host, port), family=family, backlog=backlog)


def accept(listener, timeout):
    """The next client's Connection, or None if there is none after all (the reason is logged)."""
    try:
        sock, client_address = listener.accept()
    except BlockingIOError:
        return None  # another process or thread took it first (pre-fork workers share one socket)
    except OSError as error:
        log.warning("accept() failed: %s", error)
        if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            # Out of file descriptors or memory: the connection stays in the backlog, the listening
            # socket stays ready, and trying again at once would spin. Give the open connections a
            # moment to close.
            time.sleep(0.1)
        return None
    try:
        return Connection(sock, client_address, timeout)
    except OSError:  # the client is gone already
        sock.close()
        return None


def check_options(app, backlog, timeout, max_body):
    """Refuse bad arguments for a server with a clear message, before it binds a port."""
    if not callable(app):
        raise TypeError(f"app must be a WSGI application (a callable), got {app!r}")
    if not (isinstance(backlog, int) and backlog >= 0):
        raise ValueError(f"backlog must be an int >= 0, got {backlog!r}")
    if not timeout > 0 or not max_body >= 0:
        raise ValueError(f"timeout must be > 0 and max_body >= 0, got {timeout!r} and {max_body!r}")


class WSGIServer:
    """The sequential WSGI server: it accepts a connection,
    serves it until its client is done, then takes the next.

    While it serves one client, or waits for that client's next request on a kept-alive connection
    (up to `timeout` seconds), the other clients wait in the backlog. Lesson 04's
    gatewaylab.wsgi_pool serves many at once.
    """

    multithread = False  # wsgi.multithread: the app is never called from two threads at once

    def __init__(self, app, host="127.0.0.1", port=8000, *, backlog=1024, timeout=TIMEOUT,
                 max_body=MAX_BODY):
        check_options(app, backlog, timeout, max_body)
        self.app, self.timeout, self.max_body = app, timeout, max_body
        self.socket = listen(host, port, backlog)
        self.socket.setblocking(False)  # accept() never waits: select() has said a client is there
        self.server_address = self.socket.getsockname()[:2]
        self.serving = None  # the connection being served, if any
        self.stopping = False
        self.stopped = threading.Event()
        self.stopped.set()

    def serve_forever(self, poll_interval=0.5):
        """Serve until shutdown() is called (or Ctrl-C in this thread)."""
        self.stopped.clear()
        try:
            while not self.stopping:
                # Wait for a client, but look up every poll_interval seconds:
                # has shutdown() been called?
                if select.select([self.socket], [], [], poll_interval)[0]:
                    connection = accept(self.socket, self.timeout)
                    if connection is not None:
                        self.serve_until_done(connection, poll_interval)
        finally:
            self.stopping = False  # (so that serve_forever() may run again)
            self.stopped.set()

    def serve_until_done(self, connection, poll_interval=0.5):
        """Serve a connection's requests, each as it comes,
        until the client is done, idle too long, or we stop."""
        self.serving = connection
        try:
            while (serve_connection(self, connection)
                   and self.wait_for_request(connection, poll_interval)):
                pass
        finally:  # (even on Ctrl-C)
            self.serving = None
            connection.close()

    def wait_for_request(self, connection, poll_interval):
        """Wait until the client of an idle connection sends its next request: True; or False if it
        stays silent for `timeout` seconds, or the server is stopping (a client waiting on an idle
        connection expects a close)."""
        deadline = time.monotonic() + self.timeout
        while not self.stopping:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return False
            if select.select([connection.sock], [], [], min(wait, poll_interval))[0]:
                return True
        return False

    def handle_connection(self, sock, client_address):
        """Serve one connection someone else accepted
        (lesson 04's forked workers do this) from start to end."""
        self.serve_until_done(Connection(sock, client_address, self.timeout))

    def shutdown(self):
        """Stop serve_forever() and return once it has. A request being served gets `timeout`
        seconds to finish; then its connection is cut off, so that its next read or write fails."""
        self.stopping = True
        self.wake()
        if not self.stopped.wait(self.timeout):
            serving = self.serving
            if serving is not None:
                serving.cut()
        self.stopped.wait()

    def wake(self):
        """Make serve_forever() notice `stopping` now. This loop looks every poll_interval seconds
        by itself, so there is nothing to do; lesson 04's server, which waits longer, wakes its."""

    def server_close(self):
        """Release the listening socket (after shutdown(), or if serve_forever() never ran)."""
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()


def make_server(app, host="127.0.0.1", port=8000, *, backlog=1024, timeout=TIMEOUT,
                max_body=MAX_BODY):
    """The sequential WSGIServer for `app`, listening on host:port (port 0: a free one); run it with
    .serve_forever(). (Lesson 04's gatewaylab.wsgi_pool.make_server takes threads=N.)"""
    return WSGIServer(app, host, port, backlog=backlog, timeout=timeout, max_body=max_body)

# --- The command line -----------------------------------------------------------------------------

def load_app(spec):
    """The object "module:name" names, as gunicorn and uvicorn take it.
    Raises ValueError with a one-line reason."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"expected module:name (for example hello:app), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # find modules in the current directory, as gunicorn does
    try:
        app = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(f"cannot import {module_name!r}: "
                         f"{type(error).__name__}: {error}") from None
    for part in name.split("."):
        if not hasattr(app, part):
            raise ValueError(f"{module_name!r} has no attribute {name!r}")
        app = getattr(app, part)
    if not callable(app):
        raise ValueError(f"{spec!r} is not a callable WSGI application (found {app!r})")
    return app


if __name__ == "__main__":
    # The command line serves with lesson 04's server,
    # which builds on this module (and so is not imported by it).
    from gatewaylab.wsgi_pool import main
    sys.exit(main())
