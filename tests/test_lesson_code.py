"""The code a lesson builds is the code the package ships, word for word.

A code cell whose first line is `# gatewaylab/<module>.py` holds package code. For every such module, the last
definition of each function, class and UPPER_CASE constant in the lesson's cells must be identical to the module's, and
together the cells must define everything the module defines: the lesson may build a function in steps, but its last
step is the module.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^# (gatewaylab/[\w/]+\.py)\s*$")


def definitions(source: str) -> dict[str, str]:
    """Top-level functions, classes and UPPER_CASE constants, name -> exact source text (the last one wins)."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
        else:
            continue
        segment = ast.get_source_segment(source, node, padded=False)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
            first = min(d.lineno for d in node.decorator_list)
            segment = "\n".join(source.splitlines()[first - 1:node.end_lineno])
        for name in names:
            found[name] = segment
    return found


def lesson_code() -> dict[tuple[str, str], str]:
    """(notebook, module) -> the source of all that notebook's cells marked as that module's code."""
    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            match = MARKER.match(source.split("\n", 1)[0]) if cell["cell_type"] == "code" else None
            if match:
                key = (path.name, match.group(1))
                cells[key] = cells.get(key, "") + source + "\n\n"
    return cells


LESSON_CODE = lesson_code()


def test_some_lesson_builds_package_code():
    assert LESSON_CODE, "no notebook cell starts with '# gatewaylab/<module>.py'"


@pytest.mark.parametrize("notebook, module", sorted(LESSON_CODE), ids=lambda v: v)
def test_lesson_cells_are_the_module_word_for_word(notebook, module):
    in_lesson = definitions(LESSON_CODE[notebook, module])
    in_package = definitions((ROOT / module).read_text())
    missing = sorted(set(in_package) - set(in_lesson))
    assert not missing, f"{module} defines {missing}, which {notebook} never builds"
    extra = sorted(set(in_lesson) - set(in_package))
    assert not extra, f"{notebook} marks {extra} as {module} code, but the module has no such definitions"
    for name, source in in_package.items():
        assert in_lesson[name] == source, f"{name} in {notebook} differs from {module}"


def test_the_comparison_notices_a_difference():
    package = definitions("def f(x):\n    return x + 1\n")
    assert definitions("def f(x):\n    return x + 2\n") != package
    assert definitions("def f(x):\n    return x + 1\n") == package
