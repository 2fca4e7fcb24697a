"""Generate ``exercises/`` from ``solutions/``, and keep committed notebooks free of outputs.

    python -m gatewaylab.build            # write exercises/*.ipynb (and nbgrader metadata into solutions/)
    python -m gatewaylab.build --check    # exit 1 if exercises/ drifted or a notebook has outputs
    python -m gatewaylab.build --strip    # strip outputs from notebooks/, solutions/ and exercises/ in place

In a solutions notebook, each region of a code cell from a ``### BEGIN SOLUTION`` line to a ``### END SOLUTION`` line
becomes, at the same indentation::

    # YOUR CODE HERE
    raise NotImplementedError("Exercise 01.2: replace this line with your code")

where 01.2 is the exercise the next check cell (a code cell calling ``check("01.2", ...)``) names. Regions must sit
inside a ``def`` so the stubbed notebook still runs from top to bottom. Answer and check cells get nbgrader
(schema 3) metadata, in exercises/ and in solutions/ alike, so nbgrader can use solutions/ as its source. Every
notebook is written stripped of outputs and execution counts, with the same bytes for the same input.

The points come from :func:`gatewaylab.checks.declarations`, which reads the lesson modules' ``Exercise(...)`` calls
as source: the build imports no check module, and so none of httpx, ipywidgets or matplotlib.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

from gatewaylab.checks import declaration
from gatewaylab.grading import STUB_MARKER

__all__ = ["BuildError", "stub_source", "make_exercise", "add_metadata", "strip", "to_text", "build", "drift",
           "strip_all", "main"]

ROOT = Path(__file__).resolve().parent.parent  # the repository this package lives in
FOLDERS = ("notebooks", "solutions", "exercises")

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$")
_END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
_DEF = re.compile(r"^[ \t]*(async[ \t]+)?def[ \t]")
_CHECK = re.compile(r"""\bcheck\(\s*["'](?P<id>\d\d\.\d+)["']""")


class BuildError(Exception):
    """A solutions notebook the build cannot turn into an exercise; the message says where and why."""


def _indent_width(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def _inside_def(lines: list[str], index: int) -> bool:
    """Whether line ``index`` sits in the body of a ``def`` (at any depth), judged by indentation."""
    level = _indent_width(lines[index])
    for line in reversed(lines[:index]):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        width = _indent_width(line)
        if width < level:  # an enclosing block's header line
            if _DEF.match(line):
                return True
            level = width
            if level == 0:
                return False
    return False


def stub_source(source: str, exercise_id: str, where: str = "the cell") -> str:
    """``source`` with each solution region replaced by the stub for ``exercise_id``."""
    lines = source.split("\n")
    out: list[str] = []
    begin: int | None = None
    for number, line in enumerate(lines):
        if _BEGIN.match(line):
            if begin is not None:
                raise BuildError(f"{where}, line {number + 1}: BEGIN SOLUTION inside another solution region")
            if not _inside_def(lines, number):
                raise BuildError(f"{where}, line {number + 1}: a solution region must sit inside a def, so the "
                                 f"exercise notebook still runs with the stub")
            begin = number
            indent = _BEGIN.match(line).group("indent")
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f'{indent}raise NotImplementedError("Exercise {exercise_id}: {STUB_MARKER}")')
        elif _END.match(line):
            if begin is None:
                raise BuildError(f"{where}, line {number + 1}: END SOLUTION without a BEGIN SOLUTION before it")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise BuildError(f"{where}, line {begin + 1}: BEGIN SOLUTION without an END SOLUTION after it")
    return "\n".join(out)


def _check_ids(source: str) -> list[str]:
    return [m.group("id") for m in _CHECK.finditer(source)]


def _has_solution(source: str) -> bool:
    return any(_BEGIN.match(line) for line in source.split("\n"))


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and run timings (in place); returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)  # JupyterLab's run timestamps: noise in every diff
    return nb


def _plan(nb: nbformat.NotebookNode, name: str) -> list[tuple[str, str] | None]:
    """For each cell: ("answer", id) / ("check", id) / None, after checking the notebook's structure."""
    plan: list[tuple[str, str] | None] = [None] * len(nb.cells)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ids = _check_ids(cell.source)
        if len(ids) > 1:
            raise BuildError(f"{name}, cell {index + 1}: one check cell may check one exercise, this one checks "
                             f"{', '.join(ids)}")
        if ids and _has_solution(cell.source):
            raise BuildError(f"{name}, cell {index + 1}: a solution and its check() belong in separate cells")
        if ids:
            declaration(ids[0])  # fails clearly when no lesson module in gatewaylab/checks declares it
            plan[index] = ("check", ids[0])
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and _has_solution(cell.source):
            following = next((p for p in plan[index + 1:] if p and p[0] == "check"), None)
            if following is None:
                raise BuildError(f"{name}, cell {index + 1}: a solution region with no check cell after it")
            plan[index] = ("answer", following[1])
    return plan


def add_metadata(nb: nbformat.NotebookNode, name: str = "the notebook") -> nbformat.NotebookNode:
    """Set nbgrader metadata on answer and check cells and remove it from every other cell (in place)."""
    plan = _plan(nb, name)
    answers_seen: dict[str, int] = {}
    for cell, role in zip(nb.cells, plan):
        cell.metadata.pop("nbgrader", None)
        if role is None:
            continue
        kind, exercise_id = role
        slug = "ex-" + exercise_id.replace(".", "-")
        if kind == "answer":
            # nbgrader needs unique grade ids; an exercise may have its answer spread over several cells.
            answers_seen[exercise_id] = answers_seen.get(exercise_id, 0) + 1
            suffix = "" if answers_seen[exercise_id] == 1 else f"-{answers_seen[exercise_id]}"
            cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "task": False,
                                         "grade_id": f"{slug}-answer{suffix}", "schema_version": 3}
        else:
            cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "task": False,
                                         "points": declaration(exercise_id).points,
                                         "grade_id": f"{slug}-check", "schema_version": 3}
    return nb


def make_exercise(solution: nbformat.NotebookNode, name: str = "the notebook") -> nbformat.NotebookNode:
    """The exercise notebook for a solutions notebook: stubs for solutions, nbgrader metadata, no outputs."""
    nb = add_metadata(strip(copy.deepcopy(solution)), name)
    for index, (cell, role) in enumerate(zip(nb.cells, _plan(nb, name))):
        if role and role[0] == "answer":
            cell.source = stub_source(cell.source, role[1], f"{name}, cell {index + 1}")
    return nb


def to_text(nb: nbformat.NotebookNode) -> str:
    """The bytes a notebook is stored as: nbformat's JSON (indent 1, sorted keys) with a final newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _read(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several types for unreadable files
        raise BuildError(f"{path}: not a readable notebook ({exc})") from exc


def _expected(root: Path) -> dict[Path, str]:
    """Every file the build writes, with its content: solutions (with metadata) and exercises."""
    if not (root / "solutions").is_dir():
        raise BuildError(f"no solutions/ folder in {root}")
    files: dict[Path, str] = {}
    for path in sorted((root / "solutions").glob("*.ipynb")):
        name = f"solutions/{path.name}"
        solution = _read(path)
        files[path] = to_text(add_metadata(strip(copy.deepcopy(solution)), name))
        files[root / "exercises" / path.name] = to_text(make_exercise(solution, name))
    return files


def build(root: Path = ROOT) -> list[Path]:
    """Write exercises/ (and solutions/ with metadata); returns the files whose content changed."""
    changed = []
    for path, text in _expected(Path(root)).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def _has_outputs(nb: nbformat.NotebookNode) -> bool:
    return any(cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
               for cell in nb.cells)


def drift(root: Path = ROOT) -> list[str]:
    """Problems ``--check`` reports, one line each; empty when everything is in order."""
    root = Path(root)
    problems = []
    for path, text in _expected(root).items():
        relative = path.relative_to(root)
        if not path.exists():
            problems.append(f"{relative}: missing (run: python -m gatewaylab.build)")
        elif path.parent.name == "solutions":
            if path.read_text(encoding="utf-8") != text and not _has_outputs(_read(path)):  # outputs: listed below
                problems.append(f"{relative}: lacks the nbgrader metadata the build writes "
                                f"(run: python -m gatewaylab.build)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{relative}: differs from what solutions/{path.name} generates "
                            f"(run: python -m gatewaylab.build)")
    for path in sorted((root / "exercises").glob("*.ipynb")):
        if not (root / "solutions" / path.name).exists():
            problems.append(f"exercises/{path.name}: has no source solutions/{path.name} "
                            f"(add that notebook, or delete this one)")
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            if _has_outputs(_read(path)):
                problems.append(f"{folder}/{path.name}: has outputs (run: python -m gatewaylab.build --strip)")
    return problems


def strip_all(root: Path = ROOT) -> list[Path]:
    """Strip every notebook in notebooks/, solutions/ and exercises/ in place; returns the files changed."""
    changed = []
    for folder in FOLDERS:
        for path in sorted((Path(root) / folder).glob("*.ipynb")):
            text = to_text(strip(_read(path)))
            if path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gatewaylab.build", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if exercises/ drifted or notebooks have outputs")
    mode.add_argument("--strip", action="store_true", help="strip outputs from every notebook in place")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drift(args.root)
            for problem in problems:
                print(problem)
            if problems:
                print(f"{len(problems)} problem(s). Never edit exercises/ by hand: edit solutions/, then run "
                      "python -m gatewaylab.build (and --strip for outputs).")
                return 1
            print("exercises/ is up to date and no notebook has outputs.")
            return 0
        changed = strip_all(args.root) if args.strip else build(args.root)
    except (BuildError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path.relative_to(args.root)}")
    print(f"{len(changed)} file(s) changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
