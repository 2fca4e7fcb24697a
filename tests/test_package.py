"""Properties of the package as a whole."""

import subprocess
import sys


def test_the_machinery_does_not_need_nest_asyncio():
    # nest-asyncio is archived upstream and breaks on Python 3.12+; lesson 05 teaches it, nothing else may rely on it.
    code = ("import sys, gatewaylab.servers, gatewaylab.load, gatewaylab.plots, gatewaylab.demos, gatewaylab.grading, "
            "gatewaylab.progress, gatewaylab.checks, gatewaylab.build, gatewaylab.grade, gatewaylab.wsgi, "
            "gatewaylab.probe, gatewaylab.preflight\n"
            "from gatewaylab.load import load\n"
            "print('nest_asyncio' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_importing_the_package_is_cheap():
    done = subprocess.run([sys.executable, "-c", "import sys, gatewaylab; print('matplotlib' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", "import gatewaylab must not import its heavy modules"


def _imported_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(n for n in {names!r} if n in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


HEAVY = ("httpx", "ipywidgets", "matplotlib")


def test_the_layers_import_one_way():
    # grading imports progress to record results; progress must not import grading back (nor the lesson modules).
    assert _imported_after("import gatewaylab.progress\ngatewaylab.progress.dashboard()",
                           ("gatewaylab.grading", "gatewaylab.checks.l00_welcome", *HEAVY)) == []
    # The build and the grader of a class read points from source: no check module, no heavy library.
    assert _imported_after("import gatewaylab.build, gatewaylab.grade",
                           ("gatewaylab.checks.l02_wsgi", *HEAVY)) == []
    # Looking up an exercise loads the lesson modules, which is what a check cell needs.
    assert _imported_after("from gatewaylab.grading import get_exercise\nget_exercise('02.1')",
                           ("gatewaylab.checks.l02_wsgi", "httpx")) == ["gatewaylab.checks.l02_wsgi", "httpx"]
