"""Lesson 08's exercises: a percentile, a showdown measurement, CPU work off the loop, and the notes app's blocking
calls fixed, each checked by what it does.

08.1 calls the learner's percentile() on known data. 08.2 starts three servers in this process (lesson 03's
sequential server, lesson 04's pool, uvicorn) under names beginning with "check-08", runs the learner's measuring
function against them and compares its rows with the check's own measurement, with margins wide enough for a busy
machine; then an app whose latencies are skewed (most requests answer at once, 45 in 100 wait 2 s, one 5 s), where the
mean is not the median and the maximum is not p99. 08.3 and 08.4 run the learner's coroutine in a fresh asyncio loop
(asyncio.run) in the case's own thread and measure the loop's lag with lesson 05's LagMonitor; 08.3 is given a process
pool started with "spawn" and a sum that takes at least about 0.35 s there, 08.4 a slow upstream of the check's own
(tags that cannot be guessed from the text; it counts its calls and how many overlap) and a fresh SQLite file in a
temporary directory. Every server is stopped, every pool shut down and every thread an answer starts is waited for
before a case returns.
"""

import asyncio
import contextlib
import gc
import hashlib
import inspect
import itertools
import json
import math
import multiprocessing
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import parse_qs

from gatewaylab.eventloop import LagMonitor
from gatewaylab.grading import CaseFailed, Exercise, short_repr
from gatewaylab.load import load
from gatewaylab.servers import serve_asgi, serve_wsgi

# --- 08.1 percentile ------------------------------------------------------------------------------------------------

percentile_exercise = Exercise(
    "08.1", "Percentiles by nearest rank",
    points=2,
    answer="a function percentile(values, p) returning the nearest-rank p-th percentile",
    params=2,
    hints=[
        "Nearest rank: sort a copy of the values (sorted(values), which leaves the caller's list alone); the p-th "
        "percentile is the value at rank ceil(p * n / 100), counting ranks from 1. It is always one of the values: "
        "no interpolation between neighbours.",
        "Ranks count from 1 and list indexes from 0: the value is ordered[rank - 1]. For p = 0 the formula gives "
        "rank 0: use rank 1 (the smallest value) instead, or ordered[-1] hands back the largest. Compute p * n / 100 "
        "(exact for whole numbers) rather than p / 100 * n: in floating point 7 / 100 * 100 is 7.000000000000001, "
        "and its ceil is 8. Check p and the list first: raise ValueError.",
        "def percentile(values, p):\n    if not 0 <= p <= 100:\n        raise ValueError(...)\n    ordered = "
        "sorted(values)\n    if not ordered:\n        raise ValueError(...)\n    rank = max(1, math.ceil(p * "
        "len(ordered) / 100))\n    return ordered[rank - 1]",
    ],
)


def _percentile(answer, values, p):
    return answer(values, p)


@percentile_exercise.case("[15, 20, 35, 40, 50] at p5, p30, p40, p50 and p100: 15, 20, 20, 35, 50")
def _(answer):
    values = [15, 20, 35, 40, 50]
    for p, expected in ((5, 15), (30, 20), (40, 20), (50, 35), (100, 50)):
        got = _percentile(answer, list(values), p)
        if got != expected:
            if got not in values:
                why = (f"{short_repr(got)} is not one of the values: that is interpolation between neighbours "
                       "(numpy's default), not nearest rank, which returns the value at rank ceil(p * n / 100)")
            else:
                why = (f"the rank is ceil({p} * 5 / 100) = {math.ceil(p * 5 / 100)}, counting from 1: the value "
                       f"at index rank - 1 of the sorted list")
            raise CaseFailed(f"percentile({values}, {p}): {why}", expected=expected, got=got)


@percentile_exercise.case("unsorted input is sorted (a copy: the caller's list is left as it was)")
def _(answer):
    values = [0.3, 0.1, 0.5, 0.2, 0.4]
    for p, expected in ((50, 0.3), (20, 0.1), (99, 0.5)):
        given = list(values)
        got = _percentile(answer, given, p)
        if given != values:
            raise CaseFailed("percentile() changed the caller's list: latencies are measurements the caller keeps "
                             "in the order they came. Sort a copy: sorted(values), not values.sort()",
                             expected=values, got=given)
        if got != expected:
            if _percentile(answer, sorted(values), p) == expected:
                why = "should sort the values before taking a rank: sorted(values)"
            else:
                why = (f"gives the wrong value even for the values sorted: the sorting is not the trouble, the rank "
                       f"is (ceil({p} * 5 / 100) = {math.ceil(p * 5 / 100)}, counting from 1)")
            raise CaseFailed(f"percentile({values}, {p}) {why}", expected=expected, got=got)


@percentile_exercise.case("the rank is computed exactly: p7 of 1..100 is 7, p14 of 1..50 is 7, p70 of 1..10 is 7")
def _(answer):
    for n, p in ((100, 7), (50, 14), (25, 28), (10, 70), (20, 35), (100, 14)):
        values = list(range(1, n + 1))
        expected = p * n // 100
        got = _percentile(answer, list(values), p)
        if got == expected + 1:
            raise CaseFailed(f"percentile([1, 2, ..., {n}], {p}): the rank is {p} * {n} / 100 = {expected} exactly, "
                             f"but in floating point {p} / 100 * {n} is {p / 100 * n!r} (and {p} * 0.01 * {n} is "
                             f"{p * 0.01 * n!r}): ceil of a hair over {expected} is {expected + 1}. Compute "
                             "math.ceil(p * len(ordered) / 100): p * n is a whole number, and dividing it by 100 "
                             "rounds once, never past a whole rank", expected=expected, got=got)
        if got != expected:
            raise CaseFailed(f"percentile([1, 2, ..., {n}], {p}): the value at rank ceil({p} * {n} / 100) = "
                             f"{expected}, counting from 1",
                             expected=expected, got=got)


@percentile_exercise.case("p0 is the smallest, a single value is every percentile, p99 of 1..1000 is 990")
def _(answer):
    for values, p, expected in (([3, 1, 2], 0, 1), ([7], 0, 7), ([7], 50, 7), ([7], 100, 7),
                                (list(range(1, 1001)), 99, 990), (list(range(1, 101)), 99, 99)):
        got = _percentile(answer, list(values), p)
        if got != expected:
            shown = f"{values}" if len(values) < 10 else f"[1, 2, ..., {values[-1]}]"
            extra = (" For p = 0, ceil(0) = 0 is no rank, and ordered[0 - 1] is the largest value: take rank 1"
                     if p == 0 else "")
            raise CaseFailed(f"percentile({shown}, {p}).{extra}", expected=expected, got=got)


@percentile_exercise.case("p outside 0..100, or no values at all, raise ValueError")
def _(answer):
    for values, p, what in (([1, 2, 3], 101, "p = 101"), ([1, 2, 3], -1, "p = -1"), ([], 50, "an empty list")):
        try:
            got = _percentile(answer, values, p)
        except ValueError:
            continue
        except IndexError:
            raise CaseFailed(f"with {what}, percentile() raised IndexError: check the arguments first and raise "
                             "ValueError with a message saying what was wrong") from None
        raise CaseFailed(f"with {what} there is no percentile: raise ValueError", expected="ValueError", got=got)


# --- 08.2 the showdown's rows ---------------------------------------------------------------------------------------

showdown_exercise = Exercise(
    "08.2", "Measure a showdown",
    points=3,
    answer="a function measure_servers(urls, clients) returning a list of rows (dicts)",
    params=2,
    timeout=30.0,
    hints=[
        "For each name and URL in urls, one load(url, clients) sends `clients` requests at once and returns a "
        "LoadResult: its throughput (successful requests per second of wall time) and percentile(p) (in seconds) "
        "are what a row needs.",
        "A row is a dict: {\"server\": name, \"clients\": clients, \"rps\": result.throughput, \"p50_s\": "
        "result.percentile(50), \"p99_s\": result.percentile(99)}. Keep the seconds as seconds, and send the "
        "clients at once (one load call per server), not one after another.",
        "def measure_servers(urls, clients):\n    rows = []\n    for name, url in urls.items():\n        result = "
        "load(url, clients)\n        rows.append({\"server\": name, \"clients\": clients, \"rps\": "
        "result.throughput,\n                     \"p50_s\": result.percentile(50), \"p99_s\": "
        "result.percentile(99)})\n    return rows",
    ],
)

SHOWDOWN_DELAY = 0.1  # seconds each request of the check's servers waits


@contextlib.contextmanager
def _three_servers():
    from gatewaylab.showdown import asgi_app, wsgi_app

    started = []
    try:
        started.append(serve_wsgi(wsgi_app, name="check-08-sequential", server="gatewaylab-sequential"))
        started.append(serve_wsgi(wsgi_app, name="check-08-pool", server="gatewaylab", threads=10))
        started.append(serve_asgi(asgi_app, name="check-08-asgi", server="uvicorn"))
        for server in started:  # the pool makes its threads as requests come: not in the learner's measurement
            load(f"{server.url}/io?delay=0.02", 10, timeout=10)
        yield {name: f"{server.url}/io?delay={SHOWDOWN_DELAY:g}"
               for name, server in zip(("sequential", "pool", "asgi"), started)}
    finally:
        for server in started:
            server.stop()


def _rows(answer, urls, clients):
    rows = answer(dict(urls), clients)
    if not isinstance(rows, (list, tuple)):
        raise CaseFailed("measure_servers should return a list of rows (one dict per server)", got=short_repr(rows))
    by_server = {}
    for row in rows:
        if not isinstance(row, dict):
            raise CaseFailed("each row should be a dict such as {'server': 'pool', 'clients': 10, 'rps': 95.0, "
                             "'p50_s': 0.1, 'p99_s': 0.12}", got=short_repr(row))
        missing = [key for key in ("server", "clients", "rps", "p50_s", "p99_s") if key not in row]
        if missing:
            raise CaseFailed(f"a row lacks {', '.join(missing)}", got=short_repr(row))
        for key in ("rps", "p50_s", "p99_s"):
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CaseFailed(f"{key} should be a number", got=short_repr(row))
        by_server[row["server"]] = row
    if sorted(by_server) != sorted(urls) or len(rows) != len(urls):
        raise CaseFailed("there should be one row per server of urls, its name as 'server'",
                         expected=sorted(urls), got=[row["server"] for row in rows])
    for row in rows:
        if row["clients"] != clients:
            raise CaseFailed("each row's 'clients' is the number of clients measured", expected=clients,
                             got=row["clients"])
    return by_server


def _own(urls, clients):
    measured = {}
    for name, url in urls.items():
        result = load(url, clients, timeout=20)
        measured[name] = {"rps": result.throughput, "p50_s": result.percentile(50),
                          "p99_s": result.percentile(99)}
    return measured


@showdown_exercise.case("one row per server, with server, clients, rps, p50_s and p99_s", timeout=30.0)
def _(answer):
    with _three_servers() as urls:
        _rows(answer, urls, 3)


@showdown_exercise.case("10 clients: the servers come in the order the check measures, sequential far behind",
                        timeout=30.0)
def _(answer):
    with _three_servers() as urls:
        rows = _rows(answer, urls, 10)
        own = _own(urls, 10)
    slowest = rows["sequential"]["rps"]
    if not slowest * 2 < min(rows["pool"]["rps"], rows["asgi"]["rps"]):
        raise CaseFailed("your sequential server's throughput should be well under half the pool's and the ASGI "
                         f"server's (the check measured {own['sequential']['rps']:.0f}, {own['pool']['rps']:.0f} "
                         f"and {own['asgi']['rps']:.0f} req/s). Are the clients sent at once, with one "
                         "load(url, clients) per server?",
                         got={name: round(row["rps"], 1) for name, row in rows.items()})
    for name, row in rows.items():
        mine, theirs = row["rps"], own[name]["rps"]
        if not theirs / 2.5 <= mine <= theirs * 2.5:
            raise CaseFailed(f"{name}: your rps is far from the check's. Throughput is successful requests per "
                             "second of wall time: result.throughput (not 1 / a latency, not a latency sum)",
                             expected=f"about {theirs:.1f} req/s", got=f"{mine:.1f}")


@showdown_exercise.case("p50_s and p99_s are in seconds, p50 <= p99, near the check's own", timeout=30.0)
def _(answer):
    with _three_servers() as urls:
        rows = _rows(answer, {"sequential": urls["sequential"]}, 10)
        own = _own({"sequential": urls["sequential"]}, 10)
    row, theirs = rows["sequential"], own["sequential"]
    if row["p50_s"] > row["p99_s"]:
        raise CaseFailed("p50 is above p99: are the two swapped?", got={"p50_s": row["p50_s"], "p99_s": row["p99_s"]})
    for key in ("p50_s", "p99_s"):
        if not theirs[key] / 1.8 <= row[key] <= theirs[key] * 1.8:
            unit = " (milliseconds? keep seconds)" if row[key] > 50 * theirs[key] else ""
            raise CaseFailed(f"{key} of the sequential server, 10 clients of {SHOWDOWN_DELAY:g} s: "
                             f"result.percentile({key[1:3]}){unit}",
                             expected=f"about {theirs[key]:.2f} s", got=row[key])


SKEWED = (45, 2.0, 5.0)  # of every 100 requests: 45 wait 2 s, one waits 5 s, the rest answer at once


class _SkewedApp:
    """An ASGI app whose latencies are skewed: by the order requests arrive, of every 100 the first 45 wait 2 s, the
    next one 5 s, and 54 answer at once. Median: quick; mean: about 0.95 s; p99: about 2 s; maximum: 5 s. Requests
    that arrive one at a time (two in a row with none in flight) are all answered at once from then on, so that
    clients sent one after another do not wait minutes (the case then says so)."""

    def __init__(self):
        self.arrived = self.in_flight = self.idle_arrivals = 0
        self.one_at_a_time = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        k, self.arrived = self.arrived % 100, self.arrived + 1
        self.idle_arrivals = self.idle_arrivals + 1 if self.in_flight == 0 and self.arrived > 1 else 0
        self.one_at_a_time = self.one_at_a_time or self.idle_arrivals >= 2
        slow, slow_s, slowest_s = SKEWED
        delay = 0 if self.one_at_a_time else slow_s if k < slow else slowest_s if k == slow else 0
        self.in_flight += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ok\n"})


@showdown_exercise.case(f"skewed latencies, 100 clients ({SKEWED[0]} wait {SKEWED[1]:g} s, one {SKEWED[2]:g} s, "
                        "the rest none): p50 is the median, not the mean; p99 is not the maximum", timeout=40.0)
def _(answer):
    app = _SkewedApp()
    with serve_asgi(app, name="check-08-skewed", server="uvicorn", lifespan="off") as server:
        rows = _rows(answer, {"skewed": f"{server.url}/"}, 100)
    if app.one_at_a_time:
        raise CaseFailed("the requests reached the server one at a time: send the clients at once, with one "
                         "load(url, clients) per server")
    row = rows["skewed"]
    slow, slow_s, slowest_s = SKEWED
    if row["p50_s"] > 0.3 * slow_s:
        raise CaseFailed(f"p50_s is {row['p50_s']:.2f} s, yet more than half of these requests answered at once: "
                         f"the median is the middle latency, result.percentile(50), not the mean (sum / count), "
                         f"which the {slow} slow requests pull up to a latency that hardly any request had",
                         expected=f"well under {0.3 * slow_s:g} s", got=row["p50_s"])
    if not 0.9 * slow_s <= row["p99_s"] <= (slow_s + slowest_s) / 2:
        why = (f"the slowest request ({slowest_s:g} s) is the maximum, p100, not p99" if row["p99_s"] > slow_s
               else f"99 in 100 requests took at most about {slow_s:g} s, and that is p99")
        raise CaseFailed(f"p99_s is {row['p99_s']:.2f} s: {why}. Use result.percentile(99)",
                         expected=f"about {slow_s:g} s", got=row["p99_s"])


# --- 08.3 CPU work off the loop ---------------------------------------------------------------------------------------

pool_exercise = Exercise(
    "08.3", "CPU work in a process pool",
    points=3,
    answer="an async function run_in_pool(pool, func, *args)",
    params=2,
    timeout=40.0,
    hints=[
        "A thread does not help here: sum(range(n)) is one long call in C that keeps the GIL until it returns, "
        "so the loop's thread cannot run meanwhile. A process has an interpreter (and a GIL) of its own: hand the "
        "call to the pool given to you.",
        "loop.run_in_executor(pool, func, *args) hands the call to an executor (a ProcessPoolExecutor here) and "
        "returns a future the loop can await while the pool works. pool.submit(...).result() would wait in the "
        "loop's own thread: that is a stall too.",
        "async def run_in_pool(pool, func, *args):\n    loop = asyncio.get_running_loop()\n    return await "
        "loop.run_in_executor(pool, func, *args)",
    ],
)


def _pool() -> ProcessPoolExecutor:
    """One worker process, started with spawn (not fork: the kernel has threads) and warmed up."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(abs, 0).result(timeout=30)
    return pool


def _in_loop(answer, scenario):
    """asyncio.run(scenario(run)) with a fresh pool; `run(func, *args)` awaits the learner's call, checked."""
    before = set(threading.enumerate())
    pool = _pool()

    async def run(func, *args):
        if not inspect.iscoroutinefunction(answer):
            raise CaseFailed("run_in_pool should be an `async def`, so that the caller can await it",
                             got=short_repr(answer, 80))
        result = await answer(pool, func, *args)
        if inspect.iscoroutine(result) or asyncio.isfuture(result):
            if inspect.iscoroutine(result):
                result.close()
            raise CaseFailed("run_in_pool returned something to await instead of the result: an await is "
                             "missing (return await loop.run_in_executor(...))", got=short_repr(result, 80))
        return result

    try:
        return asyncio.run(scenario(run))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        deadline = time.monotonic() + 2.0
        while set(threading.enumerate()) - before and time.monotonic() < deadline:
            time.sleep(0.02)


def _calibrated(seconds: float) -> int:
    started = time.perf_counter()
    sum(range(1_000_000))
    took = max(time.perf_counter() - started, 1e-4)
    return max(1_000_000, min(int(seconds / took * 1_000_000), 200_000_000))


@pool_exercise.case("the work runs in the pool's process: os.getpid() there is another process's", timeout=40.0)
def _(answer):
    async def scenario(run):
        return await run(os.getpid)

    got = _in_loop(answer, scenario)
    if got == os.getpid():
        raise CaseFailed("func ran in this very process (the loop's own thread, or a thread via "
                         "asyncio.to_thread): hand it to the pool you are given, with "
                         "loop.run_in_executor(pool, func, *args)", got="this process's id")


@pool_exercise.case("while sum(range(n)) computes for about 0.4 s or more, the loop never stalls over 0.15 s, "
                    "nor over a third of the sum's time", timeout=60.0)
def _(answer):
    n = _calibrated(0.4)

    async def scenario(run):
        size = n
        for _attempt in range(3):  # calibrated in this busy process: make sure the sum takes long enough
            async with LagMonitor() as monitor:
                started = time.monotonic()
                total = await run(sum, range(size))
                took = time.monotonic() - started
            if took >= 0.35:
                break
            size = min(int(size * 0.5 / max(took, 0.01)) + 1, 400_000_000)
        return size, total, took, monitor.worst

    n, total, took, worst = _in_loop(answer, scenario)
    if worst > min(0.15, took / 3):
        raise CaseFailed(f"a heartbeat on the loop woke {worst:.2f} s late while the sum took {took:.2f} s: the "
                         "computation held the loop's thread (called there, waited for with .result() or a "
                         "time.sleep loop, or run in a thread, which needs the GIL the sum keeps). Await the pool: "
                         "loop.run_in_executor(pool, func, *args)",
                         expected=f"a lag under {min(0.15, took / 3):.2f} s", got=f"{worst:.2f} s")
    if total != n * (n - 1) // 2:
        raise CaseFailed("the awaited call should give func's result", expected=n * (n - 1) // 2, got=total)


@pool_exercise.case("an exception raised in the pool reaches the caller's await; arguments pass through",
                    timeout=40.0)
def _(answer):
    async def scenario(run):
        value = await run(pow, 2, 10)
        try:
            returned = await run(math.sqrt, -1)
        except ValueError:
            return value, False, None
        return value, True, returned

    value, no_error, returned = _in_loop(answer, scenario)
    if value != 1024:
        raise CaseFailed("await run_in_pool(pool, pow, 2, 10) should give pow(2, 10): pass *args on",
                         expected=1024, got=value)
    if no_error:
        raise CaseFailed("math.sqrt(-1) raised ValueError in the pool, but the await returned a value: let the "
                         "exception through", expected="ValueError", got=returned)


# --- 08.4 the notes app, without blocking calls ---------------------------------------------------------------------

notes_exercise = Exercise(
    "08.4", "The notes app, unblocked",
    points=4,
    answer="an async function add_note(db_path, upstream_url, text) returning {'id', 'text', 'tag'}",
    params=3,
    timeout=30.0,
    hints=[
        "The blocking version makes two blocking calls in an async def: httpx.get (waits 0.2 s for the upstream) "
        "and sqlite3 (waits for the file's write lock while another connection writes). While either waits, the "
        "loop's thread waits, and so does every other request.",
        "For the upstream, `async with httpx.AsyncClient() as client: reply = await client.get(...)`. For SQLite, "
        "put the whole insert (connect, execute with ? placeholders, commit, close) in a plain function and "
        "`await asyncio.to_thread(that_function, ...)` (or use aiosqlite). (A new AsyncClient costs a few "
        "milliseconds of the loop's time: a real app makes one and shares it, as the lesson's fixed app does.)",
        "async def add_note(db_path, upstream_url, text):\n    def insert(tag):\n        with "
        "contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db, db:\n            return db.execute(\"INSERT "
        "INTO notes (text, tag) VALUES (?, ?)\", (text, tag)).lastrowid\n\n    async with httpx.AsyncClient() as "
        "client:\n        reply = await client.get(f\"{upstream_url}/tag\", params={\"text\": text})\n    tag = "
        "reply.json()[\"tag\"]\n    return {\"id\": await asyncio.to_thread(insert, tag), \"text\": text, "
        "\"tag\": tag}",
    ],
)

NOTES_DELAY = 0.5  # seconds the check's upstream takes


class _Upstream:
    """The check's slow upstream: GET /tag?text=... answers, after NOTES_DELAY s, a tag that cannot be guessed from
    the text (a hash of it with a secret of this run); it counts its calls and how many were in flight at once."""

    def __init__(self):
        self.secret = secrets.token_hex(8)
        self.calls = self.in_flight = self.most_in_flight = 0

    def tag(self, text):
        return "t-" + hashlib.sha256(f"{self.secret}:{text}".encode()).hexdigest()[:8]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        text = parse_qs(scope["query_string"].decode("latin-1")).get("text", [""])[0]
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(NOTES_DELAY)
        finally:
            self.in_flight -= 1
        body = json.dumps({"tag": self.tag(text)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def _notes_world():
    """A fresh SQLite file with the notes table, and the check's slow upstream: (path, url, upstream)."""
    from gatewaylab.notes_app import create_db

    upstream = _Upstream()
    with tempfile.TemporaryDirectory(prefix="check-08-") as folder:
        path = os.path.join(folder, "notes.db")
        create_db(path)
        with serve_asgi(upstream, name="check-08-upstream", lifespan="off") as server:
            yield path, server.url, upstream


def _rows_in(path):
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return db.execute("SELECT id, text, tag FROM notes ORDER BY id").fetchall()


def _open_handles(path):
    """How many of this process's file descriptors are open on the database file (or its journal): a connection
    that was never closed keeps one. None where /proc/self/fd cannot be read."""
    gc.collect()  # a connection that nothing refers to any more is closed when it is collected: not a leak
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    real = os.path.realpath(path)
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(real)
        except OSError:
            pass
    return count


def _notes_loop(answer, scenario):
    if not inspect.iscoroutinefunction(answer):
        raise CaseFailed("add_note should be an `async def`: the app's view awaits it", got=short_repr(answer, 80))
    before = set(threading.enumerate())
    try:
        return asyncio.run(scenario())
    finally:
        deadline = time.monotonic() + 2.0
        while set(threading.enumerate()) - before and time.monotonic() < deadline:
            time.sleep(0.02)


async def _add(answer, path, url, text):
    note = await answer(path, url, text)
    if inspect.iscoroutine(note):
        note.close()
        raise CaseFailed("add_note returned a coroutine: an await is missing", got=short_repr(note, 80))
    return note


@notes_exercise.case("one note: {'id', 'text', 'tag'} comes back with the upstream's tag, the row is committed, "
                     "quotes intact, the connection closed", timeout=30.0)
def _(answer):
    text = "It's 'quoted'; DROP TABLE notes"
    with _notes_world() as (path, url, upstream):
        note = _notes_loop(answer, lambda: _add(answer, path, url, text))
        rows = _rows_in(path)
        handles = _open_handles(path)
    tag = upstream.tag(text)
    if not isinstance(note, dict) or set(note) != {"id", "text", "tag"}:
        raise CaseFailed("add_note should return a dict with exactly id, text and tag", got=short_repr(note))
    if upstream.calls == 0:
        raise CaseFailed("add_note never asked the upstream for the tag: GET {upstream_url}/tag?text=... (the "
                         "check's upstream answers tags that cannot be guessed from the text)",
                         expected="1 call", got="none")
    if note["tag"] != tag:
        raise CaseFailed("the tag is what the upstream answers: reply.json()['tag'] (the check's upstream answers "
                         "a tag that cannot be guessed from the text)", expected=tag, got=note["tag"])
    if not rows:
        raise CaseFailed("the note is not in the database as another connection sees it: commit the insert "
                         "(`with db:` commits when the block ends) and close the connection", expected=1, got=0)
    if rows != [(note["id"], text, tag)]:
        raise CaseFailed("the row in the database should be (id, text, tag) as given; use ? placeholders, not "
                         "string formatting, for the values", expected=[(note["id"], text, tag)], got=rows)
    if handles:
        raise CaseFailed(f"after add_note returned, {handles} connection(s) to the database were still open: close "
                         "every connection you open, `with contextlib.closing(sqlite3.connect(...)) as db, db:` "
                         "(or `async with aiosqlite.connect(...) as db:`)", expected=0, got=handles)


@notes_exercise.case(f"4 notes at once take about one upstream delay ({NOTES_DELAY:g} s), not less, not 4; the loop "
                     "never stalls over 0.3 s", timeout=30.0)
def _(answer):
    with _notes_world() as (path, url, upstream):
        async def scenario():
            async with LagMonitor() as monitor:
                started = time.monotonic()
                notes = await asyncio.gather(*(_add(answer, path, url, f"note {i}") for i in range(4)))
                took = time.monotonic() - started
            return notes, took, monitor.worst

        notes, took, worst = _notes_loop(answer, scenario)
        rows = _rows_in(path)
    if upstream.calls != 4 or took < 0.8 * NOTES_DELAY:
        raise CaseFailed(f"4 notes took {took:.2f} s and asked the upstream {upstream.calls} time(s): each note "
                         f"asks it once for its tag, and each answer takes {NOTES_DELAY:g} s",
                         expected=f"4 calls, about {NOTES_DELAY:g} s", got=f"{upstream.calls}, {took:.2f} s")
    if worst > 0.3:
        raise CaseFailed(f"a heartbeat on the loop woke {worst:.2f} s late: a call waited in the loop's own thread "
                         "(httpx.get, or httpx.Client, waits for the upstream). Use httpx.AsyncClient and await it",
                         expected="a lag under 0.3 s", got=f"{worst:.2f} s")
    if took > 2 * NOTES_DELAY:
        raise CaseFailed(f"4 notes took {took:.2f} s: they waited for the upstream one after another",
                         expected=f"about {NOTES_DELAY:g} s", got=f"{took:.2f} s")
    if sorted(r[1] for r in rows) != sorted(f"note {i}" for i in range(4)) or len({n["id"] for n in notes}) != 4:
        raise CaseFailed("each of the 4 notes should be stored once, with its own id", got=rows)
    wrong = [n for n in notes if n["tag"] != upstream.tag(n["text"])]
    if wrong:
        raise CaseFailed("each note's tag is what the upstream answered for its text", got=short_repr(wrong))


def _hold_write_lock(path, seconds, held):
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # the write lock: other writers wait until COMMIT
        held.set()
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()


@notes_exercise.case("while another connection holds the write lock for 1.5 s, the loop keeps running",
                     timeout=30.0)
def _(answer):
    with _notes_world() as (path, url, upstream):
        held = threading.Event()
        locker = threading.Thread(target=_hold_write_lock, args=(path, 1.5, held), daemon=True,
                                  name="check-08-writer")
        locker.start()
        held.wait(5)

        async def scenario():
            async with LagMonitor() as monitor:
                notes = await asyncio.gather(*(_add(answer, path, url, f"busy {i}") for i in range(3)))
            return notes, monitor.worst

        try:
            notes, worst = _notes_loop(answer, scenario)
        finally:
            locker.join(5)
        rows = _rows_in(path)
    if worst > 0.3 and upstream.calls > 1 and upstream.most_in_flight == 1:
        raise CaseFailed(f"a heartbeat on the loop woke {worst:.2f} s late, and the upstream was asked for the 3 "
                         "tags one after another, never two at once: the upstream calls waited in the loop's own "
                         "thread (httpx.get, or httpx.Client). Use httpx.AsyncClient and await it",
                         expected="a lag under 0.3 s", got=f"{worst:.2f} s")
    if worst > 0.3:
        raise CaseFailed(f"a heartbeat on the loop woke {worst:.2f} s late, while the 3 upstream calls ran "
                         "together (they do not block): sqlite3 waited for the write lock in the loop's own "
                         "thread. Run the insert in a thread: await asyncio.to_thread(insert, ...) (or use "
                         "aiosqlite)", expected="a lag under 0.3 s", got=f"{worst:.2f} s")
    if len(rows) != 3:
        raise CaseFailed("all three notes should be stored once the lock is released", expected=3, got=len(rows))
