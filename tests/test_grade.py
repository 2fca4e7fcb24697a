"""gatewaylab.grade: run a folder of submitted notebooks and tabulate the scores, using exercise 00.1."""

import csv

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gatewaylab.grade import Gradebook, LearnerRow, find_submissions, main, saved_hints

KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CHECK = 'from gatewaylab.grading import check\ncheck("00.1", status_line)'


def submission(*sources):
    return new_notebook(metadata={"kernelspec": KERNEL},
                        cells=[new_markdown_cell("# 00 Welcome")] + [new_code_cell(s) for s in sources])


RIGHT = 'def status_line(code, reason):\n    return f"HTTP/1.1 {code} {reason}\\r\\n".encode("ascii")'
WRONG = 'def status_line(code, reason):\n    return f"HTTP/1.1 {code} {reason}\\n".encode("ascii")'


def test_learners_are_subfolders_or_file_stems(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("bob-00", "alice-00"):
        nbformat.write(submission(RIGHT), flat / f"{name}.ipynb")
    assert [(learner, p.name) for learner, p in find_submissions(flat)] == [
        ("alice-00", "alice-00.ipynb"), ("bob-00", "bob-00.ipynb")]

    nested = tmp_path / "nested"
    for learner in ("alice", "bob"):
        (nested / learner / ".ipynb_checkpoints").mkdir(parents=True)
        nbformat.write(submission(RIGHT), nested / learner / "00_welcome.ipynb")
        nbformat.write(submission(RIGHT), nested / learner / ".ipynb_checkpoints" / "00_welcome-checkpoint.ipynb")
    assert [(learner, p.name) for learner, p in find_submissions(nested)] == [
        ("alice", "00_welcome.ipynb"), ("bob", "00_welcome.ipynb")]


def test_gradebook_table_totals_every_column():
    book = Gradebook({"00.1": 2, "01.1": 3}, [LearnerRow("ann", {"00.1": 2}), LearnerRow("ben", {}, ["x: broken"])])
    assert book.table() == [["learner", "00.1", "01.1", "total", "hints used", "errors"],
                            ["ann", "2/2", "-", "2/5", "", ""],
                            ["ben", "-", "-", "0/5", "", "x: broken"]]
    assert str(book).splitlines()[2].endswith("0/5                x: broken")


def test_gradebook_leaves_optional_exercises_out_of_the_total_and_lists_hints_used():
    rows = [LearnerRow("ann", {"02.1": 2, "02.5": 3}, hints={"02.5": 3, "02.1": 1}),
            LearnerRow("ben", {"02.1": 2}, hints={"02.1": 0})]
    book = Gradebook({"02.1": 2, "02.5": 3}, rows, optional={"02.5"})
    assert book.table() == [["learner", "02.1", "02.5 (optional)", "total", "hints used", "errors"],
                            ["ann", "2/2", "3/3", "2/2", "02.1: 1, 02.5: 3", ""],
                            ["ben", "2/2", "-", "2/2", "", ""]]


def with_output(cell, exercise_id, hints_used, **extra):
    cell.outputs.append(nbformat.v4.new_output(
        "display_data", data={"text/plain": "report"},
        metadata={"gatewaylab": {"exercise": exercise_id, "hints_used": hints_used, **extra}}))
    return cell


def test_hints_used_come_from_the_saved_outputs_of_check_and_hint_cells():
    nb = submission(RIGHT, CHECK, 'hint("00.1")', CHECK, 'check("01.2", parse)')
    with_output(nb.cells[2], "00.1", 1)
    with_output(nb.cells[3], "00.1", 2)
    with_output(nb.cells[4], "00.1", 1)  # an earlier run's output further down: the largest count wins
    with_output(nb.cells[5], "01.2", 0)
    nb.cells[5].outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": "x"},
                                                      metadata={"gatewaylab": {"exercise": "01.2",
                                                                               "hints_used": "lots"}}))
    nb.cells[1].outputs.append(nbformat.v4.new_output("stream", text="no metadata here"))
    assert saved_hints(nb) == {"00.1": 2, "01.2": 0}
    assert saved_hints(submission(RIGHT, CHECK)) == {}


def test_not_a_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder of submissions" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no notebooks under" in capsys.readouterr().err


OPTIONAL_STUB = ('def error_catcher(app):\n'
                 '    raise NotImplementedError("Exercise 02.5: replace this line with your code")')
OPTIONAL_CHECK = 'from gatewaylab.grading import check\ncheck("02.5", error_catcher)'


@pytest.mark.slow
def test_grade_a_class(tmp_path, capsys):
    folder = tmp_path / "submissions"
    for learner in ("alice", "bob", "carol", "dave", "erin"):
        (folder / learner).mkdir(parents=True)
    alice = submission(RIGHT, CHECK)
    with_output(alice.cells[2], "00.1", 2)  # alice revealed two hints before her last check
    nbformat.write(alice, folder / "alice" / "00_welcome.ipynb")
    nbformat.write(submission(WRONG, CHECK), folder / "bob" / "00_welcome.ipynb")
    (folder / "carol" / "00_welcome.ipynb").write_text("{ this is not a notebook")
    # A cell that hangs and a cell that raises: both are passed over, the check after them still counts.
    nbformat.write(submission("import time\ntime.sleep(60)", "1 / 0", RIGHT, CHECK),
                   folder / "dave" / "00_welcome.ipynb")
    # erin asks for a hint in a cell that runs during grading too, and leaves the optional 02.5 unsolved.
    nbformat.write(submission(RIGHT, CHECK, 'from gatewaylab.grading import hint\nhint("00.1")',
                              OPTIONAL_STUB, OPTIONAL_CHECK), folder / "erin" / "02_wsgi.ipynb")

    csv_path = tmp_path / "scores.csv"
    assert main([str(folder), "--timeout", "5", "--csv", str(csv_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["learner", "00.1", "02.5 (optional)", "total", "hints used", "errors"]
    assert rows[1] == ["alice", "2/2", "-", "2/2", "00.1: 2", ""]
    assert rows[2] == ["bob", "0/2", "-", "0/2", "", ""]
    assert rows[3][:5] == ["carol", "-", "-", "0/2", ""]
    assert rows[3][5].startswith("00_welcome.ipynb could not be run: NotJSONError")
    assert rows[4] == ["dave", "2/2", "-", "2/2", "", ""]
    assert rows[5] == ["erin", "2/2", "0/3", "2/2", "00.1: 1", ""]
    assert printed[0].split() == ["learner", "00.1", "02.5", "(optional)", "total", "hints", "used", "errors"]
    assert printed[1].split() == ["alice", "2/2", "-", "2/2", "00.1:", "2"]
    assert printed[3].split()[:5] == ["carol", "-", "-", "0/2", "00_welcome.ipynb"]
