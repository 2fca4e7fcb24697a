"""gatewaylab.progress: the progress file (atomic, survives corruption) and the dashboard. conftest.py points
GATEWAYLAB_PROGRESS at a temporary file for every test."""

import json
import os
from pathlib import Path

import pytest

from gatewaylab import progress
from gatewaylab.grading import exercises, run_check
from gatewaylab.progress import dashboard, load_progress, progress_path, record


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
    assert sorted(p.name for p in progress_path().parent.iterdir()) == ["progress.json"]


def test_dashboard_lists_every_exercise_solved_or_not():
    record(run_check("00.1", solved))
    board = dashboard()
    everything = exercises()
    solved_count, total, score, points = board.totals
    assert (solved_count, score) == (1, 2)
    assert total == len(everything) and points == sum(e.points for e in everything)
    text = str(board)
    assert "Lesson 00: 1/1 solved, 2/2 points   ✓ 00.1" in text
    assert text.splitlines()[-1] == f"Total: 1/{total} solved, 2/{points} points"
    for exercise in everything:  # unsolved exercises of other lessons show too
        assert exercise.id in text
    bundle = board._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert "<table" in bundle["text/html"] and "<tfoot>" in bundle["text/html"]


def test_dashboard_marks_tried_and_untried():
    assert "· 00.1" in str(dashboard())
    record(run_check("00.1", wrong))
    assert "✗ 00.1" in str(dashboard())
