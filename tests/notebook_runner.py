"""Execute a notebook headless, the way the test suite and the class grader do."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, *, timeout: int = 300) -> nbformat.NotebookNode:
    """Run every cell top to bottom in a fresh kernel started in the notebook's folder; raise on the first error."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def output_text(cell) -> str:
    """Everything a code cell showed, as text (plain-text parts of display data included)."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        data = output.get("data", {})
        parts.append(data.get("text/plain", ""))
        parts.append(data.get("text/html", ""))
    return "\n".join(parts)
