"""Run an exercise's cases against a learner's answer: feedback, hints and points.

A lesson's exercises live in ``gatewaylab/checks/lNN_<name>.py``; each module builds :class:`Exercise` objects and
registers cases on them with ``@exercise.case(...)``. ``gatewaylab.checks.load_all()`` imports every such module;
:func:`get_exercise` and :func:`exercises` call it.

In a notebook a check cell calls ``check("01.2", parse_status_line)``: the cases run, a report is shown (HTML in
JupyterLab, plain text elsewhere) with a "Hint" button under it, and the result is recorded by
:mod:`gatewaylab.progress`. ``run_check`` does the same work without displaying or recording; tests use it. Each
press of "Hint" and each ``hint("01.2")`` reveals one more hint and records it in the progress file, so the hints
survive a kernel restart; the report's and the hint's outputs carry the number of hints used as output metadata
(``{"gatewaylab": {"exercise": "01.2", "hints_used": 2}}``), which :mod:`gatewaylab.grade` reads from a submitted
notebook.

The layers are one-way: the lesson modules import this one, this one imports :mod:`gatewaylab.progress`, and
progress imports only :mod:`gatewaylab.checks`' declarations (read from source), never this module.

Rules a check keeps:

* It never raises in a notebook, whatever the learner's code does: exceptions become messages that show the line of
  the learner's code they came from, a wrong value shows what was expected and what came back.
* Each case runs in a daemon worker thread with a time limit. Learner code still running after the limit is stopped
  by raising an exception in that thread (``PyThreadState_SetAsyncExc``), which works for pure-Python code such as
  ``while True: pass``. Code blocked inside a C call (``socket.recv``, ``time.sleep``) only sees that exception when
  the call returns, so cases that use sockets must set socket timeouts or close the sockets themselves.
* An answer that is still the exercise stub (it raises ``NotImplementedError``) is reported as "not solved yet",
  styled neutrally rather than as an error.
* Points are all or nothing: an exercise scores its points when every case passes.

Strict mode, for nbgrader: when the environment variable ``GATEWAYLAB_STRICT`` is ``1``, ``check()`` raises
``AssertionError`` after showing the report unless the exercise passed. nbgrader's autograder counts a check cell as
passed when it raises nothing, so exercise notebooks graded by nbgrader need ``GATEWAYLAB_STRICT=1`` in the
autograder's environment. Without it a check cell never fails.
"""

from __future__ import annotations

import ast
import ctypes
import html
import inspect
import linecache
import os
import re
import sysconfig
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gatewaylab import progress
from gatewaylab.checks import is_optional_title, load_all
from gatewaylab.html_style import LEFT

__all__ = [
    "CaseFailed",
    "expect_equal",
    "Case",
    "Exercise",
    "CaseResult",
    "Report",
    "get_exercise",
    "exercises",
    "run_check",
    "check",
    "hint",
    "hint_widget",
    "hint_html",
    "is_stub",
    "stop_thread",
]

# Marks "no expected/got value given", since None is a value a check may well expect.
_ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "<absent>"})()

# Text the build puts in every stub (see gatewaylab.build); finding it in the answer's code means "not solved yet".
STUB_MARKER = "replace this line with your code"

TIMEOUT_ADVICE = "look for a loop that never ends or a read that waits for bytes that never come"

_ID_PATTERN = re.compile(r"\d\d\.\d+")
_REGISTRY: dict[str, "Exercise"] = {}
_PACKAGE_DIR = Path(__file__).resolve().parent
_LIBRARY_DIRS = tuple(
    {str(Path(p).resolve()) for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_path(key))}
)


class CaseFailed(AssertionError):
    """Raised by a case when the learner's answer gives a wrong result.

    ``expected`` and ``got`` are shown beside the message when given.
    """

    def __init__(self, message: str, *, expected: Any = _ABSENT, got: Any = _ABSENT):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.got = got


def short_repr(value: Any, limit: int = 160) -> str:
    """``repr(value)``, cut in the middle when longer than ``limit`` so both ends stay visible."""
    text = repr(value)
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def _first_difference(got: Any, expected: Any) -> str:
    """A pointer to where two sequences of the same type part ways, or '' when that says nothing new."""
    if not isinstance(got, (str, bytes, list, tuple)) or not _same_kind(got, expected):
        return ""
    if len(repr(got)) <= 20 and len(repr(expected)) <= 20:
        return ""  # short values side by side say it all
    for index, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return f"; they differ first at index {index}: expected {short_repr(expected[index:index + 8], 60)}, " \
                   f"got {short_repr(got[index:index + 8], 60)}"
    if len(got) < len(expected):
        return f"; yours is shorter: it lacks {short_repr(expected[len(got):], 60)} at the end"
    return f"; yours is longer: it has {short_repr(got[len(expected):], 60)} extra at the end"


def _same_kind(got: Any, expected: Any) -> bool:
    # A subclass is fine (a namedtuple for a tuple, HTTPStatus for an int), but True must not pass for 1.
    return isinstance(got, type(expected)) and isinstance(got, bool) == isinstance(expected, bool)


def expect_equal(got: Any, expected: Any, what: str = "the result") -> None:
    """Raise :class:`CaseFailed` showing both values unless ``got == expected`` and ``got`` is of ``expected``'s type
    (or a subclass of it).

    The type matters because returning str where bytes are due is the mistake learners make most, and a list where a
    tuple is due is a different answer; ``1 == True`` must not hide a wrong type either.
    """
    if _same_kind(got, expected) and got == expected:
        return
    if not _same_kind(got, expected):
        detail = f"{what} should be of type {type(expected).__name__}, not {type(got).__name__}"
    else:
        detail = f"{what} is not what was expected{_first_difference(got, expected)}"
    raise CaseFailed(detail, expected=expected, got=got)


@dataclass
class Case:
    """One named case of an exercise: ``func(answer)`` raises :class:`CaseFailed` when the answer is wrong."""

    name: str
    func: Callable[[Any], Any]
    timeout: float | None = None


class Exercise:
    """An exercise: id like ``"01.2"`` (lesson 01, exercise 2), its cases, hints and points.

    ``answer`` says what the check expects, e.g. ``"a function parse_status_line(line: bytes)"``. Every answer must be
    callable (a function, class or app); ``params`` is the number of positional arguments it must accept (``None``:
    don't check). An ``optional`` exercise counts toward no total (the dashboard shows it apart); a title ending in
    "(optional)" marks it optional too. Creating an exercise registers it; an existing exercise with the same id is
    replaced.

    :func:`gatewaylab.checks.declarations` reads ``id``, ``title``, ``points``, ``hints`` and ``optional`` from the
    module's source without importing it, so write them as literals.
    """

    def __init__(self, id: str, title: str, *, points: int, hints: list[str], answer: str,
                 params: int | None = None, timeout: float = 5.0, optional: bool = False):
        if not isinstance(id, str) or not _ID_PATTERN.fullmatch(id):
            raise ValueError(f"exercise id must look like '01.2' (lesson, dot, number), got {id!r}")
        if not isinstance(points, int) or isinstance(points, bool) or points < 0:
            raise ValueError(f"points must be a whole number >= 0, got {points!r}")
        if isinstance(hints, str) or not all(isinstance(h, str) and h for h in hints):
            raise ValueError("hints must be a list of non-empty strings, the last one closest to the answer")
        if params is not None and (not isinstance(params, int) or params < 0):
            raise ValueError(f"params must be None or a number >= 0, got {params!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(optional, bool):
            raise ValueError(f"optional must be True or False, got {optional!r}")
        self.id = id
        self.title = title
        self.points = points
        self.hints = list(hints)
        self.answer = answer
        self.params = params
        self.timeout = float(timeout)
        self.optional = bool(optional) or is_optional_title(title)
        self.cases: list[Case] = []
        _REGISTRY[id] = self
        _hint_levels.pop(id, None)

    @property
    def lesson(self) -> str:
        """The lesson number, e.g. ``"01"``."""
        return self.id.split(".")[0]

    def case(self, name: str, timeout: float | None = None) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Decorator registering ``func(answer)`` as a case shown to the learner as ``name``."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")

        def register(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.cases.append(Case(name, func, timeout))
            return func

        return register

    def __repr__(self) -> str:
        extra = ", optional=True" if self.optional else ""
        return f"Exercise({self.id!r}, {self.title!r}, points={self.points}, cases={len(self.cases)}{extra})"


def _sort_key(exercise_id: str) -> tuple[int, int]:
    lesson, number = exercise_id.split(".")
    return int(lesson), int(number)


def _load_checks() -> None:
    load_all()  # the lesson modules import this one, so they are imported on first use, not at the top


def get_exercise(exercise_id: str) -> Exercise:
    """The registered exercise with this id; a clear ``LookupError`` when there is none."""
    _load_checks()
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY, key=_sort_key)) or "none"
        raise LookupError(f"there is no exercise {exercise_id!r} (known exercises: {known})") from None


def exercises() -> list[Exercise]:
    """Every registered exercise, in lesson and exercise order."""
    _load_checks()
    return [_REGISTRY[key] for key in sorted(_REGISTRY, key=_sort_key)]


@dataclass
class CaseResult:
    """The outcome of one case. ``expected`` and ``got`` are shortened reprs, or None when the case gave none."""

    name: str
    passed: bool
    message: str = ""
    expected: str | None = None
    got: str | None = None
    stub: bool = False  # the learner's code raised NotImplementedError: not an error, just not done yet
    timed_out: bool = False


@dataclass
class Report:
    """What ``run_check`` found: every case's result, the score and whether the answer is still the stub."""

    exercise: Exercise
    results: list[CaseResult] = field(default_factory=list)
    not_solved: bool = False

    @property
    def passed(self) -> bool:
        return not self.not_solved and len(self.results) == len(self.exercise.cases) and all(
            r.passed for r in self.results)

    @property
    def points(self) -> int:
        return self.exercise.points

    @property
    def score(self) -> int:
        return self.points if self.passed else 0

    @property
    def cases_passed(self) -> int:
        return sum(r.passed for r in self.results)

    def headline(self) -> str:
        ex = self.exercise
        start = f"Exercise {ex.id} — {ex.title}: "
        if self.passed:
            return start + f"solved: {self.score}/{self.points} points"
        if self.not_solved:
            return start + f"not solved yet (0/{self.points} points)"
        return start + f"{self.cases_passed}/{len(ex.cases)} cases, {self.score}/{self.points} points"

    def __str__(self) -> str:
        lines = [self.headline()]
        for r in self.results:
            mark = "✓" if r.passed else ("·" if r.stub else "✗")
            lines.append(f"  {mark} {r.name}" + (f": {r.message}" if r.message else ""))
            if r.expected is not None:
                lines.append(f"      expected: {r.expected}")
            if r.got is not None:
                lines.append(f"      got:      {r.got}")
        if not self.passed and self.exercise.hints:
            lines.append(f'  Stuck? hint("{self.exercise.id}") shows a hint.')
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        state = "solved" if self.passed else ("not-solved" if self.not_solved else "failed")
        colours = {"solved": "#009E73", "not-solved": "#888888", "failed": "#D55E00"}  # Okabe-Ito, grey for neutral
        rows = []
        for r in self.results:
            mark, colour = ("✓", "#009E73") if r.passed else (("·", "#888888") if r.stub else ("✗", "#D55E00"))
            label = "passed" if r.passed else "not passed"
            values = "".join(
                f"<div><b>{name}</b> <code>{html.escape(value)}</code></div>"
                for name, value in (("expected", r.expected), ("got", r.got)) if value is not None)
            rows.append(
                f'<tr><td style="color:{colour};font-weight:bold" aria-label="{label}">'
                f'{mark}</td><td style="{LEFT}">{html.escape(r.name)}</td>'
                f'<td style="{LEFT};white-space:pre-wrap">{html.escape(r.message)}{values}</td></tr>')
        table = (
            f'<table style="border-collapse:collapse;font-size:90%"><thead><tr><th></th><th style="{LEFT}">case'
            f'</th><th style="{LEFT}">result</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            if rows else "")
        return (f'<div class="gatewaylab-report gatewaylab-{state}" style="border-left:4px solid {colours[state]};'
                f'padding:2px 8px"><div style="font-weight:bold">{html.escape(self.headline())}</div>{table}</div>')

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": self._repr_html_()}


# --- running learner code -----------------------------------------------------------------------------------------


class _CaseTimedOut(BaseException):
    """Injected into a worker thread that overran its time limit. A BaseException so ``except Exception`` in the
    learner's code does not swallow it."""


def stop_thread(thread: threading.Thread, grace: float = 1.0) -> None:
    """Raise _CaseTimedOut in ``thread`` until it ends or ``grace`` seconds pass.

    Raising it repeatedly gets a loop out of a ``try: ... except: pass`` in its body: sooner or later the exception
    lands on the loop's own jump, outside the ``try``. A loop that catches it every time keeps running.
    """
    deadline = time.monotonic() + grace
    while thread.is_alive() and time.monotonic() < deadline:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_CaseTimedOut))
        thread.join(0.05)


def _is_learner_file(filename: str, check_file: str) -> bool:
    if filename.startswith("<frozen") or filename == check_file:
        return False
    path = str(Path(filename).resolve())
    if path.startswith(str(_PACKAGE_DIR) + os.sep):
        return False
    return not any(path.startswith(lib + os.sep) for lib in _LIBRARY_DIRS)


def _learner_frame(exc: BaseException, check_file: str) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is the learner's code: not in gatewaylab, a library or the file
    that defines the check."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_learner_file(f.filename, check_file)]
    return frames[-1] if frames else None


def _describe_exception(exc: BaseException, case: Case) -> tuple[str, bool]:
    """A message for an exception raised while a case ran, and whether it came from the learner's code."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    code = getattr(case.func, "__code__", None)
    frame = _learner_frame(exc, code.co_filename if code else "")
    if frame is None:
        return (f"the check failed with {text} while using your answer's result — "
                f"does it return what the task asks for?"), False
    line = frame.line or linecache.getline(frame.filename, frame.lineno).strip()
    where = f"in {frame.name}, line {frame.lineno}" + (f": {line}" if line else "")
    return f"your code raised {text}\n  {where}", True


def _code_objects(answer: Any):
    """The code objects of a function, a class's methods or a callable's __call__, nested ones included."""
    functions = []
    if inspect.isclass(answer):
        functions = [v for v in vars(answer).values() if inspect.isfunction(v)]
    elif inspect.isfunction(answer) or inspect.ismethod(answer):
        functions = [answer]
    elif callable(answer) and inspect.ismethod(getattr(answer, "__call__", None)):
        functions = [answer.__call__]
    stack = [getattr(f, "__code__", None) for f in functions]
    while stack:
        code = stack.pop()
        if code is None:
            continue
        yield code
        stack.extend(c for c in code.co_consts if inspect.iscode(c))


def is_stub(answer: Any) -> bool:
    """True when the answer still contains the build's ``raise NotImplementedError("... replace this line ...")``."""
    return any(isinstance(c, str) and STUB_MARKER in c for code in _code_objects(answer) for c in code.co_consts)


def _shape_problem(exercise: Exercise, answer: Any) -> str | None:
    """A plain message when the answer is not a callable taking ``exercise.params`` positional arguments."""
    expects = f"The check expects {exercise.answer}"
    if not callable(answer):
        got = "None" if answer is None else f"a {type(answer).__name__} ({short_repr(answer, 60)})"
        nudge = (" Did you call the function instead of passing it? Pass its name without parentheses, e.g. "
                 f'check("{exercise.id}", my_function).')
        return f"{expects}, but got {got}.{nudge}"
    if exercise.params is None:
        return None
    try:
        signature = inspect.signature(answer)
    except (TypeError, ValueError):
        return None  # some built-in callables have no signature to inspect: let the cases decide
    try:
        signature.bind(*[None] * exercise.params)
    except TypeError:
        name = getattr(answer, "__name__", type(answer).__name__)
        wanted = f"{exercise.params} positional argument" + ("" if exercise.params == 1 else "s")
        return f"{expects}, taking {wanted}; yours is {name}{signature}."
    return None


def _run_case(exercise: Exercise, case: Case, answer: Any) -> CaseResult:
    limit = case.timeout or exercise.timeout
    outcome: dict[str, BaseException | None] = {}

    def work() -> None:
        try:
            case.func(answer)
            outcome["error"] = None
        except _CaseTimedOut:
            pass
        except BaseException as exc:  # noqa: BLE001 - anything the learner's code does must become a message
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"gatewaylab-check-{exercise.id}", daemon=True)
    worker.start()
    try:
        worker.join(limit)
    except KeyboardInterrupt:  # the learner pressed "interrupt": stop their code too, not only the wait for it
        stop_thread(worker)
        raise
    if worker.is_alive() or "error" not in outcome:
        stop_thread(worker)
        message = f"did not finish within {limit:g} s — {TIMEOUT_ADVICE}"
        if worker.is_alive():
            message += (" (it is still running in the background: it may be blocked in a call such as recv() that "
                        "cannot be interrupted, or catch every exception with a bare except:)")
        return CaseResult(case.name, False, message, timed_out=True)
    error = outcome["error"]
    if error is None:
        return CaseResult(case.name, True)
    if isinstance(error, CaseFailed):
        return CaseResult(
            case.name, False, error.message,
            None if error.expected is _ABSENT else short_repr(error.expected),
            None if error.got is _ABSENT else short_repr(error.got))
    message, from_learner = _describe_exception(error, case)
    if isinstance(error, NotImplementedError) and from_learner:
        return CaseResult(case.name, False, "not solved yet: replace the `raise NotImplementedError(...)` line "
                                            "with your code", stub=True)
    return CaseResult(case.name, False, message)


def run_check(exercise_id: str, answer: Any) -> Report:
    """Run every case of the exercise against ``answer`` and return the :class:`Report`; shows and records nothing."""
    exercise = get_exercise(exercise_id)
    problem = _shape_problem(exercise, answer)
    if problem is not None:
        return Report(exercise, [CaseResult("your answer", False, problem)])
    if is_stub(answer):
        return Report(exercise, [CaseResult(
            "your answer", False,
            "not solved yet: replace the `raise NotImplementedError(...)` line with your code", stub=True)],
            not_solved=True)
    results: list[CaseResult] = []
    for case in exercise.cases:
        if any(r.timed_out for r in results):
            # Code that overran once will overrun again: don't make the learner wait for every case.
            results.append(CaseResult(case.name, False, "not run: the case before it did not finish"))
        else:
            results.append(_run_case(exercise, case, answer))
    not_solved = bool(results) and all(r.stub for r in results)
    return Report(exercise, results, not_solved)


# --- display ------------------------------------------------------------------------------------------------------

# Exercise id -> hints revealed so far in this kernel. The progress file keeps the level across kernels and restarts
# (see _hint_level); this copy only matters when that file cannot be written.
_hint_levels: dict[str, int] = {}

# Key of the metadata a check's and a hint's output carry, which gatewaylab.grade reads from a saved notebook.
METADATA_KEY = "gatewaylab"

# Goes inside style="...": no double quotes in it.
MONOSPACE = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace;font-size:90%"
_BACKTICKS = re.compile(r"`([^`\n]+)`")
# Code in a hint that is not in backticks: a call or subscript, maybe chained, such as .encode("ascii"), len(parts)
# or environ['wsgi.input'].read(n) (brackets nested up to three deep), or a string literal such as b"\r\n" or 'POST'
# (a quote after a letter is an apostrophe, as in "don't").
_NAME = r"[A-Za-z_]\w*"


def _nested(open_: str, close: str, depth: int = 3) -> str:
    """A regex for brackets nested up to ``depth`` deep, on one line."""
    inner = rf"[^{open_}{close}\n]*"
    for _ in range(depth - 1):
        inner = rf"(?:[^{open_}{close}\n]|{open_}{inner}{close})*"
    return rf"{open_}{inner}{close}"


_TRAILER = "(?:" + _nested(r"\(", r"\)") + "|" + _nested(r"\[", r"\]") + ")"
_INLINE_CODE = re.compile(
    rf"""(?<![\w.])\.?{_NAME}(?:\.{_NAME})*{_TRAILER}(?:{_TRAILER}|\.{_NAME})*"""
    r"""|(?<![A-Za-z])[bfr]{0,2}"(?:\\.|[^"\\\n])*"(?![A-Za-z])"""
    r"""|(?<![A-Za-z])[bfr]{0,2}'(?:\\.|[^'\\\n])*'(?![A-Za-z])""")


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show(bundle: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
    """Display a mime bundle (with output metadata) in IPython, or print its text/plain part elsewhere."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display
    except ImportError:
        InteractiveShell = None
    if InteractiveShell is not None and InteractiveShell.initialized():
        display(bundle, raw=True, metadata=metadata)
    else:
        print(bundle["text/plain"])


def _hint_level(exercise: Exercise) -> int:
    """Hints of the exercise revealed so far, in this kernel or any other (the progress file remembers)."""
    stored = progress.hints_used(exercise.id)
    return min(max(stored, _hint_levels.get(exercise.id, 0)), len(exercise.hints))


def _output_metadata(exercise: Exercise, level: int | None = None) -> dict[str, Any]:
    """What a check's or hint's output records for gatewaylab.grade: the exercise and the hints revealed so far."""
    return {METADATA_KEY: {"exercise": exercise.id,
                           "hints_used": _hint_level(exercise) if level is None else level}}


def _looks_like_code(text: str) -> bool:
    """A whole hint that is Python (the last hint often is), or that spans lines (indented code)."""
    if "\n" in text:
        return True
    if " " not in text.strip() or "`" in text:
        return False
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def _inline_html(text: str) -> str:
    """Hint prose as HTML: text in backticks, and calls and string literals outside them, in a monospace font."""
    out, at = [], 0
    for match in _BACKTICKS.finditer(text):
        out.append(_code_spans(text[at:match.start()]))
        out.append(f'<code style="{MONOSPACE}">{html.escape(match.group(1))}</code>')
        at = match.end()
    out.append(_code_spans(text[at:]))
    return "".join(out)


def _code_spans(text: str) -> str:
    out, at = [], 0
    for match in _INLINE_CODE.finditer(text):
        out.append(html.escape(text[at:match.start()]))
        out.append(f'<code style="{MONOSPACE}">{html.escape(match.group(0))}</code>')
        at = match.end()
    out.append(html.escape(text[at:]))
    return "".join(out)


def hint_html(label: str, text: str) -> str:
    """One hint as HTML: its label in bold, then the hint, code in a monospace font, no paragraph gap."""
    head = f"<b>{html.escape(label)}</b>"
    if _looks_like_code(text):
        return (f'<div style="margin:0.2em 0">{head}<pre style="{MONOSPACE};margin:0.15em 0 0 0;padding:0.3em 0.5em;'
                f'background:rgba(127,127,127,0.1);white-space:pre-wrap;overflow-wrap:anywhere">'
                f"{html.escape(text)}</pre></div>")
    return f'<div style="margin:0.2em 0;line-height:1.4">{head} {_inline_html(text)}</div>'


def _hints_shown(exercise: Exercise, level: int) -> list[tuple[str, str]]:
    n = len(exercise.hints)
    return [(f"Hint {i + 1} of {n}:", exercise.hints[i]) for i in range(level)]


def _note(exercise: Exercise) -> str:
    return "No more hints: that was the last one." if exercise.hints else "This exercise has no hints."


def _hints_bundle(shown: list[tuple[str, str]], note: str = "") -> dict[str, str]:
    text = [f"{label} {hint}" for label, hint in shown] + ([note] if note else [])
    body = "".join(hint_html(label, hint) for label, hint in shown)
    if note:
        body += f'<div style="margin:0.2em 0">{html.escape(note)}</div>'
    return {"text/plain": "\n".join(text), "text/html": f'<div class="gatewaylab-hints">{body}</div>'}


def _next_hint(exercise: Exercise) -> tuple[int, str]:
    """Reveal one more hint, if any is left, and record it; returns the level now shown and a note when none is
    left."""
    shown = _hint_level(exercise)
    if shown >= len(exercise.hints):
        return shown, _note(exercise)
    level = progress.record_hint(exercise.id, shown + 1)  # an unwritable file only warns: the hint still shows
    _hint_levels[exercise.id] = max(level, shown + 1)
    return min(_hint_levels[exercise.id], len(exercise.hints)), ""


def hint(exercise_id: str) -> None:
    """Show the next hint of an exercise (and the ones before it), as HTML and plain text.

    Each call reveals one more and records it in the progress file, so after a kernel restart the next call goes on
    from there; the output carries the number of hints used, for :mod:`gatewaylab.grade`.
    """
    exercise = get_exercise(exercise_id)
    level, note = _next_hint(exercise)
    _show(_hints_bundle(_hints_shown(exercise, level), note), _output_metadata(exercise, level))


def hint_widget(exercise_id: str):
    """A "Hint" button that reveals (and records) the next hint on each press, with the hints shown below it.

    Hints revealed before, in this kernel or an earlier one, show from the start.
    """
    import ipywidgets as widgets

    exercise = get_exercise(exercise_id)
    button = widgets.Button(description="Hint", tooltip=f"next hint for exercise {exercise.id}")
    text = widgets.HTML()

    def render(level: int, note: str = "") -> None:
        text.value = _hints_bundle(_hints_shown(exercise, level), note)["text/html"] if level or note else ""
        if level >= len(exercise.hints):
            button.description = "No more hints"
        else:
            button.description = f"Hint {level + 1} of {len(exercise.hints)}"

    # Button callbacks run on the kernel's main thread, so assigning widget values here is safe.
    button.on_click(lambda _button: render(*_next_hint(exercise)))
    render(_hint_level(exercise))
    return widgets.VBox([button, text])


def check(exercise_id: str, answer: Any) -> None:
    """What a check cell calls: run the cases, show the report and a hint button, record progress.

    The report's output carries the number of hints used so far (metadata ``gatewaylab``), which
    :mod:`gatewaylab.grade` reads from a submitted notebook. Never raises for anything the answer does, unless
    GATEWAYLAB_STRICT=1 and the exercise did not pass.
    """
    report = run_check(exercise_id, answer)
    _show(report._repr_mimebundle_(), _output_metadata(report.exercise))
    if not report.passed and report.exercise.hints and _in_kernel():
        from IPython.display import display

        display(hint_widget(exercise_id))
    progress.record(report)
    if os.environ.get("GATEWAYLAB_STRICT") == "1" and not report.passed:
        raise AssertionError(f"exercise {exercise_id} not passed: {report.headline()}")
