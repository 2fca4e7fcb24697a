"""How fast, and how light, is the course's ASGI server? (python benchmarks/asgi_server.py)

Compares gatewaylab.asgi with uvicorn, both on asyncio's own event loop (uvicorn --loop asyncio), uvicorn once with
its pure-Python parser (--http h11) and once with its C one (--http httptools, from requirements-bench.txt). Each
server runs in its own process, lifespan off:

1. throughput on a hello-world app, with keep-alive and with "Connection: close" on every request, measured with wrk
   -t1 -c10 if it is installed (apt-get install wrk) and with gatewaylab.load otherwise; the servers run side by side
   and are measured in turns, best of --repeat;
2. memory per idle keep-alive connection: a fresh server answers a warm-up, then connections are opened, each of
   which sends one request, reads its answer and stays open; at N = 1,000 and again at 5,000 of them, the growth of
   the server process's PSS (and RSS) since before the first opened, divided by N;
3. N = 100 and 1,000 concurrent requests to an app that awaits asyncio.sleep(0.5) before answering, timed with
   gatewaylab.load (one connection per request), best of --repeat (the worst is printed too).

Every ratio printed comes from this one run. The script exits with status 1 if a target is missed:
- with keep-alive, gatewaylab serves >= 2x the requests per second of uvicorn-h11, and >= 0.8x uvicorn-httptools'
  (the "Connection: close" ratios are printed too, for the record);
- at 1,000 and at 5,000 idle connections, its PSS per connection is no more than either uvicorn's;
- 100 slow requests are all answered within 0.6 s and 1,000 within 1.2 s, and no later than by either uvicorn.

    python benchmarks/asgi_server.py [--duration 3] [--repeat 5] [--no-wrk] [--packages DIR]

httptools is looked for in --packages (default .venv/bench, where `make benchmark` installs requirements-bench.txt),
on top of the usual path; it is kept out of the course's environment because uvicorn's default, --http auto, would
pick it up there.
"""

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

# The measuring tools are the WSGI benchmark's: the same wrk run and load driver for both interfaces.
from wsgi_server import free_port, report_targets, with_driver, with_wrk

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DELAY = 0.5  # seconds the slow app waits
SLOW_SIZES = (100, 1000)  # concurrent slow requests
IDLE_SIZES = (1000, 5000)  # idle keep-alive connections
IDLE_TIMEOUT = 60  # seconds every server keeps an idle connection: longer than opening 5,000 takes
OPENING = 200  # connections being opened at once while measuring memory (well under every backlog)
BACKLOG = 2048  # for uvicorn; gatewaylab.asgi listens with 1,024, above the largest N
SERVERS = ("gatewaylab", "uvicorn-h11", "uvicorn-httptools")
HELLO = b"Hello, world!\n"


# --- the apps (the server processes import this file as the module asgi_server) -------------------------------------

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]})
    await send({"type": "http.response.body", "body": HELLO})


async def slow(scope, receive, send):
    await asyncio.sleep(DELAY)
    await hello(scope, receive, send)


# --- running servers ------------------------------------------------------------------------------------------------

def command(kind, app, port):
    if kind == "gatewaylab":
        return [sys.executable, "-m", "gatewaylab.asgi", f"asgi_server:{app}", "--host", "127.0.0.1",
                "--port", str(port), "--lifespan", "off", "--timeout", str(IDLE_TIMEOUT)]
    if kind.startswith("uvicorn-"):
        return [sys.executable, "-m", "uvicorn", f"asgi_server:{app}", "--host", "127.0.0.1", "--port", str(port),
                "--loop", "asyncio", "--http", kind.removeprefix("uvicorn-"), "--lifespan", "off",
                "--log-level", "warning", "--no-access-log", "--backlog", str(BACKLOG),
                "--timeout-keep-alive", str(IDLE_TIMEOUT)]
    raise ValueError(kind)


def most_files():
    """Raise this process's limit on open files to the hard limit (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def server_env(packages):
    path = [str(HERE), str(ROOT), *([str(packages)] if packages else []), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


class Server:
    """A server in a child process (with `ulimit -n` at its hard limit), stopped and waited for on the way out."""

    def __init__(self, kind, app, env):
        self.kind, self.port = kind, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(command(kind, app, self.port), cwd=HERE, env=env, preexec_fn=most_files,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.process.pid)

    def __enter__(self):
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"server did not start: {' '.join(self.process.args)}") from None
                time.sleep(0.05)

    def __exit__(self, *exc_info):
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- measuring ------------------------------------------------------------------------------------------------------

def slow_wall(url, clients):
    """Seconds until `clients` concurrent requests to the slow app have all been answered."""
    from gatewaylab.load import load

    result = load(url, clients=clients, timeout=30)
    if result.ok != clients:
        raise RuntimeError(f"{clients} slow requests to {url}: {result.summary()}")
    return result.wall


async def open_idle(port, count):
    """`count` connections, each of which has sent a request and read its whole answer, and stays open."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    gate = asyncio.Semaphore(OPENING)

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head!r}")
            await reader.readexactly(int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1]))
            return reader, writer

    return await asyncio.gather(*(one() for _ in range(count)))


def footprint(ps):
    memory = ps.memory_full_info()
    return memory.pss, memory.rss, ps.num_fds()


def idle_memory(kind, env):
    """{N: (PSS, RSS) growth in bytes per idle keep-alive connection} for each N in IDLE_SIZES: a fresh server is
    warmed up, then connections are opened until there are N, and it is measured at each N."""
    from gatewaylab.load import load

    async def measure(server, before):
        connections, growth = [], {}
        try:
            for count in IDLE_SIZES:
                connections += await open_idle(server.port, count - len(connections))
                await asyncio.sleep(1)  # let the server settle (and a connection it closed show as EOF here)
                after = footprint(server.ps)
                still_open = sum(not reader.at_eof() for reader, _ in connections)
                if still_open != count or after[2] - before[2] < count:
                    raise RuntimeError(f"{kind} closed idle connections: {still_open} of {count} open, "
                                       f"{after[2] - before[2]} more file descriptors")
                growth[count] = ((after[0] - before[0]) / count, (after[1] - before[1]) / count)
        finally:
            for _, writer in connections:
                writer.close()
        return growth

    with Server(kind, "hello", env) as server:
        # Warm up every path an idle connection takes (accept, a request, an answer, a close), then settle.
        for keep_alive in (True, False):
            warm = load(server.url, clients=100, requests=1000, keep_alive=keep_alive)
            if warm.ok != 1000:
                raise RuntimeError(f"warm-up of {kind}: {warm.summary()}")
        time.sleep(0.5)
        return asyncio.run(measure(server, footprint(server.ps)))


def check_httptools(env):
    probe = subprocess.run([sys.executable, "-c", "import httptools"], env=env, capture_output=True)
    if probe.returncode != 0:
        sys.exit("httptools is not installed: `make benchmark` installs requirements-bench.txt into .venv/bench "
                 "(or: python -m pip install --target .venv/bench -r requirements-bench.txt)")


# --- the run --------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3, help="seconds per throughput measurement (default 3)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="throughput and slow-request measurements of each server, best kept (default 5)")
    parser.add_argument("--no-wrk", action="store_true", help="measure throughput with gatewaylab.load")
    parser.add_argument("--packages", type=Path, default=ROOT / ".venv" / "bench",
                        help="a folder with httptools in it, put on the servers' path (default .venv/bench)")
    args = parser.parse_args(argv)
    files = most_files()
    if files < 2 * max(IDLE_SIZES) + 256:
        sys.exit(f"{max(IDLE_SIZES)} idle connections need more open files than this system allows ({files})")
    env = server_env(args.packages if args.packages.is_dir() else None)
    check_httptools(env)
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    throughput = with_wrk if use_wrk else with_driver
    duration = int(args.duration) if use_wrk else args.duration
    print(f"Throughput: hello world, 10 concurrent clients, best of {args.repeat} x {duration} s, measured with "
          f"{'wrk -t1 -c10' if use_wrk else 'gatewaylab.load'}", flush=True)

    # The servers run side by side and are measured in turns, keeping each one's best: on a shared machine, a burst
    # of other work then hurts one measurement, not one server.
    rates = {kind: [0.0, 0.0] for kind in SERVERS}
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(Server(kind, "hello", env)) for kind in SERVERS}
        for _ in range(args.repeat):
            for kind, server in servers.items():
                for index, close in enumerate((False, True)):
                    rates[kind][index] = max(rates[kind][index], throughput(server.url, duration, close))
    for kind, (kept, closed) in rates.items():
        print(f"  {kind:20} keep-alive {kept:8.0f} req/s   Connection: close {closed:8.0f} req/s")

    print("\nMemory per idle keep-alive connection (growth of the server's PSS / RSS over N connections)", flush=True)
    memory = {}
    for kind in SERVERS:
        memory[kind] = idle_memory(kind, env)
        print(f"  {kind:20} " + "   ".join(f"N={n}: PSS {pss / 1024:5.1f} KiB, RSS {rss / 1024:5.1f} KiB"
                                          for n, (pss, rss) in memory[kind].items()), flush=True)

    print(f"\nSlow requests: N concurrent requests, each waiting {DELAY} s; wall time (s) until all are answered, "
          f"best of {args.repeat}", flush=True)
    runs = {kind: {n: [] for n in SLOW_SIZES} for kind in SERVERS}
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(Server(kind, "slow", env)) for kind in SERVERS}
        for _ in range(args.repeat):
            for kind, server in servers.items():
                for n in SLOW_SIZES:
                    runs[kind][n].append(slow_wall(server.url, n))
    walls = {kind: {n: min(times) for n, times in sizes.items()} for kind, sizes in runs.items()}
    for kind in SERVERS:
        # The worst run too: a wall time a second or more above the best is a connection that waited for the
        # client's SYN to be sent again (its accept queue was full), which the best run hides.
        print(f"  {kind:20} " + "   ".join(f"N={n}: {min(times):5.2f} (worst {max(times):5.2f})"
                                          for n, times in runs[kind].items()))

    targets = []  # (what, met): met None is a figure for the record, not a target
    ours = "gatewaylab"
    for other, least in (("uvicorn-h11", 2), ("uvicorn-httptools", 0.8)):
        ratio = rates[ours][0] / rates[other][0]
        targets.append((f"keep-alive req/s vs {other}: {ratio:.2f}x (target >= {least:g}x)", ratio >= least))
    for other in SERVERS[1:]:
        ratio = rates[ours][1] / rates[other][1]
        targets.append((f"Connection: close req/s vs {other}: {ratio:.2f}x", None))
    for n in IDLE_SIZES:
        for other in SERVERS[1:]:
            ratio = memory[ours][n][0] / memory[other][n][0]
            targets.append((f"{n} idle connections, PSS per connection vs {other}: {ratio:.2f}x "
                            f"({memory[ours][n][0] / 1024:.1f} vs {memory[other][n][0] / 1024:.1f} KiB; "
                            "target <= 1x)", ratio <= 1))
    for n, most in zip(SLOW_SIZES, (0.6, 1.2)):
        targets.append((f"{n} slow requests: {walls[ours][n]:.2f} s (target <= {most:g} s)", walls[ours][n] <= most))
        for other in SERVERS[1:]:
            ratio = walls[ours][n] / walls[other][n]
            targets.append((f"{n} slow requests vs {other}: {walls[ours][n]:.2f} vs {walls[other][n]:.2f} s = "
                            f"{ratio:.2f}x (target <= 1x)", ratio <= 1))
        targets.append((f"{n} slow requests, worst of {args.repeat} runs: " + ", ".join(
            f"{kind} {max(runs[kind][n]):.2f} s" for kind in SERVERS), None))
    return report_targets(targets)


if __name__ == "__main__":
    sys.exit(main())
