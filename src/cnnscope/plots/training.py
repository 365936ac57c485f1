"""Figures: training curves, confusion matrix. All saved atomically as PNG (or SVG by suffix)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnscope.base.errors import OutputError
from cnnscope.base.fileio import atomic_write
from cnnscope.base.jupyter import in_ipython
from cnnscope.plots.backend import figure_png, new_figure
from cnnscope.plots.figures import save_figure
from cnnscope.runs.layout import CURVES

log = logging.getLogger("cnnscope")


def val_name(history: dict[str, Any]) -> str:
    """What the curves call the val_* figures: the images they were measured on (history's val_source)."""
    source = history.get("val_source")
    return {"validation": "validation (held out of training)", "test": "test set (no validation split)"}.get(
        source, "validation (source not recorded)")


def _loss_lines(history: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, style, label) of the loss curves: the data losses (comparable) solid, the objective dashed.

    Runs trained before the data losses were recorded show their objective and validation loss, labelled so.
    """
    source = val_name(history)
    epochs = len(history.get("epoch", []))
    if all(len(history.get(key, [])) == epochs for key in ("data_loss", "val_data_loss")):
        return [("data_loss", "o-", "train: data loss, during the epoch"),
                ("val_data_loss", "o-", f"{source}: data loss, end of epoch"),
                ("loss", "--", "train objective: + label smoothing, L2 (if set)")]
    return [("loss", "o--", "train objective: data loss + label smoothing, L2 (if set)"),
            ("val_loss", "o-", f"{source}: data loss + L2 (if set)")]


def curves_figure(history: dict[str, Any]) -> Figure:
    """Loss and accuracy (train vs validation) per epoch, and the learning rate per step.

    The loss panel compares like with like: the training batches' plain cross-entropy against the validation
    cross-entropy (solid); the training objective, which adds label smoothing and the penalty, is dashed.
    """
    epochs = history.get("epoch", [])
    ms = 3 if len(epochs) > 1 else 6  # one epoch is one point per curve: drawn large enough to see
    fig = new_figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for key, style, label in _loss_lines(history):
        axes[0].plot(epochs, history.get(key, []), style, ms=ms, label=label)
    axes[1].plot(epochs, history.get("accuracy", []), "o-", ms=ms, label="train (during the epoch)")
    axes[1].plot(epochs, history.get("val_accuracy", []), "o-", ms=ms, label=val_name(history))
    for ax, title in ((axes[0], "Loss"), (axes[1], "Accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if history.get("val_accuracy"):
        best = int(np.argmax(history["val_accuracy"]))
        axes[1].annotate(f"{history['val_accuracy'][best]:.4f}", (epochs[best], history["val_accuracy"][best]),
                         textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    _lr_panel(axes[2], history.get("lr", []))
    fig.tight_layout()
    return fig


def _lr_panel(ax: Any, lr: list[float]) -> None:
    """The learning rate of every step (log scale when it spans more than a factor 20)."""
    ax.plot(np.arange(len(lr)), lr)
    ax.set_title("Learning rate")
    ax.set_xlabel("step")
    if lr and min(lr) > 0 and max(lr) / min(lr) > 20:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def plot_curves(history: dict[str, Any], path: str | Path) -> Path:
    """Draw the training curves and save them to `path` (see save_figure)."""
    return save_figure(curves_figure(history), path)


class CurvesFile:
    """Training callback: rewrite the run's curves.png after every epoch (what train(plot=True) adds).

    A failed write (disk full) is a warning: the checkpoint, already saved, is what matters.
    """

    def __call__(self, entry: Any) -> None:
        path = Path(entry.run_dir) / CURVES
        try:
            plot_curves(entry.history, path)
        except (OSError, OutputError) as exc:
            log.warning("%s not updated (%s)", path, getattr(exc, "strerror", None) or exc)


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Confusion matrix with counts; rows are true classes, columns predictions."""
    matrix = np.asarray(confusion)
    k = len(matrix)
    fig = new_figure(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax = fig.subplots()
    # Log colour scale so the few errors are visible next to the large diagonal.
    ax.imshow(np.log1p(matrix), cmap="Blues")
    threshold = np.log1p(matrix).max() / 2
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if np.log1p(matrix[i, j]) > threshold else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right"
                  if max(map(len, class_names)) > 2 else "center")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = matrix.sum()
    ax.set_title(f"Confusion matrix — accuracy {matrix.trace() / max(total, 1):.4f} on {total:,} images")
    fig.tight_layout()
    return fig


class LivePlot:
    """A training callback that redraws the curves after every epoch, in place, in a Jupyter cell.

    `cnnscope.train(spec, ds, config, callbacks=[LivePlot()])`. Outside IPython nothing can be shown: it says so
    once, when created, and keeps the latest picture as PNG bytes in `.png` (and writes it to `path` if given).

    Args:
        path: also write each redraw to this file (atomically).
        display: show(png_bytes, first) -> None, for other front ends; default: IPython's display with an
            update of the same output.
    """

    def __init__(self, path: str | Path | None = None, display: Any = None) -> None:
        self.path = Path(path) if path is not None else None
        self.png: bytes | None = None
        self.frames = 0
        self._display = display
        self._handle: Any = None
        if display is None and not in_ipython():
            instead = (f"and written to {self.path} after every epoch" if self.path is not None
                       else "(LivePlot(path=...) also writes it to a file)")
            log.warning("LivePlot: not in a notebook, so nothing is shown; the latest curves are kept as PNG bytes "
                        "in its .png %s", instead)

    def __call__(self, entry: Any) -> None:
        self.png = figure_png(curves_figure(entry.history), dpi=90, tight=False)
        self.frames += 1
        if self.path is not None:
            atomic_write(self.path, lambda tmp: tmp.write_bytes(self.png))
        if self._display is not None:
            self._display(self.png, self.frames == 1)
        else:
            self._show_in_ipython()

    def _show_in_ipython(self) -> None:
        if not in_ipython():
            return
        from IPython.display import Image, display

        image = Image(data=self.png, format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

