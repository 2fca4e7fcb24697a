"""gatewaylab.grading: cases, messages, time limits, display, hints and strict mode (conftest.py gives each test its
own progress file)."""

import collections
import json
import os
import threading
import time

import pytest

from gatewaylab import grading, progress
from gatewaylab.grading import CaseFailed, Exercise, check, expect_equal, hint, hint_html, hint_widget, run_check


@pytest.fixture(autouse=True)
def _fresh_hints():
    grading._hint_levels.clear()
    yield
    grading._hint_levels.clear()


@pytest.fixture
def scratch():
    """Make throwaway exercises in lesson 98, removed from the registry afterwards."""
    made = []

    def make(number=1, **options):
        settings = dict(points=1, hints=["first", "second"], answer="a function f()", params=0, timeout=0.5)
        settings.update(options)
        exercise = Exercise(f"98.{number}", "Scratch", **settings)
        made.append(exercise.id)
        return exercise

    yield make
    for exercise_id in made:
        grading._REGISTRY.pop(exercise_id, None)


def status_line(code, reason):
    return f"HTTP/1.1 {code} {reason}\r\n".encode("ascii")


def stub_status_line(code, reason):
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 00.1: replace this line with your code")


# --- results and messages -----------------------------------------------------------------------------------------

def test_reference_answer_passes():
    report = run_check("00.1", status_line)
    assert report.passed and not report.not_solved
    assert (report.score, report.points) == (2, 2)
    assert [r.passed for r in report.results] == [True] * len(report.exercise.cases)
    assert report.headline() == "Exercise 00.1 — Your first check: an HTTP status line: solved: 2/2 points"


def test_stub_is_not_solved_and_not_an_error():
    report = run_check("00.1", stub_status_line)
    assert report.not_solved and not report.passed and report.score == 0
    assert "not solved yet" in report.headline()
    text = str(report)
    assert "raised" not in text and "NotImplementedError(...)" in text
    assert "gatewaylab-not-solved" in report._repr_html_()


def test_answer_raising_not_implemented_without_the_stub_text_is_not_solved_either():
    def status_line(code, reason):
        raise NotImplementedError
    report = run_check("00.1", status_line)
    assert report.not_solved
    assert all(r.stub for r in report.results)


def test_wrong_value_shows_expected_got_and_where_they_differ():
    def lf_only(code, reason):
        return f"HTTP/1.1 {code} {reason}\n".encode("ascii")
    report = run_check("00.1", lf_only)
    assert not report.passed and not report.not_solved
    assert report.headline().endswith("1/3 cases, 0/2 points")
    failed = next(r for r in report.results if r.name == "200 OK")
    assert failed.expected == repr(b"HTTP/1.1 200 OK\r\n")
    assert failed.got == repr(b"HTTP/1.1 200 OK\n")
    assert "index 15" in failed.message


def test_str_instead_of_bytes_says_so():
    report = run_check("00.1", lambda code, reason: f"HTTP/1.1 {code} {reason}\r\n")
    messages = " ".join(r.message for r in report.results)
    assert "bytes" in messages and "not str" in messages
    assert not report.passed


def test_exception_shows_the_learners_line():
    def status_line(code, reason):
        parts = reason.split()
        return parts[7].encode()  # the learner's bug
    report = run_check("00.1", status_line)
    message = report.results[0].message
    assert message.startswith("your code raised IndexError: list index out of range")
    assert "in status_line" in message and "parts[7]" in message
    assert "gatewaylab" not in message  # frames of the checks themselves are filtered out


def test_exception_inside_the_check_points_at_the_returned_value(scratch):
    exercise = scratch()

    @exercise.case("unpacks a pair")
    def _(answer):
        first, second = answer()

    report = run_check("98.1", lambda: None)
    assert "the check failed with TypeError" in report.results[0].message
    assert "does it return what the task asks for" in report.results[0].message


@pytest.mark.parametrize("answer, words", [
    (None, ["got None", "Did you call the function instead of passing it?"]),
    ("status_line", ["got a str ('status_line')", "Did you call the function"]),
    (b"HTTP/1.1 200 OK\r\n", ["got a bytes", "without parentheses"]),
    (lambda code: b"", ["taking 2 positional arguments", "yours is <lambda>(code)"]),
])
def test_wrong_kind_of_answer_gets_a_plain_message(answer, words):
    report = run_check("00.1", answer)
    assert not report.passed and len(report.results) == 1
    message = report.results[0].message
    assert message.startswith("The check expects a function status_line(code: int, reason: str)")
    for word in words:
        assert word in message


def test_params_none_accepts_any_signature(scratch):
    exercise = scratch(params=None)

    @exercise.case("anything")
    def _(answer):
        expect_equal(answer(1, 2, 3), 6)

    assert run_check("98.1", lambda *numbers: sum(numbers)).passed


def test_expect_equal():
    expect_equal(b"x", b"x")
    with pytest.raises(CaseFailed) as caught:
        expect_equal("x", b"x", "the line")
    assert caught.value.message == "the line should be of type bytes, not str"
    assert (caught.value.expected, caught.value.got) == (b"x", "x")
    with pytest.raises(CaseFailed):
        expect_equal(True, 1)  # equal, but not the same type
    with pytest.raises(CaseFailed, match="of type tuple, not list"):
        expect_equal(["HTTP/1.1", 200, "OK"], ("HTTP/1.1", 200, "OK"))
    expect_equal(collections.namedtuple("Status", "version code reason")("HTTP/1.1", 200, "OK"),
                 ("HTTP/1.1", 200, "OK"))  # a subclass of the expected type is fine
    with pytest.raises(CaseFailed, match=r"shorter: it lacks b'\\r\\n' at the end"):
        expect_equal(b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\n\r\n")


def test_long_values_are_shortened_in_the_middle():
    text = grading.short_repr(b"a" * 1000 + b"END")
    assert len(text) <= 160 and text.startswith("b'aaa") and text.endswith("END'") and " ... " in text


def test_case_failed_without_values_shows_none(scratch):
    exercise = scratch()

    @exercise.case("just a message")
    def _(answer):
        raise CaseFailed("the server never answered")

    result = run_check("98.1", lambda: None).results[0]
    assert (result.passed, result.message, result.expected, result.got) == (
        False, "the server never answered", None, None)


# --- time limits --------------------------------------------------------------------------------------------------

def test_endless_loop_is_stopped_in_time_and_leaves_no_thread(scratch):
    exercise = scratch()
    for name in ("first", "second", "third"):
        exercise.case(name)(lambda answer: answer())

    def spin():
        while True:
            try:
                pass
            except:  # noqa: E722 - a learner's bare except must not keep the loop alive
                pass

    before = set(threading.enumerate())
    started = time.monotonic()
    report = run_check("98.1", spin)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0  # one limit of 0.5 s plus the short join; the later cases are not run
    assert report.results[0].timed_out
    assert report.results[0].message.startswith("did not finish within 0.5 s — look for a loop that never ends")
    assert [r.message for r in report.results[1:]] == ["not run: the case before it did not finish"] * 2
    assert set(threading.enumerate()) == before


def test_case_timeout_overrides_the_exercise_timeout(scratch):
    exercise = scratch(timeout=30)
    exercise.case("quick", timeout=0.2)(lambda answer: answer())

    def spin():
        while True:
            pass

    started = time.monotonic()
    report = run_check("98.1", spin)
    assert time.monotonic() - started < 1.5
    assert "within 0.2 s" in report.results[0].message


# --- registry -----------------------------------------------------------------------------------------------------

def test_registering_an_existing_id_replaces_it(scratch):
    scratch(points=1)
    replacement = scratch(points=3)
    assert grading.get_exercise("98.1") is replacement
    assert [e.id for e in grading.exercises()].count("98.1") == 1


@pytest.mark.parametrize("options, error", [
    ({"id": "1.2"}, "must look like '01.2'"),
    ({"points": -1}, "points"),
    ({"hints": "one string"}, "hints"),
    ({"timeout": 0}, "timeout"),
])
def test_bad_exercise_definitions_are_rejected(options, error):
    settings = dict(id="97.1", title="t", points=1, hints=["h"], answer="a function f()")
    settings.update(options)
    with pytest.raises(ValueError, match=error):
        Exercise(settings.pop("id"), settings.pop("title"), **settings)
    assert "97.1" not in grading._REGISTRY


def test_unknown_exercise_id_is_a_clear_error():
    with pytest.raises(LookupError, match=r"no exercise '99\.9'.*00\.1"):
        run_check("99.9", status_line)


def test_exercises_are_sorted_numerically(scratch):
    scratch(10)
    scratch(2)
    ids = [e.id for e in grading.exercises() if e.lesson == "98"]
    assert ids == ["98.2", "98.10"]


# --- display, hints, progress, strict mode ------------------------------------------------------------------------

def test_report_renders_as_html_and_plain_text():
    report = run_check("00.1", lambda code, reason: b"<b>" + status_line(code, reason))
    bundle = report._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "✗" in bundle["text/plain"] and "expected: b'HTTP/1.1 200 OK\\r\\n'" in bundle["text/plain"]
    assert "&lt;b&gt;" in bundle["text/html"] and "<b>HTTP" not in bundle["text/html"]
    assert "<table" in bundle["text/html"] and "0/2 points" in bundle["text/html"]


def test_check_shows_the_report_and_records_progress(capsys):
    check("00.1", status_line)
    assert "solved: 2/2 points" in capsys.readouterr().out
    with open(os.environ["GATEWAYLAB_PROGRESS"], encoding="utf-8") as f:
        entry = json.load(f)["exercises"]["00.1"]
    assert (entry["best_score"], entry["passed"], entry["attempts"]) == (2, True, 1)


def test_check_never_raises_without_strict_mode(capsys):
    check("00.1", None)
    check("00.1", stub_status_line)
    assert "not solved yet" in capsys.readouterr().out


def test_strict_mode_raises_unless_passed(monkeypatch, capsys):
    monkeypatch.setenv("GATEWAYLAB_STRICT", "1")
    with pytest.raises(AssertionError, match="exercise 00.1 not passed"):
        check("00.1", stub_status_line)
    assert "not solved yet" in capsys.readouterr().out  # shown before raising
    check("00.1", status_line)  # a passing answer raises nothing


def test_hint_reveals_one_level_per_call(capsys):
    hint("00.1")
    first = capsys.readouterr().out
    assert "Hint 1 of 3" in first and "Hint 2 of 3" not in first
    hint("00.1")
    hint("00.1")
    third = capsys.readouterr().out.split("Hint 1 of 3")[-1]
    assert "Hint 2 of 3" in third and "Hint 3 of 3" in third and 'encode("ascii")' in third
    hint("00.1")
    assert "No more hints" in capsys.readouterr().out


def test_hint_button_reveals_the_next_level_each_press():
    box = hint_widget("00.1")
    button, text = box.children
    assert text.value == "" and button.description == "Hint 1 of 3"
    button.click()
    assert "Hint 1 of 3" in text.value and button.description == "Hint 2 of 3"
    button.click()
    button.click()
    assert "Hint 3 of 3" in text.value and button.description == "No more hints"
    button.click()
    assert "No more hints: that was the last one." in text.value


def test_hints_are_recorded_and_continue_after_a_kernel_restart(capsys):
    hint("00.1")
    hint("00.1")
    assert progress.hints_used("00.1") == 2
    grading._hint_levels.clear()  # what a kernel restart forgets
    hint("00.1")
    out = capsys.readouterr().out.split("Hint 1 of 3")[-1]
    assert "Hint 3 of 3" in out and "No more hints" not in out
    assert progress.hints_used("00.1") == 3
    hint("00.1")  # past the last hint: nothing more to record
    assert "No more hints" in capsys.readouterr().out and progress.hints_used("00.1") == 3


def test_each_hint_button_press_is_recorded_and_a_new_button_starts_where_the_last_one_was():
    button, text = hint_widget("00.1").children
    button.click()
    assert progress.hints_used("00.1") == 1
    button.click()
    assert progress.hints_used("00.1") == 2
    grading._hint_levels.clear()
    button, text = hint_widget("00.1").children  # the button a check shows after a restart
    assert button.description == "Hint 3 of 3"
    assert "Hint 1 of 3" in text.value and "Hint 2 of 3" in text.value and "Hint 3 of 3" not in text.value
    button.click()
    assert progress.hints_used("00.1") == 3 and button.description == "No more hints"


def test_hints_still_show_when_progress_cannot_be_saved(monkeypatch, capsys):
    def broken_replace(src, dst):
        raise OSError("read-only file system")

    monkeypatch.setattr(progress.os, "replace", broken_replace)
    with pytest.warns(UserWarning, match="could not save progress"):
        hint("00.1")
        hint("00.1")
    assert "Hint 2 of 3" in capsys.readouterr().out  # this kernel still remembers


def test_hint_html_shows_code_in_monospace_without_paragraph_gaps():
    prose = hint_html("Hint 1 of 3:", 'Open it with `with conn:` and call .encode("ascii") on the text, don\'t wait')
    assert "<p>" not in prose and "margin:0.2em 0" in prose
    assert f'<code style="{grading.MONOSPACE}">with conn:</code>' in prose and "`" not in prose
    assert '<code style="' + grading.MONOSPACE + '">.encode(&quot;ascii&quot;)</code>' in prose
    assert "don&#x27;t wait" in prose  # an apostrophe starts no string
    code = hint_html("Hint 3 of 3:", 'return f"HTTP/1.1 {code} {reason}\\r\\n".encode("ascii")')
    assert "<pre" in code and "monospace" in code
    lines = hint_html("Hint 3 of 3:", "for x in xs:\n    print(x)")
    assert "<pre" in lines and "for x in xs:\n    print(x)</pre>" in lines  # the indentation is kept
    assert "<script>" not in hint_html("Hint:", "<script>alert(1)</script> and `<b>`")


def test_an_exercise_is_optional_when_declared_so_or_titled_so(scratch):
    assert not scratch(1).optional
    assert scratch(2, optional=True).optional
    assert Exercise("98.3", "Bonus round (optional)", points=1, hints=["h"], answer="a function f()").optional
    grading._REGISTRY.pop("98.3")
    assert grading.get_exercise("02.5").optional and not grading.get_exercise("02.4").optional
    with pytest.raises(ValueError, match="optional"):
        scratch(4, optional="yes")


@pytest.mark.slow
def test_in_a_kernel_a_check_cell_shows_one_report_and_a_hint_button(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def status_line(code, reason):\n    return b'HTTP/1.1'"),
        nbformat.v4.new_code_cell('from gatewaylab.grading import check\ncheck("00.1", status_line)'),
        nbformat.v4.new_code_cell('from gatewaylab.grading import hint\nhint("00.1")'),
        nbformat.v4.new_code_cell('check("00.1", status_line)'),
        nbformat.v4.new_code_cell('from gatewaylab.progress import dashboard\ndashboard()'),
    ])
    NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    report, button = nb.cells[1].outputs
    assert report.output_type == "display_data" and set(report.data) == {"text/plain", "text/html"}
    assert "1/3 cases, 0/2 points" in report.data["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in button.data
    # The outputs record the hints used by then, which gatewaylab.grade reads from a submitted notebook.
    assert report.metadata["gatewaylab"] == {"exercise": "00.1", "hints_used": 0}
    assert nb.cells[2].outputs[0].metadata["gatewaylab"] == {"exercise": "00.1", "hints_used": 1}
    assert nb.cells[3].outputs[0].metadata["gatewaylab"] == {"exercise": "00.1", "hints_used": 1}
    board = nb.cells[4].outputs[0].data
    assert "✗ 00.1 (1 hint)" in board["text/plain"] and "<table" in board["text/html"]


def test_a_long_value_points_at_the_first_difference_but_a_short_one_does_not():
    from gatewaylab.grading import CaseFailed, expect_equal

    with pytest.raises(CaseFailed) as short:
        expect_equal("21", "20")
    assert "differ first" not in str(short.value)
    with pytest.raises(CaseFailed) as long:
        expect_equal(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n")
    assert "differ first at index 33" in str(long.value)
