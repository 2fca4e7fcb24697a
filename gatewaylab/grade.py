"""Grade a folder of submitted exercise notebooks: one table of scores per learner and exercise.

    python -m gatewaylab.grade submissions/ [--timeout 120] [--csv scores.csv]

Each ``*.ipynb`` under the folder is run from top to bottom in a fresh kernel, with its own progress file
(``GATEWAYLAB_PROGRESS``) that its check cells write to, a time limit per cell, and errors allowed so one broken cell
does not stop the rest. The scores are then read from that progress file. Optional exercises get a column marked
"(optional)" and count toward no total.

The hints a learner used come from the notebook as it was submitted, before it is run again: the output of each check
cell (and of each ``hint()`` call) carries, in its metadata, how many hints of that exercise the learner had revealed
by then (``{"gatewaylab": {"exercise": "01.2", "hints_used": 2}}``, written by :mod:`gatewaylab.grading`); the
largest number per exercise counts. The learner's own progress file stays on their machine, and running the notebook
here starts from no hints, so the saved outputs are the only record. A notebook submitted without outputs, or hints
revealed after its last check ran, therefore show no hints (a ``hint()`` cell that runs during grading counts). The learner is the name of the sub-folder
holding the notebook (``submissions/alice/01_http_on_the_wire.ipynb``), or the file's stem when the folder has no
sub-folders (``submissions/alice-01.ipynb``); a learner's notebooks add up to one row.

This runs the learners' code on this machine, as the learners could in their own notebooks: grade in a container or a
throwaway account when that matters.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from gatewaylab.checks import declaration
from gatewaylab.progress import load_progress

__all__ = ["LearnerRow", "Gradebook", "find_submissions", "run_notebook", "saved_hints", "grade", "main"]

METADATA_KEY = "gatewaylab"  # gatewaylab.grading.METADATA_KEY, which this module does not import

_CHECK = re.compile(r"""\bcheck\(\s*["'](?P<id>\d\d\.\d+)["']""")


@dataclass
class LearnerRow:
    """One learner's best score and hints used per exercise id, and errors from notebooks that could not run."""

    learner: str
    scores: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    hints: dict[str, int] = field(default_factory=dict)


@dataclass
class Gradebook:
    """Every learner's row; the columns are the exercises (id -> points) any submission checks.

    Exercises in ``optional`` get a column but count toward no total.
    """

    points: dict[str, int]
    rows: list[LearnerRow]
    optional: set[str] = field(default_factory=set)

    def table(self) -> list[list[str]]:
        """Header and rows as text cells: score/points per exercise ("-" when its check never ran), total, the hints
        used per exercise ("01.2: 3, 02.4: 1"), errors.

        The total is out of every column's points but the optional ones, so a check that never ran counts as 0.
        """
        ids = list(self.points)
        counted = [i for i in ids if i not in self.optional]
        header = [f"{i} (optional)" if i in self.optional else i for i in ids]
        out = [["learner", *header, "total", "hints used", "errors"]]
        for row in self.rows:
            cells = [f"{row.scores[i]}/{self.points[i]}" if i in row.scores else "-" for i in ids]
            total = f"{sum(row.scores.get(i, 0) for i in counted)}/{sum(self.points[i] for i in counted)}"
            hints = ", ".join(f"{i}: {n}" for i, n in sorted(row.hints.items(), key=lambda item: _sort_key(item[0]))
                              if n)
            out.append([row.learner, *cells, total, hints, "; ".join(row.errors)])
        return out

    def __str__(self) -> str:
        table = self.table()
        widths = [max(len(r[c]) for r in table) for c in range(len(table[0]) - 1)]
        lines = []
        for r in table:
            line = "  ".join(cell.ljust(width) for cell, width in zip(r, widths))
            lines.append((line + ("  " + r[-1] if r[-1] else "")).rstrip())
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(self.table())


def _sort_key(exercise_id: str) -> tuple[int, ...]:
    return tuple(int(n) for n in exercise_id.split("."))


def find_submissions(directory: Path) -> list[tuple[str, Path]]:
    """(learner, notebook) pairs under ``directory``, sorted; checkpoints are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a folder of submissions")
    notebooks = sorted(p for p in directory.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    nested = any(p.is_dir() and p.name != ".ipynb_checkpoints" for p in directory.iterdir())
    return [(p.relative_to(directory).parts[0] if nested and p.parent != directory else p.stem, p)
            for p in notebooks]


def run_notebook(path: Path, *, timeout: float = 120, kernel_name: str = "python3") -> dict[str, dict]:
    """Execute one notebook in a fresh kernel; returns the progress entries (exercise id -> entry) its checks wrote."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="gatewaylab-grade-") as tmp:
        progress_file = Path(tmp) / "progress.json"
        env = {key: value for key, value in os.environ.items() if key != "GATEWAYLAB_STRICT"}
        env["GATEWAYLAB_PROGRESS"] = str(progress_file)
        # interrupt_on_timeout: a cell that hangs is interrupted and the next cells still run.
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                                interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=env)
        return load_progress(progress_file)["exercises"]


def _checked_ids(nb: nbformat.NotebookNode) -> set[str]:
    """Exercise ids a notebook's check cells name, so exercises whose check never ran still get a column."""
    return {m.group("id") for cell in nb.cells if cell.cell_type == "code" for m in _CHECK.finditer(cell.source)}


def saved_hints(nb: nbformat.NotebookNode) -> dict[str, int]:
    """Hints used per exercise, as the saved outputs of a notebook's check and hint cells record them."""
    found: dict[str, int] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            mark = (output.get("metadata") or {}).get(METADATA_KEY)
            if not isinstance(mark, dict) or not isinstance(mark.get("exercise"), str):
                continue
            try:
                used = int(mark.get("hints_used", 0))
            except (TypeError, ValueError):
                continue
            found[mark["exercise"]] = max(found.get(mark["exercise"], 0), used)
    return found


def _read_submission(path: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except Exception:  # an unreadable notebook becomes an error row when it is run
        return None


def grade(directory: Path, *, timeout: float = 120, kernel_name: str = "python3", progress=None) -> Gradebook:
    """Run every submission under ``directory`` and collect the scores. ``progress(learner, path)`` is called first."""
    rows: dict[str, LearnerRow] = {}
    points: dict[str, int] = {}
    optional: set[str] = set()
    for learner, path in find_submissions(Path(directory)):
        row = rows.setdefault(learner, LearnerRow(learner))
        if progress is not None:
            progress(learner, path)
        submitted = _read_submission(path)
        if submitted is not None:
            for exercise_id in _checked_ids(submitted):
                try:
                    declared = declaration(exercise_id)
                except LookupError:
                    row.errors.append(f"{path.name} checks unknown exercise {exercise_id}")
                    continue
                points[exercise_id] = declared.points
                if declared.optional:
                    optional.add(exercise_id)
            for exercise_id, used in saved_hints(submitted).items():
                row.hints[exercise_id] = max(row.hints.get(exercise_id, 0), used)
        try:
            entries = run_notebook(path, timeout=timeout, kernel_name=kernel_name)
        except Exception as exc:  # noqa: BLE001 - any failure to run is reported in the learner's row
            first_line = (str(exc).strip().splitlines() or [""])[0]
            row.errors.append(f"{path.name} could not be run: {type(exc).__name__}"
                              + (f": {first_line}" if first_line else ""))
            continue
        for exercise_id, entry in entries.items():
            if "points" in entry:  # an entry that holds only hints (a hint() cell, no check) scores nothing
                points[exercise_id] = int(entry.get("points", points.get(exercise_id, 0)))
                row.scores[exercise_id] = max(row.scores.get(exercise_id, 0), int(entry.get("best_score", 0)))
            if entry.get("optional"):
                optional.add(exercise_id)
            used = int(entry.get("hints_used", 0) or 0)  # hint() cells that ran during grading
            if used:
                row.hints[exercise_id] = max(row.hints.get(exercise_id, 0), used)
    ordered = dict(sorted(points.items(), key=lambda item: _sort_key(item[0])))
    return Gradebook(ordered, sorted(rows.values(), key=lambda r: r.learner), optional & set(ordered))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.grade", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="folder of submitted notebooks (one sub-folder per learner, "
                                                     "or one notebook per learner)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each cell may run (default: 120)")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    try:
        book = grade(args.directory, timeout=args.timeout,
                     progress=lambda learner, path: print(f"running {path} ({learner})", file=sys.stderr))
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not book.rows:
        print(f"error: no notebooks under {args.directory}", file=sys.stderr)
        return 2
    print(book)
    if args.csv:
        book.write_csv(args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
