"""Figures: training curves, confusion matrix. All saved atomically as PNG (or SVG by suffix)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnscope.base.errors import OutputError
from cnnscope.base.fileio import atomic_write
from cnnscope.base.jupyter import in_ipython
from cnnscope.plots.backend import figure_png, new_figure
from cnnscope.plots.figures import MIN_PT, save_figure
from cnnscope.plots.text import lines_inches, text_inches, wrap_inches

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


def _legend_inches(labels: Sequence[str]) -> float:
    """The width of a frameless legend of these labels at MIN_PT: the widest label, its line sample and gaps."""
    return max(text_inches(label, MIN_PT) for label in labels) + 0.5


def _panels(fig: Figure, widths: list[float], height: float, left: float, bottom: float, gap: float) -> list[Any]:
    """Axes side by side, `widths` inches wide and `height` high, from `left`, `bottom` inches, `gap` apart."""
    W, H = fig.get_size_inches()
    x = np.cumsum([left] + [w + gap for w in widths[:-1]])
    return [fig.add_axes([x0 / W, bottom / H, w / W, height / H]) for x0, w in zip(x, widths, strict=True)]


def curves_figure(history: dict[str, Any]) -> Figure:
    """Loss and accuracy (train vs validation) per epoch, and the learning rate per step.

    The loss panel compares like with like: the training batches' plain cross-entropy against the validation
    cross-entropy (solid); the training objective, which adds label smoothing and the penalty, is dashed. Laid out
    in inches: the legends (at MIN_PT) sit under their panels, each panel as wide as its legend needs.
    """
    epochs = history.get("epoch", [])
    ms = 3 if len(epochs) > 1 else 6  # one epoch is one point per curve: drawn large enough to see
    losses = _loss_lines(history)
    accuracies = ["train (during the epoch)", val_name(history)]
    widths = [max(3.6, _legend_inches([label for _, _, label in losses])), max(3.6, _legend_inches(accuracies)), 3.6]
    panel_h, under = 2.8, 0.55  # under a panel: its tick labels and axis label, then the legend
    bottom = under + lines_inches(len(losses), MIN_PT) + 0.15
    fig = new_figure(figsize=(0.7 + sum(widths) + 2 * 0.75 + 0.2, 0.45 + panel_h + bottom))
    axes = _panels(fig, widths, panel_h, 0.7, bottom, 0.75)
    for key, style, label in losses:
        axes[0].plot(epochs, history.get(key, []), style, ms=ms, label=label)
    for key, label in zip(("accuracy", "val_accuracy"), accuracies, strict=True):
        axes[1].plot(epochs, history.get(key, []), "o-", ms=ms, label=label)
    for ax, title in ((axes[0], "Loss"), (axes[1], "Accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=MIN_PT, loc="upper left", bbox_to_anchor=(0, -under / panel_h), borderaxespad=0,
                  frameon=False)
    if history.get("val_accuracy"):
        best = int(np.argmax(history["val_accuracy"]))
        axes[1].annotate(f"{history['val_accuracy'][best]:.4f}", (epochs[best], history["val_accuracy"][best]),
                         textcoords="offset points", xytext=(0, -14), ha="center", fontsize=MIN_PT)
    _lr_panel(axes[2], history.get("lr", []))
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
    """Training callback: rewrite the curves picture (`name`, inside the run directory) after every epoch (what
    train(plot=True) adds, with the run's own file name).

    A failed write (disk full) is a warning: the checkpoint, already saved, is what matters.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, entry: Any) -> None:
        path = Path(entry.run_dir) / self.name
        try:
            plot_curves(entry.history, path)
        except (OSError, OutputError) as exc:
            log.warning("%s not updated (%s)", path, getattr(exc, "strerror", None) or exc)


MATRIX_MAX_IN = 9.0  # a confusion matrix grows to this side before its cells drop their counts


@dataclass(frozen=True)
class MatrixCells:
    """How a (k, k) matrix is drawn: cell side in inches, whether each cell shows its count, and every `step`-th
    class named on the axes (1: all)."""

    cell: float
    counts: bool
    step: int


def matrix_cells(matrix: np.ndarray) -> MatrixCells:
    """Cells that hold a count of up to 4 digits (more when the matrix has larger counts) at MIN_PT; when k such
    cells pass MATRIX_MAX_IN, the matrix stays that size and its cells drop their counts."""
    k = max(len(matrix), 1)
    digits = max(4, len(str(int(np.max(matrix, initial=0)))))
    need = text_inches("8" * digits, MIN_PT) + 0.1
    if k * need <= MATRIX_MAX_IN:
        return MatrixCells(need, True, 1)
    cell = MATRIX_MAX_IN / k
    return MatrixCells(cell, False, math.ceil(lines_inches(1, MIN_PT) / cell))


@dataclass(frozen=True)
class MatrixBox:
    """A matrix panel in inches: the names' margin left of it, its side, the room right of it (a colour bar when
    the counts are dropped) and below it (the predicted names and the axis label)."""

    left: float
    side: float
    right: float
    bottom: float
    rotate: bool  # predicted names stand upright (too wide for a cell)

    @property
    def width(self) -> float:
        """The panel's whole width in inches: names, matrix and the room right of it."""
        return self.left + self.side + self.right


def matrix_box(x_names: Sequence[str], y_names: Sequence[str], cells: MatrixCells) -> MatrixBox:
    """The room a matrix with these names needs around it (names and axis labels at MIN_PT)."""
    rotate = max(text_inches(name, MIN_PT) for name in x_names) > cells.cell - 0.06
    names_h = max(text_inches(name, MIN_PT) for name in x_names) if rotate else lines_inches(1, MIN_PT)
    axis_label = lines_inches(1, MIN_PT) + 0.1
    left = max(text_inches(name, MIN_PT) for name in y_names) + 0.12 + axis_label
    return MatrixBox(left, len(x_names) * cells.cell, 0.25 if cells.counts else 1.05, names_h + 0.12 + axis_label,
                     rotate)


def label_matrix(ax: Any, x_names: Sequence[str], y_names: Sequence[str], cells: MatrixCells, rotate: bool) -> None:
    """Class names on both axes at MIN_PT: every `cells.step`-th one when rows are too thin for them all."""
    shown = np.arange(0, len(x_names), cells.step)
    ax.set_xticks(shown, [x_names[i] for i in shown], fontsize=MIN_PT, rotation=90 if rotate else 0)
    ax.set_yticks(shown, [y_names[i] for i in shown], fontsize=MIN_PT)
    ax.tick_params(length=2, pad=2)


def draw_counts(ax: Any, matrix: np.ndarray, dark: np.ndarray) -> None:
    """Each non-zero count in its cell at MIN_PT, white on the dark cells."""
    for i, j in zip(*np.nonzero(matrix), strict=True):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=MIN_PT,
                color="white" if dark[i, j] else "black")


def draw_confusion(ax: Any, matrix: np.ndarray, class_names: Sequence[str], cells: MatrixCells, rotate: bool) -> Any:
    """Counts coloured on a log scale (the few errors stay visible next to the large diagonal), rows true classes,
    columns predictions; returns the image (for a colour bar when the counts are dropped)."""
    logs = np.log1p(matrix)
    image = ax.imshow(logs, cmap="Blues", aspect="auto", interpolation="nearest")
    if cells.counts:
        draw_counts(ax, matrix, logs > logs.max() / 2)
    label_matrix(ax, class_names, class_names, cells, rotate)
    ax.set_xlabel("predicted", fontsize=MIN_PT)
    ax.set_ylabel("true", fontsize=MIN_PT)
    return image


def count_colorbar(fig: Figure, image: Any, rect: list[float], matrix: np.ndarray) -> None:
    """A colour bar in counts beside a matrix whose cells dropped them (ticks at 0, 1, 10, 100, ... on the log
    scale the cells are coloured by)."""
    bar = fig.colorbar(image, cax=fig.add_axes(rect))
    top = int(np.max(matrix, initial=0))
    counts = [0] + [10 ** p for p in range(len(str(max(top, 1))))]
    bar.set_ticks(np.log1p(counts), labels=[f"{c:,}" for c in counts])
    bar.ax.tick_params(labelsize=MIN_PT)
    bar.set_label("count", fontsize=MIN_PT)


def dropped_counts_note(k: int) -> str:
    """Why a matrix's cells show no counts."""
    return f"{k} classes: cells too small for readable counts, left out (the colour bar gives them)"


def confusion_title(matrix: np.ndarray) -> str:
    """'Confusion matrix — accuracy A on N images'."""
    total = int(matrix.sum())
    return f"Confusion matrix — accuracy {matrix.trace() / max(total, 1):.4f} on {total:,} images"


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Confusion matrix with counts (rows true classes, columns predictions), laid out in inches so every text is
    at least MIN_PT; with many classes the cells drop their counts and a colour bar gives them."""
    matrix = np.asarray(confusion)
    k = len(matrix)
    cells = matrix_cells(matrix)
    box = matrix_box(class_names, class_names, cells)
    width = max(box.width + 0.1, 3.6)
    title = wrap_inches(confusion_title(matrix), 11, width - 0.2)
    note = [] if cells.counts else wrap_inches(dropped_counts_note(k), MIN_PT, width - 0.2)
    top = 0.15 + lines_inches(len(title), 11) + 0.1
    height = top + box.side + box.bottom + lines_inches(len(note), MIN_PT) + 0.1
    fig = new_figure(figsize=(width, height))
    x = (width - box.width) / 2 + box.left  # a small matrix sits centred under its title
    ax = fig.add_axes([x / width, (height - top - box.side) / height, box.side / width, box.side / height])
    image = draw_confusion(ax, matrix, class_names, cells, box.rotate)
    fig.text(0.5, 1 - 0.15 / height, "\n".join(title), fontsize=11, ha="center", va="top")
    if not cells.counts:
        x += box.side + 0.15
        count_colorbar(fig, image, [x / width, (height - top - box.side) / height, 0.15 / width, box.side / height],
                       matrix)
        fig.text(0.1 / width, 0.1 / height, "\n".join(note), fontsize=MIN_PT, color="#444444", va="bottom")
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

