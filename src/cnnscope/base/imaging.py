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

from cnnscope.base.errors import RenderError, choice_error

# Colour maps offered by the viewer (any matplotlib name is accepted).
COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "gray", "gray_r", "turbo", "RdBu_r", "coolwarm")
EMPTY_RGB = (236, 238, 242)  # empty grid cells and unseen pixels: a light panel colour that reads as "nothing here"

__all__ = ["COLORMAPS", "EMPTY_RGB", "colorize", "colormap", "colormap_strip", "data_uri", "grey_png", "is_colour",
           "layout", "picture_pixels", "picture_png", "pictures", "png_bytes", "rgb_kernels"]


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


def is_colour(raw: np.ndarray) -> bool:
    """Whether a raw picture is colour (H, W, 3) rather than grey (H, W) (or (H, W, 1))."""
    shape = np.shape(raw)
    return len(shape) == 3 and shape[-1] == 3


def picture_pixels(raw: np.ndarray) -> np.ndarray:
    """A raw picture, (H, W) grey or (H, W, 3) colour (also (H, W, 1) or (1, H, W)), as uint8 (H, W) or (H, W, 3)
    clipped to 0..255: what a PNG or a figure shows. RenderError for any other shape."""
    x = np.asarray(raw)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    elif x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)):
        raise RenderError(f"a picture must be (H, W) grey or (H, W, 3) colour, received shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    return np.clip(np.nan_to_num(x.astype(np.float32)), 0, 255).round().astype(np.uint8)


def picture_png(raw: np.ndarray) -> bytes:
    """A raw picture in 0..255, (H, W) grey or (H, W, 3) colour, as a grey or RGB PNG."""
    return png_bytes(picture_pixels(raw))


grey_png = picture_png  # the former name: one encoder for grey and colour pictures


def pictures(nchw: np.ndarray) -> np.ndarray:
    """Images as the model reads them, (n, C, H, W), back to raw pictures as they are drawn: (n, H, W) for one
    channel, (n, H, W, C) otherwise (the inverse of cnnscope.data.dataset.to_nchw)."""
    x = np.asarray(nchw)
    if x.ndim != 4:
        raise RenderError(f"expected images (n, C, H, W), received shape {x.shape}")
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def rgb_kernels(weights: np.ndarray) -> np.ndarray:
    """First-layer kernels (filters, 3, kh, kw) as RGB pictures (filters, kh, kw, 3) in 0..1: each filter's three
    channel kernels normalised jointly (one scale per filter, zero at mid-grey 0.5), so the tile shows the colour
    and the pattern the filter responds to."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 4 or w.shape[1] != 3:
        raise RenderError(f"RGB kernels need weights (filters, 3, kh, kw), received shape {w.shape}")
    peak = np.abs(w).reshape(len(w), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)[:, None, None, None]
    return (0.5 + 0.5 * w / peak).transpose(0, 2, 3, 1)


def colormap_strip(cmap: str, width: int = 256) -> bytes:
    """A (1, width) PNG running through the colour map: a page's colour bar."""
    rgb, _, _ = colorize(np.linspace(0, 1, width, dtype=np.float32)[None], cmap, 0.0, 1.0)
    return png_bytes(rgb)
