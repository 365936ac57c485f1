"""Figure of what preprocessing does to a dataset: the per-pixel mean and deviation of the training pixels, what
a white pixel becomes at each position after preprocessing, and a few pictures per class before and after."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from cnnscope.base.errors import DataError
from cnnscope.inspect.datastats import class_examples, preprocessing_arrays
from cnnscope.plots.backend import new_figure

PANELS = (("mean", "per-pixel mean (0–255)", "magma"), ("scale", "deviation divided by (0–255)", "magma"),
          ("white", "a white pixel becomes", "magma"))


EXAMPLE_COLS = 10  # pictures per row of the before/after block (one per class for 10 classes)
CELL = 0.82  # inches per picture: a digit is readable from the back of a room at the default size


def _flat_panel(ax, values: np.ndarray, title: str) -> None:
    """A panel whose array holds one value: said in words instead of a flat colour square."""
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, f"{float(values.flat[0]):.4g}\nat every pixel", ha="center", va="center", fontsize=14,
            transform=ax.transAxes, color="#333333")


def _panel(fig: Figure, ax, values: np.ndarray, title: str, cmap: str) -> None:
    """One (H, W) array with its colour bar and its range in the title (log colours for a range over 100×); a
    colour (3, H, W) mean is drawn as the picture it is, other (C, H, W) arrays averaged over the channels; one
    value everywhere is written, not drawn."""
    if values.ndim == 3 and title.startswith("per-pixel mean") and values.shape[0] == 3:
        ax.imshow(np.clip(values.transpose(1, 2, 0), 0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_title(f"{title}\n{float(values.min()):.3g} … {float(values.max()):.3g}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if values.ndim == 3:
        values, title = values.mean(axis=0), f"{title}, channel mean"
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-6 * max(abs(high), 1.0):
        _flat_panel(ax, values, title)
        return
    norm = LogNorm(low, high) if low > 0 and high > 100 * low else None
    image = ax.imshow(values, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(f"{title}\n{low:.3g} … {high:.3g}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=9)


def _after_scale(prepared: np.ndarray) -> tuple[str, float, float, str]:
    """(colour map, low, high, words) shared by every preprocessed picture: grey from 0 when no value is negative
    (the pictures look like the raw ones), else blue/red around zero."""
    low, high = float(prepared.min()), float(prepared.max())
    if low >= 0:
        top = high if high > 0 else 1.0
        return "gray", 0.0, top, f"after\n0 … {top:.3g}"
    # A few far-out pixels (a speck of ink on a rarely inked border) would leave every picture pale: the scale
    # ends at the 99th percentile of |value| and the rest share the end colours.
    bound = max(float(np.percentile(np.abs(prepared), 99)), 1e-6)
    return "RdBu_r", -bound, bound, f"after\n±{bound:.3g} (99th pct)\nblue −, red +"


def _examples(fig: Figure, grid, raw: np.ndarray, prepared: np.ndarray, labels: np.ndarray,
              class_names: Sequence[str]) -> None:
    """Raw pictures ('before', 0–255) above their preprocessed versions ('after', one scale for all), EXAMPLE_COLS
    per row, each row labelled."""
    cmap, low, high, words = _after_scale(prepared)
    cols = min(len(raw), EXAMPLE_COLS)
    for i in range(len(raw)):
        block, c = divmod(i, cols)
        top, bottom = fig.add_subplot(grid[2 * block, c]), fig.add_subplot(grid[2 * block + 1, c])
        picture = raw[i][..., 0] if raw[i].ndim == 3 and raw[i].shape[-1] == 1 else raw[i]
        top.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")  # cmap unused for colour
        top.set_title(str(class_names[int(labels[i])]), fontsize=10)
        if prepared[i].ndim == 3:  # colour (C, H, W): low..high mapped to 0..1 per channel
            shown = np.clip((prepared[i].transpose(1, 2, 0) - low) / (high - low), 0, 1)
            bottom.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap=cmap, vmin=0, vmax=1,
                          interpolation="nearest")
        else:
            bottom.imshow(prepared[i], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if c == 0:
            top.set_ylabel("before\n0 … 255", fontsize=10, rotation=0, ha="right", va="center", labelpad=8)
            bottom.set_ylabel(words, fontsize=10, rotation=0, ha="right", va="center", labelpad=8)


def preprocessing_figure(arrays: dict[str, np.ndarray], kind: str, examples: np.ndarray | None = None,
                         prepared: np.ndarray | None = None, labels: np.ndarray | None = None,
                         class_names: Sequence[str] = (), title: str | None = None) -> Figure:
    """Panels of `arrays` (inspect.datastats.preprocessing_arrays: mean, scale, white), then raw `examples`
    (k, H, W) or (k, H, W, 3) above their `prepared` versions (k, H, W) or (k, C, H, W) labelled by `labels`."""
    missing = [key for key, _, _ in PANELS if key not in arrays]
    if missing:
        raise DataError(f"preprocessing_figure needs arrays {', '.join(missing)}; use preprocessing_arrays()")
    k = 0 if examples is None else len(examples)
    if k and (prepared is None or labels is None or len(prepared) != k or len(labels) != k):
        raise DataError(f"preprocessing_figure: {k} examples need as many prepared images and labels")
    cols = min(max(k, 1), EXAMPLE_COLS)
    blocks = -(-k // cols) if k else 0
    panels_h, examples_h = 2.9, blocks * 2 * (CELL + 0.3)
    fig = new_figure(figsize=(max(9.0, 1.3 + CELL * 1.12 * cols), panels_h + examples_h + 0.9))
    outer = fig.add_gridspec(2 if k else 1, 1, height_ratios=[panels_h, examples_h] if k else [1], hspace=0.12,
                             left=0.14, right=0.93, top=1 - 0.8 / (panels_h + examples_h + 0.9), bottom=0.02)
    top = outer[0].subgridspec(1, len(PANELS), wspace=0.45)
    for i, (key, label, cmap) in enumerate(PANELS):
        _panel(fig, fig.add_subplot(top[0, i]), np.asarray(arrays[key]), label, cmap)
    if k:
        _examples(fig, outer[1].subgridspec(2 * blocks, cols, hspace=0.35, wspace=0.12), np.asarray(examples),
                  np.asarray(prepared), np.asarray(labels),
                  class_names or [str(c) for c in range(int(np.max(labels)) + 1)])
    fig.suptitle(title or f"preprocessing: {kind}", fontsize=13, fontweight="bold")
    return fig


def preprocessing_section_figure(preprocessor, train_raw: np.ndarray, images: np.ndarray, labels: np.ndarray,
                                 class_names: Sequence[str], per_class: int = 1, title: str | None = None) -> Figure:
    """The whole preprocessing figure in one call (report, `cnnscope data`): statistics from raw training images
    `train_raw`, then the first `per_class` raw `images` of each class (by `labels`) before and after."""
    picks = class_examples(labels, len(class_names), per_class)
    order = np.argsort([rank for c in range(len(class_names))  # the first of each class, then the second, …
                        for rank in range(int((np.asarray(labels)[picks] == c).sum()))], kind="stable")
    picks = picks[order]
    return preprocessing_figure(preprocessing_arrays(preprocessor, train_raw), preprocessor.kind, images[picks],
                                _model_view(preprocessor(images[picks])), np.asarray(labels)[picks], class_names,
                                title)


def _model_view(x: np.ndarray) -> np.ndarray:
    """Preprocessed (k, C, H, W) -> (k, H, W) for one channel, kept (k, C, H, W) for colour."""
    return x[:, 0] if x.shape[1] == 1 else x
