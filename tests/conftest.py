"""Shared fixtures: every test gets its own progress file, so no test reads or writes a learner's real progress."""

import pytest


@pytest.fixture(autouse=True)
def _private_progress_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAYLAB_PROGRESS", str(tmp_path / "progress.json"))
    monkeypatch.delenv("GATEWAYLAB_STRICT", raising=False)
