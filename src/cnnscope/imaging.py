"""Arrays -> PNG bytes, fast: colour through a colour map's table, lay out tiles, encode with Pillow.

The one PNG/tile encoder of cnnscope, shared by the HTML report and the web viewer. No figures: matplotlib is
used only for its colour tables (`matplotlib.colormaps`, imported on first use; never pyplot), so importing this
module costs numpy and Pillow only.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

from .errors import RenderError, choice_error

# Colour maps offered by the viewer (any matplotlib name is accepted).
COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "gray", "gray_r", "turbo", "RdBu_r", "coolwarm")
EMPTY_RGB = (236, 238, 242)  # empty grid cells and unseen pixels: a light panel colour that reads as "nothing here"

__all__ = ["COLORMAPS", "EMPTY_RGB", "colorize", "colormap", "colormap_strip", "data_uri", "grey_png", "layout",
           "png_bytes"]


def colormap(name: str):
    """A matplotlib colour map object by name; RenderError listing the offered names otherwise."""
    import matplotlib

    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise choice_error(RenderError, "colour map", name, COLORMAPS)
    return matplotlib.colormaps[name]


def colorize(values: np.ndarray, cmap: str = "magma", vmin: float | None = None, vmax: float | None = None,
             symmetric: bool = False) -> tuple[np.ndarray, float, float]:
    """Float array (H, W), NaN allowed -> (RGB uint8 (H, W, 3), vmin, vmax) through a colour map.

    vmin/vmax default to the finite range; `symmetric` centres that range on 0 (for weights). NaN -> EMPTY_RGB.
    """
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if vmin is None or vmax is None:
        lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
        if symmetric:
            hi = max(abs(lo), abs(hi))
            lo = -hi
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    span = vmax - vmin if vmax > vmin else 1.0
    norm = np.clip((np.where(finite, values, vmin) - vmin) / span, 0.0, 1.0)
    rgb = colormap(cmap)(norm, bytes=True)[..., :3]
    rgb[~finite] = EMPTY_RGB
    return rgb, float(vmin), float(vmax)


def layout(rgb: np.ndarray, rows: int, cols: int, min_cell: int = 1, gap: int = 0) -> np.ndarray:
    """A tiled RGB grid (rows·h, cols·w, 3) with cells enlarged (nearest) to at least `min_cell` pixels on their
    longer side and `gap`-pixel white gutters between them."""
    h, w = rgb.shape[0] // rows, rgb.shape[1] // cols
    factor = max(1, math.ceil(min_cell / max(h, w)))
    if factor == 1 and gap == 0:
        return rgb
    cells = rgb.reshape(rows, h, cols, w, 3).repeat(factor, axis=1).repeat(factor, axis=3)
    big_h, big_w = h * factor, w * factor
    canvas = np.full((rows * (big_h + gap) - gap, cols * (big_w + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            top, left = r * (big_h + gap), c * (big_w + gap)
            canvas[top:top + big_h, left:left + big_w] = cells[r, :, c, :]
    return canvas


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode uint8 (H, W) grey or (H, W, 3) RGB as PNG (fast compression: these images are small)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI (for a self-contained page or a JSON answer)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grey_png(raw: np.ndarray) -> bytes:
    """A raw image (H, W) in 0..255 as a grey PNG."""
    return png_bytes(np.clip(np.asarray(raw, dtype=np.float32), 0, 255).astype(np.uint8))


def colormap_strip(cmap: str, width: int = 256) -> bytes:
    """A (1, width) PNG running through the colour map: a page's colour bar."""
    rgb, _, _ = colorize(np.linspace(0, 1, width, dtype=np.float32)[None], cmap, 0.0, 1.0)
    return png_bytes(rgb)
