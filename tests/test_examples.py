"""The example notebooks (examples/*.ipynb, the article series redone with cnnscope) run from top to bottom in a
Jupyter kernel on a small setting (CNNSCOPE_EXAMPLE_LIMIT=2000 real MNIST images), are committed without outputs,
and are linked from the README (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
LIMIT = "2000"
# What a notebook must never show: tqdm.auto's warning, pyplot's open-figure warning, a figure shown as its repr
# (no picture), a Python warning or traceback.
NEVER = ("IProgress not found", "More than 20 figures", "<Figure size", "Warning:", "Traceback")


def test_there_are_notebooks_committed_without_outputs_and_linked_from_the_readme():
    assert len(NOTEBOOKS) >= 6
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code), path.name
        assert f"examples/{path.name}" in readme, f"README.md does not link {path.name}"


def _texts(output: dict) -> list[str]:
    if output["output_type"] == "stream":
        return [output["text"]]
    if output["output_type"] == "error":
        return ["Traceback"]
    return [output["data"].get("text/plain", "")] if "image/png" not in output.get("data", {}) else []


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_from_top_to_bottom(path, real_data_dir, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
    monkeypatch.setenv("CNNSCOPE_EXAMPLE_LIMIT", LIMIT)  # the kernel inherits this process's environment
    monkeypatch.setenv("CNNSCOPE_DATA_DIR", str(real_data_dir))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # CellExecutionError (the cell and its traceback) on any error
    shown = [text for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
             for text in _texts(out)]
    for bad in NEVER:
        assert not any(bad in text for text in shown), (bad, [t for t in shown if bad in t][:2])
    last = notebook.cells[-1]
    assert any(out["output_type"] in ("execute_result", "display_data") for out in last.outputs), "no result"


@pytest.mark.notebooks
def test_in_a_kernel_a_returned_figure_shows_once_and_a_loop_leaves_none_open(tmp_path):
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
    history = {"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.8, 0.6],
               "val_accuracy": [0.7, 0.85], "lr": [1e-3] * 4}
    cells = [f"from cnnscope.plots import curves_figure\ncurves_figure({history!r})",
             "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",  # the inline backend now runs
             f"curves_figure({history!r})",
             f"for _ in range(25):\n    curves_figure({history!r})\nplt.get_fignums()"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    for shown in (outputs[0], outputs[2]):  # once, as a picture, before and after pyplot started
        assert [("image/png" in out.get("data", {})) for out in shown] == [True]
    assert [out["output_type"] for out in outputs[3]] == ["execute_result"]  # no warning, no figure
    assert outputs[3][0]["data"]["text/plain"] == "[]"
