"""Every notebook executes top to bottom, headless; exercise notebooks report "not solved yet" instead of failing."""

import re
from pathlib import Path

import pytest

from notebook_runner import ROOT, execute, output_text

LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_CALL = re.compile(r"""^\s*check\(\s*["'](\d\d\.\d+)["']""", re.MULTILINE)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def check_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code" and CHECK_CALL.search(cell.source)]


def test_there_is_a_lesson_a_solution_and_an_exercise_notebook_for_each_lesson():
    names = {folder: {p.name for p in (ROOT / folder).glob("*.ipynb")} for folder in ("notebooks", "solutions", "exercises")}
    assert names["notebooks"], "no lesson notebooks"
    assert names["notebooks"] == names["solutions"] == names["exercises"]


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=relative)
def test_lesson_notebook_executes(path):
    execute(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=relative)
def test_solutions_notebook_executes_and_every_check_passes(path):
    notebook = execute(path)
    checks = check_cells(notebook)
    assert checks, f"{relative(path)} has no check cells"
    for cell in checks:
        shown = output_text(cell)
        exercise = CHECK_CALL.search(cell.source).group(1)
        assert "solved" in shown and "not solved" not in shown, f"check {exercise} did not pass:\n{shown[:2000]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=relative)
def test_exercises_notebook_executes_and_reports_not_solved_yet(path):
    notebook = execute(path)
    checks = check_cells(notebook)
    assert checks, f"{relative(path)} has no check cells"
    for cell in checks:
        assert "not solved yet" in output_text(cell), f"{CHECK_CALL.search(cell.source).group(1)}: {output_text(cell)[:500]}"


IMPORTS_HINT = re.compile(r"^from gatewaylab\.grading import .*\bhint\b", re.MULTILINE)


@pytest.mark.parametrize("path", EXERCISES, ids=relative)
def test_hint_is_imported_before_every_check(path):
    # A failing check tells the learner to call hint("NN.K"): that name must exist in their notebook by then.
    import nbformat
    imported = False
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        imported = imported or bool(IMPORTS_HINT.search(cell.source))
        match = CHECK_CALL.search(cell.source)
        assert not match or imported, f"check {match.group(1)} in {relative(path)} runs before hint is imported"
