"""Arrays -> PNG bytes, fast: normalise, apply a matplotlib colormap object, encode with Pillow (no figures)."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

from ..errors import RenderError, choice_error

# Colour maps offered by the viewer (any matplotlib name is accepted by the API).
COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "gray", "gray_r", "turbo", "RdBu_r", "coolwarm")
EMPTY_RGB = (236, 238, 242)  # empty grid cells: the page's panel colour, so they read as "no map here"


__all__ = ["COLORMAPS", "EMPTY_RGB", "RenderError", "activation_grid", "colorize", "colormap", "colormap_strip",
           "data_uri", "grey_png", "png_bytes"]


def colormap(name: str):
    """A matplotlib colormap object by name; RenderError listing the offered names otherwise."""
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise choice_error(RenderError, "colour map", name, COLORMAPS) from None


def activation_grid(maps: np.ndarray, cols: int = 8, scale: bool = False) -> np.ndarray:
    """Maps (n, h, w) tiled `cols` per row: (ceil(n/cols)*h, cols*w) float32, NaN in empty cells.

    With `scale`, each map is standardised and clipped for display: (x - mean)/std*64 + 128 in 0..255.
    Uses cnnscope.inspect.activations.activation_grid when it exists (same contract); this is the fallback.
    """
    try:
        from ..inspect.activations import activation_grid as shared
    except ImportError:  # an older inspect module: use the local implementation below
        shared = None
    if shared is not None:
        return np.asarray(shared(maps, cols, scale), dtype=np.float32)
    maps = np.asarray(maps, dtype=np.float32)  # (n, h, w)
    n, h, w = maps.shape
    if scale:
        mean = maps.mean(axis=(1, 2), keepdims=True)
        std = maps.std(axis=(1, 2), keepdims=True)
        maps = np.clip((maps - mean) / np.where(std == 0, 1.0, std) * 64 + 128, 0, 255)
    rows = max(1, math.ceil(n / cols))
    padded = np.full((rows * cols, h, w), np.nan, np.float32)
    padded[:n] = maps
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def colorize(values: np.ndarray, cmap: str = "magma", vmin: float | None = None, vmax: float | None = None,
             symmetric: bool = False) -> tuple[np.ndarray, float, float]:
    """Float array (H, W), NaN allowed -> (RGB uint8 (H, W, 3), vmin, vmax) through a colour map.

    vmin/vmax default to the finite range; `symmetric` centres the range on 0 (for weights).
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


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode uint8 (H, W) grey or (H, W, 3) RGB as PNG (fast compression: these images are small)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grey_png(raw: np.ndarray) -> bytes:
    """A raw image (H, W) in 0..255 as a grey PNG."""
    return png_bytes(np.clip(np.asarray(raw, dtype=np.float32), 0, 255).astype(np.uint8))


def colormap_strip(cmap: str, width: int = 256) -> bytes:
    """A (1, width) PNG running through the colour map: the page's colour bar."""
    rgb, _, _ = colorize(np.linspace(0, 1, width, dtype=np.float32)[None], cmap, 0.0, 1.0)
    return png_bytes(rgb)
