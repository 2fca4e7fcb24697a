"""gatewaylab.progress: the progress file (atomic, locked, survives corruption), hints used and the dashboard.
conftest.py points GATEWAYLAB_PROGRESS at a temporary file for every test."""

import json
import multiprocessing
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gatewaylab import progress
from gatewaylab.checks import declarations
from gatewaylab.grading import exercises, run_check
from gatewaylab.progress import dashboard, hints_used, load_progress, lock_path, progress_path, record, record_hint


def solved(code, reason):
    return f"HTTP/1.1 {code} {reason}\r\n".encode("ascii")


def wrong(code, reason):
    return b"HTTP/1.1 200 OK"


def stub(code, reason):
    raise NotImplementedError("Exercise 00.1: replace this line with your code")


def test_path_comes_from_the_environment_or_home(monkeypatch, tmp_path):
    assert progress_path() == Path(os.environ["GATEWAYLAB_PROGRESS"])
    monkeypatch.delenv("GATEWAYLAB_PROGRESS")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert progress_path() == tmp_path / ".gatewaylab" / "progress.json"


def test_record_keeps_best_score_attempts_and_time():
    assert load_progress() == {"version": 1, "exercises": {}}
    record(run_check("00.1", wrong))
    record(run_check("00.1", solved))
    entry = record(run_check("00.1", wrong))  # a later worse attempt keeps the best score
    assert (entry["best_score"], entry["points"], entry["passed"], entry["attempts"]) == (2, 2, True, 3)
    assert entry["last_score"] == 0 and entry["last_attempt"].endswith("+00:00")
    assert load_progress()["exercises"]["00.1"] == entry


def test_running_the_stub_is_not_an_attempt():
    entry = record(run_check("00.1", stub))
    assert (entry["attempts"], entry["passed"], entry["best_score"]) == (0, False, 0)


def test_progress_lives_in_nested_folders_that_do_not_exist_yet(monkeypatch, tmp_path):
    target = tmp_path / "a" / "b" / "progress.json"
    monkeypatch.setenv("GATEWAYLAB_PROGRESS", str(target))
    record(run_check("00.1", solved))
    assert json.loads(target.read_text())["exercises"]["00.1"]["passed"] is True


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", '{"version": 1, "exercises": []}'])
def test_a_corrupt_file_is_moved_aside_with_a_warning(content):
    path = progress_path()
    path.write_text(content)
    with pytest.warns(UserWarning, match="could not be read"):
        entry = record(run_check("00.1", solved))
    assert entry["attempts"] == 1
    aside = list(path.parent.glob("progress.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    assert load_progress()["exercises"]["00.1"]["passed"] is True


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(monkeypatch):
    record(run_check("00.1", wrong))
    before = progress_path().read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(progress.os, "replace", broken_replace)
    with pytest.warns(UserWarning, match="could not save progress"):
        record(run_check("00.1", solved))
    assert progress_path().read_bytes() == before
    assert sorted(p.name for p in progress_path().parent.iterdir()) == ["progress.json", "progress.json.lock"]


def test_dashboard_lists_every_exercise_solved_or_not():
    record(run_check("00.1", solved))
    board = dashboard()
    required = [e for e in exercises() if not e.optional]
    solved_count, total, score, points = board.totals
    assert (solved_count, score) == (1, 2)
    assert total == len(required) and points == sum(e.points for e in required)
    text = str(board)
    assert "Lesson 00: 1/1 solved, 2/2 points   ✓ 00.1" in text
    assert text.splitlines()[-1] == f"Total: 1/{total} solved, 2/{points} points, 0 hints used"
    for exercise in exercises():  # unsolved exercises of other lessons show too, optional ones included
        assert exercise.id in text
    bundle = board._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert "<table" in bundle["text/html"] and "<tfoot>" in bundle["text/html"]


def test_dashboard_marks_tried_and_untried():
    assert "· 00.1" in str(dashboard())
    record(run_check("00.1", wrong))
    assert "✗ 00.1" in str(dashboard())


def report(exercise_id, passed=True, points=3, optional=False):
    """What record() reads from a gatewaylab.grading.Report."""
    return SimpleNamespace(exercise=SimpleNamespace(id=exercise_id, title=f"Exercise {exercise_id}", optional=optional),
                           points=points, score=points if passed else 0, passed=passed, not_solved=False)


def lesson_line(board, lesson):
    return next(line for line in str(board).splitlines() if line.startswith(f"Lesson {lesson}:"))


def test_an_optional_exercise_counts_toward_no_total():
    lesson_02 = [d for d in declarations().values() if d.lesson == "02"]
    optional = [d.id for d in lesson_02 if d.optional]
    assert optional == ["02.5"]  # "Error catcher (optional)"
    required = [d for d in lesson_02 if not d.optional]
    for d in required:
        record(report(d.id, points=d.points))
    line = lesson_line(dashboard(), "02")
    points = sum(d.points for d in required)
    # Complete without 02.5, which is listed apart.
    assert line.startswith(f"Lesson 02: {len(required)}/{len(required)} solved, {points}/{points} points")
    assert line.endswith("optional: · 02.5")
    record(report("02.5", points=3, optional=True))
    board = dashboard()
    assert lesson_line(board, "02").startswith(f"Lesson 02: {len(required)}/{len(required)} solved, "
                                               f"{points}/{points} points")
    assert lesson_line(board, "02").endswith("optional: ✓ 02.5")
    all_required = [d for d in declarations().values() if not d.optional]
    assert board.totals == (len(required), len(all_required), points, sum(d.points for d in all_required))
    assert "optional:" in board._repr_html_()
    assert load_progress()["exercises"]["02.5"]["optional"] is True


def test_hints_used_are_kept_and_only_go_up():
    assert hints_used("00.1") == 0
    assert record_hint("00.1", 1) == 1
    assert record_hint("00.1", 2) == 2
    assert record_hint("00.1", 1) == 2  # another kernel that showed fewer does not lower the level
    entry = load_progress()["exercises"]["00.1"]
    assert (entry["hints_used"], entry["attempts"], entry["passed"]) == (2, 0, False)
    assert entry["last_hint"].endswith("+00:00")
    entry = record(run_check("00.1", solved))  # a check keeps the hints
    assert entry["hints_used"] == 2 and hints_used("00.1") == 2


def test_dashboard_shows_hints_used():
    record_hint("00.1", 2)
    record(run_check("00.1", solved))
    record_hint("01.2", 1)
    board = dashboard()
    assert "✓ 00.1 (2 hints)" in lesson_line(board, "00")
    assert "· 01.2 (1 hint)" in lesson_line(board, "01")
    assert board.hints == 3 and str(board).endswith("3 hints used")
    assert "2 hints used" in board._repr_html_() and "<th>hints used</th>" in board._repr_html_()


def _record_many(barrier, worker, times):
    barrier.wait()  # every process starts recording at the same moment
    for _ in range(times):
        record(report("00.1", passed=False, points=2))
    record_hint(f"97.{worker}", 1 + worker % 3)
    record(report(f"96.{worker}"))


def test_several_processes_recording_at_once_lose_no_update():
    workers, times = 6, 15
    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    barrier = context.Barrier(workers)
    processes = [context.Process(target=_record_many, args=(barrier, n, times)) for n in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0] * workers
    done = load_progress()["exercises"]
    assert done["00.1"]["attempts"] == workers * times
    assert {n: done[f"97.{n}"]["hints_used"] for n in range(workers)} == {n: 1 + n % 3 for n in range(workers)}
    assert all(done[f"96.{n}"]["passed"] for n in range(workers))
    assert lock_path().exists() and not list(progress_path().parent.glob(".progress.json.*.tmp"))


def test_a_lock_held_too_long_warns_and_saves_anyway(monkeypatch):
    monkeypatch.setattr(progress, "_try_lock", lambda fd: False)
    monkeypatch.setattr(progress, "LOCK_TIMEOUT", 0.05)
    with pytest.warns(UserWarning, match="stayed locked"):
        with progress.locked(timeout=0.05):
            pass
    with pytest.warns(UserWarning, match="stayed locked"):
        record_hint("00.1", 1)
    assert hints_used("00.1") == 1


def test_an_unreadable_file_is_not_overwritten(monkeypatch):
    record(run_check("00.1", solved))
    before = progress_path().read_bytes()

    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(progress, "_read", unreadable)
    with pytest.warns(UserWarning, match="progress not saved"):
        record(run_check("00.1", wrong))
    assert progress_path().read_bytes() == before
