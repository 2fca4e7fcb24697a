"""Print the links that open this course on Binder, or pull it into a JupyterHub with nbgitpuller.

    python -m gatewaylab.binder                          # for the current git remote and branch
    python -m gatewaylab.binder --hub https://hub.example.edu

The links are made from `git remote get-url origin`, because every fork of the course lives at its own address.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from urllib.parse import quote, urlencode

START_NOTEBOOK = "notebooks/00_welcome.ipynb"


def github_repo(remote_url: str) -> tuple[str, str]:
    """('owner', 'name') from a GitHub remote URL, https or ssh form."""
    match = re.search(r"github\.com[:/]+([^/]+)/([^/]+?)(?:\.git)?/?$", remote_url.strip())
    if not match:
        raise ValueError(f"not a GitHub remote: {remote_url!r} (Binder's gh/ links need a GitHub repository)")
    return match.group(1), match.group(2)


def binder_link(owner: str, name: str, branch: str) -> str:
    return f"https://mybinder.org/v2/gh/{owner}/{name}/{quote(branch, safe='')}?urlpath=" + quote(
        f"lab/tree/{START_NOTEBOOK}", safe="")


def nbgitpuller_link(hub: str, remote_url: str, name: str, branch: str) -> str:
    query = urlencode({"repo": remote_url, "branch": branch, "urlpath": f"lab/tree/{name}/{START_NOTEBOOK}"})
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remote", default="origin", help="git remote to link to (default: origin)")
    parser.add_argument("--branch", help="branch (default: the current one)")
    parser.add_argument("--hub", default="https://YOUR-JUPYTERHUB", help="your JupyterHub's address, for nbgitpuller")
    args = parser.parse_args(argv)
    try:
        remote_url = _git("remote", "get-url", args.remote)
        branch = args.branch or _git("branch", "--show-current")
        owner, name = github_repo(remote_url)
    except (subprocess.CalledProcessError, ValueError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"cannot make the links: {detail}", file=sys.stderr)
        return 1
    https_url = f"https://github.com/{owner}/{name}"
    print(f"Binder:      {binder_link(owner, name, branch)}")
    print(f"nbgitpuller: {nbgitpuller_link(args.hub, https_url, name, branch)}")
    print(f"README badge: [![Binder](https://mybinder.org/badge_logo.svg)]({binder_link(owner, name, branch)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
