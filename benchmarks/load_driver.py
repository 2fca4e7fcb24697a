"""How fast is the course's load driver? (`make benchmark`)

A load driver must cost far less than what it measures. This script serves an endpoint that answers at once from a
separate process (a minimal asyncio HTTP server, so the server does not compete with the driver for the GIL), then
times gatewaylab.load.load() issuing 100 and 1,000 concurrent requests, and httpx.AsyncClient doing the same for
comparison. It exits with status 1 if the driver misses its targets: 100 requests in 0.1 s, 1,000 in 1 s (wall time
of the whole load() call, starting its thread and event loop included).

    python benchmarks/load_driver.py [--repeat 5] [--httpx-repeat 1] [--no-httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import httpx

from gatewaylab.load import load

TARGETS = {100: 0.1, 1000: 1.0}  # concurrent requests -> most seconds the driver may take

# The instant endpoint: answers every request with "hello", keeps the connection open unless asked to close it.
SERVER = r"""
import asyncio, sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            if b"connection: close" in head.lower():
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def start_server() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    port = process.stdout.readline().strip()
    if not port.isdigit():
        process.kill()
        process.wait()
        raise RuntimeError("the benchmark server did not start")
    return process, f"http://127.0.0.1:{port}/"


def time_driver(url: str, n: int) -> float:
    started = time.perf_counter()
    result = load(url, clients=n)
    took = time.perf_counter() - started
    if result.ok != n:
        raise RuntimeError(f"the driver did not get {n} OK responses: {result}")
    return took


def time_httpx(url: str, n: int) -> float:
    async def run() -> float:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(url) for _ in range(n)))
            took = time.perf_counter() - started
        if sum(r.status_code == 200 for r in responses) != n:
            raise RuntimeError(f"httpx did not get {n} OK responses")
        return took
    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per size for the driver; the best counts")
    parser.add_argument("--httpx-repeat", type=int, default=1, help="runs per size for httpx (1,000 take it ~10 s)")
    parser.add_argument("--no-httpx", action="store_true", help="skip the httpx comparison")
    args = parser.parse_args()

    process, url = start_server()
    rows, missed = [], []
    try:
        load(url, clients=10)  # warm up: imports, first connections
        for n, target in TARGETS.items():
            times = [time_driver(url, n) for _ in range(args.repeat)]
            verdict = "ok" if min(times) <= target else "MISSED"
            if verdict != "ok":
                missed.append(n)
            rows.append((n, "gatewaylab.load", len(times), min(times), statistics.median(times), f"{target:g} s",
                         verdict))
            if not args.no_httpx:
                times = [time_httpx(url, n) for _ in range(args.httpx_repeat)]
                rows.append((n, "httpx.AsyncClient", len(times), min(times), statistics.median(times), "-", "-"))
    finally:
        process.terminate()
        process.wait()

    print(f"{'requests':>8}  {'client':<18} {'runs':>4} {'best':>9} {'median':>9}  {'target':>6}  verdict")
    for n, client, runs, best, median, target, verdict in rows:
        print(f"{n:>8}  {client:<18} {runs:>4} {best:>8.3f}s {median:>8.3f}s  {target:>6}  {verdict}")
    if missed:
        print(f"the driver missed its target for {', '.join(map(str, missed))} concurrent requests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
