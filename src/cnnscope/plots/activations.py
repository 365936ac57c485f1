"""Figures of what a layer sees: activation grids beside the input, an all-layers overview, conv filters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Colormap, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnscope.base.errors import ConfigError, choice_error
from cnnscope.base.imaging import rgb_kernels
from cnnscope.inspect.activations import activation_grid
from cnnscope.inspect.display import MapDisplay
from cnnscope.inspect.filters import Filters
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import DIVERGING, MIN_PT, get_cmap, show_picture
from cnnscope.plots.text import lines_inches, wrap_inches

_TAG = {"boxstyle": "square,pad=0.12", "facecolor": (0, 0, 0, 0.55), "edgecolor": "none"}


@dataclass(frozen=True)
class Prediction:
    """What the model says about the image shown."""

    class_name: str
    probability: float
    true_name: str | None = None  # None for a user's picture


def _norm(vmin: float, vmax: float, signed: bool) -> Normalize:
    if signed and vmin < 0 < vmax:  # zero is the centre colour even when the range is not symmetric
        return TwoSlopeNorm(0.0, vmin, vmax)
    return Normalize(vmin, vmax)


def _inches_to_fig(fig: Figure, left: float, bottom: float, width: float, height: float) -> list[float]:
    w, h = fig.get_size_inches()
    return [left / w, bottom / h, width / w, height / h]


def _draw_grid(ax, display: MapDisplay, cols: int, cmap: Colormap, cell_in: float, numbers: bool) -> None:
    """One image for all maps (so one colour scale holds for each), thin lines between maps, map numbers."""
    n, h, w = display.values.shape
    grid = activation_grid(display.values, cols)
    rows = grid.shape[0] // h
    # Lines must stand out from the colour map's ends and middle: white on sequential maps, grey on diverging
    # ones (whose centre is white); empty cells match the lines.
    line_colour = "#7a7a7a" if display.signed else "white"
    cmap = cmap.with_extremes(bad="#d9d9d9" if display.signed else "white")
    ax.imshow(grid, cmap=cmap, norm=_norm(display.vmin, display.vmax, display.signed), interpolation="nearest",
              extent=(0, cols * w, rows * h, 0), aspect="equal")
    line = max(0.6, min(1.5, cell_in * 2.0))
    ax.vlines(np.arange(1, cols) * w, 0, rows * h, colors=line_colour, linewidth=line)
    ax.hlines(np.arange(1, rows) * h, 0, cols * w, colors=line_colour, linewidth=line)
    if display.signed:
        ax.add_patch(Rectangle((0, 0), cols * w, rows * h, fill=False, edgecolor=line_colour, linewidth=line))
    ax.set_xlim(0, cols * w)
    ax.set_ylim(rows * h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    flat_values = display.values.reshape(n, -1)
    flat = np.flatnonzero(flat_values.min(axis=1) == flat_values.max(axis=1)) if h * w > 1 else []
    if len(flat):  # one value everywhere (e.g. a map that is zero for this image): hatched, one artist for all
        boxes = [Rectangle((k % cols * w, k // cols * h), w, h) for k in flat]
        ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor=(1, 1, 1, 0.45), hatch="///",
                                          linewidth=0))
    if numbers and cell_in * 72 * 0.22 >= MIN_PT:
        pad_x, pad_y = 0.06 * w, 0.06 * h
        for k in range(n):
            r, c = divmod(k, cols)
            # A dark tag keeps the number readable on every colour (faster to draw than an outline).
            ax.text(c * w + pad_x, r * h + pad_y, str(k), color="white", fontsize=min(11.0, cell_in * 72 * 0.22),
                    ha="left", va="top", bbox=_TAG)
    elif numbers:  # cells too small for a readable tag: number the rows (first map) and columns (+offset)
        _edge_numbers(ax, rows, cols, h, w, cell_in)


def _edge_numbers(ax, rows: int, cols: int, h: int, w: int, cell_in: float) -> None:
    """Map k sits at row label + column label: rows on the left, column offsets on top, at MIN_PT."""
    ax.set_yticks((np.arange(rows) + 0.5) * h, [str(r * cols) for r in range(rows)], fontsize=MIN_PT)
    step = max(1, math.ceil(MIN_PT * 2.4 / (cell_in * 72)))  # "+15" is about 2.4 em wide
    shown = np.arange(0, cols, step)
    ax.xaxis.tick_top()
    ax.set_xticks((shown + 0.5) * w, [f"+{c}" for c in shown], fontsize=MIN_PT)
    ax.tick_params(length=0, pad=1.5, colors="#444444")


def draw_input(ax, image: np.ndarray, source: str, prediction: Prediction | None) -> None:
    """The input picture with its source as title and the true and predicted class below (red when wrong)."""
    show_picture(ax, image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(source, fontsize=10)
    lines = []
    if prediction is not None:
        if prediction.true_name is not None:
            lines.append(f"true class: {prediction.true_name}")
        lines.append(f"predicted: {prediction.class_name} ({prediction.probability:.1%})")
        wrong = prediction.true_name is not None and prediction.true_name != prediction.class_name
        ax.set_xlabel("\n".join(lines), fontsize=10, color="#b00020" if wrong else "black", loc="left")


def _colorbar(fig: Figure, rect: list[float], display: MapDisplay, cmap: Colormap, orientation: str) -> None:
    mappable = ScalarMappable(_norm(display.vmin, display.vmax, display.signed), cmap)
    cax = fig.add_axes(rect, label="colorbar")
    bar = fig.colorbar(mappable, cax=cax, orientation=orientation, extend=display.extend)
    bar.set_label(display.label, fontsize=9)
    bar.ax.tick_params(labelsize=9)


def activations_figure(image: np.ndarray, display: MapDisplay, *, layer: str, source: str = "",
                       prediction: Prediction | None = None, cols: int = 8, cmap: str | None = None,
                       stage: str = "") -> Figure:
    """The input image beside the grid of one layer's maps, with map numbers and one colour bar.

    display: the maps (maps, h, w) with their colour range and its words (cnnscope.inspect.display.layer_display:
    one range for the layer, ending at a percentile; one per map; a fixed one; the series' standardisation).
    stage: words on what the values are (e.g. "after ReLU"), shown in the title.
    A vector, e.g. a dense layer's output, is drawn as bars by vector_figure.
    """
    colormap = get_cmap(cmap, display.signed)
    n, h, w = display.values.shape
    cols = max(1, min(int(cols), n))
    rows = math.ceil(n / cols)
    # Cells as large as fit in about 8 × 10 inches; the input panel beside is 2.4 inches square.
    cell = min(0.8, 8.0 / cols, 10.0 / (rows * h / w))
    grid_w, grid_h = cols * cell, rows * cell * h / w
    side, bottom, left = 2.4, 0.25, 0.25
    width = left + side + 0.45 + grid_w + 0.15 + 0.14 + 0.9
    subtitle = (f"output shape ({', '.join(map(str, display.values.shape))})  ·  {display.label}  ·  {n} of {n} "
                f"maps shown{_flat_note(display.values)}")
    lines = _subtitle(width, left, [subtitle, display.words])
    top = _top(lines, 1.25)
    height = max(grid_h, side + 0.9) + top + bottom
    fig = new_figure(figsize=(width, height))
    y_top = height - top
    ax_in = fig.add_axes(_inches_to_fig(fig, left, y_top - side, side, side))
    draw_input(ax_in, image, source, prediction)
    ax = fig.add_axes(_inches_to_fig(fig, left + side + 0.45, y_top - grid_h, grid_w, grid_h))
    _draw_grid(ax, display, cols, colormap, cell, numbers=cell >= 0.3)
    bar_h = max(grid_h, 1.5)
    _colorbar(fig, _inches_to_fig(fig, left + side + 0.45 + grid_w + 0.15, y_top - bar_h, 0.14, bar_h), display,
              colormap, "vertical")
    title = f"{layer}: {n} map{'s' if n != 1 else ''} of {h}×{w}" + (f" ({stage})" if stage else "")
    _titles(fig, left, height, title, lines)
    return fig


def _subtitle(width: float, left: float, lines: list[str]) -> list[str]:
    """Subtitle lines wrapped at MIN_PT to a figure `width` inches wide (measured text: no word cut at the edge)."""
    return [part for line in lines if line for part in wrap_inches(line, MIN_PT, width - left - 0.15)]


def _top(lines: list[str], least: float) -> float:
    """Inches above the panels for the title and these subtitle lines (never under `least`)."""
    return max(least, 0.8 + 0.2 * len(lines))  # the title, the lines, then room for the panels' own titles


def _titles(fig: Figure, left: float, height: float, title: str, lines: list[str]) -> None:
    """The title and the subtitle lines (from _subtitle), in the room _top gave them."""
    width = fig.get_size_inches()[0]
    fig.text(left / width, (height - 0.22) / height, title, fontsize=13, fontweight="bold", va="top")
    for i, line in enumerate(lines):
        fig.text(left / width, (height - 0.5 - 0.2 * i) / height, line, fontsize=MIN_PT, va="top", color="#444444")


def vector_figure(image: np.ndarray, values: np.ndarray, *, layer: str, source: str = "",
                  prediction: Prediction | None = None, cmap: str | None = None, stage: str = "") -> Figure:
    """The input image beside one bar per unit of a vector (a dense layer's output): height = value (signed
    vectors: red above zero, blue below)."""
    shape = np.asarray(values).shape
    x = np.asarray(values, dtype=np.float32).reshape(-1)
    n = len(x)
    finite = x[np.isfinite(x)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    signed = lo < 0
    get_cmap(cmap, signed)  # validated like the maps' (bars need no colour scale: their height is the value)
    colours = np.where(x >= 0, "#b2182b", "#2166ac") if signed else "#51127c"
    side, bottom, left = 2.4, 0.2, 0.25
    plot_w = min(9.0, max(4.0, 0.09 * n))
    width = left + side + 0.9 + plot_w + 0.3
    lines = _subtitle(width, left, [f"output shape ({', '.join(map(str, shape))})  ·  bar height = activation, "
                                    f"{lo:.3g} to {hi:.3g}  ·  {n} of {n} units shown"])
    top = _top(lines, 1.0)
    height = side + 0.9 + top + bottom
    fig = new_figure(figsize=(width, height))
    y_top = height - top
    draw_input(fig.add_axes(_inches_to_fig(fig, left, y_top - side, side, side)), image, source, prediction)
    ax = fig.add_axes(_inches_to_fig(fig, left + side + 0.9, y_top - side, plot_w, side))
    ax.bar(np.arange(n), np.nan_to_num(x), width=0.85 if n <= 200 else 1.0, color=colours,
           edgecolor="none")
    ax.axhline(0, color="#444444", linewidth=0.6)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("unit", fontsize=MIN_PT)
    ax.set_ylabel("activation", fontsize=MIN_PT)
    ax.tick_params(labelsize=MIN_PT)
    if n <= 20:
        ax.set_xticks(np.arange(n))
    title = f"{layer}: {n} unit{'s' if n != 1 else ''}" + (f" ({stage})" if stage else "")
    _titles(fig, left, height, title, lines)
    return fig


def _flat_maps(values: np.ndarray) -> int:
    """How many maps hold one value everywhere (they are drawn hatched)."""
    n = len(values)
    flat = values.reshape(n, -1)
    return 0 if flat.shape[1] < 2 else int((flat.min(axis=1) == flat.max(axis=1)).sum())


def _flat_note(values: np.ndarray) -> str:
    k = _flat_maps(values)
    return f"  ·  hatched: {k} flat map{'s' if k != 1 else ''} (one value everywhere)" if k else ""


def overview_figure(image: np.ndarray, outputs: dict[str, np.ndarray], displays: dict[str, MapDisplay],
                    shared: MapDisplay, *, source: str = "", prediction: Prediction | None = None,
                    cmap: str | None = None) -> Figure:
    """Every given layer's maps for one image (conv and pool layers), in near-square grids, one colour bar.

    outputs: each layer's maps as computed (their range is written above the panel); displays and shared: each
    layer's colour range and the one its colour bar shows (cnnscope.inspect.display.overview_displays: with norm
    'layer', each layer relative to its own range, so one colour bar holds for every panel).
    """
    colormap = get_cmap(cmap, shared.signed)
    per_row = min(3, 1 + len(displays))
    n_rows = math.ceil((1 + len(displays)) / per_row)
    side, gap_x, gap_y, top, bottom = 3.0, 0.35, 0.75, 0.8, 0.85
    width = per_row * side + (per_row - 1) * gap_x + 0.5
    height = top + n_rows * side + (n_rows - 1) * gap_y + bottom
    fig = new_figure(figsize=(width, height))

    def slot(i: int) -> tuple[float, float]:
        r, c = divmod(i, per_row)
        return 0.25 + c * (side + gap_x), height - top - side - r * (side + gap_y)

    x0, y0 = slot(0)
    draw_input(fig.add_axes(_inches_to_fig(fig, x0 + 0.4, y0 + 0.4, side - 0.8, side - 0.8)), image, source,
                prediction)
    for i, (name, display) in enumerate(displays.items(), start=1):
        _overview_panel(fig, slot(i), side, name, MapDisplay(display.values, shared.vmin, shared.vmax, "",
                                                             shared.signed, "neither"), colormap, outputs[name])
    bar_w = min(width - 1.0, 5.0)
    _colorbar(fig, _inches_to_fig(fig, (width - bar_w) / 2, 0.45, bar_w, 0.13), shared, colormap, "horizontal")
    fig.text(0.25 / width, (height - 0.2) / height, "Every conv and pool layer for one image", fontsize=13,
             fontweight="bold", va="top")
    return fig


def _overview_panel(fig: Figure, corner: tuple[float, float], side: float, name: str, display: MapDisplay,
                    colormap: Colormap, raw: np.ndarray) -> None:
    """One layer's maps in a near-square grid centred in a side × side slot, titled with its shape and the range
    of its raw values (`raw`: the layer's output before display normalisation)."""
    n, h, w = display.values.shape
    cols = max(1, math.ceil(math.sqrt(n * h / w)))
    rows = math.ceil(n / cols)
    scale_in = min(side / (cols * w), side / (rows * h))
    gw, gh = cols * w * scale_in, rows * h * scale_in
    x, y = corner
    ax = fig.add_axes(_inches_to_fig(fig, x + (side - gw) / 2, y + (side - gh), gw, gh))
    _draw_grid(ax, display, cols, colormap, gw / cols / 4, numbers=False)
    ax.set_title(f"{name}  ({n}, {h}, {w})", fontsize=10, fontweight="bold", pad=16)
    flat = _flat_maps(values=np.reshape(raw, (n, h, w)))
    lo, hi = float(np.min(raw)), float(np.max(raw))
    ax.text(0.5, 1.01, f"values {lo:.3g} … {hi:.3g}" + (f", {flat} flat (hatched)" if flat else ""),
            transform=ax.transAxes, ha="center", va="bottom", fontsize=MIN_PT, color="#444444")


def kernel_words(filters: Filters) -> str:
    """What each drawn kernel is: the weights on the one input channel, on one chosen input channel, their mean
    over all input channels, every channel's kernel, or the colour channels as one RGB picture."""
    if filters.in_channels == 1:
        return "each kernel as it sees the input image (one channel)"
    if filters.view.startswith("input channel"):
        return f"each kernel as it sees {filters.view}"
    if filters.channels == "rgb":
        return ("each filter's R, G, B kernels as one RGB picture, scaled jointly per filter: mid-grey = 0, "
                "bright = the colour it responds to")
    if filters.channels == "split":
        return f"{filters.view}, one block per input channel"
    if filters.channels == "strongest":
        return f"each filter's kernel on its {filters.view}: ch after the number (--channel C: one for all)"
    return f"each kernel's {filters.view}"


CHANNEL_NAMES = ("red", "green", "blue")


FILTER_NORMS = ("filter", "layer")  # colours of filters_figure: each filter its own range, or one for the layer


def _filter_cell(fig: Figure, rect: list[float], title: str, below: str | None) -> Any:
    ax = fig.add_axes(rect)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9, pad=2)
    if below is not None:
        ax.set_xlabel(below, fontsize=9, labelpad=2, color="#333333", linespacing=1.1)
    return ax


def _filter_peaks(filters: Filters, split: bool) -> np.ndarray:
    """(filters,) each filter's largest |weight| over what is drawn of it (every channel when split)."""
    drawn = filters.weights if split else filters.kernels
    peaks = np.abs(np.asarray(drawn, np.float64)).reshape(len(drawn), -1).max(axis=1)
    return np.where(peaks > 0, peaks, 1.0)


def _scale_note(norm: str, rgb: bool, m: float) -> str:
    if rgb:
        return ""
    if norm == "filter":
        return ("  ·  colours: each filter scaled to its own max |weight| (± under it); zero is white; "
                "--norm layer: one scale for all")
    return f"  ·  colours: one scale for all filters, ±{m:.3g}; zero is white (--norm filter: each its own)"


def filters_figure(filters: Filters, cols: int = 8, cmap: str | None = None, norm: str = "filter") -> Figure:
    """Each filter's kernel on a diverging colour scale centred on zero, numbered, with its bias beneath;
    norm 'filter' (default) scales each filter to its own largest |weight| (written under it), 'layer' uses one
    scale for all. filters.channels 'split' draws one block per input channel, 'rgb' each filter as an RGB
    picture, 'strongest' says which input channel each kernel is."""
    if norm not in FILTER_NORMS:
        raise choice_error(ConfigError, "norm", norm, FILTER_NORMS)
    weights = filters.weights
    split = filters.channels == "split" and weights is not None
    rgb = filters.channels == "rgb" and weights is not None and weights.shape[1] == 3
    n, kh, kw = filters.kernels.shape
    blocks, peaks, display = _filter_scales(filters, split, norm)
    m = display.vmax
    colormap, scale = get_cmap(cmap or DIVERGING, True), _norm(-m, m, True)
    tiles = rgb_kernels(weights) if rgb else None
    cols = max(1, min(int(cols), n))
    grid = _FilterGrid(0.85, 0.85 * kh / kw, 0.62, 0.45 if split else 0.0, cols, math.ceil(n / cols))
    width = max(grid.left + cols * grid.cell + (0.2 + 0.14 + 1.0 if not rgb else 0.2), 6.0)
    note = wrap_inches(f"{kernel_words(filters)}{_scale_note(norm, rgb, m)}  ·  b = the filter's bias", 10,
                       width - grid.left - 0.15)
    top = max(1.35, 0.6 + lines_inches(len(note), 10) * 1.15 / 1.25)  # the note's lines at linespacing 1.15
    height = top + len(blocks) * grid.block_h + 0.2
    fig = new_figure(figsize=(width, height))
    below = [(f"±{peaks[k]:.2f}\n" if norm == "filter" and not rgb else "") + f"b {filters.biases[k]:+.2f}"
             for k in range(n)]
    for b, kernels in enumerate(blocks):
        y0 = height - top - b * grid.block_h - grid.head
        if split:
            _channel_heading(fig, filters, b, (grid.left, y0 + 0.22))  # above the first row's titles
        for k in range(n):
            title = f"{k}" + (f" ch {filters.sources[k]}" if filters.sources is not None else "")
            last = b == len(blocks) - 1 or not split
            ax = _filter_cell(fig, grid.rect(fig, k, y0), title, below[k] if last else None)
            ax.imshow(tiles[k] if tiles is not None else kernels[k], cmap=None if rgb else colormap,
                      norm=None if rgb else scale, interpolation="nearest")
    grid_h = len(blocks) * grid.block_h
    if not rgb:
        _colorbar(fig, _inches_to_fig(fig, grid.left + cols * grid.cell + 0.2, height - top - grid_h + grid.label_h,
                                      0.14, grid_h - grid.label_h - grid.head), display, colormap, "vertical")
    fig.text(grid.left / width, (height - 0.2) / height, f"{filters.layer}: {n} filters, {kh}×{kw} kernels",
             fontsize=13, fontweight="bold", va="top")
    fig.text(grid.left / width, (height - 0.45) / height, "\n".join(note), fontsize=10, va="top",
             color="#444444", linespacing=1.15)
    return fig


def _filter_scales(filters: Filters, split: bool, norm: str) -> tuple[list[np.ndarray], np.ndarray, MapDisplay]:
    """The kernels to draw (one block, or one per input channel), each filter's peak |weight|, and the colour
    range: ±1 of each filter's own peak ('filter'), or ± the layer's largest ('layer')."""
    weights = filters.weights
    blocks = [filters.kernels] if not split else [weights[:, c] for c in range(weights.shape[1])]
    peaks = _filter_peaks(filters, split)
    if norm == "filter":
        blocks = [block / peaks[:, None, None] for block in blocks]
    m = 1.0 if norm == "filter" else float(peaks.max())
    label = "weight / the filter's max |weight|" if norm == "filter" else "weight"
    return blocks, peaks, MapDisplay(blocks[0], -m, m, label, True, "neither")


@dataclass(frozen=True)
class _FilterGrid:
    """A filters figure's grid in inches: cells (with their label band below) in rows, one block per channel."""

    cell: float
    cell_h: float
    label_h: float
    head: float  # above each block: the channel's heading ('split')
    cols: int
    rows: int
    left: float = 0.25

    @property
    def block_h(self) -> float:
        return self.head + self.rows * (self.cell_h + self.label_h)

    def rect(self, fig: Figure, k: int, y0: float) -> list[float]:
        """Kernel k's axes in a block whose top is y0 inches up the figure."""
        r, c = divmod(k, self.cols)
        return _inches_to_fig(fig, self.left + c * self.cell + 0.04, y0 - (r + 1) * self.cell_h - r * self.label_h
                              + 0.04, self.cell - 0.08, self.cell_h - 0.08)


def _channel_heading(fig: Figure, filters: Filters, b: int, at: tuple[float, float]) -> None:
    """'input channel b' (with its colour for an RGB input) above that channel's block, at `at` inches."""
    rgb = filters.weights.shape[1] == 3 and filters.view.startswith("each of the 3")
    name = f" ({CHANNEL_NAMES[b]})" if rgb else ""
    width, height = fig.get_size_inches()
    fig.text(at[0] / width, at[1] / height, f"input channel {b}{name}", fontsize=10, fontweight="bold",
             va="bottom")
