"""Lesson 04's example apps, and a small pre-fork server to serve them with worker processes.

A function defined in a notebook cell exists only inside that kernel: another process cannot import
it. An app that runs in other processes must live in a module, like these:

    python -m gatewaylab.wsgi gatewaylab.examples:cpu_app --threads 4 --port 8000
    python -m gatewaylab.examples gatewaylab.examples:cpu_app --workers 2 --port 8000
    (pre-fork, Unix only)
"""
import argparse
import os
import signal
import sys
import time
from urllib.parse import parse_qs

from gatewaylab.wsgi import load_app, make_server

# the most CPU time one request may ask for, so a typo cannot tie up a worker for minutes
MAX_CPU_MS = 1000


def burn_cpu(seconds):
    """Compute in pure Python until this thread has used `seconds` of CPU time;
    return the loops it did.

    The measure is the thread's own CPU time, not the clock: a thread waiting for the GIL uses no
    CPU, so every request does the same amount of work however many threads share the interpreter.
    """
    deadline = time.thread_time() + seconds
    loops = 0
    while time.thread_time() < deadline:
        total = 0
        for i in range(10_000):  # a slice of pure-Python work between two looks at the clock
            total += i * i
        loops += 1
    return loops


def cpu_app(environ, start_response):
    """Burn ?ms=50 milliseconds of CPU, then say which process did it."""
    try:
        ms = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["50"])[0])
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= MAX_CPU_MS:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [f"ms must be a number of milliseconds from 0 to {MAX_CPU_MS}\n".encode()]
    burn_cpu(ms / 1000)
    body = f"burned {ms:g} ms of CPU in process {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def work(server, parent):
    """A worker's life: accept a connection on the listening socket it shares with its siblings,
    serve it, repeat."""
    # the parent stops a worker with SIGTERM: end at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group; the parent handles it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server.socket.settimeout(1.0)  # wake up now and then to notice that the parent has gone
    while os.getppid() == parent:  # an orphaned worker must not keep the port busy
        try:
            # the kernel hands each connection to one waiting worker
            conn, address = server.socket.accept()
        # (or the client gave up while queued)
        except (TimeoutError, BlockingIOError, ConnectionAbortedError):
            continue
        server.handle_connection(conn, address)  # lesson 03's code: every request of one connection


def stop_on_signal(signum, frame):
    # SIGTERM stops the parent the way Ctrl-C does, and its `finally` stops the workers
    raise KeyboardInterrupt


def start_workers(server, count, children):
    """Fork `count` workers that serve on `server`'s socket; add their process ids to `children`."""
    parent = os.getpid()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # in the new worker: serve, and never return into the parent's code
            try:
                work(server, parent)
            finally:
                os._exit(0)
        children.append(pid)


def stop_workers(children):
    """Stop the workers and wait for them, so that none is left holding the port."""
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # it had ended already


def serve_prefork(app, host="127.0.0.1", port=8000, workers=2):
    """Open the listening socket, fork `workers` processes that accept on it,
    wait until stopped (Unix only)."""
    if not hasattr(os, "fork"):
        raise RuntimeError("pre-fork needs os.fork, which this system (Windows?) does not have")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    server = make_server(app, host, port)  # one socket, bound once; every worker inherits it
    signal.signal(signal.SIGTERM, stop_on_signal)
    children = []
    try:
        start_workers(server, workers, children)
        for pid in children:
            os.waitpid(pid, 0)
    finally:
        stop_workers(children)
        server.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m gatewaylab.examples",
        description="Serve a WSGI app with pre-forked worker processes.")
    parser.add_argument("app", help="the application, as module:name "
                                    "(for example gatewaylab.examples:cpu_app)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    args = parser.parse_args(argv)
    try:
        app = load_app(args.app)
    except ValueError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"Serving {args.app} on http://{args.host}:{args.port} with {args.workers} processes",
          flush=True)
    try:
        serve_prefork(app, args.host, args.port, args.workers)
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    # bad --workers, no fork, or the port is taken
    except (ValueError, RuntimeError, OSError) as error:
        parser.exit(1, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
