"""The exercises of every lesson, one module per lesson: ``lNN_<name>.py``.

Two ways to know the exercises, one cheap and one complete:

* :func:`declarations` reads each module's ``Exercise(...)`` calls as source (with :mod:`ast`), without importing the
  modules: id, title, points, number of hints and whether the exercise is optional. The build, the grading of a class
  and the dashboard need no more than that, and so never import httpx, ipywidgets or matplotlib, which the checks
  use. The literal values it needs must therefore be written as literals in the call.
* :func:`load_all` imports every module; each registers its exercises (cases included) with
  :mod:`gatewaylab.grading` as it is imported. A new lesson's checks therefore register by existing.

Importing this package imports neither the lesson modules nor :mod:`gatewaylab.grading`.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Declaration", "declarations", "declaration", "load_all", "lesson_modules", "is_optional_title"]

_LESSON_MODULE = re.compile(r"l\d\d_\w+")
_OPTIONAL_TITLE = re.compile(r"\(optional\)\s*$", re.IGNORECASE)
_HERE = Path(__file__).resolve().parent


def is_optional_title(title: str) -> bool:
    """Whether a title marks its exercise optional, as "Error catcher (optional)" does."""
    return bool(_OPTIONAL_TITLE.search(title))


@dataclass(frozen=True)
class Declaration:
    """What an ``Exercise(...)`` call in a lesson module declares, read without running it."""

    id: str
    title: str
    points: int
    hints: int  # how many hints it has
    optional: bool
    module: str  # e.g. "l02_wsgi"

    @property
    def lesson(self) -> str:
        return self.id.split(".")[0]


def lesson_modules() -> list[str]:
    """The names of the lesson modules beside this file, in lesson order."""
    return sorted(p.stem for p in _HERE.glob("l*.py") if _LESSON_MODULE.fullmatch(p.stem))


def _sort_key(exercise_id: str) -> tuple[int, int]:
    lesson, number = exercise_id.split(".")
    return int(lesson), int(number)


def _literal(node: ast.AST, what: str, where: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{where}: the exercise's {what} must be a literal, so that it can be read without "
                         f"importing the module") from None


def _declared(path: Path) -> list[Declaration]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name != "Exercise":
            continue
        where = f"{path.name}, line {node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        args = list(node.args)
        exercise_id = _literal(args[0] if args else keywords["id"], "id", where)
        title = _literal(args[1] if len(args) > 1 else keywords["title"], "title", where)
        points = _literal(keywords["points"], "points", where) if "points" in keywords else 0
        hints = _literal(keywords["hints"], "hints", where) if "hints" in keywords else []
        optional = _literal(keywords["optional"], "optional", where) if "optional" in keywords else False
        found.append(Declaration(exercise_id, title, points, len(hints),
                                 bool(optional) or is_optional_title(title), path.stem))
    return found


_cache: dict[Path, tuple[float, list[Declaration]]] = {}


def declarations() -> dict[str, Declaration]:
    """Every exercise the lesson modules declare, by id, in lesson and exercise order (no module is imported)."""
    found: dict[str, Declaration] = {}
    for name in lesson_modules():
        path = _HERE / f"{name}.py"
        stamp = path.stat().st_mtime
        cached = _cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = _cache[path] = (stamp, _declared(path))
        for item in cached[1]:
            found[item.id] = item
    return {key: found[key] for key in sorted(found, key=_sort_key)}


def declaration(exercise_id: str) -> Declaration:
    """The declared exercise with this id; a clear ``LookupError`` when there is none."""
    known = declarations()
    try:
        return known[exercise_id]
    except KeyError:
        raise LookupError(f"there is no exercise {exercise_id!r} (known exercises: "
                          f"{', '.join(known) or 'none'})") from None


def load_all() -> None:
    """Import every lesson module, which registers its exercises with :mod:`gatewaylab.grading`."""
    for name in lesson_modules():
        importlib.import_module(f"{__name__}.{name}")
