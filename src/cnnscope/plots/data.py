"""Figure of what preprocessing does to a dataset: the per-pixel mean and deviation of the training pixels, what
a white pixel becomes at each position after preprocessing, and a few pictures per class before and after."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..errors import DataError
from . import backend  # noqa: F401  (Agg, except in a notebook)

PANELS = (("mean", "per-pixel mean (0–255)", "magma"), ("scale", "deviation divided by (0–255)", "magma"),
          ("white", "a white pixel becomes", "magma"))


def _panel(fig: Figure, ax, values: np.ndarray, title: str, cmap: str) -> None:
    """One (H, W) array with its colour bar and its range in the title (log colours for a range over 100×); a
    colour (3, H, W) mean is drawn as the picture it is, other (C, H, W) arrays averaged over the channels."""
    if values.ndim == 3 and title.startswith("per-pixel mean") and values.shape[0] == 3:
        ax.imshow(np.clip(values.transpose(1, 2, 0), 0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_title(f"{title}\n{float(values.min()):.3g} … {float(values.max()):.3g}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if values.ndim == 3:
        values, title = values.mean(axis=0), f"{title}, channel mean"
    low, high = float(values.min()), float(values.max())
    norm = LogNorm(low, high) if low > 0 and high > 100 * low else None
    image = ax.imshow(values, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(f"{title}\n{float(values.min()):.3g} … {float(values.max()):.3g}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=6)


def _examples(fig: Figure, grid, raw: np.ndarray, prepared: np.ndarray, labels: np.ndarray,
              class_names: Sequence[str]) -> None:
    """Raw pictures (top row) above their preprocessed versions (each on its own symmetric scale)."""
    for i in range(len(raw)):
        top, bottom = fig.add_subplot(grid[0, i]), fig.add_subplot(grid[1, i])
        picture = raw[i][..., 0] if raw[i].ndim == 3 and raw[i].shape[-1] == 1 else raw[i]
        top.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")  # cmap unused for colour
        top.set_title(str(class_names[int(labels[i])]), fontsize=7)
        bound = max(float(np.abs(prepared[i]).max()), 1e-6)
        if prepared[i].ndim == 3:  # colour (C, H, W): -bound..bound mapped to 0..1 per channel
            shown = np.clip((prepared[i].transpose(1, 2, 0) + bound) / (2 * bound), 0, 1)
            bottom.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="RdBu_r", vmin=0, vmax=1,
                          interpolation="nearest")
        else:
            bottom.imshow(prepared[i], cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        bottom.set_title(f"max {bound:.3g}", fontsize=6)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])


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
    cols = max(k, 1)
    fig = plt.figure(figsize=(max(8.0, 0.8 * cols), 3.0 + (1.8 if k else 0.0)))
    outer = fig.add_gridspec(2 if k else 1, 1, height_ratios=[3.0, 1.8] if k else [1], hspace=0.25)
    top = outer[0].subgridspec(1, len(PANELS), wspace=0.45)
    for i, (key, label, cmap) in enumerate(PANELS):
        _panel(fig, fig.add_subplot(top[0, i]), np.asarray(arrays[key]), label, cmap)
    if k:
        _examples(fig, outer[1].subgridspec(2, cols, hspace=0.45), np.asarray(examples), np.asarray(prepared),
                  np.asarray(labels), class_names or [str(c) for c in range(int(np.max(labels)) + 1)])
    fig.suptitle(title or f"preprocessing: {kind}", fontsize=10)
    return fig


def preprocessing_section_figure(preprocessor, train_raw: np.ndarray, images: np.ndarray, labels: np.ndarray,
                                 class_names: Sequence[str], per_class: int = 1, title: str | None = None) -> Figure:
    """The whole preprocessing figure in one call (report, `cnnscope data`): statistics from raw training images
    `train_raw`, then the first `per_class` raw `images` of each class (by `labels`) before and after."""
    from ..inspect.datastats import class_examples, preprocessing_arrays

    picks = class_examples(labels, len(class_names), per_class)
    return preprocessing_figure(preprocessing_arrays(preprocessor, train_raw), preprocessor.kind, images[picks],
                                _model_view(preprocessor(images[picks])), np.asarray(labels)[picks], class_names,
                                title)


def _model_view(x: np.ndarray) -> np.ndarray:
    """Preprocessed (k, C, H, W) -> (k, H, W) for one channel, kept (k, C, H, W) for colour."""
    return x[:, 0] if x.shape[1] == 1 else x
