"""The pre-flight check says ready on a good machine, and says what is wrong (and what to do) otherwise."""

import subprocess
import sys

from gatewaylab import preflight


def test_this_machine_is_ready():
    report = preflight.run()
    assert report.ok, str(report)
    names = [item.name for item in report.items]
    assert "WSGI server on 127.0.0.1" in names and "ASGI server on 127.0.0.1" in names
    assert "Ready" in report.summary() and "<table>" in report._repr_html_()


def test_a_missing_or_old_package_fails_with_advice():
    missing = preflight.check_package("surely-not-installed-package", "1.0")
    assert not missing.ok and missing.found == "not installed" and "make lab" in missing.advice
    old = preflight.check_package("httpx", "99.0")
    assert not old.ok and "needs 99.0 or newer" in old.advice
    assert preflight.check_package("httpx", "0.1").ok


def test_versions_compare_as_numbers_not_text():
    assert preflight._version_tuple("0.10.2") > preflight._version_tuple("0.9")
    assert preflight._version_tuple("3.11.2rc1") == (3, 11, 2)


def test_a_failed_item_makes_the_command_exit_1(monkeypatch, capsys):
    monkeypatch.setitem(preflight.PACKAGES, "surely-not-installed-package", "1.0")
    assert preflight.main() == 1
    out = capsys.readouterr().out
    assert "FAIL  surely-not-installed-package" in out and "Not ready: 1 problem(s)" in out


def test_the_command_runs_from_a_terminal():
    done = subprocess.run([sys.executable, "-m", "gatewaylab.preflight"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ready" in done.stdout
