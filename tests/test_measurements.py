"""gatewaylab.measurements: the learner's figures from every lesson, in a locked JSON file beside the progress file.
conftest.py points GATEWAYLAB_PROGRESS at a temporary file for every test, so the file here is temporary too."""

import json
import multiprocessing
import os
import sys
import warnings
from pathlib import Path

import pytest

from gatewaylab import measurements, progress
from gatewaylab.measurements import load, measurements_path, record

SLOW = {"clients": 100, "delay_s": 0.5, "wall_s": {"sequential": 50.3, "pool": 5.1}, "pool_size": 10}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(measurements, "_warned", set())


def test_the_file_sits_beside_the_progress_file(monkeypatch, tmp_path):
    assert measurements_path() == Path(os.environ["GATEWAYLAB_PROGRESS"]).with_name("measurements.json")
    monkeypatch.delenv("GATEWAYLAB_PROGRESS")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert measurements_path() == tmp_path / ".gatewaylab" / "measurements.json"


def test_round_trip_keeps_the_latest_figures_of_each_key():
    assert load() == {}
    record("04.slow_requests", {**SLOW, "wall_s": {"sequential": 99.0, "pool": 9.0}}, "first run")
    record("04.slow_requests", SLOW, "100 clients x 0.5 s:\n sequential 50.3 s, pool of 10 5.1 s")
    record("05.loop_lag", {"blocking_ms": 501.2, "fixed_ms": 3.1, "rows": [(1, "a")]}, "lag")
    kept = load()
    assert set(kept) == {"04.slow_requests", "05.loop_lag"}
    assert kept["04.slow_requests"]["figures"] == SLOW
    assert kept["04.slow_requests"]["summary"] == "100 clients x 0.5 s: sequential 50.3 s, pool of 10 5.1 s"
    assert kept["04.slow_requests"]["time"].endswith("+00:00")
    assert kept["05.loop_lag"]["figures"]["rows"] == [[1, "a"]]  # a tuple is kept as a JSON list
    on_disk = json.loads(measurements_path().read_text())
    assert on_disk["version"] == 1 and on_disk["measurements"] == kept
    assert not progress.progress_path().exists()  # the progress file is left alone


def test_figures_are_copied_so_later_changes_do_not_leak_in():
    figures = {"wall_s": {"pool": 1.0}}
    record("04.slow_requests", figures, "x")
    figures["wall_s"]["pool"] = 2.0
    assert load()["04.slow_requests"]["figures"]["wall_s"]["pool"] == 1.0


@pytest.mark.parametrize("figures, error", [
    ({"wall_s": {1, 2}}, TypeError),
    ({"wall_s": object()}, TypeError),
    ({"ok": True}, TypeError),
    ({"missing": None}, TypeError),
    ({3: 1.0}, TypeError),
    ({"nested": [{"p99": float("nan")}]}, ValueError),
    ({"rps": float("inf")}, ValueError),
    ([("rps", 1.0)], TypeError),
])
def test_figures_that_are_not_json_are_refused_and_nothing_is_written(figures, error):
    record("05.loop_lag", {"blocking_ms": 1.0}, "before")
    before = measurements_path().read_bytes()
    with pytest.raises(error):
        record("05.loop_lag", figures, "bad")
    assert measurements_path().read_bytes() == before


@pytest.mark.parametrize("key, summary, error", [
    ("slow_requests", "s", ValueError), ("4.slow", "s", ValueError), ("04.", "s", ValueError),
    ("04.Slow Requests", "s", ValueError), (4, "s", TypeError), ("04.slow_requests", None, TypeError),
])
def test_bad_keys_and_summaries_are_refused(key, summary, error):
    with pytest.raises(error):
        record(key, {"clients": 1}, summary)
    assert load() == {}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"version": 1, "measurements": []}',
                                     '{"version": 1, "measurements": {"04.x": {"figures": 3}}}'])
def test_a_damaged_file_is_moved_aside_and_recording_starts_afresh(content):
    path = measurements_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    with pytest.warns(UserWarning, match="could not be read"):
        assert load() == {}
    aside = list(path.parent.glob("measurements.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    record("05.loop_lag", {"blocking_ms": 500.0, "fixed_ms": 2.0}, "lag")
    assert load()["05.loop_lag"]["figures"]["fixed_ms"] == 2.0


def test_an_unwritable_home_warns_once_and_goes_on(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("GATEWAYLAB_PROGRESS", str(blocker / "progress.json"))
    with pytest.warns(UserWarning, match="could not save the measurement 04.slow_requests") as caught:
        record("04.slow_requests", SLOW, "x")
        record("05.loop_lag", {"blocking_ms": 1.0}, "y")  # the same trouble again: no second warning
    assert len([w for w in caught if "measurement" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match="showing none"):  # reading it fails too, and says so
        assert load() == {}


def test_a_full_disk_warns_and_keeps_the_old_file(monkeypatch):
    record("04.slow_requests", SLOW, "x")
    before = measurements_path().read_bytes()

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(progress.os, "replace", disk_full)
    with pytest.warns(UserWarning, match="No space left"):
        record("05.loop_lag", {"blocking_ms": 1.0}, "y")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once already: this one is silent, and raises nothing
        record("05.loop_lag", {"blocking_ms": 2.0}, "z")
    assert measurements_path().read_bytes() == before
    assert sorted(p.name for p in measurements_path().parent.iterdir()) == ["measurements.json",
                                                                             "measurements.json.lock"]


def test_an_unreadable_file_is_not_overwritten(monkeypatch):
    record("04.slow_requests", SLOW, "x")
    before = measurements_path().read_bytes()

    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(measurements, "_read", unreadable)
    with pytest.warns(UserWarning, match="Permission denied"):
        record("05.loop_lag", {"blocking_ms": 1.0}, "y")
    with pytest.warns(UserWarning, match="showing none"):
        assert load() == {}
    assert measurements_path().read_bytes() == before


def _record_many(barrier, worker, times):
    barrier.wait()  # every process starts recording at the same moment
    for n in range(times):
        record(f"9{worker}.run_{n}", {"worker": worker, "n": n}, f"worker {worker}, run {n}")
        record("99.shared", {"worker": worker, "n": n}, "the latest of all")


def test_several_processes_recording_at_once_lose_nothing():
    workers, times = 6, 12
    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    barrier = context.Barrier(workers)
    processes = [context.Process(target=_record_many, args=(barrier, n, times)) for n in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0] * workers
    kept = load()
    assert {k for k in kept if k != "99.shared"} == {f"9{w}.run_{n}" for w in range(workers) for n in range(times)}
    assert all(kept[f"9{w}.run_{n}"]["figures"] == {"worker": w, "n": n} for w in range(workers) for n in range(times))
    assert kept["99.shared"]["figures"]["n"] == times - 1  # some worker's last run was written last
    assert not list(measurements_path().parent.glob(".measurements.json.*.tmp"))
