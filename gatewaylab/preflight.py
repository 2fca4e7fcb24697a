"""Is this machine ready for the course? A pre-flight check for learners (lesson 00) and for instructors (every machine
in the room, before the workshop):

    python -m gatewaylab.preflight          # exits 1 if anything the course needs is missing

It checks the Python version, the packages the lessons import, that a WSGI and an ASGI server can start on 127.0.0.1 and
answer, and that progress can be saved. Each line says what was found and, when something is wrong, what to do.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
import sys
import time
from dataclasses import dataclass

from gatewaylab.html_style import LEFT

# The packages the lessons import, with the oldest version the course was tested against.
PACKAGES = {
    "jupyterlab": "4.0", "ipywidgets": "8.1", "httpx": "0.27", "uvicorn": "0.30", "h11": "0.14",
    "matplotlib": "3.8", "flask": "3.0", "starlette": "0.40", "asgiref": "3.8", "a2wsgi": "1.10",
}
FIX = "run `make lab` (or `pip install -r requirements.txt -e .`) in the course's folder"


@dataclass
class Item:
    name: str
    ok: bool
    found: str
    advice: str = ""


def _version_tuple(version: str) -> tuple[int, ...]:
    """(3, 11, 2) from "3.11.2rc1": the leading digits of the first three parts."""
    return tuple(int(re.match(r"\d*", piece).group() or 0) for piece in version.split(".")[:3])


def check_python() -> Item:
    found = sys.version.split()[0]
    ok = sys.version_info >= (3, 11)
    return Item("Python", ok, found, "" if ok else "the course needs Python 3.11 or newer")


def check_package(name: str, minimum: str) -> Item:
    try:
        found = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Item(name, False, "not installed", FIX)
    ok = _version_tuple(found) >= _version_tuple(minimum)
    return Item(name, ok, found, "" if ok else f"needs {minimum} or newer: {FIX}")


def _hello_wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def _hello_asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def check_server(kind: str) -> Item:
    """Start a server of this kind on 127.0.0.1, fetch a page from it, stop it."""
    import httpx
    from gatewaylab import servers

    start = getattr(servers, f"serve_{kind}")
    app = _hello_wsgi if kind == "wsgi" else _hello_asgi
    name = f"{kind.upper()} server on 127.0.0.1"
    began = time.perf_counter()
    try:
        with start(app, name=f"preflight-{kind}", **({"lifespan": "off"} if kind == "asgi" else {})) as server:
            answer = httpx.get(server.url, timeout=5).text
    except Exception as exc:  # any failure here is what the learner needs to see
        return Item(name, False, f"{type(exc).__name__}: {exc}",
                    "is something blocking connections to 127.0.0.1 (a firewall or VPN client)?")
    took = time.perf_counter() - began
    return Item(name, answer == "ok", f"started, answered and stopped in {took:.2f} s")


def check_progress_file() -> Item:
    from gatewaylab import progress

    path = progress.progress_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(path.name + ".preflight")
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Item("progress file", False, f"{path}: {exc}", "set GATEWAYLAB_PROGRESS to a file you can write")
    return Item("progress file", True, str(path))


def run() -> "Report":
    items = [check_python()]
    items += [check_package(name, minimum) for name, minimum in PACKAGES.items()]
    items += [check_server("wsgi"), check_server("asgi"), check_progress_file()]
    return Report(items)


@dataclass
class Report:
    items: list[Item]

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    def summary(self) -> str:
        failed = [item.name for item in self.items if not item.ok]
        return "Ready: everything the course needs is here." if not failed else \
            f"Not ready: {len(failed)} problem(s): {', '.join(failed)}."

    def __str__(self) -> str:
        lines = [f"{'ok' if item.ok else 'FAIL':4}  {item.name:28} {item.found}" +
                 (f"\n      -> {item.advice}" if item.advice else "") for item in self.items]
        return "\n".join(lines + [self.summary()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        left = f"style='{LEFT}'"
        rows = "".join(
            f"<tr><td>{'✅' if item.ok else '❌'}</td><td {left}>{html.escape(item.name)}</td>"
            f"<td {left}>{html.escape(item.found)}</td><td {left}>{html.escape(item.advice)}</td></tr>"
            for item in self.items)
        return (f"<table><tr><th></th><th {left}>what</th><th {left}>found</th><th {left}>what to do</th></tr>{rows}"
                "</table>"
                f"<p><b>{html.escape(self.summary())}</b></p>")


def main() -> int:
    report = run()
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
