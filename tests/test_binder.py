"""Binder: the links, and a fresh virtual environment built from binder/requirements.txt runs notebook 00."""

import os
import subprocess
import sys
import venv
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from gatewaylab import binder

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("remote", ["https://github.com/ada/gateway-course.git", "git@github.com:ada/gateway-course.git",
                                    "https://github.com/ada/gateway-course"])
def test_links_are_made_from_the_remote(remote):
    owner, name = binder.github_repo(remote)
    assert (owner, name) == ("ada", "gateway-course")
    link = binder.binder_link(owner, name, "main")
    assert link == ("https://mybinder.org/v2/gh/ada/gateway-course/main?urlpath="
                    "lab%2Ftree%2Fnotebooks%2F00_welcome.ipynb")
    pull = urlparse(binder.nbgitpuller_link("https://hub.example.edu/", remote, name, "main"))
    assert pull.netloc == "hub.example.edu" and pull.path == "/hub/user-redirect/git-pull"
    assert parse_qs(pull.query) == {"repo": [remote], "branch": ["main"],
                                    "urlpath": ["lab/tree/gateway-course/notebooks/00_welcome.ipynb"]}


def test_a_remote_that_is_not_github_is_refused_plainly():
    with pytest.raises(ValueError, match="not a GitHub remote"):
        binder.github_repo("https://gitlab.com/ada/course.git")


def test_the_command_prints_both_links(tmp_path):
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@github.com:ada/gw.git"], check=True)
    out = subprocess.run([sys.executable, "-m", "gatewaylab.binder"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert "https://mybinder.org/v2/gh/ada/gw/main?urlpath=lab%2Ftree%2Fnotebooks%2F00_welcome.ipynb" in out
    assert "/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fada%2Fgw" in out


def test_binder_pins_python_311():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


@pytest.mark.slow
def test_binder_requirements_install_into_a_fresh_venv_and_run_notebook_00(tmp_path):
    env_dir = tmp_path / "binder-env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # As repo2docker does: pip runs from the repository's root on binder/requirements.txt.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"], cwd=ROOT, check=True,
                   timeout=900)
    executed = tmp_path / "00_executed.ipynb"
    subprocess.run([env_dir / "bin" / "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
                    "--output", str(executed), "notebooks/00_welcome.ipynb"],
                   cwd=ROOT, check=True, timeout=900,
                   env={**os.environ, "GATEWAYLAB_PROGRESS": str(tmp_path / "progress.json"),
                        "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"})
    assert executed.exists()
