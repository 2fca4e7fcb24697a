"""The code a lesson builds is the code the package ships, word for word.

A code cell whose first line is `# gatewaylab/<module>.py` holds package code. A module may be built over several
lessons (lesson 01 starts the HTTP core, lesson 03 adds to it). For every such module, the last definition of each
function, class and UPPER_CASE constant, taking the lessons in order, must be identical to the module's, and together
the cells must define everything the module defines: a lesson may build a function in steps, but its last step is the
module.

A class too long for one cell goes on in the next as `class Name(Name):`, which rebinds the name to a subclass with
the methods of both: the test joins the parts' bodies, in order, into the one class the module has. (So a part must
not call `super()` for a method an earlier part of the same class defines: in the notebook that would find the earlier
part, in the module the base class.)

The cells must also run as they stand: every module-level name their definitions use must be bound in that notebook
(imported or defined in one of its cells), or a learner running the lesson meets a NameError the package never shows.
"""

import ast
import builtins
import json
import symtable
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^# (gatewaylab/[\w/]+\.py)\s*$")


def is_continuation(node: ast.AST) -> bool:
    """`class Name(Name):`, the next part of a class too long for one cell."""
    return isinstance(node, ast.ClassDef) and any(isinstance(base, ast.Name) and base.id == node.name
                                                  for base in node.bases)


def continued_body(source: str, node: ast.ClassDef) -> str:
    """The lines of a continuation part after its `class Name(Name):` line."""
    return "\n".join(source.splitlines()[node.lineno:node.end_lineno])


def methods_defined(node: ast.ClassDef) -> set[str]:
    return {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}


def super_calls(node: ast.ClassDef) -> set[str]:
    """The attributes a class's methods look up on super()."""
    return {inner.attr for inner in ast.walk(node) if isinstance(inner, ast.Attribute)
            and isinstance(inner.value, ast.Call) and isinstance(inner.value.func, ast.Name)
            and inner.value.func.id == "super"}


def definitions(source: str) -> dict[str, str]:
    """Top-level functions, classes and UPPER_CASE constants, name -> exact source text (the last one wins; the parts
    of a class continued over cells are joined)."""
    found, parts = {}, {}
    for node in ast.parse(source).body:
        if is_continuation(node):
            assert node.name in found, f"class {node.name}({node.name}) continues a class that was never begun"
            clash = super_calls(node) & parts[node.name]
            assert not clash, (f"a part of {node.name} calls super() for {sorted(clash)}, which an earlier part "
                               f"defines: in the notebook super() would find that part, in the module the base")
            found[node.name] += "\n\n" + continued_body(source, node)
            parts[node.name] |= methods_defined(node)
            continue
        if isinstance(node, ast.ClassDef):
            parts[node.name] = methods_defined(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
        else:
            continue
        segment = ast.get_source_segment(source, node, padded=False)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Whole lines, from the first decorator: a comment after the last statement is part of it.
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
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


MODULES = sorted({module for _, module in LESSON_CODE})


def built_over_the_lessons(module: str) -> tuple[dict[str, str], dict[str, str]]:
    """name -> the last definition of it in the lessons, and name -> the notebook that made that definition."""
    found, where = {}, {}
    for (notebook, marked), source in sorted(LESSON_CODE.items()):
        if marked == module:
            for name, segment in definitions(source).items():
                found[name], where[name] = segment, notebook
    return found, where


@pytest.mark.parametrize("module", MODULES)
def test_lesson_cells_are_the_module_word_for_word(module):
    in_lessons, where = built_over_the_lessons(module)
    in_package = definitions((ROOT / module).read_text())
    missing = sorted(set(in_package) - set(in_lessons))
    assert not missing, f"{module} defines {missing}, which no lesson builds"
    extra = sorted(set(in_lessons) - set(in_package))
    assert not extra, f"lessons mark {extra} as {module} code, but the module has no such definitions"
    for name, source in in_package.items():
        assert in_lessons[name] == source, f"{name} in {where[name]} differs from {module}"


def global_names_used(source: str) -> set[str]:
    """The module-level names that `source` reads: in its functions and classes (their global names), and at the top
    level (a constant's value, a decorator, an annotation), where names it binds itself are not counted."""
    top = symtable.symtable(source, "<lesson>", "exec")
    used = {symbol.get_name() for symbol in top.get_symbols()
            if symbol.is_referenced() and not (symbol.is_assigned() or symbol.is_imported())}

    def walk(table):
        for child in table.get_children():
            for symbol in child.get_symbols():
                if symbol.is_global():
                    used.add(symbol.get_name())
            walk(child)
    walk(top)
    return used


def names_bound(source: str) -> set[str]:
    """The names a notebook's code binds at module level: imports, definitions, assignments."""
    table = symtable.symtable(source, "<notebook>", "exec")
    return {symbol.get_name() for symbol in table.get_symbols() if symbol.is_assigned() or symbol.is_imported()}


def notebook_code(name: str) -> str:
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
               if c["cell_type"] == "code"]
    # (IPython's own syntax, "!cmd" or "%magic", is not Python: those lines are left out.)
    return "\n\n".join("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
                       for source in sources)


@pytest.mark.parametrize("notebook, module", sorted(LESSON_CODE), ids=lambda v: v)
def test_every_name_the_lesson_code_uses_is_bound_in_its_notebook(notebook, module):
    used = global_names_used(LESSON_CODE[notebook, module])
    unbound = sorted(used - names_bound(notebook_code(notebook)) - set(dir(builtins)))
    assert not unbound, f"{notebook}'s copy of {module} uses {unbound}, which nothing in the notebook imports"


def test_a_missing_import_is_noticed():
    code = "import os\n\ndef f():\n    return errno.EINTR, os.sep, len([])\n"
    assert global_names_used(code) - names_bound(code) - set(dir(builtins)) == {"errno"}
    code = "import os\nSEP = os.sep + re.escape('x')\n\n@cache\ndef f(x: Request):\n    return x\n"
    assert global_names_used(code) - names_bound(code) == {"re", "cache", "Request"}


def test_a_class_continued_over_cells_is_joined_into_one():
    module = "class A(B):\n    x = 1\n\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2"
    cells = "class A(B):\n    x = 1\n\n    def f(self):\n        return 1\n\n\nclass A(A):  # continued\n" \
            "    def g(self):\n        return 2\n"
    assert definitions(cells) == definitions(module)
    wrong_order = "class A(B):\n    x = 1\n\n    def g(self):\n        return 2\n\n\nclass A(A):\n" \
                  "    def f(self):\n        return 1\n"
    assert definitions(wrong_order) != definitions(module)
    # A part that asks super() for a method of an earlier part would run differently in the notebook.
    with pytest.raises(AssertionError, match="super"):
        definitions("class A(B):\n    def f(self):\n        pass\n\n\nclass A(A):\n    def g(self):\n"
                    "        return super().f()\n")
    with pytest.raises(AssertionError, match="never begun"):
        definitions("class A(A):\n    pass\n")


def test_the_comparison_notices_a_difference():
    package = definitions("def f(x):\n    return x + 1\n")
    assert definitions("def f(x):\n    return x + 2\n") != package
    assert definitions("def f(x):\n    return x + 1\n") == package


# JupyterLab at 1280 px, with the file browser open, shows about 105 characters of a code cell; longer lines scroll
# sideways. Lesson code stays within this many.
LINE_LIMIT = 100


def long_lines(cells: list[dict]) -> list[str]:
    """'cell N, line M: K characters' for every code line longer than LINE_LIMIT (cells and lines from 1)."""
    found = []
    for number, cell in enumerate(cells, 1):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            found += [f"cell {number}, line {line_number}: {len(line)} characters"
                      for line_number, line in enumerate(source.split("\n"), 1) if len(line) > LINE_LIMIT]
    return found


@pytest.mark.parametrize("notebook", [f"{path.parent.name}/{path.name}" for folder in ("notebooks", "solutions",
                                      "exercises") for path in sorted((ROOT / folder).glob("*.ipynb"))])
def test_code_cells_fit_a_laptop_screen(notebook):
    # (Learners read and write the exercise notebooks in the same JupyterLab as the lessons.)
    found = long_lines(json.loads((ROOT / notebook).read_text())["cells"])
    assert not found, f"{notebook} has code lines over {LINE_LIMIT} characters: " + "; ".join(found)


def test_a_long_line_is_noticed():
    cells = [{"cell_type": "markdown", "source": "x" * 200},
             {"cell_type": "code", "source": ["x = 1\n", "y = '" + "y" * 94 + "'\n", "z = 0"]},
             {"cell_type": "code", "source": "ok = 1\n" + "z = '" + "z" * 95 + "'"}]
    assert long_lines(cells) == ["cell 3, line 2: 101 characters"]
