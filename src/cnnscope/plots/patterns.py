"""Figures of the input patterns that maximise a layer's maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnscope.base.errors import ConfigError
from cnnscope.base.imaging import pictures
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import MIN_PT, get_cmap
from cnnscope.plots.text import TITLE_PT, draw_heading, lines_inches, text_inches, wrap_inches


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


def _labels(maps: Sequence[int], activation: Sequence[float], reference: Sequence[float] | None,
            dead: Sequence[bool] | None) -> list[tuple[str, str, str]]:
    """Per pattern: its first label line, and the second with its colour ('' when there is none)."""
    rows = []
    for i, (m, a) in enumerate(zip(maps, activation, strict=True)):
        if dead is not None and dead[i]:
            second = ("dead", "#b00020")
        elif reference is not None:
            second = (f"p99 {reference[i]:.3g}", "#666666")
        else:
            second = ("", "")
        rows.append((f"#{m}  {a:.3g}", *second))
    return rows


def _canvas(images: np.ndarray, cols: int, gap: int, band: int) -> np.ndarray:
    """The patterns in a grid of `cols` columns, `gap` pixels apart, with `band` pixels under each row for its
    labels; NaN where there is no pattern."""
    k, h, w = images.shape[:3]
    rows = math.ceil(k / cols)
    cell_w, cell_h = w + gap, h + band
    canvas = np.full((rows * cell_h, cols * cell_w - gap, *images.shape[3:]), np.nan, np.float32)
    for i in range(k):
        r, c = divmod(i, cols)
        canvas[r * cell_h:r * cell_h + h, c * cell_w:c * cell_w + w] = images[i]
    return canvas


def _heading_lines(title: str | None, subtitle: str | None, width: float) -> tuple[list[str], list[str], float]:
    """The title and subtitle lines wrapped to a figure `width` inches wide, and the height they take."""
    title_lines = wrap_inches(title, TITLE_PT, width - 0.3, "bold") if title else []
    sub_lines = wrap_inches(subtitle, MIN_PT, width - 0.3) if subtitle else []
    if not title_lines and not sub_lines:
        return [], [], 0.1
    height = 0.3 + lines_inches(len(title_lines), TITLE_PT) + lines_inches(len(sub_lines), MIN_PT)
    return title_lines, sub_lines, height


def patterns_figure(images: np.ndarray, maps: Sequence[int], activation: Sequence[float], *, layer: str,
                    reference: Sequence[float] | None = None, cols: int = 8, cmap: str | None = "gray",
                    vmin: float = 0.0, vmax: float = 255.0, title: str | None = None,
                    subtitle: str | None = None, dead: Sequence[bool] | None = None) -> Figure:
    """A grid of patterns (k, H, W) grey (through `cmap`) or (k, H, W, 3) colour (pixels 0..255), each labelled
    with its map number and the activation it reached (and, when given, a reference value such as the map's 99th
    percentile over the test set; "dead", in red, for the maps `dead` marks: 0 on every test image). Cells are
    up to 0.9 inch (the grid up to 8 inches wide) but never narrower than their labels at MIN_PT."""
    images = np.asarray(images, dtype=np.float32)
    colour = images.ndim == 4 and images.shape[-1] == 3
    if images.ndim != 3 and not colour:
        raise ConfigError(f"patterns must be (k, H, W) or (k, H, W, 3), received shape {images.shape}")
    k, h, w = images.shape[:3]
    if len(maps) != k or len(activation) != k or (reference is not None and len(reference) != k):
        raise ConfigError("maps, activation and reference need one value per pattern")
    cols = max(1, min(int(cols), k))
    labels = _labels(maps, activation, reference, dead)
    widest = max(text_inches(t, MIN_PT) for row in labels for t in row[:2])
    px = max(min(0.9, 8.0 / cols), widest + 0.06) / w  # inches per pixel
    gap = max(2, w // 14, math.ceil(0.06 / px))  # pixels between cells
    lines = 2 if reference is not None or dead is not None else 1
    band = math.ceil((lines_inches(lines, MIN_PT) + 0.08) / px)  # pixels under each cell for its labels
    canvas = _canvas(images, cols, gap, band)
    grid_w, grid_h = canvas.shape[1] * px, canvas.shape[0] * px
    fig_w = max(grid_w + 0.3, 5.0 if title or subtitle else 0.0)
    title_lines, sub_lines, head = _heading_lines(title, subtitle, fig_w)
    fig_h = grid_h + head + 0.1
    fig = new_figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes([0.15 / fig_w, 0.1 / fig_h, grid_w / fig_w, grid_h / fig_h])
    _show(ax, canvas, colour, cmap, vmin, vmax)
    for i, (first, second, colour_2) in enumerate(labels):
        r, c = divmod(i, cols)
        x, y = c * (w + gap) + w / 2, r * (h + band) + h + 0.03 / px
        ax.text(x, y, first, ha="center", va="top", fontsize=MIN_PT)
        if second:
            ax.text(x, y + lines_inches(1, MIN_PT) / px, second, ha="center", va="top", fontsize=MIN_PT,
                    color=colour_2)
    draw_heading(fig, title_lines, sub_lines, 0.15, top=0.12, gap=0.04)
    return fig


def _show(ax, canvas: np.ndarray, colour: bool, cmap: str | None, vmin: float, vmax: float) -> None:
    """The grid: colour patterns as RGB 0..1 on white, grey ones through `cmap` with white around them."""
    if colour:
        rgb = np.clip(np.nan_to_num((canvas - vmin) / ((vmax - vmin) or 1.0), nan=1.0), 0.0, 1.0)
        ax.imshow(rgb, interpolation="nearest", aspect="equal")
    else:
        colormap = get_cmap(cmap, False).with_extremes(bad="white")
        ax.imshow(canvas, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
