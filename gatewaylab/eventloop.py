"""Lesson 05's event loop: tasks that are generators (or coroutines), run in one thread.

A task yields what it waits for: ("recv", sock) until sock has bytes to read (or a connection to
accept), ("send", sock) until it may write, ("sleep", seconds). The loop runs the ready tasks one
at a time, each until its next yield, then waits in select() for a socket or the next timer. The
same loop runs `async def` coroutines that await pause(), until_readable() and until_writable().
LagMonitor measures how late an asyncio loop runs a heartbeat; task_timeline draws who ran when.
"""

import asyncio
import collections
import heapq
import itertools
import selectors
import time
import types

from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from gatewaylab.load import format_seconds
from gatewaylab.plots import SERIES_COLOURS, Plot


class Task:
    """A generator (or coroutine) the loop runs, and how it ended: `result`, or `error`."""

    def __init__(self, generator, name):
        self.generator, self.name = generator, name
        self.done = False
        self.result = self.error = None

    def __repr__(self):
        if not self.done:
            return f"<Task {self.name}: not done>"
        ended = f"raised {self.error!r}" if self.error else f"returned {self.result!r}"
        return f"<Task {self.name}: {ended}>"


class Loop:
    """The loop's state: the tasks ready to run, the sleeping ones, the sockets waited for."""

    def __init__(self):
        self.ready = collections.deque()  # tasks to run now, in turn
        # (wake-up time, number, task), the earliest first; the number breaks ties
        self.sleeping = []
        self.numbers = itertools.count()
        # the sockets tasks wait for; each one's key.data is the task waiting for it
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.started = time.monotonic()
        self.trace = []  # (task name, start, end) of every step, in s since `started`

    def spawn(self, generator, name=None):
        """A task for `generator` (or a coroutine), queued to run."""
        task = Task(generator, name or generator.__name__)
        self.ready.append(task)
        return task

    def stop(self):
        """Make run() return after the step running now."""
        self.stopping = True


def step(loop, task):
    """Run `task` until it yields what it waits for, and file it there; or note how it ended."""
    try:
        request = task.generator.send(None)
    except StopIteration as end:  # it returned
        task.done, task.result = True, end.value
        return
    except Exception as error:  # it raised: that task ends, the loop goes on
        task.done, task.error = True, error
        return
    match request:
        case ("sleep", seconds):
            wake_up = time.monotonic() + seconds
            heapq.heappush(loop.sleeping, (wake_up, next(loop.numbers), task))
        case ("recv", sock):
            loop.selector.register(sock, selectors.EVENT_READ, task)
        case ("send", sock):
            loop.selector.register(sock, selectors.EVENT_WRITE, task)
        case _:
            task.generator.close()
            task.done = True
            task.error = ValueError(f"{task.name} yielded {request!r}, not ('recv', sock), "
                                    "('send', sock) or ('sleep', seconds)")


POLL = 0.1  # seconds: the longest wait() sleeps in select() before it looks again


def wait(loop):
    """Sleep in select() until a socket a task waits for is ready or the next timer is due;
    queue those tasks."""
    # select() never reports a socket that another thread closed: look again every POLL s
    timeout = POLL
    if loop.sleeping:
        timeout = min(POLL, max(0.0, loop.sleeping[0][0] - time.monotonic()))
    if loop.selector.get_map():
        for key, _ in loop.selector.select(timeout):
            loop.selector.unregister(key.fileobj)
            loop.ready.append(key.data)
        for key in list(loop.selector.get_map().values()):
            if key.fileobj.fileno() == -1:  # closed: the task's next call on it raises OSError
                loop.selector.unregister(key.fileobj)
                loop.ready.append(key.data)
    elif loop.sleeping:  # only timers (select() on Windows needs a socket): just sleep
        time.sleep(timeout)
    now = time.monotonic()
    while loop.sleeping and loop.sleeping[0][0] <= now:
        loop.ready.append(heapq.heappop(loop.sleeping)[2])


def run(loop):
    """Run the tasks until none is left or stop() is called; then close those still waiting."""
    try:
        while not loop.stopping and (loop.ready or loop.sleeping or loop.selector.get_map()):
            while loop.ready and not loop.stopping:
                task = loop.ready.popleft()
                start = time.monotonic()
                step(loop, task)
                loop.trace.append((task.name, start - loop.started,
                                   time.monotonic() - loop.started))
            if not loop.stopping:
                wait(loop)
    finally:
        close(loop)


def close(loop):
    """Close every task that has not ended (its `with` and `finally` blocks run), and the
    selector."""
    waiting = list(loop.ready) + [task for _, _, task in loop.sleeping]
    waiting += [key.data for key in (loop.selector.get_map() or {}).values()]
    loop.ready.clear()
    loop.sleeping.clear()
    loop.selector.close()
    for task in waiting:
        task.done = True
        try:
            task.generator.close()  # raises GeneratorExit where the task waits
        except Exception as error:
            task.error = error


def ticker(count, interval):
    """A task that wakes up `count` times, `interval` s apart, and returns how late it woke
    at worst."""
    worst = 0.0
    for _ in range(count):
        due = time.monotonic() + interval
        yield "sleep", interval
        worst = max(worst, time.monotonic() - due)
    return worst


# Content-Length says where the body ends; Connection: close, that we close after it
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
            b"Connection: close\r\n\r\nhello\n")


def slow_hello(conn, delay):
    """A task serving one connection: read the request head, wait `delay` s, answer, close."""
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            yield "recv", conn  # until the client has sent something
            chunk = conn.recv(4096)
            if not chunk:
                return  # the client left
            head += chunk
        yield "sleep", delay  # a slow database, say: the loop runs the others meanwhile
        unsent = memoryview(RESPONSE)
        while unsent:
            yield "send", conn  # until the socket's send buffer has room
            unsent = unsent[conn.send(unsent):]


def accept_connections(loop, listener, handle, *args):
    """A task: spawn a handle(conn, *args) task for each new connection; stop the loop when the
    listener is shut down."""
    listener.setblocking(False)
    for number in itertools.count(1):
        yield "recv", listener  # to a listening socket, a new connection is something to read
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            continue  # the client gave up before we accepted it
        except OSError:  # the listener was shut down (serve_socket's stop() does that)
            loop.stop()
            return
        conn.setblocking(False)  # a recv() or send() that would wait raises instead
        loop.spawn(handle(conn, *args), f"client {number}")


def serve(listener, handle, *args, loop=None):
    """Serve `listener`'s connections with handle(conn, *args) tasks, all in this thread, until
    the listener is shut down; return the loop (its trace says which task ran when)."""
    loop = Loop() if loop is None else loop
    loop.spawn(accept_connections(loop, listener, handle, *args), "accept")
    run(loop)
    return loop


@types.coroutine
def pause(seconds):
    """`await pause(0.5)` in a coroutine this loop runs: yields ("sleep", 0.5) to the loop."""
    yield "sleep", seconds


@types.coroutine
def until_readable(sock):
    yield "recv", sock


@types.coroutine
def until_writable(sock):
    yield "send", sock


async def async_hello(conn, delay):
    """slow_hello with async and await: a coroutine, which the same loop runs unchanged."""
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            await until_readable(conn)
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        await pause(delay)
        unsent = memoryview(RESPONSE)
        while unsent:
            await until_writable(conn)
            unsent = unsent[conn.send(unsent):]


async def stream_hello(reader, writer, delay):
    """slow_hello on asyncio's streams, for asyncio.start_server(): the loop is asyncio's now."""
    try:
        await reader.readuntil(b"\r\n\r\n")  # the whole request head, however it arrives
        await asyncio.sleep(delay)
        writer.write(RESPONSE)
        await writer.drain()  # wait while the send buffer is full
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # the client left, or sent a head longer than the reader's limit (64 KiB)
    finally:
        writer.close()


class LagMonitor:
    """`async with LagMonitor() as monitor:` runs a heartbeat beside your code that sleeps
    `interval` s again and again; monitor.lags: (when, how late it woke), in s from the start."""

    def __init__(self, interval=0.01):
        self.interval, self.lags = interval, []

    async def beat(self):
        loop = asyncio.get_running_loop()
        while True:
            self.due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append((self.due - self.started, loop.time() - self.due))

    @property
    def worst(self):
        """The longest the heartbeat woke past its time (s): the longest the loop stalled."""
        return max((late for _, late in self.lags), default=0.0)

    async def __aenter__(self):
        self.started = self.due = asyncio.get_running_loop().time()
        self.task = asyncio.create_task(self.beat())
        await asyncio.sleep(0)  # it starts beating before the code under watch runs
        return self

    async def __aexit__(self, *exc_info):
        late = asyncio.get_running_loop().time() - self.due  # a stall just before the end
        if late > 0:
            self.lags.append((self.due - self.started, late))
        self.task.cancel()
        await asyncio.wait([self.task])


def waits(trace):
    """The gaps between a task's steps in a loop's trace, as (name, start, end) spans."""
    last, spans = {}, []
    for name, start, end in trace:
        if name in last:
            spans.append((name, last[name], start))
        last[name] = end
    return spans


def task_timeline(series, *, title):
    """One row per task, one colour per series, each drawn over the one before: `series` maps a
    label to (task name, start, end) spans in seconds. A Plot, with alt text and a summary."""
    rows = {}
    for name, _, _ in (span for spans in series.values() for span in spans):
        rows.setdefault(name, len(rows))
    figure = Figure(figsize=(8, min(6.0, 1.9 + 0.22 * len(rows))), layout="constrained")
    ax = figure.add_subplot()
    for layer, (colour, (label, spans)) in enumerate(zip(SERIES_COLOURS, series.items())):
        boxes = [[(a, rows[n] - .35), (b, rows[n] - .35), (b, rows[n] + .35), (a, rows[n] + .35)]
                 for n, a, b in spans]
        # each series over the one before; the edge keeps a span of microseconds visible
        ax.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors=colour,
                                         linewidths=1.2, label=label, zorder=2 + layer))
    last = max((end for spans in series.values() for _, _, end in spans), default=0.0)
    ax.set(xlim=(0, last * 1.04 or 1), ylim=(len(rows) - 0.5, -0.5), title=title,
           xlabel="time since start (s)", ylabel="task")
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8 if len(rows) > 12 else 10)
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(series), frameon=False)
    summary = f"{len(rows)} tasks over {format_seconds(last)}; " + "; ".join(
        f"{label}: {len(spans)} spans, {format_seconds(sum(b - a for _, a, b in spans))} in all, "
        f"the last ended at {format_seconds(max((b for _, _, b in spans), default=0.0))}"
        for label, spans in series.items())
    alt = (f"Timeline, one row per task ({', '.join(list(rows)[:5])}{', ...' * (len(rows) > 5)}); "
           f"x axis: time since start in seconds; spans: {', '.join(series)}. {summary}.")
    return Plot(figure, alt, summary)
