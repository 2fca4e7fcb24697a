"""Lesson 05's exercises: a step of the event loop, a task that serves a client, a blocking call moved off the loop,
and a deadline, each checked by what it does.

05.1 runs the learner's step() on the lesson's Loop (gatewaylab.eventloop), one step at a time and then with the
lesson's wait() as a whole loop, with a deadline. 05.2 serves real clients with the lesson's serve() and the learner's
task, in a server started with serve_socket under a name beginning with "check-05", and counts the threads the tasks
run in. 05.3 and 05.4 run in a fresh asyncio loop (asyncio.run) in the case's own thread; 05.3 measures the loop's
lag with the lesson's LagMonitor. Every socket has a timeout, every server is stopped (its thread stopped if a task
never gives it back) and every thread an answer starts is waited for before a case returns.
"""

import asyncio
import inspect
import selectors
import socket
import threading
import time

from gatewaylab.eventloop import RESPONSE, LagMonitor, Loop, Task, serve, wait
from gatewaylab.grading import CaseFailed, Exercise, short_repr, stop_thread
from gatewaylab.load import load
from gatewaylab.servers import serve_socket

SOCKET_TIMEOUT = 2.0  # seconds a check's client waits for bytes beyond what it expects


# --- 05.1 step ------------------------------------------------------------------------------------------------------

step = Exercise(
    "05.1", "A step of the event loop",
    points=3,
    answer="a function step(loop, task) that runs the task to its next yield and files it",
    params=2,
    timeout=10.0,
    hints=[
        "task.generator.send(None) runs the task until its next yield and returns what it yielded, a pair such as "
        "(\"sleep\", 0.5). When the task returns instead, send() raises StopIteration, whose .value is what it "
        "returned; when it raises, send() raises that error. Catch both: the loop must go on with the other tasks.",
        "File the task by its request: (\"sleep\", s) -> heapq.heappush(loop.sleeping, (time.monotonic() + s, "
        "next(loop.numbers), task)); (\"recv\", sock) -> loop.selector.register(sock, selectors.EVENT_READ, task); "
        "(\"send\", sock) -> the same with selectors.EVENT_WRITE. Anything else: close the generator and end the "
        "task with a ValueError.",
        "try:\n    request = task.generator.send(None)\nexcept StopIteration as end:\n"
        "    task.done, task.result = True, end.value\n    return\nexcept Exception as error:\n"
        "    task.done, task.error = True, error\n    return\nmatch request:\n    case (\"sleep\", seconds):\n"
        "        heapq.heappush(loop.sleeping, (time.monotonic() + seconds, next(loop.numbers), task))\n"
        "    case (\"recv\", sock): ...\n    case (\"send\", sock): ...\n    case _:\n"
        "        task.generator.close()\n        task.done, task.error = True, ValueError(...)",
    ],
)


def _one_step(answer, generator, name="task"):
    """A fresh Loop and a task for `generator`; the answer's step() run once on it, timed."""
    loop = Loop()
    task = Task(generator, name)
    started = time.monotonic()
    try:
        answer(loop, task)
    except StopIteration:
        raise CaseFailed("StopIteration escaped from your step(): a task that returns raises it from send(). Catch "
                         "it (except StopIteration as end:), and keep end.value as task.result") from None
    return loop, task, time.monotonic() - started


def _sleeper(seconds):
    yield "sleep", seconds


@step.case("a task that yields (\"sleep\", s) is filed in loop.sleeping, by its wake-up time, without waiting")
def _(answer):
    loop, task, took = _one_step(answer, _sleeper(0.5))
    if took > 0.2:
        raise CaseFailed(f"your step() took {took:.2f} s: it must not sleep itself (that blocks every task), only file "
                         "the task in loop.sleeping for wait() to wake up", expected="< 0.2 s", got=f"{took:.2f} s")
    if loop.ready or task.done:
        raise CaseFailed("a sleeping task is neither ready nor done: it goes into loop.sleeping only",
                         expected="loop.ready empty, task.done False",
                         got=f"loop.ready {list(loop.ready)}, task.done {task.done}")
    if len(loop.sleeping) != 1 or not (isinstance(loop.sleeping[0], tuple) and len(loop.sleeping[0]) == 3):
        raise CaseFailed("look at the shape of the heap entry: loop.sleeping should hold one entry of three items, "
                         "(wake-up time, next(loop.numbers), task). The number breaks ties between two tasks due at "
                         "the same time, so the heap never compares two tasks (which raises TypeError)",
                         expected="[(wake_up, number, task)]", got=short_repr(loop.sleeping, 100))
    wake_up, _, filed = loop.sleeping[0]
    if filed is not task:
        raise CaseFailed("look at the shape of the heap entry: (wake-up time, next(loop.numbers), task), the task "
                         "itself third", got=short_repr(loop.sleeping[0], 100))
    due = time.monotonic() + 0.5 - took
    if isinstance(wake_up, (int, float)) and abs(wake_up - (time.time() + 0.5 - took)) < 0.1:
        raise CaseFailed("the wake-up time is on the wrong clock: wait() compares it with time.monotonic(), so use "
                         "time.monotonic() + seconds, not time.time() + seconds (time.time() is the wall clock, "
                         "which can jump when the system's time is set)",
                         expected=f"about {due:.2f}", got=short_repr(wake_up))
    if not abs(wake_up - due) < 0.1:
        raise CaseFailed("the first item is the time to wake up, on the clock wait() reads: time.monotonic() + "
                         "seconds, not the seconds alone", expected=f"about {due:.2f}", got=short_repr(wake_up))
    earlier = Task(_sleeper(0.1), "earlier")
    answer(loop, earlier)
    if loop.sleeping[0][2] is not earlier:
        raise CaseFailed("after a task sleeping 0.5 s, one sleeping 0.1 s must come first in loop.sleeping: it is a "
                         "heap (heapq.heappush), so loop.sleeping[0] is always the next to wake up",
                         got=[entry[2].name for entry in loop.sleeping])


@step.case("(\"recv\", sock) and (\"send\", sock) register the socket for reading or writing, with the task")
def _(answer):
    a, b = socket.socketpair()
    with a, b:
        for what, sock, events in (("recv", a, selectors.EVENT_READ), ("send", b, selectors.EVENT_WRITE)):
            def waiter():
                yield what, sock
            loop, task, _ = _one_step(answer, waiter())
            try:
                key = loop.selector.get_key(sock)
            except KeyError:
                raise CaseFailed(f"after a task yielded ({what!r}, sock), sock is not registered in loop.selector: "
                                 "loop.selector.register(sock, events, task)") from None
            finally:
                loop.selector.close()
            if key.events != events:
                names = {selectors.EVENT_READ: "EVENT_READ", selectors.EVENT_WRITE: "EVENT_WRITE"}
                raise CaseFailed(f"({what!r}, sock) waits until sock can be "
                                 f"{'read' if what == 'recv' else 'written'}: register it for {names[events]}",
                                 expected=names[events], got=names.get(key.events, key.events))
            if key.data is not task:
                raise CaseFailed("register the task as the key's data (the third argument), so that wait() knows "
                                 "whom to wake", got=short_repr(key.data, 80))


@step.case("a task that returns is done with its value as result; one that raises is done with the error")
def _(answer):
    def returns():
        return 42
        yield  # (a generator)

    def raises():
        raise ValueError("raised by the check's task")
        yield

    _, task, _ = _one_step(answer, returns())
    if isinstance(task.error, StopIteration):
        raise CaseFailed("your step() took a task's StopIteration for an error: that is how a task *returns*. Catch "
                         "it first (except StopIteration as end:) and keep end.value as task.result",
                         expected="result 42", got=f"error {task.error!r}")
    if not (task.done and task.result == 42):
        raise CaseFailed("a task that returned 42 must be done, with result 42 (StopIteration's .value)",
                         expected="done True, result 42", got=f"done {task.done}, result {task.result!r}")
    try:
        _, task, _ = _one_step(answer, raises())
    except ValueError:
        raise CaseFailed("an error a task raises escaped from your step(), which would stop the whole loop: catch "
                         "it (except Exception as error:) and keep it as task.error; the other tasks go on") from None
    if not (task.done and isinstance(task.error, ValueError)):
        raise CaseFailed("a task that raised ValueError must be done, with that error as task.error",
                         expected="done True, error ValueError", got=f"done {task.done}, error {task.error!r}")


@step.case("a request the loop does not know ends that task with a ValueError, and closes it")
def _(answer):
    def confused():
        yield "wait", 1

    def bare():
        yield  # (yields None)

    def three():
        yield "sleep", 0.1, "extra"

    for generator, what in ((confused(), "('wait', 1)"), (bare(), "None (a bare yield)"),
                            (three(), "('sleep', 0.1, 'extra')")):
        try:
            loop, task, _ = _one_step(answer, generator)
        except ValueError as error:
            if "unpack" not in str(error):
                raise CaseFailed(f"your step() raised ValueError for a task that yielded {what}: end that task with "
                                 "it (task.done = True, task.error = ValueError(...)) instead, so the loop goes on"
                                 ) from None
            raise CaseFailed(f"your step() raised ValueError ({error}) for a task that yielded {what}: "
                             "unpacking the request (kind, argument = request) fails for anything that is not a pair. "
                             "Check its shape first (match request: case (\"sleep\", seconds): ... case _: ...), so "
                             "that anything else closes the task and ends it with a ValueError") from None
        except (TypeError, IndexError) as error:
            raise CaseFailed(f"your step() raised {type(error).__name__} ({error}) for a task that yielded {what}: "
                             "unpacking the request (kind, argument = request) fails for anything that is not a pair. "
                             "Check its shape first (match request: case (\"sleep\", seconds): ... case _: ...), so "
                             "that anything else closes the task and ends it with a ValueError") from None
        if not (task.done and isinstance(task.error, ValueError)):
            raise CaseFailed(f"a task that yielded {what} must end, with a ValueError as task.error",
                             expected="done True, error ValueError", got=f"done {task.done}, error {task.error!r}")
        if inspect.getgeneratorstate(generator) != inspect.GEN_CLOSED:
            raise CaseFailed("close that task's generator (task.generator.close()), so its `with` and `finally` "
                             "blocks run now", got=inspect.getgeneratorstate(generator))
        try:
            if loop.ready or loop.sleeping or loop.selector.get_map():
                raise CaseFailed(f"a task that yielded {what} ended: it must not be filed anywhere")
        finally:
            loop.selector.close()


@step.case("the whole loop with your step: two tickers and a socket pair, in about 0.3 s", timeout=10.0)
def _(answer):
    def ticker(count, interval):
        for _ in range(count):
            yield "sleep", interval
        return count

    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)

        def reader():
            yield "recv", a
            return a.recv(16)

        def writer():
            yield "sleep", 0.1
            yield "send", b
            b.send(b"hi")

        loop = Loop()
        tasks = [loop.spawn(ticker(3, 0.1), "3 x 0.1 s"), loop.spawn(ticker(2, 0.15), "2 x 0.15 s"),
                 loop.spawn(reader(), "reader"), loop.spawn(writer(), "writer")]
        started = time.monotonic()
        try:
            while (loop.ready or loop.sleeping or loop.selector.get_map()) and time.monotonic() - started < 3:
                while loop.ready:
                    answer(loop, loop.ready.popleft())
                try:
                    wait(loop)  # the lesson's: it wakes the tasks your step filed
                except TypeError as error:
                    raise CaseFailed(f"the lesson's wait() raised TypeError ({error}) on what your step() put in "
                                     "loop.sleeping: look at the shape of the heap entry, (wake-up time, "
                                     "next(loop.numbers), task)") from None
        finally:
            loop.selector.close()
        took = time.monotonic() - started
    if not all(task.done for task in tasks):
        raise CaseFailed("after 3 s some tasks had not ended: are they filed where wait() looks (loop.sleeping, "
                         "loop.selector)?", got=[repr(task) for task in tasks])
    if [task.result for task in tasks] != [3, 2, b"hi", None]:
        raise CaseFailed("the tasks' results are not what they returned",
                         expected=[3, 2, b"hi", None], got=[task.result for task in tasks])
    if not 0.25 <= took <= 0.6:
        raise CaseFailed("three waits of 0.1 s beside two of 0.15 s take about 0.3 s on one loop",
                         expected="about 0.3 s", got=f"{took:.2f} s")


# --- 05.2 slow_hello ------------------------------------------------------------------------------------------------

slow_hello = Exercise(
    "05.2", "One thread, many clients",
    points=4,
    answer="a generator function slow_hello(conn, delay) that yields the loop's requests",
    params=2,
    timeout=15.0,
    hints=[
        "conn is non-blocking: conn.recv() with nothing to read raises BlockingIOError instead of waiting. So yield "
        "(\"recv\", conn) before every recv(), and (\"send\", conn) before every send(); wait with yield (\"sleep\", "
        "delay), never time.sleep (it would stop the one thread, and every other client with it).",
        "Read in a loop until the head is complete (b\"\\r\\n\\r\\n\" in what you have read): it may come in several "
        "pieces. recv() returning b\"\" means the client left: return. Put everything in `with conn:` so that the "
        "connection is closed whatever happens.",
        "with conn:\n    head = b\"\"\n    while b\"\\r\\n\\r\\n\" not in head:\n        yield \"recv\", conn\n"
        "        chunk = conn.recv(4096)\n        if not chunk:\n            return\n        head += chunk\n"
        "    yield \"sleep\", delay\n    unsent = memoryview(RESPONSE)\n    while unsent:\n"
        "        yield \"send\", conn\n        unsent = unsent[conn.send(unsent):]",
    ],
)


class _Conn(socket.socket):
    """The connection a task is given, as a socket that notes how the task uses it."""

    __slots__ = ()
    asked: dict = {}  # id(socket) -> the request its task yielded last (set by _Watched)
    problems: dict = {}  # id(socket) -> what the task did wrong with it, first only

    def _note(self, problem):
        _Conn.problems.setdefault(id(self), problem)

    def recv(self, *args):
        if self.getblocking():
            self._note("your task called conn.recv() on a blocking socket: until that client sends, the loop's one "
                       "thread waits in recv() and no other client is served. Keep conn non-blocking (don't call "
                       "setblocking(True) or settimeout()) and yield (\"recv\", conn) before every conn.recv()")
        return super().recv(*args)

    def _sending(self, how):
        if self.getblocking() or _Conn.asked.get(id(self)) != ("send", self):
            self._note(f"your task called conn.{how}() without yielding (\"send\", conn) just before: a client "
                       "that reads slowly fills the socket's buffer, and then send() raises BlockingIOError (or, "
                       "on a blocking socket, stops the loop). Yield (\"send\", conn) before every send()")

    def send(self, *args):
        self._sending("send")
        return super().send(*args)

    def sendall(self, *args):
        self._sending("sendall")
        return super().sendall(*args)


class _Watched:
    """Wraps the learner's task: counts its steps, notes the threads it runs in, the error it ends with, how it
    uses its connection, and whether the connection was closed when the task ended."""

    def __init__(self, answer):
        self.answer = answer
        self.threads: set[str] = set()
        self.errors: list[BaseException] = []
        self.problems: list[str] = []
        self.most_steps = 0
        self.lock = threading.Lock()

    def __call__(self, conn, delay):
        if type(conn) is socket.socket:
            conn.__class__ = _Conn  # the same socket, watched
        try:
            generator = self.answer(conn, delay)
            if not inspect.isgenerator(generator):
                self.errors.append(TypeError(f"slow_hello(conn, delay) returned {short_repr(generator, 60)}, not a "
                                             "generator: it must yield the loop's requests"))
                conn.close()
                return
            yield from self._run(conn, generator)
        finally:
            problem = _Conn.problems.pop(id(conn), None)
            _Conn.asked.pop(id(conn), None)
            if problem is None and conn.fileno() != -1:
                problem = ("your task ended and left its connection open: the client waits for more until it "
                           "gives up. Put the task's body in `with conn:`, so that the connection is closed "
                           "whatever happens (the client leaving, an error, the server stopping)")
            if problem is not None:
                with self.lock:
                    self.problems.append(problem)

    def _run(self, conn, generator):
        steps = 0
        try:
            while True:
                with self.lock:
                    self.threads.add(threading.current_thread().name)
                steps += 1
                self.most_steps = max(self.most_steps, steps)
                try:
                    request = generator.send(None)
                except StopIteration:
                    return
                except Exception as error:
                    self.errors.append(error)
                    raise
                _Conn.asked[id(conn)] = request
                yield request
        finally:
            generator.close()


def _report_errors(watched: _Watched) -> None:
    if not watched.errors:
        return
    error = watched.errors[0]
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, BlockingIOError):
        raise CaseFailed(f"your task raised {text}: conn is non-blocking, so a recv() (or send()) it is not ready "
                         "for raises. Yield (\"recv\", conn) before every conn.recv(), (\"send\", conn) before every "
                         "conn.send()")
    if isinstance(error, TypeError) and "not a generator" in str(error):
        raise CaseFailed(str(error))
    raise CaseFailed(f"your task raised {text} while serving a client")


def _report_problems(watched: _Watched) -> None:
    if watched.problems:
        raise CaseFailed(watched.problems[0])


class _Server:
    def __init__(self, answer, delay: float):
        self.watched = _Watched(answer)
        self.loop = Loop()
        self.server = serve_socket(lambda listener: serve(listener, self.watched, delay, loop=self.loop),
                                   name="check-05.2")

    def __enter__(self):
        return self.server

    def __exit__(self, *exc_info):
        self.server.stop(timeout=SOCKET_TIMEOUT + 1)
        if self.server.thread is not None and self.server.thread.is_alive():
            stop_thread(self.server.thread)
            raise CaseFailed("the loop was still running a step of your task after the server stopped: a step that "
                             "never yields (a loop without yield, or a blocking call such as time.sleep) holds the "
                             "loop's one thread, and every other client waits")
        if exc_info[0] is None:
            _report_errors(self.watched)
            _report_problems(self.watched)


def _raw_exchange(address, pieces, pause: float, wait_for: float):
    """Send `pieces` with `pause` s between them; return (bytes that came back before the last piece, all the bytes
    until the server closed, or None if it did not close within wait_for s)."""
    with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as sock:
        early = b""
        for piece in pieces[:-1]:
            sock.sendall(piece)
            time.sleep(pause)
            sock.setblocking(False)
            try:
                early += sock.recv(4096)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            sock.settimeout(SOCKET_TIMEOUT)
        sock.sendall(pieces[-1])
        received, deadline = early, time.monotonic() + wait_for
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                return early, None
            except ConnectionResetError:
                return early, received
            if not chunk:
                return early, received
            received += chunk
        return early, None


REQUEST = b"GET / HTTP/1.1\r\nHost: check\r\n\r\n"


@slow_hello.case("10 clients of 0.4 s at once are answered in about one delay, all in one thread", timeout=15.0)
def _(answer):
    clients, delay = 10, 0.4
    before = threading.active_count()
    peak, sampling = [before], threading.Event()

    def sample():  # the number of threads, every 10 ms while the clients are served
        while not sampling.wait(0.01):
            peak.append(threading.active_count())

    handle = _Server(answer, delay)
    with handle as server:
        sampler = threading.Thread(target=sample, name="check-05.2-sampler")
        sampler.start()
        try:
            result = load(server.url, clients, timeout=clients * delay + SOCKET_TIMEOUT,
                          progress=lambda done, total: peak.append(threading.active_count()))
        finally:
            sampling.set()
            sampler.join()
        extra = max(peak) - before - 3  # beyond the server's thread, the load driver's and the sampler
        if extra > 0:
            raise CaseFailed(f"{extra} more thread(s) ran while your server served: the point is one thread. Don't "
                             "start threads: yield the loop's requests, and the loop runs the other clients meanwhile",
                             expected="no threads of your own", got=f"{extra} thread(s)")
        if handle.watched.most_steps > 50:
            raise CaseFailed(f"a task took {handle.watched.most_steps} steps to serve one request: it asked the loop "
                             "again and again instead of once (busy-waiting, such as a loop of yield (\"sleep\", 0) "
                             "until the time is up). That burns the CPU the other tasks need: yield (\"sleep\", "
                             "delay) once, and the loop wakes the task when the time has come",
                             expected="a few steps per request", got=f"{handle.watched.most_steps} steps")
    if result.ok != clients:
        raise CaseFailed(f"{clients - result.ok} of {clients} clients got no answer ({result.summary()}): does your "
                         "task read the whole head, yield (\"sleep\", delay), send RESPONSE and close the connection?")
    if result.wall > 2 * delay:
        raise CaseFailed(f"{clients} requests of {delay:g} s took {result.wall:.2f} s: they were served one after "
                         "another. Do you wait with time.sleep(delay), which stops the loop's one thread? Yield "
                         "(\"sleep\", delay) instead", expected=f"about {delay:g} s", got=f"{result.wall:.2f} s")


@slow_hello.case("a client that connects and sends nothing holds up no other client", timeout=15.0)
def _(answer):
    clients, delay = 3, 0.2
    with _Server(answer, delay) as server:
        with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT):  # silent, and kept open
            time.sleep(0.2)  # (accepted, and its task started)
            result = load(server.url, clients, timeout=SOCKET_TIMEOUT)
    if result.ok != clients or result.wall > 3 * delay:
        raise CaseFailed(f"while one client kept its connection open and sent nothing, {clients} others were not "
                         f"answered in about {delay:g} s ({result.summary()}): your task waited for the silent "
                         "client in conn.recv(), and the loop's one thread with it. Keep conn non-blocking and "
                         "yield (\"recv\", conn) before every conn.recv(): the loop then runs the others until "
                         "that client has sent something", expected=f"{clients} answers in about {delay:g} s",
                         got=f"{result.ok} in {result.wall:.2f} s")


@slow_hello.case("a request head that arrives in two pieces is answered only once it is whole", timeout=15.0)
def _(answer):
    with _Server(answer, 0.05) as server:
        early, received = _raw_exchange(server.address, [b"GET / HTTP/1.1\r\nHost: check\r\n", b"\r\n"],
                                        pause=0.3, wait_for=SOCKET_TIMEOUT)
    if early:
        raise CaseFailed("your task answered before the request head was complete: it ends with an empty line, "
                         "b\"\\r\\n\\r\\n\", which may come in a later recv(). Keep reading until it is there",
                         got=short_repr(early, 80))
    if received is None or not received.startswith(b"HTTP/1.1 200"):
        raise CaseFailed("after the whole head, the client should get RESPONSE and then the connection closed",
                         expected=RESPONSE, got=received)


@slow_hello.case("the answer is RESPONSE, and then the connection is closed", timeout=15.0)
def _(answer):
    with _Server(answer, 0.05) as server:
        _, received = _raw_exchange(server.address, [REQUEST], pause=0, wait_for=SOCKET_TIMEOUT)
    if received is None:
        raise CaseFailed(f"the client waited {SOCKET_TIMEOUT:g} s for the connection to close: put the task's body "
                         "in `with conn:`, so that the connection is closed when the task ends")
    if received != RESPONSE:
        raise CaseFailed("the client should receive RESPONSE, whole", expected=RESPONSE, got=received)


@slow_hello.case("clients that leave mid-request end their tasks, and the others are served", timeout=15.0)
def _(answer):
    with _Server(answer, 0.1) as server:
        for _ in range(2):
            with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
                sock.sendall(b"GET /ha")
        time.sleep(0.3)
        result = load(server.url, 3, timeout=SOCKET_TIMEOUT + 1)
    if result.ok != 3:
        raise CaseFailed(f"after 2 clients left mid-request, 3 more were not all answered ({result.summary()})")


@slow_hello.case("a task whose client left does not keep asking to read", timeout=15.0)
def _(answer):
    handle = _Server(answer, 0.1)
    with handle as server:
        with socket.create_connection(server.address, timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(b"GET /ha")
        time.sleep(0.3)
    if handle.watched.most_steps > 50:
        raise CaseFailed(f"a task whose client had left took {handle.watched.most_steps} steps in 0.3 s: when recv() "
                         "returns b\"\", the client has closed its side and nothing more will come. Return (the "
                         "`with conn:` closes the connection); yielding (\"recv\", conn) again spins for ever")


# --- 05.3 off_the_loop ----------------------------------------------------------------------------------------------

off_the_loop = Exercise(
    "05.3", "A blocking call, moved off the loop",
    points=3,
    answer="a function off_the_loop(func) returning an async function",
    params=1,
    timeout=10.0,
    hints=[
        "Calling func(...) in an async def runs it in the loop's own thread: while it blocks, no other task runs. "
        "asyncio.to_thread(func, *args, **kwargs) runs it in a worker thread and gives you something to await, "
        "while the loop goes on.",
        "off_the_loop is a decorator: it returns a new function, `async def call(*args, **kwargs)`, that awaits "
        "func in a thread and returns its result (an exception func raises comes out of the await by itself).",
        "def off_the_loop(func):\n    async def call(*args, **kwargs):\n"
        "        return await asyncio.to_thread(func, *args, **kwargs)\n    return call",
    ],
)


class Missing(LookupError):
    """What the check's blocking lookup raises for an unknown key."""


def _blocking_lookup(key, *, delay=0.2, suffix=""):
    """The blocking call: waits like a database driver without async support."""
    time.sleep(delay)
    if key == "missing":
        raise Missing(f"no such key: {key!r}")
    return key.upper() + suffix


def _in_fresh_loop(coroutine_function, *args):
    """Run it in a new asyncio loop in this thread; say so if the answer left threads running."""
    before = set(threading.enumerate())
    try:
        return asyncio.run(coroutine_function(*args))
    finally:
        deadline = time.monotonic() + 1.0
        while set(threading.enumerate()) - before and time.monotonic() < deadline:
            time.sleep(0.02)
        left = set(threading.enumerate()) - before
        if left:
            raise CaseFailed(f"{len(left)} thread(s) your answer started were still running after its loop ended "
                             f"({', '.join(sorted(t.name for t in left))}): a pool of your own is never shut down. "
                             "asyncio.to_thread uses the loop's default pool, which asyncio.run() shuts down")


def _call(wrapped, *args, **kwargs):
    if callable(wrapped) and not inspect.iscoroutinefunction(wrapped):
        raise CaseFailed("off_the_loop(func) must return an async function (`async def call(*args, **kwargs):`), "
                         "whose calls give something to await: yours is a plain function. A plain def that returns asyncio.to_thread(...) hands back a "
                         "coroutine that runs nothing until someone awaits it, and an error in it is no longer "
                         "raised where the call was made", got=short_repr(wrapped, 80))
    return _awaited(wrapped(*args, **kwargs))


async def _awaited(result):
    """Await the wrapper's result; a coroutine that comes out of it (an await left out) is closed and named."""
    value = await _returned(result)
    if inspect.iscoroutine(value):
        value.close()  # (so that it leaves no "never awaited" warning)
        raise CaseFailed("the wrapper returned a coroutine instead of func's result: an await is missing. "
                         "return await asyncio.to_thread(func, *args, **kwargs)", got=short_repr(value, 80))
    return value


def _returned(result):
    if not inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise CaseFailed("off_the_loop(func)(...) must return something to await: make the function you return an "
                         "`async def`", got=short_repr(result, 80))
    return result


@off_the_loop.case("5 blocking calls at once: the loop never stalls, and they run together", timeout=10.0)
def _(answer):
    async def scenario():
        wrapped = answer(_blocking_lookup)
        if not callable(wrapped):
            raise CaseFailed("off_the_loop(func) must return a function", got=short_repr(wrapped, 80))
        async with LagMonitor() as monitor:
            started = time.monotonic()
            results = await asyncio.gather(*(_call(wrapped, key) for key in "abcde"))
            took = time.monotonic() - started
        return results, took, monitor.worst

    results, took, worst = _in_fresh_loop(scenario)
    if worst > 0.05:
        raise CaseFailed(f"a heartbeat on the loop woke {worst:.2f} s late: func ran in the loop's own thread, and "
                         "stalled every task. Run it in a thread: await asyncio.to_thread(func, *args, **kwargs)",
                         expected="a lag under 0.05 s", got=f"{worst:.2f} s")
    if results != list("ABCDE"):
        raise CaseFailed("the awaited calls should give func's results", expected=list("ABCDE"), got=results)
    if took > 0.6:
        raise CaseFailed(f"5 calls of 0.2 s took {took:.2f} s: they ran one after another, not at once",
                         expected="about 0.2 s", got=f"{took:.2f} s")


@off_the_loop.case("arguments and keyword arguments reach func, and its result comes back")
def _(answer):
    async def scenario():
        return await _call(answer(_blocking_lookup), "x", delay=0.01, suffix="!")

    got = _in_fresh_loop(scenario)
    if got != "X!":
        raise CaseFailed("await off_the_loop(lookup)(\"x\", delay=0.01, suffix=\"!\") should give what "
                         "lookup(\"x\", delay=0.01, suffix=\"!\") returns: pass *args and **kwargs on",
                         expected="X!", got=got)


@off_the_loop.case("an exception func raises reaches the caller's await")
def _(answer):
    async def scenario():
        try:
            value = await _call(answer(_blocking_lookup), "missing", delay=0.01)
        except Missing:
            return None
        return value

    got = _in_fresh_loop(scenario)
    if got is not None:
        raise CaseFailed("func raised an exception (a LookupError), but the caller's await returned a value: let the "
                         "exception through, don't catch it", expected="the exception", got=got)


# --- 05.4 deadline --------------------------------------------------------------------------------------------------

deadline = Exercise(
    "05.4", "A deadline for every call",
    points=3,
    answer="a function deadline(seconds) returning a decorator for async functions",
    params=1,
    timeout=10.0,
    hints=[
        "deadline(0.5) returns a decorator; the decorator takes an async function and returns a new async function "
        "that awaits the original one, but for at most `seconds`: after that the original call is cancelled and "
        "the caller gets TimeoutError.",
        "async with asyncio.timeout(seconds): cancels the block's await when time is up and raises TimeoutError. "
        "Start it inside the new function, so that each call gets its own deadline, and let both TimeoutError and "
        "CancelledError through (don't catch them).",
        "def deadline(seconds):\n    def decorate(func):\n        async def call(*args, **kwargs):\n"
        "            async with asyncio.timeout(seconds):\n                return await func(*args, **kwargs)\n"
        "        return call\n    return decorate",
    ],
)


class _Work:
    """An async function that waits `seconds` and notes whether (and when) it was cancelled."""

    def __init__(self):
        self.cancelled_at = None
        self.finished = 0
        self.task = None  # the asyncio task the call runs in

    def cancel_pending(self) -> bool:
        """The call was asked to cancel, but has not been run since to see it (nobody awaited it)."""
        return (self.cancelled_at is None and self.task is not None and not self.task.done()
                and self.task.cancelling() > 0)

    async def __call__(self, seconds, *, value="done"):
        started = time.monotonic()
        self.task = asyncio.current_task()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled_at = time.monotonic() - started
            raise
        self.finished += 1
        return value


def _decorated(answer, seconds, work):
    decorator = answer(seconds)
    if not callable(decorator):
        raise CaseFailed("deadline(seconds) must return a decorator: a function that takes the async function",
                         got=short_repr(decorator, 80))
    wrapped = decorator(work)
    if not callable(wrapped):
        raise CaseFailed("deadline(seconds)(func) must return a function", got=short_repr(wrapped, 80))
    return wrapped


async def _await(wrapped, *args, **kwargs):
    result = wrapped(*args, **kwargs)
    if not inspect.isawaitable(result):
        raise CaseFailed("deadline(seconds)(func)(...) must return something to await: an `async def`",
                         got=short_repr(result, 80))
    return await result


@deadline.case("a call that finishes in time returns its value; arguments pass through")
def _(answer):
    async def scenario():
        return await _await(_decorated(answer, 0.5, _Work()), 0.05, value="in time")

    got = asyncio.run(scenario())
    if got != "in time":
        raise CaseFailed("await deadline(0.5)(work)(0.05, value=\"in time\") should return what work returned",
                         expected="in time", got=got)


@deadline.case("a call that overruns raises TimeoutError when time is up, and is cancelled", timeout=10.0)
def _(answer):
    work = _Work()

    async def scenario():
        started = time.monotonic()
        try:
            got = await _await(_decorated(answer, 0.2, work), 1.5)
        except TimeoutError:
            # (asyncio.run() cancels what is left when it ends: look now)
            return "TimeoutError", time.monotonic() - started, work.cancelled_at is not None, work.cancel_pending()
        return got, time.monotonic() - started, work.cancelled_at is not None, work.cancel_pending()

    got, took, cancelled, pending = asyncio.run(scenario())
    if got != "TimeoutError":
        raise CaseFailed(f"a call of 1.5 s under deadline(0.2) should raise TimeoutError; it gave {got!r} after "
                         f"{took:.2f} s. Don't catch the TimeoutError: let it reach the caller",
                         expected="TimeoutError", got=got)
    if took > 0.5:
        raise CaseFailed(f"TimeoutError came after {took:.2f} s, not when time was up: cancel the call at the "
                         "deadline (async with asyncio.timeout(seconds)), don't wait for it to end",
                         expected="about 0.2 s", got=f"{took:.2f} s")
    if pending:
        raise CaseFailed("the call that overran was cancelled (task.cancel()), but TimeoutError reached the caller "
                         "before the call had stopped: cancel() only asks. Await the cancelled task (catching its "
                         "CancelledError) before raising TimeoutError, or use async with asyncio.timeout(seconds), "
                         "which does both")
    if not cancelled:
        raise CaseFailed("the call that overran was never cancelled: it went on running after the TimeoutError. "
                         "asyncio.timeout (or asyncio.wait_for) cancels it; asyncio.wait(..., timeout=) does not")


@deadline.case("each call gets its own deadline, counted from when it starts", timeout=10.0)
def _(answer):
    async def scenario():
        wrapped = _decorated(answer, 0.25, _Work())
        await asyncio.sleep(0.3)  # longer than the deadline, before the first call
        first = await _await(wrapped, 0.15, value="first")
        second = await _await(wrapped, 0.15, value="second")
        return [first, second]

    try:
        got = asyncio.run(scenario())
    except TimeoutError:
        raise CaseFailed("two calls of 0.15 s, each under a deadline of 0.25 s, should both finish: the deadline "
                         "counts from the start of each call (start asyncio.timeout inside the function you return, "
                         "not when decorating)") from None
    if got != ["first", "second"]:
        raise CaseFailed("both calls should return their values", expected=["first", "second"], got=got)


@deadline.case("cancelling the caller cancels the call, and the caller sees CancelledError", timeout=10.0)
def _(answer):
    work = _Work()

    async def scenario():
        task = asyncio.create_task(_await(_decorated(answer, 1.0, work), 2.0))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.wait([task], timeout=3)
        if not task.done():
            task.cancel()
            raise CaseFailed("after being cancelled, the call was still running 3 s later")
        await asyncio.sleep(0.05)  # (a call that was cancelled has seen it by now)
        # (asyncio.run() cancels what is left when it ends: look now)
        outcome = task.cancelled(), (None if task.cancelled() else task.exception() or task.result())
        return outcome, work.cancelled_at is not None

    (cancelled, other), call_cancelled = asyncio.run(scenario())
    if not cancelled:
        raise CaseFailed("the caller's task was cancelled, but it ended with " + short_repr(other, 80) + ": let "
                         "CancelledError through (catching it, or turning it into another error or a value, means "
                         "nothing can stop the call: not a timeout, a TaskGroup or a server shutting down)",
                         expected="CancelledError", got=other)
    if not call_cancelled:
        raise CaseFailed("the caller was cancelled, but the call it awaited went on running. A call run as a task of "
                         "its own (asyncio.ensure_future, create_task) is not cancelled with its caller: awaiting "
                         "asyncio.wait() or task.result() passes the caller's CancelledError on to no one. Await the "
                         "call itself, inside async with asyncio.timeout(seconds) (or asyncio.wait_for, which cancels "
                         "its task when it is cancelled)")
