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
