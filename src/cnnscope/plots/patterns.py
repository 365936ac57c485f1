"""Figures of the input patterns that maximise a layer's maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnscope.base.errors import ConfigError
from cnnscope.base.imaging import pictures
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import get_cmap


def pattern_pixels(patterns: np.ndarray, preprocessor) -> np.ndarray:
    """Preprocessed patterns (k, H, W) or (k, C, H, W) back to raw pixel values (0..255), the run's preprocessing
    inverted, as pictures are drawn: (k, H, W) grey or (k, H, W, C) colour."""
    x = np.asarray(patterns, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    mean, scale = np.asarray(preprocessor.mean, np.float32), np.asarray(preprocessor.scale, np.float32)
    if mean.ndim == 2:  # one channel's per-pixel statistics (H, W)
        mean, scale = mean[None], scale[None]
    return pictures(np.clip(x * scale + mean, 0, 255))


def patterns_figure(images: np.ndarray, maps: Sequence[int], activation: Sequence[float], *, layer: str,
                    reference: Sequence[float] | None = None, cols: int = 8, cmap: str | None = "gray",
                    vmin: float = 0.0, vmax: float = 255.0, title: str | None = None,
                    subtitle: str | None = None, dead: Sequence[bool] | None = None) -> Figure:
    """A grid of patterns (k, H, W) grey (through `cmap`) or (k, H, W, 3) colour (pixels 0..255), each labelled
    with its map number and the activation it reached (and, when given, a reference value such as the map's 99th
    percentile over the test set; "dead", in red, for the maps `dead` marks: 0 on every test image)."""
    images = np.asarray(images, dtype=np.float32)
    colour = images.ndim == 4 and images.shape[-1] == 3
    if images.ndim != 3 and not colour:
        raise ConfigError(f"patterns must be (k, H, W) or (k, H, W, 3), received shape {images.shape}")
    k, h, w = images.shape[:3]
    if len(maps) != k or len(activation) != k or (reference is not None and len(reference) != k):
        raise ConfigError("maps, activation and reference need one value per pattern")
    cols = max(1, min(int(cols), k))
    rows = math.ceil(k / cols)
    gap = max(2, w // 14)  # pixels between cells
    labelled = reference is not None or dead is not None
    band = round(h * (0.42 if labelled else 0.28))  # room for the labels under each cell
    cell_w, cell_h = w + gap, h + band
    canvas = np.full((rows * cell_h, cols * cell_w - gap, *images.shape[3:]), np.nan, np.float32)  # NaN: background
    for i in range(k):
        r, c = divmod(i, cols)
        canvas[r * cell_h:r * cell_h + h, c * cell_w:c * cell_w + w] = images[i]
    if colour:  # RGB 0..1, background white
        canvas = np.clip(np.nan_to_num((canvas - vmin) / ((vmax - vmin) or 1.0), nan=1.0), 0.0, 1.0)
    px = min(0.9 / w, 8.0 / canvas.shape[1])  # inches per pixel: cells up to 0.9 in, grid up to 8 in wide
    head = 0.75 if title or subtitle else 0.1
    fig_w, fig_h = canvas.shape[1] * px + 0.3, canvas.shape[0] * px + head + 0.1
    fig = new_figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes([0.15 / fig_w, 0.1 / fig_h, canvas.shape[1] * px / fig_w, canvas.shape[0] * px / fig_h])
    if colour:
        ax.imshow(canvas, interpolation="nearest", aspect="equal")
    else:
        colormap = get_cmap(cmap, False).with_extremes(bad="white")
        ax.imshow(canvas, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    size = max(5.0, min(8.0, w * px * 72 * 0.2))
    for i in range(k):
        r, c = divmod(i, cols)
        x, y = c * cell_w + w / 2, r * cell_h + h + band * 0.08
        ax.text(x, y, f"#{maps[i]}  {activation[i]:.3g}", ha="center", va="top", fontsize=size)
        if dead is not None and dead[i]:
            ax.text(x, y + band * 0.45, "dead", ha="center", va="top", fontsize=size * 0.9, color="#b00020")
        elif reference is not None:
            ax.text(x, y + band * 0.45, f"p99 {reference[i]:.3g}", ha="center", va="top", fontsize=size * 0.9,
                    color="#666666")
    if title:
        fig.text(0.15 / fig_w, 1 - 0.12 / fig_h, title, fontsize=12, fontweight="bold", va="top")
    if subtitle:
        fig.text(0.15 / fig_w, 1 - 0.42 / fig_h, subtitle, fontsize=8, va="top", color="#444444")
    return fig
