"""Figures: training curves, confusion matrix. All saved atomically as PNG (or SVG by suffix)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..fileio import atomic_write
from . import backend  # noqa: F401  (Agg, except in a notebook)
from .figures import save_figure


def curves_figure(history: dict[str, Any]) -> Figure:
    """Loss and accuracy (train vs validation) per epoch, and the learning rate per step."""
    epochs = history.get("epoch", [])
    source = history.get("val_source", "validation")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history.get(key, []), "o-", ms=3, label="train")
        ax.plot(epochs, history.get(f"val_{key}", []), "o-", ms=3, label=source)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if history.get("val_accuracy"):
        best = int(np.argmax(history["val_accuracy"]))
        axes[1].annotate(f"{history['val_accuracy'][best]:.4f}", (epochs[best], history["val_accuracy"][best]),
                         textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    lr = history.get("lr", [])
    axes[2].plot(np.arange(len(lr)), lr)
    axes[2].set_title("Learning rate")
    axes[2].set_xlabel("step")
    if lr and min(lr) > 0 and max(lr) / min(lr) > 20:
        axes[2].set_yscale("log")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_curves(history: dict[str, Any], path: str | Path) -> Path:
    """Draw the training curves and save them to `path` (see save_figure)."""
    return save_figure(curves_figure(history), path)


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Confusion matrix with counts; rows are true classes, columns predictions."""
    matrix = np.asarray(confusion)
    k = len(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
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

    `cnnscope.train(spec, ds, config, callbacks=[LivePlot()])`. Outside IPython nothing is shown; the latest
    picture is kept as PNG bytes in `.png` (and written to `path` if given).

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

    def __call__(self, log: Any) -> None:
        import io

        fig = curves_figure(log.history)
        buffer = io.BytesIO()
        try:
            fig.savefig(buffer, format="png", dpi=90)
        finally:
            plt.close(fig)
        self.png = buffer.getvalue()
        self.frames += 1
        if self.path is not None:
            atomic_write(self.path, lambda tmp: tmp.write_bytes(self.png))
        if self._display is not None:
            self._display(self.png, self.frames == 1)
        else:
            self._show_in_ipython()

    def _show_in_ipython(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:  # not in a notebook: nothing to show
            return
        if get_ipython() is None:
            return
        image = Image(data=self.png, format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
