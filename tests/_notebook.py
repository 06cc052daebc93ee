"""Running the notebooks headless in tests (papermill's parameters convention, with nbclient).

The notebooks are committed executed in their documented (full) setting, so that their figures show on
the repository page; the tests re-execute them in a tiny setting injected after the ``parameters`` cell.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


def with_parameters(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell after the one tagged ``parameters`` (papermill's convention)."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return nb


def execute(path: Path, values: dict, workdir: Path) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` with ``values`` injected, in ``workdir``; returns the executed notebook."""
    nb = with_parameters(nbformat.read(path, as_version=4), values)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def committed_run(path: Path) -> nbformat.NotebookNode:
    """The committed notebook, asserting it holds one complete, error-free run of its own parameters.

    Every code cell was executed, in order, by one kernel; no cell raised; no parameters were injected
    (the committed outputs are those of the documented setting); the figures are embedded as PNG.
    """
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", [])
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    return nb


def printed(nb: nbformat.NotebookNode) -> str:
    """All text the code cells printed (stdout streams and plain-text results)."""
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                out.append(o.text)
            elif "text/plain" in o.get("data", {}):
                out.append(o["data"]["text/plain"])
    return "".join(out)


def displayed_json(nb: nbformat.NotebookNode) -> dict:
    """The last ``application/json`` output of the notebook (its results, displayed by its last code cell)."""
    found = [o["data"]["application/json"] for c in nb.cells for o in c.get("outputs", []) if "application/json" in o.get("data", {})]
    assert found, "the notebook displays no application/json output"
    return dict(found[-1])
