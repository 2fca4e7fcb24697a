"""Run servers in the background of a Jupyter kernel, and stop them cleanly.

A notebook cell must return while its server keeps serving, so every server here runs in a daemon thread (or, for
`serve_command`, a child process) and is registered under a name:

    >>> server = serve_wsgi(app, name="hello")   # http://127.0.0.1:<free port>
    >>> httpx.get(server.url).text
    >>> server.stop()

Re-running a cell is always safe: starting a server under a name that is already running stops the old one first, and
`stop()` returns only once the thread has ended and the port is closed. When the kernel exits or restarts, an `atexit`
hook stops whatever is left.

Why threads and not tasks on the kernel's event loop: a server on the kernel's own loop only serves while no cell is
running, so a plain `httpx.get(server.url)` in a cell would wait for ever on a server that cannot run. A thread with its
own loop serves whatever the cells do.
"""

from __future__ import annotations

import asyncio
import atexit
import html
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = [
    "RunningServer", "serve_wsgi", "serve_asgi", "serve_socket", "serve_command",
    "stop", "stop_all", "running", "free_port", "wait_for_port",
]

LOCALHOST = "127.0.0.1"
STOP_TIMEOUT = 5.0
START_TIMEOUT = 10.0

_registry: dict[str, "RunningServer"] = {}
_registry_lock = threading.Lock()


class RunningServer:
    """A server running in the background: where it listens, and how to stop it."""

    def __init__(self, name: str, kind: str, host: str, port: int, stopper: Callable[[], None],
                 thread: threading.Thread | None = None, process: subprocess.Popen | None = None):
        self.name, self.kind, self.host, self.port = name, kind, host, port
        self._stopper = stopper
        self.thread = thread
        self.process = process
        self.error: BaseException | None = None  # what the server's thread died of, if it did

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop serving; return when the thread (or process) has ended. Safe to call twice."""
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]
        self._stopper()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            if self.thread.is_alive():
                print(f"warning: server {self.name!r} did not stop within {timeout:g} s; its thread is still running "
                      "(is a handler stuck waiting for a client that never sends, or an async app blocking its event loop "
                      "with a time.sleep or a busy loop?)", file=sys.stderr)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _state(self) -> str:
        if self.running:
            return "running"
        return f"stopped ({type(self.error).__name__}: {self.error})" if self.error else "stopped"

    def __repr__(self) -> str:
        return f"<{self.kind} server {self.name!r} at {self.url}, {self._state()}>"

    def _repr_html_(self) -> str:
        return (f"<code>{html.escape(self.kind)}</code> server <b>{html.escape(self.name)}</b> at "
                f"<a href='{self.url}' target='_blank'>{self.url}</a> — {html.escape(self._state())}")


def _register(server: RunningServer) -> RunningServer:
    with _registry_lock:
        _registry[server.name] = server
    return server


def stop(name: str) -> bool:
    """Stop the server registered under `name`; True if there was one."""
    with _registry_lock:
        server = _registry.get(name)
    if server is None:
        return False
    server.stop()
    return True


def stop_all() -> None:
    """Stop every server this kernel started."""
    for name in list(running()):
        stop(name)


def running() -> dict[str, RunningServer]:
    """The servers currently registered, by name."""
    with _registry_lock:
        return dict(_registry)


atexit.register(stop_all)


def free_port(host: str = LOCALHOST) -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Return once something accepts TCP connections on (host, port); raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing is listening on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.02)


def _listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    # proto IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) on the
    # connections it accepts only when their proto says TCP. With 0, uvicorn's kept-alive connections
    # wait ~40 ms on a delayed ACK for every response written in two pieces (uvicorn issue #3149).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # SO_REUSEADDR lets a re-run cell bind the same port again while old connections sit in TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener


def _start_thread(name: str, target: Callable[[], None], server: RunningServer) -> None:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # keep it for the repr; a dead server thread must not vanish silently
            server.error = exc
    server.thread = threading.Thread(target=run, name=f"gatewaylab-{name}", daemon=True)
    server.thread.start()


# --- WSGI -------------------------------------------------------------------------------------------------------------

class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request (it would flood the notebook), and with a timeout so a client
    that connects and sends nothing cannot block a sequential server for ever."""

    timeout = 30

    def log_message(self, format, *args):
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request: socketserver's stock answer to concurrency."""

    daemon_threads = True


def _wsgi_server(app, server: str, host: str, port: int, threads: int, backlog: int):
    if server == "gatewaylab":
        from gatewaylab.wsgi_pool import make_server  # lesson 04's server: a selector, and `threads` workers
        return make_server(app, host, port, threads=threads, backlog=backlog)
    if server == "gatewaylab-sequential":
        from gatewaylab.wsgi import make_server  # lesson 03's server: one connection at a time
        if threads != 1:
            raise ValueError("the sequential server has no threads: use server='gatewaylab' for threads > 1")
        return make_server(app, host, port, backlog=backlog)
    classes = {"wsgiref": WSGIServer, "wsgiref-threaded": _ThreadingWSGIServer}
    if server not in classes:
        raise ValueError("server must be one of 'wsgiref', 'wsgiref-threaded', 'gatewaylab', "
                         f"'gatewaylab-sequential', not {server!r}")
    httpd = classes[server]((host, port), _QuietHandler, bind_and_activate=False)
    # socketserver listens with a backlog of 5; with more clients than that, the kernel drops SYNs and clients retry
    # a second later, which would show up as mysterious 1 s steps in every timing plot.
    httpd.request_queue_size = backlog
    try:
        httpd.server_bind()
        httpd.server_activate()
    except OSError:
        httpd.server_close()
        raise
    httpd.set_app(app)
    return httpd


def serve_wsgi(app, name: str = "wsgi", *, server: str = "wsgiref", threads: int = 1, host: str = LOCALHOST,
               port: int = 0, backlog: int = 1024) -> RunningServer:
    """Serve a WSGI app in the background.

    server: "wsgiref" (the standard library's sequential server), "wsgiref-threaded" (a thread per request),
    "gatewaylab-sequential" (the course's minimal server, lesson 03's gatewaylab.wsgi: one connection at a time) or
    "gatewaylab" (lesson 04's gatewaylab.wsgi_pool: idle connections in a selector, `threads` worker threads).
    """
    if not callable(app):
        raise TypeError(f"serve_wsgi needs a WSGI app (a callable taking environ and start_response), not {app!r}")
    stop(name)
    httpd = _wsgi_server(app, server, host, port, threads, backlog)

    def shut_down() -> None:
        if running_server.running:
            httpd.shutdown()  # returns once serve_forever has returned
        httpd.server_close()

    bound_host, bound_port = httpd.server_address[:2]
    running_server = RunningServer(name, server, bound_host, bound_port, shut_down)
    _start_thread(name, lambda: httpd.serve_forever(poll_interval=0.05), running_server)
    return _register(running_server)


# --- ASGI -------------------------------------------------------------------------------------------------------------

def serve_asgi(app, name: str = "asgi", *, server: str = "uvicorn", host: str = LOCALHOST, port: int = 0,
               lifespan: str = "auto", **uvicorn_config) -> RunningServer:
    """Serve an ASGI app in a background thread running its own event loop.

    server: "uvicorn", or "gatewaylab" (the course's own ASGI server, gatewaylab.asgi, with WebSocket from
    gatewaylab.websocket). Both serve WebSocket too. Extra keyword arguments go to uvicorn.Config (for example
    `timeout_keep_alive=1`).
    """
    if not callable(app):
        raise TypeError(f"serve_asgi needs an ASGI app (an async callable taking scope, receive, send), not {app!r}")
    if server == "gatewaylab":
        return _serve_course_asgi(app, name, host, port, lifespan, uvicorn_config)
    if server != "uvicorn":
        raise ValueError(f"server must be 'uvicorn' or 'gatewaylab', not {server!r}")
    import uvicorn

    stop(name)
    uvicorn_config.setdefault("log_level", "warning")
    # Without a limit, stopping waits for every open request, so a stream that never ends would block stop() forever.
    uvicorn_config.setdefault("timeout_graceful_shutdown", 2)
    backlog = uvicorn_config.setdefault("backlog", 1024)
    listener = _listening_socket(host, port, backlog)  # bound here so that port=0 gives a known port before start
    config = uvicorn.Config(app, lifespan=lifespan, **uvicorn_config)
    uvicorn_server = uvicorn.Server(config)

    def shut_down() -> None:
        uvicorn_server.should_exit = True
        if running_server.thread is not None:
            running_server.thread.join(STOP_TIMEOUT)
            if running_server.thread.is_alive():
                uvicorn_server.force_exit = True
        listener.close()

    running_server = RunningServer(name, "uvicorn", host, listener.getsockname()[1], shut_down)
    _start_thread(name, lambda: asyncio.run(uvicorn_server.serve(sockets=[listener])), running_server)
    deadline = time.monotonic() + START_TIMEOUT
    while not uvicorn_server.started:
        if not running_server.running or time.monotonic() > deadline:
            running_server.stop()
            reason = f": {running_server.error!r}" if running_server.error else \
                " (did the app's lifespan startup fail? uvicorn logs the reason above)"
            raise RuntimeError(f"ASGI server {name!r} did not start{reason}")
        time.sleep(0.01)
    return _register(running_server)


def _serve_course_asgi(app, name, host, port, lifespan, options) -> RunningServer:
    # ASGIServer with WebSocket (gatewaylab.websocket): everything else is ASGIServer's, HTTP served the same
    from gatewaylab.websocket import WebSocketServer

    unknown = set(options) - {"backlog", "log_level"}
    if unknown:
        raise TypeError(f"the course's ASGI server takes no {', '.join(sorted(unknown))} (those are uvicorn options)")
    stop(name)
    # start() returns once the server serves; a failed lifespan startup raises here and leaves no thread behind.
    asgi_server = WebSocketServer(app, host, port, lifespan=lifespan, backlog=options.get("backlog", 1024)).start()
    bound_host, bound_port = asgi_server.server_address[:2]
    # stop() asks it to shut down and waits for its thread with a time limit (shutdown() would wait
    # for ever on an app that blocks the loop), saying so if the thread outlives it.
    running_server = RunningServer(name, "gatewaylab", bound_host, bound_port, asgi_server.request_shutdown,
                                   thread=asgi_server.thread)
    return _register(running_server)


# --- a learner's own server -------------------------------------------------------------------------------------------

def serve_socket(handler: Callable[[socket.socket], object], name: str = "socket", *, host: str = LOCALHOST,
                 port: int = 0, backlog: int = 1024) -> RunningServer:
    """Run `handler(listener)` in the background: your own server loop, given a bound, listening socket.

    stop() shuts the listener down, which makes a waiting `listener.accept()` raise OSError: that is how a server loop
    learns it should end, and the error is expected, not reported.
    """
    if not callable(handler):
        raise TypeError(f"serve_socket needs a function taking the listening socket, not {handler!r}")
    stop(name)
    listener = _listening_socket(host, port, backlog)
    stopping = threading.Event()

    def run() -> None:
        try:
            handler(listener)
        except OSError:
            if not stopping.is_set():
                raise
        finally:
            listener.close()

    def shut_down() -> None:
        stopping.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
        except OSError:
            pass  # already closed: the handler returned on its own
        listener.close()

    running_server = RunningServer(name, "socket", host, listener.getsockname()[1], shut_down)
    _start_thread(name, run, running_server)
    return _register(running_server)


# --- a server in a child process --------------------------------------------------------------------------------------

def serve_command(command: list[str], name: str = "process", *, host: str = LOCALHOST, port: int = 0,
                  cwd: str | None = None, env: dict | None = None) -> RunningServer:
    """Run a server as a child process, e.g. ["python", "-m", "gatewaylab.wsgi", "app:app", "--port", "{port}"].

    "{port}" and "{host}" in the command are replaced; returns once the port accepts connections.
    """
    stop(name)
    port = port or free_port(host)
    argv = [part.format(port=port, host=host) for part in command]
    # Output goes to a file, not a pipe: nobody reads a pipe while the server runs, and a full pipe would block it.
    output = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=output, stderr=output, text=True)

    def shut_down() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.close()

    running_server = RunningServer(name, "process", host, port, shut_down, process=process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            output.seek(0)
            printed = output.read()
            running_server.stop()
            raise RuntimeError(f"{' '.join(argv)} exited with code {process.returncode}:\n{printed[-2000:]}")
        try:
            wait_for_port(host, port, timeout=0.2)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                running_server.stop()
                raise TimeoutError(f"{' '.join(argv)} did not listen on {host}:{port} within {START_TIMEOUT:g} s")
    return _register(running_server)
