"""What every figure module shares: colour maps by name, file-name slugs, and atomic figure files."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from cnnscope.base.errors import ConfigError, OutputError
from cnnscope.base.fileio import atomic_write
from cnnscope.base.imaging import picture_pixels

FORMATS = (".png", ".svg", ".pdf")
SEQUENTIAL = "magma"  # default for non-negative data (the series' choice)
DIVERGING = "RdBu_r"  # default for signed data: blue below zero, red above, white at zero
MIN_PT = 9.0  # the smallest text of every figure at its default size: readable from a projector's back row


def get_cmap(name: str | None, signed: bool) -> Colormap:
    """A colour map by name (validated against matplotlib's registry); default by the data's sign."""
    name = name or (DIVERGING if signed else SEQUENTIAL)
    if name not in matplotlib.colormaps:
        valid = sorted((n for n in matplotlib.colormaps if not n.endswith("_r")), key=str.lower)
        raise ConfigError(f"unknown colour map {name!r}; valid: {', '.join(valid)} (add _r to reverse any)")
    return matplotlib.colormaps[name].with_extremes(bad="white")  # bad: the empty trailing cells of a grid


def show_picture(ax, raw, **imshow) -> None:
    """Draw a raw picture on `ax` as it looks: (H, W) in grey, 0 black to 255 white, or (H, W, 3) in colour
    (values outside 0..255 clipped); extra keywords go to imshow."""
    pixels = picture_pixels(raw)
    imshow.setdefault("interpolation", "nearest")
    if pixels.ndim == 2:
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, **imshow)
    else:
        ax.imshow(pixels, **imshow)


def channel_words(channels: int, how: str = "summed") -> str:
    """'' for one channel, else words for a figure saying how a per-pixel value came from the channels, e.g.
    'colour input: the 3 channels summed per pixel'."""
    return "" if channels <= 1 else f"colour input: the {channels} channels {how} per pixel"


def slug(text: str) -> str:
    """`text` made safe for a file name: runs of other characters than letters, digits, _ . - become one '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "image"


def check_figure_path(path: str | Path) -> Path:
    """The path a figure will be written to (.png added when there is no suffix); OutputError for an unknown
    suffix, saying which are valid."""
    path = Path(path)
    if path.suffix and path.suffix.lower() not in FORMATS:
        raise OutputError(f"cannot write a figure as {path.suffix!r} ({path}); use {', '.join(FORMATS)}")
    return path if path.suffix else path.with_suffix(".png")


def write_figure(fig: Figure, path: Path, **savefig) -> None:
    """fig.savefig to `path` atomically (format by suffix); any OSError becomes one OutputError naming the path."""
    fmt = path.suffix.lower().lstrip(".") or "png"
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def save_figure_as(fig: Figure, path: str | Path, svg: bool = False, dpi: int = 110) -> list[Path]:
    """Save as `path` (PNG, SVG or PDF by suffix) atomically; svg=True also writes an SVG beside a PNG.

    The figures here are laid out in inches, so no 'tight' bounding box (a second full draw) is
    needed. Returns the paths written. OutputError for an unknown suffix or a file that cannot be written.
    """
    path = check_figure_path(path)
    paths = [path]
    if svg and path.suffix.lower() != ".svg":
        paths.append(path.with_suffix(".svg"))
    for target in paths:
        write_figure(fig, target, dpi=dpi)
    return paths


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save `fig` atomically (.png, .svg or .pdf by suffix; none: PNG) with a tight bounding box (for figures
    laid out by matplotlib, e.g. the training curves); OutputError if it cannot."""
    path = Path(path)
    check_figure_path(path)
    write_figure(fig, path, dpi=dpi, bbox_inches="tight")
    return path
