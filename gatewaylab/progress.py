"""Remember check results in a small JSON file, and show them as a dashboard.

The file is ``$GATEWAYLAB_PROGRESS`` when that is set, else ``~/.gatewaylab/progress.json``. It holds, per exercise id,
the best score, the points, whether it was ever passed, the number of attempts and the time of the last one::

    {"version": 1, "exercises": {"00.1": {"best_score": 2, "points": 2, "passed": true, "attempts": 3,
                                          "last_attempt": "2025-01-31T10:02:03+00:00"}}}

Running a check on an answer that is still the exercise stub is not counted as an attempt. Writes are atomic (a
temporary file renamed over the old one), so a kernel killed mid-write leaves the previous file intact. A file that
cannot be read as progress is moved aside with a warning and progress starts afresh: a check never crashes on it.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gatewaylab.html_style import LEFT

__all__ = ["progress_path", "load_progress", "record", "dashboard", "Dashboard"]

VERSION = 1


def progress_path() -> Path:
    """Where progress is kept: ``$GATEWAYLAB_PROGRESS`` or ``~/.gatewaylab/progress.json``."""
    configured = os.environ.get("GATEWAYLAB_PROGRESS")
    return Path(configured).expanduser() if configured else Path.home() / ".gatewaylab" / "progress.json"


def _empty() -> dict[str, Any]:
    return {"version": VERSION, "exercises": {}}


def _valid(data: Any) -> bool:
    return (isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("exercises"), dict)
            and all(isinstance(entry, dict) for entry in data["exercises"].values()))


def _move_aside(path: Path, reason: str) -> None:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
        where = f"moved it to {aside}"
    except OSError as exc:
        where = f"could not move it aside ({exc})"
    warnings.warn(f"progress file {path} could not be read ({reason}); {where} and started afresh", stacklevel=3)


def load_progress(path: Path | None = None) -> dict[str, Any]:
    """The progress data (``{"version": 1, "exercises": {...}}``); empty when there is no file yet."""
    path = progress_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty()
    except OSError as exc:
        warnings.warn(f"progress file {path} could not be read ({exc}); showing no progress", stacklevel=2)
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


def record(report) -> dict[str, Any]:
    """Store a :class:`gatewaylab.grading.Report` and return the exercise's updated entry.

    A file that cannot be written only produces a warning: losing a record must not break the check cell.
    """
    path = progress_path()
    data = load_progress(path)
    exercise = report.exercise
    entry = data["exercises"].setdefault(exercise.id, {"best_score": 0, "passed": False, "attempts": 0})
    entry["title"] = exercise.title
    entry["points"] = report.points
    entry["best_score"] = max(int(entry.get("best_score", 0)), report.score)
    entry["passed"] = bool(entry.get("passed")) or report.passed
    if not report.not_solved:
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
    entry["last_score"] = report.score
    entry["last_attempt"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        _write(path, data)
    except OSError as exc:
        warnings.warn(f"could not save progress to {path}: {exc}", stacklevel=2)
    return entry


@dataclass
class _Row:
    lesson: str
    solved: int
    total: int
    score: int
    points: int
    marks: list[tuple[str, str, str]]  # (mark, exercise id, title)


def _mark(entry: dict[str, Any] | None) -> str:
    if entry is None or not entry.get("attempts"):
        return "·"  # not tried
    return "✓" if entry.get("passed") else "✗"


class Dashboard:
    """Progress over every lesson's exercises: HTML table in JupyterLab, plain text elsewhere."""

    def __init__(self, data: dict[str, Any]):
        from gatewaylab.grading import exercises  # imported here: grading imports this module

        done = data["exercises"]
        rows: dict[str, _Row] = {}
        for exercise in exercises():
            entry = done.get(exercise.id)
            row = rows.setdefault(exercise.lesson, _Row(exercise.lesson, 0, 0, 0, 0, []))
            passed = bool(entry and entry.get("passed"))
            row.total += 1
            row.solved += passed
            row.points += exercise.points
            row.score += min(int(entry.get("best_score", 0)), exercise.points) if entry else 0
            row.marks.append((_mark(entry), exercise.id, exercise.title))
        self.rows = list(rows.values())

    @property
    def totals(self) -> tuple[int, int, int, int]:
        """(exercises solved, exercises, score, points) over all lessons."""
        return (sum(r.solved for r in self.rows), sum(r.total for r in self.rows),
                sum(r.score for r in self.rows), sum(r.points for r in self.rows))

    def __str__(self) -> str:
        lines = ["Progress (✓ solved, ✗ tried, · not tried yet)"]
        for r in self.rows:
            marks = "  ".join(f"{mark} {ex_id}" for mark, ex_id, _ in r.marks)
            lines.append(f"Lesson {r.lesson}: {r.solved}/{r.total} solved, {r.score}/{r.points} points   {marks}")
        solved, total, score, points = self.totals
        lines.append(f"Total: {solved}/{total} solved, {score}/{points} points")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = {"✓": "#009E73", "✗": "#D55E00", "·": "#888888"}
        labels = {"✓": "solved", "✗": "tried, not solved", "·": "not tried yet"}
        body = []
        for r in self.rows:
            marks = " ".join(
                f'<span title="{html.escape(ex_id)} {html.escape(title)}: {labels[mark]}" '
                f'style="color:{colours[mark]};white-space:nowrap">{mark}&nbsp;{html.escape(ex_id)}</span>'
                for mark, ex_id, title in r.marks)
            body.append(f"<tr><td style='{LEFT}'>Lesson {r.lesson}</td><td>{r.solved}/{r.total}</td><td>{r.score}/{r.points}</td>"
                        f"<td style='{LEFT}'>{marks}</td></tr>")
        solved, total, score, points = self.totals
        return ('<table class="gatewaylab-dashboard" style="border-collapse:collapse">'
                "<caption>Progress: ✓ solved, ✗ tried, · not tried yet</caption>"
                f'<thead><tr><th style="{LEFT}">lesson</th><th>solved</th><th>points</th>'
                f'<th style="{LEFT}">exercises</th></tr></thead><tbody>' + "".join(body) + "</tbody>"
                f'<tfoot><tr style="font-weight:bold"><td style="{LEFT}">Total</td><td>{solved}/{total}</td>'
                f"<td>{score}/{points}</td><td></td></tr></tfoot></table>")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": self._repr_html_()}

    def __repr__(self) -> str:
        return str(self)


def dashboard() -> Dashboard:
    """Progress over all lessons, unsolved exercises included; the last expression of a cell displays it."""
    return Dashboard(load_progress())
