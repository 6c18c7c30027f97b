"""Every notebook in notebooks/ runs top to bottom, headless, and is stored without outputs.

nbclient/ipykernel are not dependencies, so the code cells are executed in order with ``exec`` in one shared
namespace, the way a kernel would run them, with the notebook's folder as working directory and matplotlib on
the Agg backend (no window, and the notebooks write no files). Notebooks must therefore be plain Python: no
``%magics`` or ``!shell`` lines. They work on tiny synthetic data, so this runs in seconds.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIME_BUDGET_S = 120  # each notebook is meant to run in well under 30 s on a laptop CPU; this guards against drift


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _numbered(source: str) -> str:
    return "\n".join(f"{number:4d} | {line}" for number, line in enumerate(source.splitlines(), 1))


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_clean(path: Path):
    notebook = _load(path)
    assert notebook.get("nbformat") == 4, f"{path.name}: expected nbformat 4, got {notebook.get('nbformat')}"
    dirty = [
        number
        for number, cell in enumerate(notebook["cells"], 1)
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} are stored with outputs or execution counts; clear them before committing "
        f"(Jupyter: 'Clear All Outputs', or `jupyter nbconvert --clear-output --inplace {path.name}`)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(path.parent)
    code_cells = [
        (number, _source(cell)) for number, cell in enumerate(_load(path)["cells"], 1) if cell["cell_type"] == "code"
    ]
    assert code_cells, f"{path.name} has no code cells"

    namespace: dict = {"__name__": "__main__"}
    start = time.perf_counter()
    failure = None
    try:
        for number, source in code_cells:
            try:
                exec(compile(source, f"{path.name} [cell {number}]", "exec"), namespace)
            except Exception:
                failure = (
                    f"{path.name}: cell {number} failed\n{traceback.format_exc()}\n"
                    f"--- source of cell {number} ---\n{_numbered(source)}"
                )
                break
    finally:
        plt.close("all")
    if failure is not None:  # outside the except block, so the report is not a chain of two exceptions
        pytest.fail(failure, pytrace=False)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BUDGET_S, f"{path.name} took {elapsed:.1f} s (budget {TIME_BUDGET_S} s): keep it tiny"
