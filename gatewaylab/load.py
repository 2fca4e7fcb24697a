"""Drive N concurrent clients at a URL and record every request.

    >>> result = load("http://127.0.0.1:8000/slow", clients=20)   # from a notebook cell or a script
    >>> result                                                      # one line: how many OK, how long, percentiles
    >>> result.records[0]                                           # index, client, start, end, status, error

`load()` blocks until the run is over; `await run_load(...)` is the same for code that is already async.

Why not httpx? A load driver must not distort what it measures. httpx is an excellent client, but its connection pool
spends a lot of time on bookkeeping when many requests are in flight at once (encode/httpx#3215): on the course's
machines one httpx.AsyncClient needs about 0.55 s just to issue 100 concurrent requests to an endpoint that answers at
once, and 7-8 s for 1,000. A timing plot made with it would show the client's queue, not the server's. So this module
speaks HTTP/1.1 itself over asyncio streams: open a connection, write a minimal request, read the status line and
headers, then read the body as the response frames it (Content-Length, chunked, or until the server closes). That
issues 1,000 concurrent requests in well under a second; `benchmarks/load_driver.py` measures both.

Every request is recorded, failures included: a refused or reset connection, a server that closes without answering,
a timeout. Nothing is retried except a request on a kept-alive connection that the server had already closed (a
browser does the same), so what the records show is what a client would have seen.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import math
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from gatewaylab.html_style import LEFT

__all__ = ["load", "run_load", "LoadResult", "RequestRecord", "format_seconds", "format_rate"]

PROGRESS_INTERVAL = 0.05  # seconds between progress calls: ~20 a second is smooth, and cheap for a widget
HEAD_LIMIT = 64 * 1024  # bytes of status line + headers we accept before calling the response malformed
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token, what a method name must be
_HEX = re.compile(rb"[0-9A-Fa-f]+")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: who sent it, when (seconds since the run started), and what came back."""

    index: int
    client: int
    start: float
    end: float
    status: int | None  # the HTTP status, or None when no complete response arrived
    error: str | None  # why there is no response ("connection refused", "timed out after 5 s", ...)

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(repr=False)
class LoadResult:
    """Everything one run measured. `repr()` is the one-line summary; in a notebook it shows as a small table."""

    label: str | None
    url: str
    clients: int
    records: list[RequestRecord]
    wall: float  # seconds from the start of the run until the last request ended

    @property
    def ok(self) -> int:
        """How many requests got a 2xx response."""
        return sum(record.ok for record in self.records)

    @property
    def errors(self) -> int:
        """How many requests got no response at all (see `error_counts` for why)."""
        return sum(record.error is not None for record in self.records)

    @property
    def error_counts(self) -> Counter:
        """Why requests failed: {"connection refused": 3, ...}."""
        return Counter(record.error for record in self.records if record.error is not None)

    @property
    def status_counts(self) -> Counter:
        """The HTTP statuses received: {200: 18, 500: 2}."""
        return Counter(record.status for record in self.records if record.status is not None)

    @property
    def throughput(self) -> float:
        """Successful (2xx) requests per second of wall time."""
        return self.ok / self.wall if self.wall > 0 else 0.0

    @property
    def latencies(self) -> list[float]:
        """Latency (s) of every request that got a response, in request order. Failed requests are left out: a
        refused connection fails in microseconds and would make a struggling server look fast."""
        return [record.latency for record in self.records if record.status is not None]

    def percentile(self, p: float) -> float:
        """The p-th percentile (0-100) of `latencies`, interpolating between neighbours (as numpy does)."""
        if not 0 <= p <= 100:
            raise ValueError(f"a percentile is between 0 and 100, not {p!r}")
        values = sorted(self.latencies)
        if not values:
            raise ValueError("no request got a response, so there is no latency to take a percentile of")
        rank = (len(values) - 1) * p / 100
        low = math.floor(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)

    def summary(self) -> str:
        count = len(self.records)
        head = (f"{self.label}: " if self.label else "") + \
            f"{_plural(count, 'request')}, {_plural(self.clients, 'client')}: "
        if count and self.ok == count:
            outcome = f"all {count} OK"
        else:
            parts = [f"{self.ok} OK"]
            parts += [f"{n} HTTP {status}" for status, n in sorted(self.status_counts.items())
                      if not 200 <= status < 300]
            parts += [f"{n} {error}" for error, n in self.error_counts.most_common()]
            outcome = ", ".join(parts)
        line = f"{head}{outcome} in {format_seconds(self.wall)} ({format_rate(self.throughput)})"
        if not self.latencies:
            return line + "; no responses"
        return (f"{line}; latency p50 {format_seconds(self.percentile(50))}, "
                f"p95 {format_seconds(self.percentile(95))}, max {format_seconds(max(self.latencies))}")

    __repr__ = __str__ = summary

    def _repr_html_(self) -> str:
        rows = [("requests", len(self.records)), ("clients", self.clients), ("OK (2xx)", self.ok),
                ("other statuses", sum(n for s, n in self.status_counts.items() if not 200 <= s < 300)),
                ("no response", self.errors), ("wall time", format_seconds(self.wall)),
                ("throughput", format_rate(self.throughput))]
        if self.latencies:
            rows += [(f"latency {name}", format_seconds(value)) for name, value in
                     (("p50", self.percentile(50)), ("p95", self.percentile(95)), ("max", max(self.latencies)))]
        for error, n in self.error_counts.most_common():
            rows.append((error, n))
        body = "".join(f"<tr><th style='{LEFT}'>{html.escape(str(name))}</th>"
                       f"<td style='text-align:right'>{html.escape(str(value))}</td></tr>" for name, value in rows)
        caption = html.escape(self.label or self.url)
        return f"<table><caption>{caption}</caption>{body}</table><p>{html.escape(self.summary())}</p>"


def format_seconds(seconds: float) -> str:
    """0.0123 -> '12.3 ms', 1.0234 -> '1.02 s': milliseconds below 0.1 s, where two decimals of a second say nothing."""
    if seconds < 0.1:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def format_rate(per_second: float) -> str:
    """19.62 -> '19.6 req/s', 1234.5 -> '1234 req/s'."""
    return f"{per_second:.1f} req/s" if per_second < 100 else f"{per_second:.0f} req/s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- what to run ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    url: str
    host: str
    port: int
    request: bytes
    method: str
    clients: int
    requests: int
    timeout: float
    keep_alive: bool
    label: str | None


def _plan(url, clients, requests, method, path, timeout, keep_alive, label) -> _Plan:
    """Check the arguments and build the request bytes once; every bad argument gets a message saying what was wrong."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a string like 'http://127.0.0.1:8000/', not {url!r}")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"url must look like 'http://host:port/path' (plain http, no TLS), not {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"the port in {url!r} is not a number between 0 and 65535") from None
    for name, value in (("clients", clients), ("requests", requests)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    requests = clients if requests is None else requests
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise ValueError(f"method must be an HTTP method name such as 'GET', not {method!r}")
    method = method.upper()
    if path is None:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " \r\n\t"):
        raise ValueError(f"path must start with '/' and contain no spaces or line breaks, not {path!r}")
    host_header = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        host_header += f":{parts.port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "User-Agent: gatewaylab-load"]
    if method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")  # these methods carry a body; say it is empty rather than leave it unframed
    if not keep_alive:
        lines.append("Connection: close")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return _Plan(url, parts.hostname, port, request, method, min(clients, requests), requests, float(timeout),
                 bool(keep_alive), label)


# --- running it -------------------------------------------------------------------------------------------------------

async def run_load(url: str, clients: int = 10, requests: int | None = None, *, method: str = "GET",
                   path: str | None = None, timeout: float = 30.0, keep_alive: bool = False,
                   progress: Callable[[int, int], object] | None = None, label: str | None = None) -> LoadResult:
    """Send `requests` requests (default: one per client) from `clients` concurrent clients; each client sends its
    share one after another. `timeout` (s) bounds each request, connecting included. With keep_alive, each client
    reuses its connection; without, every request opens a new one and asks the server to close it.
    `progress(done, total)` is called about 20 times a second while requests finish, and once at the end."""
    plan = _plan(url, clients, requests, method, path, timeout, keep_alive, label)
    return await _run(plan, progress)


def load(url: str, clients: int = 10, requests: int | None = None, **kw) -> LoadResult:
    """`run_load` as a plain, blocking call; works in a notebook cell (whose event loop is already running) and in
    scripts alike, because the run gets a fresh event loop in a worker thread. Interrupting the kernel stops the run.
    (Inside a coroutine, prefer `await run_load(...)`: this call blocks the caller's event loop until the run ends.)"""
    return _run_in_thread(run_load(url, clients, requests, **kw))


def _run_in_thread(coroutine):
    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())  # joins a name-lookup thread, if one ran
            loop.close()

    worker = threading.Thread(target=work, name="gatewaylab-load", daemon=True)
    worker.start()
    try:
        worker.join()
    except KeyboardInterrupt:
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:
            pass  # the loop had just finished on its own
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def _run(plan: _Plan, progress) -> LoadResult:
    _raise_file_limit(plan.clients)
    address = await _resolve(plan.host, plan.port)
    records: list[RequestRecord] = []
    t0 = time.perf_counter()
    # Requests are dealt out round-robin: client c sends requests c, c + clients, c + 2 * clients, ...
    tasks = [asyncio.create_task(_client(plan, address, c, range(c, plan.requests, plan.clients), records, t0))
             for c in range(plan.clients)]
    try:
        if progress is None:
            await asyncio.wait(tasks)
        else:
            progress(0, plan.requests)
            pending, reported = set(tasks), 0
            while pending:
                _, pending = await asyncio.wait(pending, timeout=PROGRESS_INTERVAL)
                if len(records) != reported:
                    reported = len(records)
                    progress(reported, plan.requests)
    finally:
        for task in tasks:  # only does something when we are cancelled or progress() raised
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        task.result()  # a bug in the driver itself must not pass silently
    wall = max((record.end for record in records), default=time.perf_counter() - t0)
    records.sort(key=lambda record: record.index)
    return LoadResult(plan.label, plan.url, plan.clients, records, wall)


def _raise_file_limit(clients: int) -> None:
    """Each client holds a socket, and a server in the same process one more: make sure the process may open them."""
    try:
        import resource
    except ImportError:  # Windows has no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * clients + 256
    if hard != resource.RLIM_INFINITY and clients + 64 > hard:
        raise ValueError(f"{clients} clients need more open files than this system allows (at most {hard})")
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def _resolve(host: str, port: int) -> tuple[str, int]:
    """Look the host name up once, not once per connection (each lookup would take a thread)."""
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve host {host!r}: {exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4: the course's servers bind 127.0.0.1
    return infos[0][4][0], port


class _NoResponse(Exception):
    """The exchange failed in a way that has a plain explanation (kept as the record's error)."""


async def _client(plan: _Plan, address, client: int, indices, records: list, t0: float) -> None:
    connection = None  # (reader, writer), kept between requests only with keep-alive
    try:
        for index in indices:
            start = time.perf_counter() - t0
            status = error = None
            try:
                async with asyncio.timeout(plan.timeout):
                    status, connection = await _exchange(plan, address, connection)
            except Exception as exc:
                error = _describe(exc, plan.timeout)
                connection = None  # _exchange has closed it
            records.append(RequestRecord(index, client, start, time.perf_counter() - t0, status, error))
    finally:
        _close(connection)


async def _exchange(plan: _Plan, address, connection):
    """Send one request and read its response; returns (status, connection to reuse or None)."""
    reused = connection is not None
    if connection is None:
        connection = await asyncio.open_connection(*address, limit=HEAD_LIMIT)
    try:
        reader, writer = connection
        writer.write(plan.request)
        status, reusable = await _read_response(reader, plan.method)
    except BaseException as exc:  # a timeout cancels us here: the socket must not leak either way
        _close(connection, abort=True)
        # A server may close an idle kept-alive connection just as we send on it: that is not a failure of this request.
        if reused and (isinstance(exc, (ConnectionResetError, BrokenPipeError)) or str(exc) == _CLOSED_EARLY):
            return await _exchange(plan, address, None)
        raise
    if not (plan.keep_alive and reusable):
        connection = _close(connection)
    return status, connection


def _close(connection, abort: bool = False) -> None:
    if connection is not None:
        writer = connection[1]
        writer.transport.abort() if abort else writer.close()
    return None


_CLOSED_EARLY = "connection closed without a response"


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, bool]:
    """Read one response (RFC 9112 section 6.3 framing) and return (status, whether the connection can be reused)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise _NoResponse(_CLOSED_EARLY if not exc.partial else "connection closed mid-response") from None
        version, status, headers = _parse_head(head)
        if not 100 <= status < 200:
            break  # a 1xx is an interim response; the real one follows
    close = "close" in headers.get("connection", "").lower() or version != "HTTP/1.1"
    try:
        if method == "HEAD" or status in (204, 304):
            pass  # no body, whatever the headers say
        elif "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower().rsplit(",", 1)[-1].strip() == "chunked":
                await _read_chunked(reader)
            else:
                await _read_to_end(reader)
                close = True
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise _NoResponse(f"malformed response: Content-Length {length!r}")
            await _discard(reader, int(length))
        else:
            await _read_to_end(reader)  # the body ends when the server closes the connection
            close = True
    except asyncio.IncompleteReadError:
        raise _NoResponse("connection closed mid-response") from None
    return status, not close


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    status_line, *field_lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3) or rest[3:4] not in ("", " "):
        raise _NoResponse(f"malformed response: status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in field_lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise _NoResponse(f"malformed response: header line {line[:80]!r}")
        name = name.strip().lower()
        # Repeated fields are joined with commas (RFC 9110 5.3); two different Content-Lengths stay detectable.
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return version, int(code), headers


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()  # drop chunk extensions
        if not _HEX.fullmatch(size_line):
            raise _NoResponse(f"malformed response: chunk size {size_line[:20]!r}")
        size = int(size_line, 16)
        if size == 0:
            break
        await _discard(reader, size)
        if await reader.readexactly(2) != b"\r\n":
            raise _NoResponse("malformed response: chunk not followed by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailer fields, which we do not need


async def _discard(reader: asyncio.StreamReader, size: int) -> None:
    """Read and drop `size` bytes without holding them all in memory."""
    while size:
        chunk = await reader.read(min(size, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(chunk)


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


def _describe(exc: Exception, timeout: float) -> str:
    """A short, stable explanation for a failed request (the same failure always reads the same, so they count up)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(exc, _NoResponse):
        return str(exc)
    if isinstance(exc, asyncio.LimitOverrunError):
        return f"malformed response: head or chunk line longer than {HEAD_LIMIT} bytes"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"{type(exc).__name__}: {exc}"
