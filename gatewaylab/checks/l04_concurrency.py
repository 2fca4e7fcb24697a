"""Lesson 04's exercises: concurrent server loops and a model of them, checked by measuring real servers.

The server-loop exercises are given a `handle(conn)` made here: it reads one request head, waits, answers, and records
how many connections it serves at once and in which threads; for one connection it can raise on purpose, as a real
handle does when a client goes away. The checks start the learner's loop with serve_socket, send real concurrent
clients with gatewaylab.load, and judge by the wall time, those counts and whether every connection was closed. Every
socket has a timeout; servers are started under names beginning with "check-04" and stopped, and the handler's calls
have ended, before a case returns.
"""

import contextlib
import math
import socket
import sys
import threading
import time

from gatewaylab.demos import slow_wsgi_app
from gatewaylab.grading import CaseFailed, Exercise, expect_equal, short_repr
from gatewaylab.load import LoadResult, RequestRecord, load
from gatewaylab.servers import serve_socket, serve_wsgi

SOCKET_TIMEOUT = 2.0  # seconds the check's handler, and its clients beyond the expected time, wait for bytes
# No Content-Length: the body ends when the server closes the connection, so a client only sees the whole response
# from a server loop that closes every connection.
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello\n"


# --- helpers shared by the cases --------------------------------------------------------------------------------------

class SlowHandler:
    """The handle(conn) given to a learner's server: read a request head, wait `delay` s, answer; the server loop
    closes the connection. The first call waits `first` s instead, when given; call number `fail` (from 1) raises
    ConnectionResetError after reading its request, without answering. It records the most calls that ran at the
    same time (`peak`) and the threads the calls ran in (`threads`: Thread objects, so a reused id is not missed).
    When `loop_thread` (the thread running the learner's accept loop) is known, each call also notes what that thread
    was waiting in as the call ended (`loop_waits`: see _waiting_in)."""

    def __init__(self, delay: float, *, first: float | None = None, fail: int | None = None):
        self.delay, self.first, self.fail = delay, first, fail
        self.lock = threading.Condition()
        self.active = self.peak = self.calls = 0
        self.threads: set[threading.Thread] = set()
        self.loop_thread: threading.Thread | None = None
        self.loop_waits: set[str] = set()

    def __call__(self, conn) -> None:
        with self.lock:
            self.calls += 1
            number = self.calls
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.current_thread())
        try:
            conn.settimeout(SOCKET_TIMEOUT)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:  # what a real server meets: nothing to answer, and an error for the caller
                    raise ConnectionResetError("the client left in the middle of its request")
                head += chunk
            if number == self.fail:  # as when the client resets the connection while we work
                raise ConnectionResetError("raised on purpose by the check: the connection must be closed anyway")
            time.sleep(self.first if number == 1 and self.first is not None else self.delay)  # a slow database, say
            if self.loop_thread is not None and self.loop_thread is not threading.current_thread():
                if (wait := _waiting_in(self.loop_thread)) is not None:
                    self.loop_waits.add(wait)
            conn.sendall(RESPONSE)
        finally:
            with self.lock:
                self.active -= 1
                self.lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.active == 0, timeout)


def _waiting_in(thread: threading.Thread) -> str | None:
    """Whether `thread` is blocked in one of concurrent.futures' waits that make a pool serve one connection at a time:
    "result" (Future.result, or concurrent.futures.wait), "shutdown" (Executor.shutdown, which leaving a `with` block
    calls); None otherwise."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if "concurrent" in code.co_filename and "futures" in code.co_filename:
            if code.co_name in ("result", "wait"):
                return "result"
            if code.co_name in ("shutdown", "__exit__"):
                return "shutdown"
        frame = frame.f_back
    return None


def _serialising_wait(handler: SlowHandler) -> str | None:
    """What to say when the accept loop was seen waiting for a job of its pool while handle(conn) ran."""
    if "result" in handler.loop_waits:
        return ("while handle(conn) ran, your accept loop was waiting in Future.result(): pool.submit(...).result() "
                "waits until that connection has been served, so accept() is not called again until then, and the "
                "pool serves one connection at a time. Submit, and go straight back to accept(): don't wait for the "
                "future")
    if "shutdown" in handler.loop_waits:
        return ("while handle(conn) ran, your accept loop was waiting for the pool to shut down: leaving a "
                "`with ThreadPoolExecutor(...)` block waits for every job in it, so a with-block around each "
                "connection holds up accept() until that connection has been served. Make one pool, with the whole "
                "accept loop inside its with-block")
    return None


@contextlib.contextmanager
def _running(exercise_id: str, loop, handler: SlowHandler):
    """Run `loop(listener)` with serve_socket; stop it afterwards, and say so when it crashed or did not end, or
    when handler's error escaped from a thread of the learner's (the thread died, and Python printed a traceback)."""
    uncaught: list[BaseException] = []
    previous_hook = threading.excepthook

    def keep_uncaught(args):
        if args.thread in handler.threads and isinstance(args.exc_value, OSError):
            uncaught.append(args.exc_value)  # reported by the case instead of printed into the notebook
        else:
            previous_hook(args)

    def run(listener):
        handler.loop_thread = threading.current_thread()
        return loop(listener)

    threading.excepthook = keep_uncaught
    try:
        server = serve_socket(run, name=f"check-{exercise_id}")
        failure = None
        try:
            yield server
        except CaseFailed as error:
            failure = error
        finally:
            server.stop()  # joins the thread, so a crash is recorded in server.error by now
            idle = _finish(handler)
    finally:
        threading.excepthook = previous_hook
    first = f"{failure.message}\n" if failure else ""
    if failure and server.error is not None:
        crash = f"{type(server.error).__name__}: {server.error}"
        raise CaseFailed(f"{first}Your server loop crashed with {crash}: an error while serving one connection must "
                         "not end the loop (catch OSError around handle(conn))",
                         expected=failure.expected, got=failure.got) from None
    if server.running:
        raise CaseFailed(f"{first}Your server loop was still running after the server was stopped: it must end when "
                         "accept() raises OSError. Is it stuck waiting for something else (a semaphore never "
                         "released?), or does it catch that OSError? Restart the kernel to stop it.")
    if failure:
        raise failure
    if not idle:
        raise CaseFailed("handle() calls were still running after the server stopped and every client had left")
    if uncaught:
        error = uncaught[0]
        raise CaseFailed(f"handle(conn) raised {type(error).__name__} ({error}) in a thread of your server, and "
                         "nothing caught it: the thread ended with a traceback, which Python prints for every client "
                         "that leaves (and a pool that loses its worker this way shrinks). Catch OSError around "
                         "handle(conn), inside the thread")


def _send(url: str, clients: int, delay: float, steps: int) -> LoadResult:
    """`clients` requests at once; each may take up to `steps` delays plus SOCKET_TIMEOUT to be answered."""
    return load(url, clients, timeout=steps * delay + SOCKET_TIMEOUT)


def _all_answered(result: LoadResult, what: str) -> None:
    if result.ok == len(result.records):
        return
    errors = result.error_counts
    if any(error.startswith("timed out") for error in errors):
        advice = ("a response here ends when the connection closes: does your loop close every connection after "
                  "handle(conn) returns, even when handle raises (with conn: ...)? And does every worker go back to "
                  "work after a request?")
    elif "connection refused" in errors:
        advice = "the server stopped accepting connections: did your loop end, or crash?"
    else:
        advice = "the summary says what the clients got"
    raise CaseFailed(f"{what}: {len(result.records) - result.ok} of {len(result.records)} clients got no complete "
                     f"answer ({result.summary()}); {advice}")


def _disconnect_midway(address, count: int) -> None:
    """`count` clients that send half a request line and leave."""
    for number in range(count):
        try:
            with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as sock:
                sock.sendall(b"GET /ha")
        except (ConnectionRefusedError, ConnectionResetError):  # (reset: queued when the listener closed)
            raise CaseFailed(f"after {number} client(s) left in the middle of a request, the server refused new "
                             "connections: did the loop end?") from None
    time.sleep(0.2)  # let the server notice that they left


def _finish(handler: SlowHandler) -> bool:
    """After the server stopped: wait for every handle() call to return, and for the threads they ran in to end
    (so that an error escaping from one has reached threading.excepthook); False if a call was still running."""
    deadline = time.monotonic() + SOCKET_TIMEOUT + 1
    idle = handler.wait_idle(SOCKET_TIMEOUT + 1)
    with handler.lock:  # a loop that outlived its server may still be starting threads
        threads = list(handler.threads)
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))  # a pool's idle workers may outlive it: no error
    return idle


def _closed_even_when_handle_raises(exercise_id: str, start_loop) -> None:
    """A case for 04.1 and 04.2: handle(conn) raises for the second connection while its client waits; the loop must
    close that connection all the same, and keep serving. `start_loop(listener, handler)` runs the learner's loop."""
    handler = SlowHandler(0.0, fail=2)
    with _running(exercise_id, lambda listener: start_loop(listener, handler), handler) as server:
        _all_answered(_send(server.url, 1, 0.0, 1), "a first request")
        # Sent last, so nothing else the loop accepts afterwards can free (and so close) this connection by accident.
        with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: check\r\n\r\n")
            try:
                closed = sock.recv(1024) == b""
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                closed = False
        if not closed:
            raise CaseFailed(f"handle(conn) raised ConnectionResetError for one connection (the check does that on "
                             f"purpose), and your server did not close that connection: its client was still "
                             f"waiting {SOCKET_TIMEOUT:g} s later. Close it whatever handle does: call handle(conn) "
                             "inside `with conn:` (or close in a `finally:` block), not handle(conn) then "
                             "conn.close()")
        _all_answered(_send(server.url, 2, 0.0, 2), "2 clients after handle(conn) had raised for another")


# --- 04.1 threaded_server ---------------------------------------------------------------------------------------------

threaded_server = Exercise(
    "04.1", "A thread per connection",
    points=3,
    answer="a function threaded_server(listener, handle) that accepts connections for ever",
    params=2,
    timeout=10.0,
    hints=[
        "The loop must go back to accept() at once, while handle(conn) runs somewhere else: in a new thread "
        "(threading.Thread(target=..., args=(...,), daemon=True).start()). Calling handle(conn) in the loop itself, "
        "or joining the thread, serves one connection at a time.",
        "Give the thread a small function of your own that calls handle(conn) inside `with conn:`, so the connection "
        "is closed whatever happens, and catches OSError: a client that leaves mid-request makes handle raise.",
        "def serve_and_close(conn):\n    with conn:\n        try:\n            handle(conn)\n        except OSError:\n"
        "            pass\nwhile True:\n    conn, _ = listener.accept()\n"
        "    threading.Thread(target=serve_and_close, args=(conn,), daemon=True).start()",
    ],
)


@threaded_server.case("8 slow requests at once finish in about one delay, not 8", timeout=10.0)
def _(answer):
    clients, delay = 8, 0.25
    handler = SlowHandler(delay)
    with _running("04.1", lambda listener: answer(listener, handler), handler) as server:
        result = _send(server.url, clients, delay, clients)
        _all_answered(result, f"{clients} clients at once")
    if handler.peak < clients:
        raise CaseFailed(f"at most {handler.peak} handle() call(s) ran at the same time, so the clients were served "
                         f"{'one at a time' if handler.peak == 1 else 'partly in turn'}: start a new thread for each "
                         "connection and go back to accept() at once", expected=clients, got=handler.peak)
    if result.wall > 3 * delay:
        raise CaseFailed(f"{clients} requests that each wait {delay:g} s took {result.wall:.2f} s; a thread per "
                         f"connection finishes them all in about {delay:g} s", expected=f"< {3 * delay:g} s",
                         got=f"{result.wall:.2f} s")


@threaded_server.case("every connection is closed after handle(conn) returns")
def _(answer):
    handler = SlowHandler(0.0)
    with _running("04.1", lambda listener: answer(listener, handler), handler) as server:
        for round_ in range(3):  # one at a time: each must end before the next starts
            _all_answered(_send(server.url, 1, 0.0, 1), f"request {round_ + 1} of 3, sent one after another")


@threaded_server.case("a connection is closed even when handle(conn) raises", timeout=10.0)
def _(answer):
    _closed_even_when_handle_raises("04.1", answer)


@threaded_server.case("clients that leave mid-request don't stop the server", timeout=10.0)
def _(answer):
    handler = SlowHandler(0.1)
    with _running("04.1", lambda listener: answer(listener, handler), handler) as server:
        _disconnect_midway(server.address, 2)
        result = _send(server.url, 4, 0.1, 4)
        _all_answered(result, "4 clients after 2 others had left mid-request")


@threaded_server.case("handle(conn) runs in daemon threads, which cannot keep Python from exiting")
def _(answer):
    handler = SlowHandler(0.0)
    with _running("04.1", lambda listener: answer(listener, handler), handler) as server:
        _all_answered(_send(server.url, 2, 0.0, 2), "2 clients at once")
    if any(not thread.daemon for thread in handler.threads):
        raise CaseFailed("handle(conn) ran in threads that are not daemon threads (daemon=False?): Python waits for "
                         "every non-daemon thread before it exits, so one stuck in handle(conn) would keep it from "
                         "exiting. Leave daemon out, and a new thread is a daemon when the thread starting it is one "
                         "(serve_socket's is), or pass daemon=True to say so", expected="daemon threads",
                         got="daemon=False")


# --- 04.2 pooled_server -----------------------------------------------------------------------------------------------

pooled_server = Exercise(
    "04.2", "A bounded pool of worker threads",
    points=4,
    answer="a function pooled_server(listener, handle, pool_size) that accepts connections for ever",
    params=3,
    timeout=10.0,
    hints=[
        "A thread per connection has no limit: 10,000 clients would make 10,000 threads. A pool starts pool_size "
        "threads once and gives each new connection to the next free one; the others wait in a queue. "
        "concurrent.futures.ThreadPoolExecutor(max_workers=pool_size) is exactly that.",
        "In a `with ThreadPoolExecutor(pool_size) as pool:` block, loop: accept, then pool.submit(serve_and_close, "
        "conn), where serve_and_close calls handle(conn) in `with conn:` and catches OSError (as in 04.1). Don't wait "
        "for a batch of connections to finish before accepting more: a free worker takes the next one at once.",
        "def serve_and_close(conn):\n    with conn:\n        try:\n            handle(conn)\n        except OSError:\n"
        "            pass\nwith ThreadPoolExecutor(max_workers=pool_size) as pool:\n    while True:\n"
        "        conn, _ = listener.accept()\n        pool.submit(serve_and_close, conn)",
    ],
)


def _staircase(answer, clients: int, pool: int, delay: float) -> tuple[LoadResult, SlowHandler]:
    handler = SlowHandler(delay)
    steps = math.ceil(clients / pool)
    with _running("04.2", lambda listener: answer(listener, handler, pool), handler) as server:
        result = _send(server.url, clients, delay, steps)
        _all_answered(result, f"{clients} clients at once, a pool of {pool}")
    if handler.peak > pool:
        raise CaseFailed(f"{handler.peak} handle() calls ran at the same time with pool_size={pool}: a bounded pool "
                         "never runs more than pool_size at once (a thread per connection has no bound)",
                         expected=f"at most {pool}", got=handler.peak)
    if handler.peak < pool:
        waits = _serialising_wait(handler)
        raise CaseFailed(f"only {handler.peak} handle() call(s) ran at the same time with pool_size={pool}: "
                         + (waits or "use all pool_size workers"), expected=pool, got=handler.peak)
    started = len(handler.threads)
    if started > pool:
        raise CaseFailed(f"a pool starts pool_size threads once and reuses them; yours started {started}: "
                         f"handle(conn) ran in {started} different threads for {clients} connections with "
                         f"pool_size={pool}. Bounding how many run at once (a semaphore, or joining a batch) still "
                         "makes a thread per connection", expected=f"{pool} threads", got=f"{started} threads")
    expected = steps * delay
    if not 0.9 * expected <= result.wall <= expected + 0.6:
        raise CaseFailed(f"{clients} requests of {delay:g} s with {pool} workers should take ceil({clients}/{pool}) x "
                         f"{delay:g} s", expected=f"about {expected:.2f} s", got=f"{result.wall:.2f} s")
    return result, handler


@pooled_server.case("8 requests of 0.2 s, a pool of 2: a staircase of 4 steps, about 0.8 s")
def _(answer):
    _staircase(answer, clients=8, pool=2, delay=0.2)


@pooled_server.case("9 requests, a pool of 3: never more than 3 at once, and 3 steps")
def _(answer):
    _staircase(answer, clients=9, pool=3, delay=0.2)


@pooled_server.case("one slow request does not hold up the fast ones: a free worker takes the next connection")
def _(answer):
    slow, fast, pool = 1.0, 0.1, 2
    handler = SlowHandler(fast, first=slow)
    with _running("04.2", lambda listener: answer(listener, handler, pool), handler) as server:
        result = _send(server.url, 5, slow, 2)
        _all_answered(result, f"5 clients at once, a pool of {pool}")
    # A real pool: one worker serves the slow request while the other serves the fast ones in turn, by about 0.4 s.
    ends = sorted(record.end for record in result.records)[:4]
    if ends[-1] > 0.8:
        advice = _serialising_wait(handler) or (
            "Does your loop start a batch of pool_size connections and wait for all of them to end before it accepts "
            "more? A worker that is free must take the next connection at once")
        raise CaseFailed(f"one request of {slow:g} s and four of {fast:g} s, a pool of {pool}: while one worker "
                         "serves the slow request, the other should serve the four fast ones one after another, "
                         f"done by about 0.4 s. {advice[0].upper()}{advice[1:]}",
                         expected="the fast ones answered at about 0.1, 0.2, 0.3, 0.4 s",
                         got=", ".join(f"{end:.2f}" for end in ends) + " s")


@pooled_server.case("a connection is closed even when handle(conn) raises", timeout=10.0)
def _(answer):
    _closed_even_when_handle_raises("04.2", lambda listener, handler: answer(listener, handler, 2))


@pooled_server.case("workers whose clients left mid-request go back to work", timeout=10.0)
def _(answer):
    handler = SlowHandler(0.1)
    with _running("04.2", lambda listener: answer(listener, handler, 2), handler) as server:
        _disconnect_midway(server.address, 3)  # more than the pool: a worker lost to each would empty it
        result = _send(server.url, 4, 0.1, 4)
        _all_answered(result, "4 clients after 3 others had left mid-request, with a pool of 2")


# --- 04.3 predict_wall_time -------------------------------------------------------------------------------------------

KINDS = ("sequential", "threaded", "pool")

predict_wall_time = Exercise(
    "04.3", "Predict the wall time of each server",
    points=3,
    answer="a function predict_wall_time(kind, clients, delay, pool=None) returning seconds as a float",
    params=3,
    timeout=10.0,
    hints=[
        "All clients arrive at once and each request waits `delay` seconds. A sequential server serves them one "
        "after another; a thread per connection serves them all at once; a pool serves `pool` at a time.",
        "sequential: clients x delay. threaded: one delay. pool: the number of rounds, ceil(clients / pool), times "
        "delay (math.ceil: 5 clients with a pool of 2 take 3 rounds, not 2.5). Check the arguments first and raise "
        "ValueError for anything else: counts (clients, pool) are ints, a delay is a finite number "
        "(math.isfinite: not NaN, not infinity).",
        "if kind == \"sequential\": return clients * delay\nif kind == \"threaded\": return float(delay)\n"
        "if kind == \"pool\": return math.ceil(clients / pool) * delay\n(after: if kind not in (\"sequential\", "
        "\"threaded\", \"pool\") or not (isinstance(clients, int) and clients >= 1) or not (math.isfinite(delay) "
        "and delay >= 0) or (kind == \"pool\" and not (isinstance(pool, int) and pool >= 1)): raise ValueError(...))",
    ],
)


def _model(kind: str, clients: int, delay: float, pool: int | None) -> float:
    return {"sequential": clients * delay, "threaded": delay, "pool": math.ceil(clients / (pool or 1)) * delay}[kind]


def _tidy(value):
    """A number as a report shows it: 0.6, not 0.6000000000000001 (six significant digits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return value
    return float(f"{value:.6g}")


def _predictions(answer, settings) -> None:
    for kind, clients, delay, pool in settings:
        call = f"predict_wall_time({kind!r}, {clients}, {delay}, pool={pool})"
        got = answer(kind, clients, delay, pool=pool)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise CaseFailed(f"{call} must return a number of seconds, not {type(got).__name__}", got=got)
        expected = _model(kind, clients, delay, pool)
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):  # the precision the report shows
            raise CaseFailed(f"{call} is not what the model says", expected=_tidy(expected), got=_tidy(got))


@predict_wall_time.case("sequential: every request waits for the ones before it")
def _(answer):
    _predictions(answer, [("sequential", 10, 0.5, None), ("sequential", 1, 0.2, None), ("sequential", 3, 0.0, None)])


@predict_wall_time.case("threaded: all at once, one delay")
def _(answer):
    _predictions(answer, [("threaded", 10, 0.5, None), ("threaded", 1000, 0.25, None)])


@predict_wall_time.case("pool: a staircase of ceil(clients / pool) steps")
def _(answer):
    _predictions(answer, [("pool", 8, 0.2, 2), ("pool", 5, 0.2, 2), ("pool", 3, 0.5, 4), ("pool", 10, 0.1, 10),
                          ("pool", 7, 1.0, 1)])


@predict_wall_time.case("bad arguments raise ValueError")
def _(answer):
    bad = [("forking", 4, 0.1, None), ("Sequential", 4, 0.1, None), ("sequential", 0, 0.1, None),
           ("threaded", 4, -1.0, None), ("pool", 4, 0.1, None), ("pool", 4, 0.1, 0), ("pool", 4, 0.1, -1),
           # counts are ints, delays finite numbers
           ("sequential", 2.5, 0.1, None), ("pool", 4, 0.1, 1.5), ("threaded", 4, math.nan, None),
           ("sequential", 4, math.inf, None)]
    for kind, clients, delay, pool in bad:
        call = f"predict_wall_time({kind!r}, {clients}, {delay}, pool={pool})"
        try:
            got = answer(kind, clients, delay, pool=pool)
        except ValueError:
            continue
        except Exception as error:  # the learner's exception, reported with what should have been raised instead
            raise CaseFailed(f"{call} should raise ValueError saying what is wrong; yours raised "
                             f"{type(error).__name__}: {error}") from None
        raise CaseFailed(f"{call} has a bad argument, so it must raise ValueError, not return a number",
                         expected="ValueError", got=_tidy(got))


@predict_wall_time.case("your predictions match real servers (measured now)", timeout=15.0)
def _(answer):
    servers = {"sequential": dict(server="gatewaylab-sequential"), "threaded": dict(server="wsgiref-threaded"),
               "pool": dict(server="gatewaylab", threads=3)}
    delay = 0.25
    for kind, clients, pool in [("sequential", 4, None), ("threaded", 6, None), ("pool", 7, 3)]:
        predicted = answer(kind, clients, delay, pool=pool)
        with serve_wsgi(slow_wsgi_app, name="check-04.3", **servers[kind]) as server:
            result = load(f"{server.url}/?delay={delay}", clients, timeout=clients * delay + 5)
        if result.ok != clients:
            raise CaseFailed(f"the {kind} server did not answer every client ({result.summary()}); run the check again")
        # A real run takes the modelled time plus a little (connecting, parsing): never less, and never a whole
        # delay more, so a model one delay off fails here too.
        if not (isinstance(predicted, (int, float)) and result.wall - delay / 2 <= predicted <= result.wall + 0.05):
            raise CaseFailed(f"{kind} server, {clients} clients, {delay:g} s each"
                             + (f", a pool of {pool}" if pool else "") + f": measured {result.wall:.2f} s",
                             expected=f"a prediction from {result.wall - delay / 2:.2f} to {result.wall:.2f} s",
                             got=_tidy(predicted))


# --- 04.4 idle_gaps ---------------------------------------------------------------------------------------------------

idle_gaps = Exercise(
    "04.4", "Find the idle gaps in a timeline",
    points=3,
    answer="a function idle_gaps(result, longer_than) returning a list of (start, end) tuples",
    params=2,
    timeout=20.0,
    hints=[
        "Only the moments requests finished matter: record.end for each record that got a response, whatever its "
        "status (record.status is not None: a 500 was served too; None means no response came). result.records is "
        "in the order requests were sent, not the order they finished: sort the end times.",
        "Walk through the sorted end times keeping the previous one, starting from 0.0 (the start of the run): when "
        "end - previous > longer_than, the pair (previous, end) is a gap.",
        "ends = sorted(r.end for r in result.records if r.status is not None)\ngaps, previous = [], 0.0\n"
        "for end in ends:\n    if end - previous > longer_than:\n        gaps.append((previous, end))\n"
        "    previous = end\nreturn gaps",
    ],
)


def _gaps_between(ends: list[float], longer_than: float, strictly: bool = True) -> list[tuple[float, float]]:
    """The (previous, end) pairs, from 0.0, further apart than longer_than (or as far, unless strictly), in the order
    given."""
    gaps, previous = [], 0.0
    for end in ends:
        if end - previous > longer_than or (not strictly and end - previous == longer_than):
            gaps.append((previous, end))
        previous = end
    return gaps


def _gaps(result: LoadResult, longer_than: float) -> list[tuple[float, float]]:
    return _gaps_between(sorted(record.end for record in result.records if record.status is not None), longer_than)


# The mistakes learners make, each as the gaps it gives and what to say when an answer gives exactly those.
MISTAKES = [
    (lambda result, longer_than: _gaps_between(sorted(r.end for r in result.records if r.ok), longer_than),
     "you left out answers that were not 2xx, but a response of any status counts: the server was busy serving "
     "that 500 too. Leave out only the records whose status is None (no response came)"),
    (lambda result, longer_than: _gaps_between(sorted(r.end for r in result.records), longer_than),
     "you counted requests that got no response (status None): nothing was served then, so leave them out"),
    (lambda result, longer_than: _gaps_between([r.end for r in result.records if r.status is not None], longer_than),
     "you took the end times in the order the requests were sent: sort them first, as they finished"),
    (lambda result, longer_than: _gaps_between(sorted(r.end for r in result.records if r.status is not None),
                                               longer_than, strictly=False),
     "a gap is *more than* longer_than: a pause of exactly longer_than is not one (use >, not >=)"),
]


def _made_up(ends: list[tuple[float, int | None]]) -> LoadResult:
    """A LoadResult whose requests all start at 0 and end at the given times, with the given statuses."""
    records = [RequestRecord(i, i, 0.0, end, status, None if status else "connection reset")
               for i, (end, status) in enumerate(ends)]
    return LoadResult("made up", "http://127.0.0.1/", len(records), records, max(end for end, _ in ends))


def _expect_gaps(got, result: LoadResult, longer_than: float, what: str) -> None:
    expected = _gaps(result, longer_than)
    if not isinstance(got, list):
        raise CaseFailed(f"{what} should be a list of (start, end) tuples, not {type(got).__name__}",
                         expected=expected, got=got)
    for index, gap in enumerate(got):
        if not (isinstance(gap, tuple) and len(gap) == 2):
            raise CaseFailed(f"{what}: each gap must be a tuple (start, end); gap {index} is {short_repr(gap, 60)}",
                             expected=expected, got=got)
    if len(got) == len(expected) and all(
            math.isclose(a, b, abs_tol=1e-9) for gap, want in zip(got, expected) for a, b in zip(gap, want)):
        return
    for mistake, advice in MISTAKES:
        if got == mistake(result, longer_than) != expected:
            raise CaseFailed(f"{what} is not what was expected: {advice}", expected=expected, got=got)
    expect_equal(got, expected, what)  # shows both, and where they differ
    raise CaseFailed(f"{what} is not what was expected", expected=expected, got=got)


@idle_gaps.case("a made-up run: sorted end times, a gap at the start, answers of any status, no-response left out")
def _(answer):
    # Binary fractions, so the sums are exact; listed in the order sent, not the order finished. The 500 at 3.0 s
    # was an answer too; the request with no status (at 1.25 s) was not.
    result = _made_up([(1.75, 200), (0.75, 200), (2.25, 200), (1.25, None), (0.875, 200), (1.0, 200), (2.375, 200),
                       (3.0, 500)])
    _expect_gaps(answer(result, 0.5), result, 0.5, "idle_gaps(made-up run, 0.5)")


@idle_gaps.case("answers every 0.25 s: no gap for 0.5 or 0.25 (exactly longer_than is not one), eight for 0.125")
def _(answer):
    steady = _made_up([(0.25 * (i + 1), 200) for i in range(8)])
    for longer_than in (0.5, 0.25, 0.125):
        _expect_gaps(answer(steady, longer_than), steady, longer_than,
                     f"idle_gaps(requests ending every 0.25 s, {longer_than})")


def _live(answer, backlog: int):
    clients, delay = 20, 0.05
    # wsgiref, Python's sequential server; socketserver's default backlog is 5.
    with serve_wsgi(slow_wsgi_app, name="check-04.4", server="wsgiref", backlog=backlog) as server:
        result = load(f"{server.url}/?delay={delay}", clients, timeout=15)
    _expect_gaps(answer(result, 0.5), result, 0.5,
                 f"idle_gaps on a real run ({clients} clients, a sequential server, backlog {backlog})")


@idle_gaps.case("a real run with a backlog of 5: your gaps are the measured ones", timeout=20.0)
def _(answer):
    _live(answer, backlog=5)


@idle_gaps.case("a real run with a backlog of 1024: no gaps", timeout=20.0)
def _(answer):
    _live(answer, backlog=1024)
