"""Remember check results and hints in a small JSON file, and show them as a dashboard.

The file is ``$GATEWAYLAB_PROGRESS`` when that is set, else ``~/.gatewaylab/progress.json``. It holds, per exercise id,
the best score, the points, whether it was ever passed, the number of attempts and the time of the last one, and how
many of its hints were revealed (``hints_used``, which survives a kernel restart)::

    {"version": 1, "exercises": {"00.1": {"best_score": 2, "points": 2, "passed": true, "attempts": 3,
                                          "last_attempt": "2025-01-31T10:02:03+00:00", "hints_used": 1}}}

Running a check on an answer that is still the exercise stub is not counted as an attempt. Every update happens under
a lock (a ``progress.json.lock`` file beside it, see :func:`locked`): the file is read, changed and written by one
kernel at a time, so two kernels recording at once both keep their update. Writes are atomic (a temporary file renamed
over the old one), so a kernel killed mid-write leaves the previous file intact. A file that cannot be read as progress
is moved aside with a warning and progress starts afresh: a check never crashes on it.

This module knows nothing of :mod:`gatewaylab.grading` (which imports it to record results): the dashboard lists the
exercises from :func:`gatewaylab.checks.declarations`, which reads the lesson modules without importing them.
Optional exercises are listed apart and count toward no total.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from gatewaylab.html_style import LEFT

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = ["progress_path", "lock_path", "locked", "load_progress", "update", "record", "record_hint", "hints_used",
           "dashboard", "Dashboard"]

VERSION = 1
LOCK_TIMEOUT = 10.0  # seconds a kernel waits for another to finish its update


def progress_path() -> Path:
    """Where progress is kept: ``$GATEWAYLAB_PROGRESS`` or ``~/.gatewaylab/progress.json``."""
    configured = os.environ.get("GATEWAYLAB_PROGRESS")
    return Path(configured).expanduser() if configured else Path.home() / ".gatewaylab" / "progress.json"


def _empty() -> dict[str, Any]:
    return {"version": VERSION, "exercises": {}}


def _valid(data: Any) -> bool:
    return (isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("exercises"), dict)
            and all(isinstance(entry, dict) for entry in data["exercises"].values()))


def _move_aside(path: Path, reason: str, what: str = "progress file", stacklevel: int = 3) -> None:
    """Keep a file that cannot be read beside it, under a new name, and say so (measurements' file too)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
        where = f"moved it to {aside}"
    except OSError as exc:
        where = f"could not move it aside ({exc})"
    warnings.warn(f"{what} {path} could not be read ({reason}); {where} and started afresh", stacklevel=stacklevel)


def load_progress(path: Path | None = None) -> dict[str, Any]:
    """The progress data (``{"version": 1, "exercises": {...}}``); empty when there is no file yet."""
    path = progress_path() if path is None else Path(path)
    try:
        return _read(path)
    except OSError as exc:
        warnings.warn(f"progress file {path} could not be read ({exc}); showing no progress", stacklevel=2)
        return _empty()


def _read(path: Path) -> dict[str, Any]:
    """Like load_progress, but an unreadable file raises OSError (so that no update overwrites it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty()
    try:
        data = json.loads(text)
    except ValueError as exc:
        _move_aside(path, f"not JSON: {exc}")
        return _empty()
    if not _valid(data):
        _move_aside(path, "not a gatewaylab progress file")
        return _empty()
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file sits beside the target so os.replace is a rename within one file system, hence atomic.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock_path(path: Path | None = None) -> Path:
    """The lock file beside the progress file. It stays there: removing it would let two kernels lock two files."""
    path = progress_path() if path is None else Path(path)
    return path.with_name(path.name + ".lock")


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open file without waiting; False when another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the current position: always the first one
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # EACCES: another process holds the byte
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def locked(path: Path | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold the progress file's lock: one kernel at a time reads, changes and writes it.

    ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows, on a lock file beside the progress file (the progress
    file itself is replaced on every write, so a lock on it would not outlive the write). When the lock cannot be had
    within ``timeout`` seconds (default ``LOCK_TIMEOUT``), or the file system does not support locks, the update goes ahead unlocked with a
    warning: a check cell must not hang or fail over its record.
    """
    target = lock_path(path)
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    fd = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                warnings.warn(f"{target} stayed locked for {timeout:g} s; saving progress without the lock",
                              stacklevel=3)
                os.close(fd)
                fd = None
                break
            time.sleep(0.005)
    except OSError as exc:
        warnings.warn(f"could not lock {target} ({exc}); saving progress without the lock", stacklevel=3)
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)


def update(change: Callable[[dict[str, Any]], Any]) -> Any:
    """Under the lock: load the progress, apply ``change(data)`` to it, write it back; returns what change returns.

    Every writer goes through here, so two kernels recording at the same moment merge their updates instead of the
    later write dropping the earlier one. A file that cannot be written only produces a warning.
    """
    path = progress_path()
    with locked(path):
        try:
            data = _read(path)
        except OSError as exc:
            warnings.warn(f"progress file {path} could not be read ({exc}); progress not saved", stacklevel=3)
            return change(_empty())
        result = change(data)
        try:
            _write(path, data)
        except OSError as exc:
            warnings.warn(f"could not save progress to {path}: {exc}", stacklevel=3)
    return result


def _entry(data: dict[str, Any], exercise_id: str) -> dict[str, Any]:
    return data["exercises"].setdefault(exercise_id, {"best_score": 0, "passed": False, "attempts": 0})


def record(report) -> dict[str, Any]:
    """Store a check's report and return the exercise's updated entry.

    ``report`` is a :class:`gatewaylab.grading.Report`, or anything with the same attributes: ``exercise`` (with
    ``id``, ``title`` and, optionally, ``optional``), ``points``, ``score``, ``passed`` and ``not_solved``.
    """
    exercise = report.exercise

    def change(data: dict[str, Any]) -> dict[str, Any]:
        entry = _entry(data, exercise.id)
        entry["title"] = exercise.title
        entry["points"] = report.points
        entry["optional"] = bool(getattr(exercise, "optional", False))
        entry["best_score"] = max(int(entry.get("best_score", 0)), report.score)
        entry["passed"] = bool(entry.get("passed")) or report.passed
        if not report.not_solved:
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry["last_score"] = report.score
        entry["last_attempt"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return dict(entry)

    return update(change)


def hints_used(exercise_id: str, data: dict[str, Any] | None = None) -> int:
    """How many hints of an exercise the learner has revealed so far (0 when none, or no file yet)."""
    data = load_progress() if data is None else data
    entry = data["exercises"].get(exercise_id) or {}
    try:
        return max(int(entry.get("hints_used", 0)), 0)
    except (TypeError, ValueError):
        return 0


def record_hint(exercise_id: str, level: int) -> int:
    """Note that hints 1 to ``level`` of an exercise have been revealed; returns the level now stored.

    The stored level only goes up (the larger of the stored one and ``level``), so a kernel that restarted, or
    another one, continues from the furthest hint shown. The time of the hint is kept as ``last_hint``.
    """

    def change(data: dict[str, Any]) -> int:
        entry = _entry(data, exercise_id)
        entry["hints_used"] = max(hints_used(exercise_id, data), int(level))
        entry["last_hint"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return entry["hints_used"]

    return update(change)


@dataclass
class _Mark:
    mark: str  # ✓ solved, ✗ tried, · not tried yet
    id: str
    title: str
    hints: int  # hints revealed

    def text(self) -> str:
        return f"{self.mark} {self.id}" + (f" ({_hints_phrase(self.hints)})" if self.hints else "")


@dataclass
class _Row:
    lesson: str
    solved: int = 0
    total: int = 0
    score: int = 0
    points: int = 0
    hints: int = 0
    marks: list[_Mark] = field(default_factory=list)
    optional: list[_Mark] = field(default_factory=list)  # shown, counted in no total


def _hints_phrase(n: int) -> str:
    return f"{n} hint" + ("" if n == 1 else "s")


def _mark(entry: dict[str, Any] | None) -> str:
    if entry is None or not entry.get("attempts"):
        return "·"  # not tried
    return "✓" if entry.get("passed") else "✗"


_COLOURS = {"✓": "#009E73", "✗": "#D55E00", "·": "#888888"}  # Okabe-Ito, grey for neutral
_LABELS = {"✓": "solved", "✗": "tried, not solved", "·": "not tried yet"}


class Dashboard:
    """Progress over every lesson's exercises: HTML table in JupyterLab, plain text elsewhere.

    Optional exercises are shown after the others, marked optional, and count toward no total: a lesson is complete
    when its other exercises are solved. Each exercise shows the hints revealed for it.
    """

    def __init__(self, data: dict[str, Any]):
        from gatewaylab.checks import declarations

        done = data["exercises"]
        rows: dict[str, _Row] = {}
        for exercise in declarations().values():
            entry = done.get(exercise.id)
            row = rows.setdefault(exercise.lesson, _Row(exercise.lesson))
            mark = _Mark(_mark(entry), exercise.id, exercise.title, hints_used(exercise.id, data))
            row.hints += mark.hints
            if exercise.optional:
                row.optional.append(mark)
                continue
            row.total += 1
            row.solved += bool(entry and entry.get("passed"))
            row.points += exercise.points
            row.score += min(int(entry.get("best_score", 0)), exercise.points) if entry else 0
            row.marks.append(mark)
        self.rows = list(rows.values())

    @property
    def totals(self) -> tuple[int, int, int, int]:
        """(exercises solved, exercises, score, points) over all lessons, optional exercises left out."""
        return (sum(r.solved for r in self.rows), sum(r.total for r in self.rows),
                sum(r.score for r in self.rows), sum(r.points for r in self.rows))

    @property
    def hints(self) -> int:
        """Hints revealed over all exercises, optional ones included."""
        return sum(r.hints for r in self.rows)

    def __str__(self) -> str:
        lines = ["Progress (✓ solved, ✗ tried, · not tried yet; optional exercises count toward no total)"]
        for r in self.rows:
            marks = "  ".join(m.text() for m in r.marks)
            if r.optional:
                marks += ("   " if marks else "") + "optional: " + "  ".join(m.text() for m in r.optional)
            lines.append(f"Lesson {r.lesson}: {r.solved}/{r.total} solved, {r.score}/{r.points} points   {marks}")
        solved, total, score, points = self.totals
        lines.append(f"Total: {solved}/{total} solved, {score}/{points} points, {_hints_phrase(self.hints)} used")
        return "\n".join(lines)

    @staticmethod
    def _html_marks(marks: list[_Mark]) -> str:
        spans = []
        for m in marks:
            used = f", {_hints_phrase(m.hints)} used" if m.hints else ""
            extra = (f' <span style="color:#555555;font-size:85%">({html.escape(_hints_phrase(m.hints))})</span>'
                     if m.hints else "")
            spans.append(
                f'<span title="{html.escape(m.id)} {html.escape(m.title)}: {_LABELS[m.mark]}{used}" '
                f'style="white-space:nowrap"><span style="color:{_COLOURS[m.mark]}">{m.mark}&nbsp;'
                f'{html.escape(m.id)}</span>{extra}</span>')
        return " ".join(spans)

    def _repr_html_(self) -> str:
        body = []
        for r in self.rows:
            marks = self._html_marks(r.marks)
            if r.optional:
                marks += (' <span style="white-space:nowrap;color:#555555">optional:</span> '
                          + self._html_marks(r.optional))
            body.append(f"<tr><td style='{LEFT}'>Lesson {r.lesson}</td><td>{r.solved}/{r.total}</td>"
                        f"<td>{r.score}/{r.points}</td><td>{r.hints}</td><td style='{LEFT}'>{marks}</td></tr>")
        solved, total, score, points = self.totals
        return ('<table class="gatewaylab-dashboard" style="border-collapse:collapse">'
                "<caption>Progress: ✓ solved, ✗ tried, · not tried yet; optional exercises count toward no total"
                "</caption>"
                f'<thead><tr><th style="{LEFT}">lesson</th><th>solved</th><th>points</th><th>hints used</th>'
                f'<th style="{LEFT}">exercises</th></tr></thead><tbody>' + "".join(body) + "</tbody>"
                f'<tfoot><tr style="font-weight:bold"><td style="{LEFT}">Total</td><td>{solved}/{total}</td>'
                f"<td>{score}/{points}</td><td>{self.hints}</td><td></td></tr></tfoot></table>")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": self._repr_html_()}

    def __repr__(self) -> str:
        return str(self)


def dashboard() -> Dashboard:
    """Progress over all lessons, unsolved exercises included; the last expression of a cell displays it."""
    return Dashboard(load_progress())
