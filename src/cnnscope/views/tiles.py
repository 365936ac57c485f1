"""Maps as PNG tiles, for the report and the viewer: cnnscope.inspect.activation_grid lays the maps out,
cnnscope.base.imaging colours, enlarges and encodes them (one grid renderer for both)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnscope.base.imaging import EMPTY_RGB, colorize, layout, picture_pixels, png_bytes
from cnnscope.inspect.activations import activation_grid


def tiles_png(maps: np.ndarray, cols: int | None = None, scale: bool = False, cmap: str = "magma",
              symmetric: bool = False, vmax: float | None = None, min_cell: int = 24, gap: int = 2) -> bytes:
    """Maps (n, h, w) as a PNG grid with `gap`-pixel gutters; small maps are enlarged (nearest) to `min_cell`.

    Columns default to an about square grid. `scale` is the series' standardise-and-clip (0..255); `vmax` fixes
    the colour range (-vmax..vmax when `symmetric`, else 0..vmax); otherwise the grid's own range."""
    png, _ = grid_png(maps, cols, scale, cmap, symmetric=symmetric, vmax=vmax, min_cell=min_cell, gap=gap)
    return png


def grid_png(maps: np.ndarray, cols: int | None = None, scale: bool = False, cmap: str = "magma", *,
             symmetric: bool = False, vmax: float | None = None, min_cell: int = 1,
             gap: int = 0) -> tuple[bytes, dict[str, Any]]:
    """(PNG, meta) of maps (n, h, w) tiled `cols` per row; meta: maps, height, width, cols, rows, min, max (the
    colour range) and value_min, value_max (the maps' own range)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    cols = min(cols or max(1, math.ceil(math.sqrt(n * h / w))), n)
    rows = math.ceil(n / cols)
    values = activation_grid(maps, cols, scale)  # (rows·h, cols·w), NaN in empty cells
    lo = hi = None
    if scale:
        lo, hi = 0.0, 255.0
    elif vmax is not None:
        lo, hi = (-vmax if symmetric else 0.0), vmax
    rgb, vmin, top = colorize(values, cmap, lo, hi, symmetric=symmetric)
    meta = {"maps": n, "height": h, "width": w, "cols": cols, "rows": rows, "min": vmin, "max": top,
            "value_min": float(maps.min()), "value_max": float(maps.max())}
    return png_bytes(layout(rgb, rows, cols, min_cell, gap)), meta


def pictures_png(images: np.ndarray, cols: int | None = None, min_cell: int = 24, gap: int = 2) -> bytes:
    """Raw pictures (n, H, W) grey or (n, H, W, 3) colour, 0..255, as one PNG grid with `gap`-pixel gutters, small
    ones enlarged (nearest) to `min_cell`; grey pictures are drawn exactly as tiles_png draws them in 'gray'."""
    images = np.asarray(images)
    if images.ndim == 3:
        return tiles_png(images.astype(np.float32), cols, cmap="gray", vmax=255.0, min_cell=min_cell, gap=gap)
    n, h, w = images.shape[:3]
    cols = min(cols or max(1, math.ceil(math.sqrt(n * h / w))), n)
    rows = math.ceil(n / cols)
    canvas = np.empty((rows * h, cols * w, 3), np.uint8)
    canvas[:] = EMPTY_RGB
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = picture_pixels(images[i])
    return png_bytes(layout(canvas, rows, cols, min_cell, gap))
