"""At home in Jupyter (issue 24): rich display of runs, specs, data sets, view results and studies (every text
escaped), figures outside pyplot (shown once, none left open), progress bars that fall back quietly, and
`help(cnnscope)` / `cnnscope.<subpackage>` as a new user tries them."""

from __future__ import annotations

import dataclasses
import pydoc
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import cnnscope
from cnnscope.base import jupyter, progress
from cnnscope.views.common import ViewResult

HOSTILE = '<script>alert("x")</script>&'
HISTORY = {"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.8, 0.6],
           "val_accuracy": [0.7, 0.85], "lr": [1e-3] * 20}


def _no_raw_hostile(html: str) -> None:
    assert "<script>" not in html and "&lt;script&gt;" in html


# --- rich display --------------------------------------------------------------------------------------------------
def test_a_run_shows_its_model_data_accuracy_epochs_and_curves(trained_run, tmp_path):
    strange = tmp_path / f"run {HOSTILE}"
    shutil.copytree(trained_run, strange)
    run = cnnscope.load_run(strange)
    html = run._repr_html_()
    _no_raw_hostile(html)
    assert "conv 6-12-16 · dense 24 → 10 classes" in html and "mnist" in html
    assert f"{100 * run.metrics['test_accuracy']:.2f} %" in html and "4 of 4 (completed)" in html
    assert html.count('<img src="data:image/png;base64,') == 1  # the curves
    text = repr(run)
    assert "\n" not in text and len(text) < 200 + len(str(strange)) and "test accuracy" in text and "4 epochs" in text


def test_a_model_spec_shows_its_summary_as_an_html_table(tiny_spec):
    html = tiny_spec._repr_html_()
    rows = cnnscope.model.summary.summary_rows(tiny_spec)
    assert html.count("<tr>") == len(rows) and all(f"<td>{row[0]}</td>" in html for row in rows[1:])
    assert f"Total params: {tiny_spec.total_params:,}" in html
    assert repr(tiny_spec) == (f"ModelSpec(conv 6-12-16 · dense 24 → 10 classes, input 1×28×28, "
                               f"{tiny_spec.total_params:,} params)")
    text = cnnscope.summary_table(tiny_spec)  # a str that a notebook shows as the table, not with \n escapes
    printer = types.SimpleNamespace(shown=[], text=lambda s: printer.shown.append(s))
    text._repr_pretty_(printer, False)
    assert isinstance(text, str) and printer.shown == [str(text)] and "\n" in text


def test_a_dataset_shows_sizes_classes_with_counts_and_a_strip_per_class(data_dir):
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir, val_size=100)
    ds = dataclasses.replace(ds, class_names=(HOSTILE, *ds.class_names[1:]))
    html = ds._repr_html_()
    _no_raw_hostile(html)
    counts = np.bincount(ds.test_y, minlength=10)
    assert f"train {len(ds.train_y):,} · val 100 · test {len(ds.test_y):,}" in html
    assert f'<td style="text-align: right">{counts[3]:,}</td>' in html
    assert html.count('<img src="data:image/png;base64,') == 10  # one strip per class
    assert repr(ds) == f"Dataset('mnist': train {len(ds.train_y):,}, val 100, test {len(ds.test_y):,} images of " \
                       f"1×28×28, 10 classes)"


def test_a_view_result_shows_its_figures_inline_and_its_notes(tmp_path):
    png = tmp_path / "a.png"
    cnnscope.plots.save_figure_as(cnnscope.plots.curves_figure(HISTORY), png, svg=True)
    result = ViewResult([png, png.with_suffix(".svg"), tmp_path / "gone.png"], {"layer": "x"}, [HOSTILE])
    html = result._repr_html_()
    _no_raw_hostile(html)
    assert html.count('<img src="data:image/png;base64,') == 1  # the SVG beside its PNG is listed, not shown twice
    assert "gone.png: cannot be read" in html and str(png.with_suffix(".svg")) in html
    assert repr(result) == "ViewResult(a.png, a.svg, gone.png, 1 note; data: layer)"


def test_a_study_shows_its_best_trial_and_the_results_table():
    from cnnscope.sweep.results import StudyResults

    rows = [{"number": n, "status": s, "value": v, "params": {"train.lr": lr}, "val_accuracy": v,
             "test_accuracy": None, "epochs": 2, "seconds": 1.5}
            for n, s, v, lr in [(0, "completed", 0.91, 0.01), (1, "failed", None, HOSTILE),
                                (2, "completed", 0.95, 0.1)]]
    study = StudyResults({"metric": "val_accuracy", "direction": "maximize", "best": 2, "trials": rows})
    html = study._repr_html_()
    _no_raw_hostile(html)
    assert "3 trials: 2 completed, 1 failed; best: trial 2" in html and "<td><b>0.95</b></td>" in html
    assert repr(study) == "StudyResults(val_accuracy maximize, 3 trials, 2 completed, best: trial 2)"
    assert study == dict(study)  # still the plain dict that code and --json read


# --- figures outside pyplot ----------------------------------------------------------------------------------------
def test_library_figures_never_load_pyplot(tmp_path):
    code = ("import sys\nfrom cnnscope.plots import confusion_figure, curves_figure, save_figure_as\n"
            f"save_figure_as(curves_figure({HISTORY!r}), {str(tmp_path / 'c.png')!r})\n"
            "confusion_figure([[3, 1], [0, 4]], ['a', 'b']).canvas.draw()\n"
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] and (tmp_path / "c.png").is_file()


def test_a_hundred_figures_in_a_loop_leave_none_open_and_no_warning():
    import matplotlib.pyplot as plt

    from cnnscope.inspect import Filters
    from cnnscope.plots import confusion_figure, curves_figure, filters_figure

    rng = np.random.default_rng(0)
    kernels = Filters("Conv2D_1", rng.normal(size=(4, 3, 3)).astype(np.float32), np.zeros(4, np.float32), 1, "kernel")
    before = plt.get_fignums()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "More than 20 figures have been opened" would fail here
        for i in range(100):  # 100 library figures, 25 of them the curves (more than pyplot's 20)
            (curves_figure(HISTORY) if i % 4 == 0 else confusion_figure([[3, 1], [0, 4]], ["a", "b"]) if i % 2
             else filters_figure(kernels))
    assert plt.get_fignums() == before


def test_a_notebook_shows_a_bare_figure_once_as_a_picture():
    from matplotlib.figure import Figure

    from cnnscope.plots.backend import show_figures_inline

    class Formatter:
        def __init__(self) -> None:
            self.types = {}

        def lookup_by_type(self, cls):
            return self.types[cls]

        def for_type(self, cls, fn):
            self.types[cls] = fn

    shell = types.SimpleNamespace(display_formatter=types.SimpleNamespace(
        formatters={"image/png": Formatter(), "image/svg+xml": Formatter()}))
    show_figures_inline(shell)
    png = shell.display_formatter.formatters["image/png"].types[Figure]
    assert png(cnnscope.plots.curves_figure(HISTORY)).startswith(b"\x89PNG")
    chosen = shell.display_formatter.formatters["image/svg+xml"]
    shell.display_formatter.formatters["image/png"] = Formatter()
    chosen.for_type(Figure, lambda fig: "<svg/>")  # the user chose SVG (%config InlineBackend): kept
    show_figures_inline(shell)
    assert shell.display_formatter.formatters["image/png"].types == {}


# --- progress bars -------------------------------------------------------------------------------------------------
@pytest.fixture
def in_a_kernel(monkeypatch):
    monkeypatch.setattr(jupyter, "ipython_shell", lambda: types.SimpleNamespace(kernel=object()))


def test_in_a_notebook_with_ipywidgets_bars_are_widgets(in_a_kernel):
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm

    assert progress.bar_class() is tqdm and progress.shows_bars()


def test_in_a_notebook_without_ipywidgets_bars_are_text_without_a_warning(in_a_kernel, monkeypatch, capsys):
    from tqdm.std import tqdm

    real = jupyter.importlib.util.find_spec
    monkeypatch.setattr(jupyter.importlib.util, "find_spec", lambda name: None if name == "ipywidgets" else real(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto's "IProgress not found" would fail here
        assert progress.bar_class() is tqdm
        bar = progress.progress_bar(range(3), desc="epoch 1/1")  # shown: a notebook's stderr is no terminal
        assert not bar.disable and list(bar) == [0, 1, 2]
    assert "epoch 1/1" in capsys.readouterr().err


def test_outside_a_notebook_bars_are_drawn_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False, write=lambda s: None))
    assert not progress.shows_bars() and progress.progress_bar(range(2)).disable
    assert not progress.progress_bar(range(2), show=True).disable


# --- help and submodules -------------------------------------------------------------------------------------------
def test_help_starts_with_how_to_start():
    text = pydoc.render_doc(cnnscope, renderer=pydoc.plaintext)
    description = text.split("DESCRIPTION\n", 1)[1].splitlines()
    assert description[0].strip().startswith("How to start")
    assert [line.split("=")[0].strip() for line in description[1:4]] == ["ds", "spec", "run"]
    assert "cnnscope.views.activations.activations(" in description[4]
    assert "PEP 562" not in text.split("PACKAGE CONTENTS")[0]


def test_subpackages_are_attributes_after_a_plain_import_and_load_lazily():
    code = ("import sys, cnnscope\n"
            "lazy = 'cnnscope.inspect' not in sys.modules and 'cnnscope.views' not in sys.modules\n"
            "print(lazy, callable(cnnscope.inspect.activations), callable(cnnscope.views.activations.activations),"
            " callable(cnnscope.plots.curves_figure), callable(cnnscope.train))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"] * 5


def test_no_subpackage_shadows_a_public_name():
    for name in cnnscope.SUBMODULES:  # every one loaded: the import system sets each as an attribute
        assert isinstance(getattr(cnnscope, name), types.ModuleType), name
    assert not set(cnnscope.SUBMODULES) & set(cnnscope.__all__)
    assert isinstance(cnnscope.train, types.FunctionType) and cnnscope.train.__module__ == "cnnscope.training.api"
    root = Path(cnnscope.__file__).parent
    found = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()} | {
        p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert set(cnnscope.SUBMODULES) == found
    for path in (root / "views").glob("*.py"):
        if path.stem != "__init__":
            assert isinstance(getattr(cnnscope.views, path.stem), types.ModuleType), path.stem
    with pytest.raises(AttributeError, match="'cnnscope.views' has no attribute 'activation'"):
        cnnscope.views.activation  # noqa: B018


def test_the_dev_extra_holds_the_notebook_extra():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    extras = extras["project"]["optional-dependencies"]
    assert {"ipywidgets", "anywidget", "nbclient"} <= {req.split(">")[0] for req in extras["notebook"]}
    assert set(extras["notebook"]) <= set(extras["dev"])
