"""Every exercise of every lesson, both ways round the part all exercises share: the solutions notebook's own answer
passes with full points, the stub the exercises notebook gives the learner is "not solved yet", and the exercise has
2-4 points, three hints and at least three cases. Wrong answers, which differ per exercise, are tested per lesson in
test_checks_lNN.py."""

from pathlib import Path

import pytest

from gatewaylab.checks import declarations
from gatewaylab.grading import exercises, run_check
from solution_answers import ROOT, SolutionNotebook

NOTEBOOKS = [SolutionNotebook(path.name) for path in sorted((ROOT / "solutions").glob("*.ipynb"))]
EXERCISES = [
    # Timing checks of one lesson run in its own xdist group, so they don't compete for the cores with each other.
    pytest.param(notebook, exercise_id, name, id=exercise_id,
                 marks=pytest.mark.xdist_group(f"l{exercise_id[:2]}-checks"))
    for notebook in NOTEBOOKS for exercise_id, name in notebook.exercises.items()
]


def test_every_solutions_notebook_has_exercises_and_an_answer_for_each():
    for notebook in NOTEBOOKS:
        assert notebook.exercises, f"{notebook.path.name} has no check cells"
        assert set(notebook.exercises.values()) <= set(notebook.answers), notebook.path.name


@pytest.mark.parametrize("notebook, exercise_id, name", EXERCISES)
def test_reference_answer_passes_with_full_points(notebook, exercise_id, name):
    report = run_check(exercise_id, notebook.reference(name))
    assert report.passed, str(report)
    assert report.score == report.points


@pytest.mark.parametrize("notebook, exercise_id, name", EXERCISES)
def test_stub_is_not_solved_yet(notebook, exercise_id, name):
    report = run_check(exercise_id, notebook.stub(exercise_id))
    assert report.not_solved and not report.passed and report.score == 0


@pytest.mark.parametrize("notebook, exercise_id, name", EXERCISES)
def test_exercise_has_points_three_hints_and_cases(notebook, exercise_id, name):
    report = run_check(exercise_id, None)  # not a function: the shape check answers before any case runs
    exercise = report.exercise
    assert 2 <= exercise.points <= 4 and len(exercise.hints) == 3 and len(exercise.cases) >= 3
    assert "expects" in report.results[0].message


def test_declarations_read_from_source_agree_with_the_registered_exercises():
    # The build, the dashboard and gatewaylab.grade read the exercises without importing the lesson modules.
    registered = {e.id: (e.title, e.points, len(e.hints), e.optional) for e in exercises()}
    declared = {d.id: (d.title, d.points, d.hints, d.optional) for d in declarations().values()}
    assert declared == registered
    assert [d.id for d in declarations().values() if d.optional] == ["02.5"]
    modules = {e.id: e for e in exercises()}
    for d in declarations().values():  # each is declared in the module that registers it
        case_module = modules[d.id].cases[0].func.__module__
        assert case_module == f"gatewaylab.checks.{d.module}", d.id
