"""The learner's own measurements, kept from every lesson so that lesson 10's decision panel can quote them.

A lesson's demo calls :func:`record` with what it measured; lesson 10 calls :func:`load`::

    >>> record("04.slow_requests", {"clients": 100, "delay_s": 0.5, "wall_s": {"sequential": 50.3, "pool": 5.1},
    ...                             "pool_size": 10}, "100 clients x 0.5 s: sequential 50.3 s, pool of 10 5.1 s")
    >>> load()["04.slow_requests"]["figures"]["wall_s"]["pool"]
    5.1

The file is ``measurements.json`` beside the progress file (``~/.gatewaylab/measurements.json``, or beside the file
``$GATEWAYLAB_PROGRESS`` names)::

    {"version": 1, "measurements": {"04.slow_requests": {"figures": {...}, "summary": "...",
                                                         "time": "2025-01-31T10:02:03+00:00"}}}

Only the latest figures of a key are kept. Every update is made under the lock of :func:`gatewaylab.progress.locked`
(its own ``measurements.json.lock``), and written atomically, so kernels recording at once lose nothing. A file that
cannot be read as measurements is moved aside with a warning and :func:`load` returns ``{}``. Figures that are not
JSON (sets, objects, NaN, booleans, None) are refused with TypeError or ValueError: that is a bug in the caller. A disk
that is full or a home that cannot be written only warns, once: a measurement never breaks a demo.

Keys are lesson-prefixed ("04.slow_requests", "08.showdown"); the figures each key holds are listed in CONTRIBUTING.md's
row for this module and in lesson 10. Code that reads them must accept a missing key (that demo has not been run yet).
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gatewaylab import progress

__all__ = ["record", "load", "measurements_path", "KEY"]

VERSION = 1
KEY = re.compile(r"\d\d\.[a-z][a-z0-9_]*")  # a lesson number, a dot, a name: "04.slow_requests"

_warned: set[str] = set()  # what has been warned about already (each kind of failure once per kernel)
_warned_lock = threading.Lock()


def measurements_path() -> Path:
    """``measurements.json`` in the folder of the progress file (see :func:`gatewaylab.progress.progress_path`)."""
    return progress.progress_path().with_name("measurements.json")


def _warn_once(kind: str, message: str) -> None:
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(message + " (said once; later measurements are not saved either while this lasts)", stacklevel=3)


def _check(value: Any, where: str) -> Any:
    """A copy of value made of JSON types only (a tuple becomes a list); TypeError or ValueError otherwise."""
    if isinstance(value, bool) or value is None:  # bool before int: True is an int to Python
        raise TypeError(f"{where} is {value!r}: figures are numbers, strings, lists and dicts only")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_check(item, f"{where}[{n}]") for n, item in enumerate(value)]
    if isinstance(value, dict):
        copy = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{where} has the key {name!r}: keys of figures are strings")
            copy[name] = _check(item, f"{where}[{name!r}]")
        return copy
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r}): figures are numbers, strings, lists and "
                    f"dicts only")


def _valid(data: Any) -> bool:
    return (isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("measurements"), dict)
            and all(isinstance(entry, dict) and isinstance(entry.get("figures"), dict)
                    for entry in data["measurements"].values()))


def _read(path: Path) -> dict[str, Any]:
    """The file's data; a damaged file is moved aside (empty data); an unreadable one raises OSError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": VERSION, "measurements": {}}
    try:
        data = json.loads(text)
    except ValueError as exc:
        progress._move_aside(path, f"not JSON: {exc}", "measurements file", stacklevel=4)
        return {"version": VERSION, "measurements": {}}
    if not _valid(data):
        progress._move_aside(path, "not a gatewaylab measurements file", "measurements file", stacklevel=4)
        return {"version": VERSION, "measurements": {}}
    return data


def load() -> dict[str, dict[str, Any]]:
    """key -> {"figures": ..., "summary": ..., "time": ISO 8601 string}; ``{}`` when none is kept yet.

    Never raises: a damaged file is moved aside (with a warning), an unreadable one gives ``{}`` with a warning.
    """
    path = measurements_path()
    try:
        return _read(path)["measurements"]
    except OSError as exc:
        warnings.warn(f"measurements file {path} could not be read ({exc}); showing none", stacklevel=2)
        return {}


def record(key: str, figures: dict, summary: str) -> None:
    """Keep the latest ``figures`` of the measurement ``key``, with the time and a one-line ``summary``.

    ``figures`` holds JSON numbers, strings, lists and dicts only (TypeError or ValueError otherwise, before anything
    is written). A file that cannot be written (a full disk, a home that is read-only) warns once and returns.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a string like '04.slow_requests', not {key!r}")
    if not KEY.fullmatch(key):
        raise ValueError(f"key {key!r} is not a lesson number, a dot and a name, like '04.slow_requests'")
    if not isinstance(figures, dict):
        raise TypeError(f"figures must be a dict, not {type(figures).__name__}")
    if not isinstance(summary, str):
        raise TypeError(f"summary must be a string, not {type(summary).__name__}")
    entry = {"figures": _check(figures, "figures"), "summary": " ".join(summary.split()),
             "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = measurements_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _warn_once("write", f"could not save the measurement {key} to {path}: {exc}")
        return
    with progress.locked(path):
        try:
            data = _read(path)
        except OSError as exc:
            _warn_once("read", f"measurements file {path} could not be read ({exc}); {key} not saved")
            return
        data["measurements"][key] = entry
        try:
            progress._write(path, data)
        except OSError as exc:
            _warn_once("write", f"could not save the measurement {key} to {path}: {exc}")
