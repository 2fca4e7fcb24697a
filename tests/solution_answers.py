"""The answers of a solutions notebook, run the way a kernel runs them, for testing checks both ways.

    notebook = SolutionNotebook("01_http_on_the_wire.ipynb")
    notebook.reference("parse_status_line")              # the notebook's own answer, as a function
    notebook.variant("parse_status_line", (old, new))    # the same answer with a mistake put in
    notebook.stub("01.2")                                 # what the exercises notebook gives the learner
"""

from __future__ import annotations

import ast
import contextlib
import re
import threading
import time
from pathlib import Path

import nbformat

from gatewaylab.build import stub_source

ROOT = Path(__file__).resolve().parents[1]
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']\s*,\s*(\w+)\s*\)""")


class SolutionNotebook:
    def __init__(self, name: str):
        self.path = ROOT / "solutions" / name
        cells = [c.source for c in nbformat.read(self.path, as_version=4).cells if c.cell_type == "code"]
        # The first code cell sets up imports the answers rely on, unless it is itself an answer or a check.
        first = cells[0] if cells else ""
        self.setup = "" if "### BEGIN SOLUTION" in first or CHECK_CALL.search(first) else first
        self.answers: dict[str, str] = {}  # function name -> source of the answer cell defining it
        self.exercises: dict[str, str] = {}  # exercise id -> name of the function its check cell checks
        for source in cells:
            if "### BEGIN SOLUTION" in source:
                name = next(n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
                self.answers[name] = source
            for exercise_id, name in CHECK_CALL.findall(source):
                self.exercises[exercise_id] = name

    def define(self, source: str, name: str):
        """Run, in a fresh namespace, what a kernel would have run by then: the setup cell and the answer cells above the
        one defining `name` (a later answer may use an earlier one), then `source`; return what `name` is bound to."""
        namespace: dict = {}
        exec(compile(self.setup, f"<{self.path.name}: setup cell>", "exec"), namespace)
        for earlier, earlier_source in self.answers.items():
            if earlier == name:
                break
            exec(compile(earlier_source, f"<{self.path.name}: cell defining {earlier}>", "exec"), namespace)
        exec(compile(source, f"<{self.path.name}: cell defining {name}>", "exec"), namespace)
        return namespace[name]

    def reference(self, name: str):
        return self.define(self.answers[name], name)

    def variant(self, name: str, *replacements: tuple[str, str]):
        """The reference answer with mistakes put in: each `old` (which must be in it) replaced by `new`."""
        source = self.answers[name]
        for old, new in replacements:
            assert old in source, f"the reference answer of {name} no longer contains {old!r}; update this test"
            source = source.replace(old, new)
        return self.define(source, name)

    def stub(self, exercise_id: str):
        name = self.exercises[exercise_id]
        return self.define(stub_source(self.answers[name], exercise_id), name)


def failure_messages(report) -> str:
    """The messages of the failed cases of a report that must be a plain failure (not "not solved yet")."""
    assert not report.passed and not report.not_solved, str(report)
    return "\n".join(r.message for r in report.results if not r.passed)


def fails_with(exercise_id: str, answer, *fragments: str):
    """Run a check on a wrong answer: it must fail plainly, with each fragment somewhere in its messages."""
    from gatewaylab.grading import run_check

    report = run_check(exercise_id, answer)
    messages = failure_messages(report)
    for fragment in fragments:
        assert fragment in messages, messages
    return report


@contextlib.contextmanager
def nothing_left_running(exercise_prefix: str):
    """A check (and the answer it ran) stops its servers, named check-NN..., and every thread it started ends."""
    from gatewaylab.servers import running

    before = set(threading.enumerate())
    yield
    assert not [name for name in running() if name.startswith(exercise_prefix)]
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before, threading.enumerate()
