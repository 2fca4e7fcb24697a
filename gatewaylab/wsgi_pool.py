"""The course's WSGI server made concurrent (lesson 04):
idle connections in a selector, a pool of worker threads.

    python -m gatewaylab.wsgi module:app --port 8000 --threads 10

Lesson 03's gatewaylab.wsgi serves one connection at a time, from its first request to its last, so
one idle keep-alive client holds the whole server. This module keeps everything that server does
with one request (it imports handle_request and serve_connection) and changes only who waits for
what:

    selector: listening socket, idle connections, a wake-up socket
        -> a client sent a request -> served here (threads=1) or by one of `threads` workers
        -> its connection goes back to the selector, idle, until its client sends again or times out

The command line `python -m gatewaylab.wsgi` runs this server.
"""
import argparse
import logging
import selectors
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from gatewaylab.http1 import MAX_BODY
from gatewaylab.wsgi import TIMEOUT, WSGIServer, accept, load_app, serve_connection


class IdleConnections:
    """The open connections that wait for their client's next request, all watched by one selector,
    so that an idle client holds no thread. Each one is closed once it has been idle for `timeout`
    seconds.

    A dict keeps insertion order, so the connection idle the longest comes first: the timeouts are
    checked from the front, and the check stops at the first connection that still has time.
    """

    def __init__(self, selector, timeout):
        self.selector, self.timeout = selector, timeout
        # idle connection -> time.monotonic() when it became idle, the longest idle first
        self.since = {}
        self.watched = set()  # connections registered with the selector

    def __len__(self):
        return len(self.since)

    def watch(self, connection):
        """The connection is idle from now on: watch it until its client sends something."""
        self.since.pop(connection, None)  # (to the back of the line)
        self.since[connection] = time.monotonic()
        if connection not in self.watched:
            self.selector.register(connection.sock, selectors.EVENT_READ, connection)
            self.watched.add(connection)

    def busy(self, connection, keep_watching=False):
        """The connection is being served;
        the selector stops watching it, unless told to keep watching."""
        self.since.pop(connection, None)
        if connection in self.watched and not keep_watching:
            self.selector.unregister(connection.sock)
            self.watched.discard(connection)

    def close(self, connection):
        self.busy(connection)
        connection.close()

    def wait_time(self, longest):
        """Seconds until the longest-idle connection times out, at most `longest`:
        how long select() may wait."""
        for since in self.since.values():
            return max(0.0, min(longest, since + self.timeout - time.monotonic()))
        return longest

    def close_expired(self, timeout=None):
        """Close, without a word (as clients expect),
        the connections idle for `timeout` seconds or more."""
        oldest_allowed = time.monotonic() - (self.timeout if timeout is None else timeout)
        while self.since:
            connection, since = next(iter(self.since.items()))  # the longest idle
            if since > oldest_allowed:
                return
            self.close(connection)


class Workers:
    """A pool of worker threads (threads > 1). A worker serves a connection while its client has
    requests, then hands it back to the server, to wait among the idle connections."""

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
        """A worker is done with a connection:
        close it, or hand it to serve_forever() to wait among the idle ones."""
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
        """Give the busy connections `grace` seconds to finish, then cut them off;
        wait until every worker is done."""
        with self.lock:
            self.stopping = True
            if not self.lock.wait_for(lambda: not self.busy, grace):
                for connection in self.busy:
                    connection.cut()
        self.pool.shutdown(wait=True)
        for connection in self.take_done():
            connection.close()


class PooledServer(WSGIServer):
    """Lesson 03's server, serving many connections at once: it listens on a socket and serves its
    connections in the serving thread itself (threads=1, which no idle client can hold any more), or
    with a pool of `threads` worker threads. Shutting down, server_close() and the `with` support
    are lesson 03's (WSGIServer's); what waits for what is new."""

    def __init__(self, app, host="127.0.0.1", port=8000, *, threads=1, backlog=1024,
                 timeout=TIMEOUT, max_body=MAX_BODY):
        if not (isinstance(threads, int) and threads >= 1):
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        super().__init__(app, host, port, backlog=backlog, timeout=timeout, max_body=max_body)
        self.threads = threads
        # wsgi.multithread: may the app be called from two threads at once?
        self.multithread = threads > 1
        # a byte on it wakes serve_forever(): see wake()
        self.waker, self.wakeup = socket.socketpair()
        self.waker.setblocking(False)
        self.wakeup.setblocking(False)
        # epoll on Linux, kqueue on macOS, select on Windows
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.socket, selectors.EVENT_READ)
        self.selector.register(self.wakeup, selectors.EVENT_READ)
        self.idle = IdleConnections(self.selector, timeout)
        self.workers = None  # a Workers pool while serve_forever() runs, if threads > 1

    def serve_forever(self, poll_interval=0.5):
        """Serve until shutdown() is called (or Ctrl-C in this thread),
        then close every connection."""
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
        connection = accept(self.socket, self.timeout)
        if connection is None:
            return
        if connection.request_waiting():
            # most clients send their request at once: no need to wait for it
            self.serve(connection)
        else:
            self.idle.watch(connection)

    def serve(self, connection):
        """Serve a connection whose client has sent something:
        here (the sequential server), or in a worker."""
        if self.workers is None:
            # The selector may go on watching it, since nothing else reads meanwhile. Unwatching it
            # and watching it again costs two system calls a request: with wrk and a hello-world
            # app, 25,000 requests a second instead of 32,000.
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
            # (a worker reads it now: the selector must not report the same bytes again)
            self.idle.busy(connection)
            self.workers.serve(connection)

    def wake(self):
        """Wake serve_forever() from its select():
        to stop, or to watch the connections workers are done with."""
        try:
            self.waker.send(b"x")
        except BlockingIOError:
            pass  # the socketpair is full of wake-ups already

    def server_close(self):
        """Release the selector and its wake-up sockets, then the listening socket."""
        self.selector.close()
        self.waker.close()
        self.wakeup.close()
        super().server_close()


def make_server(app, host="127.0.0.1", port=8000, *, threads=1, backlog=1024, timeout=TIMEOUT,
                max_body=MAX_BODY):
    """A PooledServer for `app` listening on host:port (port 0: a free one);
    run it with .serve_forever()."""
    return PooledServer(app, host, port, threads=threads, backlog=backlog, timeout=timeout,
                        max_body=max_body)


# --- The command line -----------------------------------------------------------------------------

def stop_on_signal(signum, frame):
    raise KeyboardInterrupt  # serve_forever() then closes the connections and returns


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.wsgi",
                                     description="Serve a WSGI application.")
    parser.add_argument("app", help="the application, as module:name (for example hello:app)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on (default: 8000; 0: any free port)")
    parser.add_argument("--threads", type=int, default=1,
                        help="worker threads (default: 1, the sequential server)")
    parser.add_argument("--backlog", type=int, default=1024,
                        help="connections waiting to be accepted (default: 1024)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds (default: {TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        server = make_server(load_app(args.app), args.host, args.port, threads=args.threads,
                             backlog=args.backlog, timeout=args.timeout)
    except (ValueError, OSError) as error:
        # a bad module:name, a bad option, or a port already in use
        parser.exit(1, f"error: {error}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Ctrl-C (SIGINT) and SIGTERM both stop the server. SIGINT is set explicitly because a process
    # started in the background by a shell inherits it as ignored.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    host, port = server.server_address
    print(f"Serving {args.app} on http://{host}:{port} with {args.threads} thread(s); "
          "Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
