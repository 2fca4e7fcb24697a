"""gatewaylab.grade: run a folder of submitted notebooks and tabulate the scores, using exercise 00.1."""

import csv

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gatewaylab.grade import Gradebook, LearnerRow, find_submissions, main

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
    assert book.table() == [["learner", "00.1", "01.1", "total", "errors"],
                            ["ann", "2/2", "-", "2/5", ""],
                            ["ben", "-", "-", "0/5", "x: broken"]]
    assert str(book).splitlines()[2].endswith("0/5    x: broken")


def test_not_a_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder of submissions" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no notebooks under" in capsys.readouterr().err


@pytest.mark.slow
def test_grade_a_class(tmp_path, capsys):
    folder = tmp_path / "submissions"
    for learner in ("alice", "bob", "carol", "dave"):
        (folder / learner).mkdir(parents=True)
    nbformat.write(submission(RIGHT, CHECK), folder / "alice" / "00_welcome.ipynb")
    nbformat.write(submission(WRONG, CHECK), folder / "bob" / "00_welcome.ipynb")
    (folder / "carol" / "00_welcome.ipynb").write_text("{ this is not a notebook")
    # A cell that hangs and a cell that raises: both are passed over, the check after them still counts.
    nbformat.write(submission("import time\ntime.sleep(60)", "1 / 0", RIGHT, CHECK),
                   folder / "dave" / "00_welcome.ipynb")

    csv_path = tmp_path / "scores.csv"
    assert main([str(folder), "--timeout", "5", "--csv", str(csv_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["learner", "00.1", "total", "errors"]
    assert rows[1] == ["alice", "2/2", "2/2", ""]
    assert rows[2] == ["bob", "0/2", "0/2", ""]
    assert rows[3][:3] == ["carol", "-", "0/2"]
    assert rows[3][3].startswith("00_welcome.ipynb could not be run: NotJSONError")
    assert rows[4] == ["dave", "2/2", "2/2", ""]
    assert printed[0].split() == ["learner", "00.1", "total", "errors"]
    assert printed[1].split() == ["alice", "2/2", "2/2"]
    assert printed[3].split()[:4] == ["carol", "-", "0/2", "00_welcome.ipynb"]
