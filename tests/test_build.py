"""gatewaylab.build: solutions -> exercises with stubs and nbgrader metadata, --check, --strip."""

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from gatewaylab import build
from gatewaylab.build import BuildError, drift, main, stub_source
from gatewaylab.grading import run_check

KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
ANSWER = '''def status_line(code, reason):
    """The status line as bytes."""
    ### BEGIN SOLUTION
    return f"HTTP/1.1 {code} {reason}\\r\\n".encode("ascii")
    ### END SOLUTION'''
STUB = '''def status_line(code, reason):
    """The status line as bytes."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 00.1: replace this line with your code")'''
CHECK = 'from gatewaylab.grading import check\ncheck("00.1", status_line)'


def solutions_notebook():
    nb = new_notebook(metadata={"kernelspec": KERNEL})
    nb.cells = [new_markdown_cell("# 00 Welcome\n\nThe first cell stays as it is."),
                new_code_cell("import socket"),
                new_code_cell(ANSWER),
                new_code_cell(CHECK),
                new_markdown_cell("Done.")]
    nb.cells[1].outputs = [new_output("stream", text="noise\n")]
    nb.cells[1].execution_count = 4
    return nb


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    nbformat.write(solutions_notebook(), tmp_path / "solutions" / "00_welcome.ipynb")
    return tmp_path


# --- stubs --------------------------------------------------------------------------------------------------------

def test_stub_keeps_indentation_and_names_the_exercise():
    source = "class App:\n    def __call__(self, x):\n        if x:\n            ### BEGIN SOLUTION\n" \
             "            return 1\n            ### END SOLUTION\n        return 0"
    assert stub_source(source, "02.3") == (
        "class App:\n    def __call__(self, x):\n        if x:\n            # YOUR CODE HERE\n"
        '            raise NotImplementedError("Exercise 02.3: replace this line with your code")\n        return 0')


def test_stub_of_an_async_def_compiles():
    source = "async def app(scope, receive, send):\n    ### BEGIN SOLUTION\n    await send({})\n    ### END SOLUTION\n"
    compile(stub_source(source, "06.1"), "cell", "exec")


@pytest.mark.parametrize("source, error", [
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "line 1: a solution region must sit inside a def"),
    ("if True:\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION", "inside a def"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", "line 2: BEGIN SOLUTION without an END SOLUTION"),
    ("def f():\n    return 1\n    ### END SOLUTION", "line 3: END SOLUTION without a BEGIN SOLUTION"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n", "BEGIN SOLUTION inside another"),
])
def test_bad_solution_regions_fail_clearly(source, error):
    with pytest.raises(BuildError, match=error):
        stub_source(source, "00.1")


# --- building -----------------------------------------------------------------------------------------------------

def test_build_writes_stubs_and_nbgrader_metadata(repo):
    written = build.build(repo)
    assert sorted(p.relative_to(repo).as_posix() for p in written) == [
        "exercises/00_welcome.ipynb", "solutions/00_welcome.ipynb"]
    exercise = nbformat.read(repo / "exercises" / "00_welcome.ipynb", as_version=4)
    solution = nbformat.read(repo / "solutions" / "00_welcome.ipynb", as_version=4)
    original = solutions_notebook()

    assert exercise.cells[0].source == original.cells[0].source
    assert exercise.cells[2].source == STUB
    assert solution.cells[2].source == ANSWER
    for nb in (exercise, solution):
        assert nb.cells[2].metadata["nbgrader"] == {
            "grade": False, "solution": True, "locked": False, "task": False, "grade_id": "ex-00-1-answer",
            "schema_version": 3}
        assert nb.cells[3].metadata["nbgrader"] == {
            "grade": True, "solution": False, "locked": True, "task": False, "points": 2,
            "grade_id": "ex-00-1-check", "schema_version": 3}
        for index in (0, 1, 4):
            assert "nbgrader" not in nb.cells[index].metadata
        assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    # Nothing differs from the solutions but the stubs.
    assert [c.source for c in exercise.cells if c.source != STUB] == [c.source for c in solution.cells
                                                                        if c.source != ANSWER]


def test_stubbed_answer_runs_and_reports_not_solved(repo):
    build.build(repo)
    exercise = nbformat.read(repo / "exercises" / "00_welcome.ipynb", as_version=4)
    namespace = {}
    exec(exercise.cells[2].source, namespace)
    report = run_check("00.1", namespace["status_line"])
    assert report.not_solved and not report.passed


def test_build_is_deterministic(repo):
    build.build(repo)
    first = {p: p.read_bytes() for p in repo.rglob("*.ipynb")}
    assert build.build(repo) == []
    assert {p: p.read_bytes() for p in repo.rglob("*.ipynb")} == first
    text = (repo / "exercises" / "00_welcome.ipynb").read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n "cells": [\n  {\n')


def test_answer_spread_over_two_cells_gets_unique_grade_ids(repo):
    nb = solutions_notebook()
    nb.cells.insert(2, new_code_cell("def helper():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"))
    nbformat.write(nb, repo / "solutions" / "00_welcome.ipynb")
    build.build(repo)
    exercise = nbformat.read(repo / "exercises" / "00_welcome.ipynb", as_version=4)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in exercise.cells[2:5]] == [
        "ex-00-1-answer", "ex-00-1-answer-2", "ex-00-1-check"]


@pytest.mark.parametrize("change, error", [
    (lambda nb: nb.cells.pop(3), "cell 3: a solution region with no check cell after it"),
    (lambda nb: setattr(nb.cells[3], "source", 'check("99.9", f)'), "no exercise '99.9'"),
    (lambda nb: setattr(nb.cells[3], "source", 'check("00.1", f)\ncheck("00.1", g)'), "checks 00.1, 00.1"),
])
def test_malformed_solutions_fail_the_build_with_a_message(repo, capsys, change, error):
    nb = solutions_notebook()
    change(nb)
    nbformat.write(nb, repo / "solutions" / "00_welcome.ipynb")
    assert main(["--root", str(repo)]) == 1
    assert error in capsys.readouterr().err
    assert not (repo / "exercises" / "00_welcome.ipynb").exists()


# --- --check and --strip ------------------------------------------------------------------------------------------

def test_check_passes_after_a_build_and_fails_on_drift(repo, capsys):
    assert main(["--check", "--root", str(repo)]) == 1  # nothing built yet
    assert main(["--root", str(repo)]) == 0
    capsys.readouterr()
    assert main(["--check", "--root", str(repo)]) == 0
    assert drift(repo) == []

    exercise_path = repo / "exercises" / "00_welcome.ipynb"
    exercise_path.write_text(exercise_path.read_text().replace("YOUR CODE HERE", "edited by hand"))
    assert main(["--check", "--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "exercises/00_welcome.ipynb: differs from what solutions/00_welcome.ipynb generates" in out
    assert "run: python -m gatewaylab.build" in out

    main(["--root", str(repo)])
    solution_path = repo / "solutions" / "00_welcome.ipynb"
    solution_path.write_text(solution_path.read_text().replace("HTTP/1.1 {code}", "HTTP/1.0 {code}"))
    assert drift(repo) == []  # the solution changed, but its stub did not: exercises/ is still what it generates
    solution_path.write_text(solution_path.read_text().replace("The status line", "A status line"))
    assert drift(repo) == ["exercises/00_welcome.ipynb: differs from what solutions/00_welcome.ipynb generates "
                           "(run: python -m gatewaylab.build)"]


def test_check_lists_orphan_exercises_outputs_and_missing_metadata(repo, capsys):
    build.build(repo)
    (repo / "exercises" / "99_orphan.ipynb").write_text((repo / "exercises" / "00_welcome.ipynb").read_text())
    lesson = new_notebook(metadata={"kernelspec": KERNEL}, cells=[new_code_cell("1 + 1")])
    lesson.cells[0].outputs = [new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    nbformat.write(lesson, repo / "notebooks" / "00_welcome.ipynb")
    nbformat.write(solutions_notebook(), repo / "solutions" / "00_welcome.ipynb")  # outputs, no metadata
    assert main(["--check", "--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "exercises/99_orphan.ipynb: has no source solutions/99_orphan.ipynb" in out
    assert "notebooks/00_welcome.ipynb: has outputs (run: python -m gatewaylab.build --strip)" in out
    assert "solutions/00_welcome.ipynb: has outputs" in out

    nbformat.write(build.strip(solutions_notebook()), repo / "solutions" / "00_welcome.ipynb")
    assert "solutions/00_welcome.ipynb: lacks the nbgrader metadata the build writes " \
           "(run: python -m gatewaylab.build)" in drift(repo)


def test_strip_removes_outputs_everywhere(repo):
    lesson = new_notebook(metadata={"kernelspec": KERNEL}, cells=[new_code_cell("1 + 1")])
    lesson.cells[0].outputs = [new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    lesson.cells[0].execution_count = 1
    lesson.cells[0].metadata["execution"] = {"iopub.execute_input": "2025-01-01T00:00:00Z"}
    nbformat.write(lesson, repo / "notebooks" / "00_welcome.ipynb")
    assert main(["--strip", "--root", str(repo)]) == 0
    stripped = nbformat.read(repo / "notebooks" / "00_welcome.ipynb", as_version=4)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert stripped.cells[0].metadata == {}
    assert nbformat.read(repo / "solutions" / "00_welcome.ipynb", as_version=4).cells[1].outputs == []
    assert build.strip_all(repo) == []


def test_the_repository_exercises_are_up_to_date():
    """What CI enforces: exercises/ is generated from solutions/ and no committed notebook has outputs."""
    assert drift(build.ROOT) == []


HEAVY = ("httpx", "ipywidgets", "matplotlib")


def test_the_build_reads_points_without_importing_the_check_modules():
    # The build needs each exercise's points (and that it exists), which gatewaylab.checks.declarations reads from
    # the lesson modules' source: importing those would pull in httpx, ipywidgets and matplotlib.
    code = ("import sys, gatewaylab.build as build\n"
            "problems = build.drift(build.ROOT)\n"
            "assert build.add_metadata(build._read(build.ROOT / 'solutions' / '02_wsgi_the_interface.ipynb'))\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), "
            "sorted(m for m in sys.modules if m.startswith('gatewaylab.checks.')), problems)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] [] []"


def test_a_declaration_that_is_not_a_literal_is_a_clear_error(tmp_path):
    from gatewaylab import checks

    module = tmp_path / "l99_scratch.py"
    module.write_text('from gatewaylab.grading import Exercise\nPOINTS = 2\n'
                      'e = Exercise("99.1", "Scratch", points=POINTS, hints=["h"], answer="a function f()")\n')
    with pytest.raises(ValueError, match=r"l99_scratch.py, line 3: the exercise's points must be a literal"):
        checks._declared(module)
