"""Figures of classification by activation patterns: class profiles, the images that excite a map most
(receptive field highlighted), and the misclassified images beside the confusion matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.classify import PatternClassification
from cnnscope.inspect.profile import Misclassified, TopImages
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import MIN_PT, show_picture
from cnnscope.plots.text import lines_inches, text_inches, wrap_inches
from cnnscope.plots.training import (
    MatrixBox,
    MatrixCells,
    confusion_title,
    count_colorbar,
    draw_confusion,
    draw_counts,
    dropped_counts_note,
    label_matrix,
    matrix_box,
    matrix_cells,
)

PROFILE_NORMS = ("map", "layer")
PROFILE_ORDERS = ("index", "class")
WRONG = "#b00020"
HIGHLIGHT = "#ffb000"


def check_profile_options(norm: str, order: str) -> None:
    """ConfigError unless `norm` is one of PROFILE_NORMS and `order` one of PROFILE_ORDERS (listing the valid)."""
    for value, valid, what in ((norm, PROFILE_NORMS, "profile norm"), (order, PROFILE_ORDERS, "profile order")):
        if value not in valid:
            raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def _profile_colours(profile: np.ndarray, peak: np.ndarray, silent: np.ndarray,
                     norm: str) -> tuple[np.ndarray, tuple[float, float], str]:
    """The values to colour, their range and the colour bar's label: each map over its largest class mean
    (norm 'map'; silent maps NaN) or the raw means (norm 'layer')."""
    if norm == "map":
        with np.errstate(invalid="ignore", divide="ignore"):
            shown = profile / peak[None, :]
        shown[:, silent] = np.nan
        return shown, ((-1.0 if np.nanmin(shown, initial=0) < 0 else 0.0), 1.0), \
            "mean activation ÷ the map's largest class mean"
    return profile, (min(0.0, float(np.nanmin(profile, initial=0))), float(np.nanmax(profile, initial=1e-12))), \
        "mean activation"


def _label_cells(ax, class_names: Sequence[str], cols: np.ndarray) -> None:
    """Class names down, map numbers across (upright), white lines between the cells; all at MIN_PT."""
    k = len(class_names)
    ax.set_yticks(range(k), class_names, fontsize=MIN_PT)
    ax.set_ylabel("class", fontsize=MIN_PT)
    ax.set_xticks(range(len(cols)), [str(i) for i in cols], fontsize=MIN_PT, rotation=90)
    ax.tick_params(length=2, pad=1.5)
    ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)


BAR_W = 0.14  # colour bar width, inches


def _side_colorbar(fig: Figure, axes: list, image, label: str) -> None:
    """One colour bar right of the first panel, reaching down to the last."""
    first, last = axes[0].get_position(), axes[-1].get_position()
    cax = fig.add_axes([first.x0 + first.width + 0.15 / fig.get_figwidth(), last.y0, BAR_W / fig.get_figwidth(),
                        first.y1 - last.y0])
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(label, fontsize=MIN_PT)
    bar.ax.tick_params(labelsize=MIN_PT)


@dataclass(frozen=True)
class _ProfileLayout:
    """A class profile in inches: the names' margin, the cell side, one chunk's panel (cells and map numbers
    below), the title's room above, the figure size; and the texts wrapped to fit."""

    left: float
    cell: float
    panel: float
    top: float
    width: float
    height: float
    title: str
    bar_label: str
    foot: str


def _profile_layout(class_names: Sequence[str], maps: int, chunk: int, title: str, bar_label: str,
                    foot: str) -> _ProfileLayout:
    """Room for every text at MIN_PT (title 11 pt): names left, upright map numbers under each chunk of `chunk`
    maps, the colour bar's label wrapped to the bar's height, title and foot wrapped to the width."""
    k, per, chunks = len(class_names), min(maps, chunk), max(1, math.ceil(maps / chunk))
    cell = 0.19 if per > 32 else 0.3  # 0.19 in still holds an upright MIN_PT number and a class name a row
    left = max(text_inches(name, MIN_PT) for name in class_names) + 0.15 + lines_inches(1, MIN_PT) + 0.1
    numbers = text_inches(str(max(maps - 1, 0)), MIN_PT) + 0.15
    panel = k * cell + numbers + 0.15
    bar_lines = wrap_inches(bar_label, MIN_PT, max(1.0, chunks * panel - numbers - 0.15))
    bar = 0.15 + BAR_W + text_inches("−0.75", MIN_PT) + 0.15 + lines_inches(len(bar_lines), MIN_PT)
    width = max(6.0, left + per * cell + bar + 0.1)
    title_lines = wrap_inches(title, 11, width - left - 0.1)
    foot_lines = wrap_inches(foot, MIN_PT, width - left - 0.1) if foot else []
    top = 0.2 + lines_inches(len(title_lines), 11) + 0.15
    height = top + chunks * panel + lines_inches(1 + len(foot_lines), MIN_PT) + 0.2
    return _ProfileLayout(left, cell, panel, top, width, height, "\n".join(title_lines), "\n".join(bar_lines),
                          "\n".join(foot_lines))


def _profile_foot(silent: np.ndarray, dead: Sequence[int]) -> str:
    """The note under a class profile on its grey (silent) maps, naming the dead ones; '' when none is grey."""
    if not silent.any():
        return ""
    named = f"; dead (0 everywhere on every image): {_listed(dead)}" if len(dead) else ""
    return f"grey: {int(silent.sum())} map(s) with no positive class mean on these images{named}"


# --- class profile -------------------------------------------------------------------------------------------
def profile_figure(profile: np.ndarray, class_names: Sequence[str], *, layer: str, norm: str = "map",
                   order: str = "index", images: int | None = None, chunk: int = 64,
                   cmap: str = "viridis", dead: Sequence[int] = ()) -> Figure:
    """Heat map of a class profile (classes, maps): classes down, maps across, wrapped every `chunk` maps.

    norm "map": each map divided by its largest class mean (which class a map prefers; maps that never fire
    are grey); "layer": the raw means on one scale (which maps are strong). order "class": maps sorted by
    preferred class (then by strength), map numbers kept on the axis. `dead`: the maps that are 0 everywhere on
    these images (cnnscope.inspect.dead_maps), named under the figure.
    """
    check_profile_options(norm, order)
    profile = np.asarray(profile, np.float64)
    k, m = profile.shape
    peak = np.nanmax(np.abs(profile), axis=0) if k else np.zeros(m)
    silent = ~(peak > 0)
    shown, (vmin, vmax), label = _profile_colours(profile, peak, silent, norm)
    columns = np.arange(m)
    if order == "class":
        preferred = np.where(silent, k, np.argmax(np.nan_to_num(profile, nan=-np.inf), axis=0) if k else 0)
        columns = np.lexsort((-peak, preferred))
    over = f" over {images:,} images" if images else ""
    at = _profile_layout(class_names, m, chunk, f"Class profile of {layer}: mean activation of each map per class"
                         f"{over}", label, _profile_foot(silent, dead))
    fig = new_figure(figsize=(at.width, at.height))
    colour = matplotlib.colormaps[cmap].with_extremes(bad="#cfcfcf")
    image, axes, chunks = None, [], max(1, math.ceil(m / chunk))
    for c in range(chunks):
        cols = columns[c * chunk:(c + 1) * chunk]
        y = at.height - at.top - c * at.panel - k * at.cell
        ax = fig.add_axes([at.left / at.width, y / at.height, len(cols) * at.cell / at.width, k * at.cell / at.height])
        image = ax.imshow(shown[:, cols], cmap=colour, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        _label_cells(ax, class_names, cols)
        if c == chunks - 1:
            ax.set_xlabel("map" if order == "index" else "map (sorted by preferred class)", fontsize=MIN_PT)
        axes.append(ax)
    fig.text(at.left / at.width, 1 - 0.2 / at.height, at.title, fontsize=11, va="top")
    _side_colorbar(fig, axes, image, at.bar_label)
    if at.foot:
        fig.text(at.left / at.width, 0.1 / at.height, at.foot, fontsize=MIN_PT, color="#555555", va="bottom")
    return fig


# --- classification by activation patterns (series part VI) --------------------------------------------------
METHOD_STYLE = {"nearest_cosine": ("nearest class mean, cosine", "#3b6fb6"),
                "nearest_euclidean": ("nearest class mean, Euclidean", "#7fb3e6"),
                "linear": ("linear read-out", "#e08a2c")}


PER_MAP = "same, on the per-map means only"


def _line_labels(found: PatternClassification) -> tuple[str, str]:
    """The legend's words for the whole model's line and the chance line."""
    return (f"the whole model {found.model_accuracy:.2%}",
            f"chance {found.chance:.0%} (largest class {found.majority:.1%})")


def _legend_inches(found: PatternClassification) -> float:
    """The width of the accuracy panel's two-column legend at MIN_PT (widest label, line sample, gaps)."""
    labels = [label for label, _ in METHOD_STYLE.values()] + [PER_MAP, *_line_labels(found)]
    return 2 * (max(text_inches(label, MIN_PT) for label in labels) + 0.55)


def _accuracy_panel(ax, found: PatternClassification, under: float) -> None:
    """Grouped bars per layer (whole-output patterns), hollow markers for the per-map means, the model and
    chance as lines; the legend `under` inches below the panel's bottom (under the layer names)."""
    names = [item.layer for item in found.layers]
    x = np.arange(len(names))
    width = 0.8 / len(METHOD_STYLE)
    for i, (method, (label, colour)) in enumerate(METHOD_STYLE.items()):
        offset = (i - (len(METHOD_STYLE) - 1) / 2) * width
        ax.bar(x + offset, [item.accuracy["pattern"][method] for item in found.layers], width, color=colour,
               label=label)
        ax.plot(x + offset, [item.accuracy["profile"][method] for item in found.layers], "o", mfc="white",
                mec="#333333", ms=4, label=PER_MAP if i == 0 else None)
    model, chance = _line_labels(found)
    ax.axhline(found.model_accuracy, color="#2a8a3e", lw=1.3, label=model)
    ax.axhline(found.chance, color="#888888", lw=1, ls=":", label=chance)
    ax.set_xticks(x, ["input\n(pixels)" if n == "input" else n.replace("_", "_\n", 1) if len(n) > 9 else n
                      for n in names], fontsize=MIN_PT)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy", fontsize=MIN_PT)
    ax.tick_params(labelsize=MIN_PT)
    ax.grid(axis="y", color="#e4e4e4", lw=0.6)
    ax.set_axisbelow(True)
    height = ax.get_position().height * ax.figure.get_figheight()
    ax.legend(fontsize=MIN_PT, loc="upper center", bbox_to_anchor=(0.5, -under / height), ncol=2, frameon=False,
              borderaxespad=0)


def _recall_names(matrix: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Each class name with the share of its images the classifier gets right ('—' for a class with none)."""
    rows = matrix.sum(axis=1)
    return [f"{name} {matrix[i, i] / rows[i]:.0%}" if rows[i] else f"{name} —" for i, name in enumerate(class_names)]


def _confusion_panel(ax, matrix: np.ndarray, class_names: Sequence[str], cells: MatrixCells, rotate: bool) -> Any:
    """Counts, colours by each true class's share (rows sum to 1), per-class accuracy beside the class name;
    returns the image (for a colour bar when the cells are too small for their counts)."""
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.where(rows > 0, matrix / np.maximum(rows, 1), 0.0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if cells.counts:
        draw_counts(ax, matrix, share > 0.5)
    label_matrix(ax, class_names, _recall_names(matrix, class_names), cells, rotate)
    ax.set_ylabel("true class (share it gets right)", fontsize=MIN_PT)
    ax.set_xlabel("nearest class-mean pattern", fontsize=MIN_PT)
    return image


def _share_colorbar(fig: Figure, image: Any, rect: list[float]) -> None:
    """The colour bar of a share-coloured matrix whose cells dropped their counts."""
    bar = fig.colorbar(image, cax=fig.add_axes(rect), format="{x:.0%}")
    bar.ax.tick_params(labelsize=MIN_PT)
    bar.set_label("share of the true class", fontsize=MIN_PT)


def _classify_texts(found: PatternClassification, item, layer: str, k: int) -> tuple[str, str, str]:
    """The figure's title, its note (what the bars were computed on) and the confusion panel's title."""
    pooled = "" if all(tuple(i.grid) == tuple(i.shape[1:]) for i in found.layers) else \
        f" (layers wider than {found.max_features:,} values average-pooled over space first)"
    note = (f"Class means over {found.train_images:,} training images; accuracy on {found.test_images:,} test "
            f"images. Bars: the layer's whole output flattened{pooled}. Read-out: {found.readout.describe()}.")
    panel = f"{layer}, nearest class mean (cosine): {item.accuracy['pattern']['nearest_cosine']:.2%} right"
    if not matrix_cells(np.asarray(item.confusion["pattern"])).counts:
        panel += f" ({dropped_counts_note(k)})"
    return ("Classification by activation patterns: is each test image nearest its own class's mean pattern?",
            note, panel)


def classify_figure(found: PatternClassification, class_names: Sequence[str], *, layer: str) -> Figure:
    """Series part VI: test accuracy per layer of the nearest class-mean pattern (cosine, Euclidean) and of a
    linear read-out, beside the whole model and chance; and the confusion of the nearest-mean (cosine)
    classifier on `layer`'s patterns. Laid out in inches, every text at least MIN_PT (title 11 pt)."""
    item = found.layer(layer)
    matrix = np.asarray(item.confusion["pattern"])
    cells = matrix_cells(matrix)
    box = matrix_box(class_names, _recall_names(matrix, class_names), cells)
    left_w = max(0.95 * len(found.layers) + 1.0, _legend_inches(found))
    W = 0.75 + left_w + 0.4 + box.width + 0.1
    title, note, panel = _classify_texts(found, item, layer, len(class_names))
    title, note = wrap_inches(title, 11, W - 0.75), wrap_inches(note, MIN_PT, W - 0.75)
    panel = wrap_inches(panel, MIN_PT, box.width - 0.1)
    head = 0.15 + lines_inches(len(title), 11) + 0.1 + lines_inches(len(note), MIN_PT) + 0.3
    right_h = lines_inches(len(panel), MIN_PT) + 0.1 + box.side + box.bottom
    under = lines_inches(2, MIN_PT) + 0.2  # the layer names (two lines) under the bars
    legend = lines_inches(3, MIN_PT) + 0.2
    plot_h = max(3.4, right_h - under - legend)
    H = head + max(plot_h + under + legend, right_h) + 0.1
    fig = new_figure(figsize=(W, H))
    _accuracy_panel(fig.add_axes([0.75 / W, (H - head - plot_h) / H, left_w / W, plot_h / H]), found, under)
    x0 = 0.75 + left_w + 0.4 + box.left
    y0 = H - head - lines_inches(len(panel), MIN_PT) - 0.1 - box.side
    cx = fig.add_axes([x0 / W, y0 / H, box.side / W, box.side / H])
    image = _confusion_panel(cx, matrix, class_names, cells, box.rotate)
    fig.text((x0 - box.left) / W, (y0 + box.side + 0.1) / H, "\n".join(panel), fontsize=MIN_PT, va="bottom")
    if not cells.counts:
        _share_colorbar(fig, image, [(x0 + box.side + 0.15) / W, y0 / H, 0.15 / W, box.side / H])
    fig.text(0.75 / W, 1 - 0.15 / H, "\n".join(title), fontsize=11, va="top")
    fig.text(0.75 / W, 1 - (0.25 + lines_inches(len(title), 11)) / H, "\n".join(note), fontsize=MIN_PT, va="top",
             color="#444444")
    return fig


def _listed(maps: Sequence[int], most: int = 12) -> str:
    """Map numbers for a caption: '3, 17, 40' or the first `most` and how many more."""
    shown = ", ".join(str(m) for m in list(maps)[:most])
    return shown + (f" and {len(maps) - most} more" if len(maps) > most else "")


# --- top images ----------------------------------------------------------------------------------------------
def _top_picture(ax, img: np.ndarray, box: np.ndarray, outlined: bool) -> None:
    """One top image; `outlined`: the patch `box` (top, left, bottom, right) outlined, the rest washed dark."""
    h, w = img.shape[:2]
    show_picture(ax, img)
    t, left, b, right = (int(v) for v in box)
    if outlined:
        wash = np.zeros((h, w, 4))
        wash[..., :3] = (0.12, 0.16, 0.32)
        wash[..., 3] = 0.62
        wash[t:b, left:right, 3] = 0.0
        ax.imshow(wash, interpolation="nearest")
        ax.add_patch(Rectangle((left - 0.5, t - 0.5), right - left, b - t, fill=False, edgecolor=HIGHLIGHT,
                               linewidth=1.6))
    ax.set_xticks([])
    ax.set_yticks([])


def _top_heading(top: TopImages, n: int, searched: int | None) -> tuple[str, str]:
    """The figure's title (red words for a dead map) and the line saying what each picture's title holds."""
    kind = "unit" if top.receptive_field is None else "map"
    field = "" if top.receptive_field is None else (
        f"; outlined: the {top.receptive_field[0]}×{top.receptive_field[1]} input patch (clipped to the image) "
        f"seen by the node where the map peaks")
    over = f" of {searched:,}" if searched else ""
    head = (f"{top.layer}, {kind} {top.map_index} is dead: 0 everywhere on all{over} images searched (shown: the "
            f"first {n}, not a ranking)" if top.dead else
            f"{top.layer}, {kind} {top.map_index}: the {n} images{over} that excite it most")
    return head, f"title: image index · class, then the {kind}'s maximum{field}"


def top_images_figure(raw_images: np.ndarray, top: TopImages, *, labels: Sequence[int] | None = None,
                      class_names: Sequence[str] | None = None, cols: int = 8, searched: int | None = None) -> Figure:
    """The images that excite a map most, each with the patch of the input its strongest node sees highlighted
    (outline; the rest of the image under a dark wash), the image's index, class and the map's value. A dead
    map (0 on every image searched) says so in the title: its "top" images are just the first ones. Laid out in
    inches: each cell as wide as its title at MIN_PT needs (at least 1.45 inches)."""
    raw_images = np.asarray(raw_images)
    n = len(top.indices)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    titles = []
    for slot, (index, value) in enumerate(zip(top.indices, top.values, strict=True)):
        y = None if labels is None else int(labels[slot])
        label = "" if y is None else f" · {class_names[y] if class_names is not None else y}"
        titles.append(f"#{int(index)}{label}\n{float(value):.2f}")
    size = max([1.45] + [text_inches(t.split("\n")[0], MIN_PT) + 0.12 for t in titles])
    width = max(cols * size + 0.2, 4.5)
    head, sub = _top_heading(top, n, searched)
    head, sub = wrap_inches(head, 11, width - 0.2), wrap_inches(sub, MIN_PT, width - 0.2)
    head_h = 0.12 + lines_inches(len(head), 11) + 0.06 + lines_inches(len(sub), MIN_PT) + 0.1
    title_h = lines_inches(2, MIN_PT) + 0.06
    fig = new_figure(figsize=(width, head_h + rows * (size + title_h) + 0.05))
    W, H = fig.get_size_inches()
    x0 = (W - cols * size) / 2
    for slot, title in enumerate(titles):
        r, c = divmod(slot, cols)
        ax = fig.add_axes([(x0 + c * size + 0.04) / W, (H - head_h - (r + 1) * (size + title_h)) / H,
                           (size - 0.08) / W, (size - 0.08) / H])
        _top_picture(ax, raw_images[slot], top.boxes[slot], top.receptive_field is not None)
        ax.set_title(title, fontsize=MIN_PT, pad=2, linespacing=1.1)
    fig.text(0.5, 1 - 0.12 / H, "\n".join(head), fontsize=11, ha="center", va="top",
             color="#b00020" if top.dead else "black")
    fig.text(0.5, 1 - (0.18 + lines_inches(len(head), 11)) / H, "\n".join(sub), fontsize=MIN_PT, ha="center",
             va="top", color="#444444")
    return fig


# --- errors --------------------------------------------------------------------------------------------------
def _percent(p: float) -> str:
    """A probability as a percentage that never rounds a mistake up to a certain 100 %."""
    return ">99.9%" if p > 0.999 else f"{p:.1%}"


def _caption_lines(class_names: Sequence[str]) -> tuple[int, float]:
    """How many lines a mistake's caption takes and the width of its widest possible line at MIN_PT (so the
    gallery's size depends on the class names, not on which mistakes happen to be shown): 2 for short names,
    3 for long ones, 4 when a third line '→ predicted (confidence)' would pass 1.3 inches."""
    longest = max(class_names, key=lambda name: text_inches(name, MIN_PT))
    if max(map(len, class_names)) <= 3:
        return 2, text_inches(f"#00000: {longest} → {longest}", MIN_PT)
    three = text_inches(f"→ {longest} (>99.9%)", MIN_PT)
    return (3, three) if three <= 1.3 else (4, text_inches(f"→ {longest}", MIN_PT))


def _error_captions(errors: Misclassified, class_names: Sequence[str], shown: int, lines: int) -> list[str]:
    """Each shown mistake's caption on `lines` lines: index, true → predicted class, the model's confidence."""
    rows = [(int(errors.indices[s]), class_names[int(errors.true[s])], class_names[int(errors.predicted[s])],
             _percent(float(errors.confidence[s]))) for s in range(shown)]
    layout = {2: "#{i}: {t} → {p}\n{sure}", 3: "#{i}\n{t}\n→ {p} ({sure})", 4: "#{i}\n{t}\n→ {p}\n{sure}"}[lines]
    return [layout.format(i=i, t=t, p=p, sure=sure) for i, t, p, sure in rows]


@dataclass(frozen=True)
class _Gallery:
    """The gallery of mistakes in inches: columns, rows, one cell's width and height, its picture's side."""

    cols: int
    rows: int
    cell_w: float
    cell_h: float
    picture: float

    @property
    def width(self) -> float:
        return self.cols * self.cell_w


def _gallery(shown: int, lines: int, widest: float, beside: float, cols: int | None) -> _Gallery:
    """Cells as wide as the widest caption line and at least 1.1 inches; by default as many rows as fit `beside`
    inches of height (the matrix), 6 to 9 images a row."""
    cell_w = max(1.1, widest + 0.12)
    picture = cell_w - 0.1
    cell_h = picture + lines_inches(lines, MIN_PT) + 0.15
    if cols is None:
        cols = min(9, max(6, math.ceil(shown / max(1, round(beside / cell_h)))))
    cols = max(1, min(cols, max(shown, 1)))
    return _Gallery(cols, max(1, math.ceil(shown / cols)), cell_w, cell_h, picture)


def _matrix_block(fig: Figure, matrix: np.ndarray, class_names: Sequence[str], at: tuple[float, float],
                  cells: MatrixCells, box: MatrixBox, title: list[str]) -> None:
    """The confusion matrix (as cnnscope.plots.confusion_figure draws it) with its title above, its top-left
    corner `at` (x, y) inches from the figure's bottom left; a colour bar and a note when the counts are dropped."""
    W, H = fig.get_size_inches()
    x, y = at
    fig.text(x / W, y / H, "\n".join(title), fontsize=10, va="top")
    y -= lines_inches(len(title), 10) + 0.1 + box.side
    ax = fig.add_axes([(x + box.left) / W, y / H, box.side / W, box.side / H])
    image = draw_confusion(ax, matrix, class_names, cells, box.rotate)
    if not cells.counts:
        count_colorbar(fig, image, [(x + box.left + box.side + 0.15) / W, y / H, 0.15 / W, box.side / H], matrix)
        note = wrap_inches(dropped_counts_note(len(matrix)), MIN_PT, box.width)
        fig.text(x / W, (y - box.bottom) / H, "\n".join(note), fontsize=MIN_PT, va="top", color="#444444")


def errors_figure(raw_images: np.ndarray, errors: Misclassified, class_names: Sequence[str], *,
                  max_images: int = 36, cols: int | None = None) -> Figure:
    """The confusion matrix (as cnnscope.plots.confusion_figure draws it) beside a gallery of misclassified
    images, most confident mistakes first, each with its true and predicted class and the model's confidence.
    Laid out in inches, every text at least MIN_PT."""
    shown = min(max_images, len(errors.indices))
    matrix = np.asarray(errors.confusion)
    cells = matrix_cells(matrix)
    box = matrix_box(class_names, class_names, cells)
    title = wrap_inches(confusion_title(matrix), 10, box.width)
    note = 0 if cells.counts else lines_inches(len(wrap_inches(dropped_counts_note(len(matrix)), MIN_PT,
                                                                box.width)), MIN_PT)
    block_h = lines_inches(len(title), 10) + 0.1 + box.side + box.bottom + note
    lines, widest = _caption_lines(class_names)
    captions = _error_captions(errors, class_names, shown, lines)
    grid = _gallery(shown, lines, widest, block_h, cols)
    head = _errors_head(errors, shown, grid.width)
    head_h = 0.15 + lines_inches(len(head[0]), 11) + lines_inches(len(head[1]), MIN_PT) + 0.2
    W = 0.1 + box.width + 0.4 + max(grid.width, 4.5) + 0.1
    H = max(head_h + grid.rows * grid.cell_h, block_h + 0.4) + 0.1
    fig = new_figure(figsize=(W, H))
    _matrix_block(fig, matrix, class_names, (0.1, H - 0.3), cells, box, title)
    left = 0.1 + box.width + 0.4
    for slot, caption in enumerate(captions):
        r, c = divmod(slot, grid.cols)
        _mistake(fig, raw_images[slot], caption, [left + c * grid.cell_w + 0.05, H - head_h - r * grid.cell_h -
                                                  grid.cell_h + 0.05, grid.picture, grid.picture])
    fig.text(left / W, 1 - 0.15 / H, "\n".join(head[0]), fontsize=11, va="top")
    if head[1]:
        fig.text(left / W, 1 - (0.15 + lines_inches(len(head[0]), 11)) / H, "\n".join(head[1]), fontsize=MIN_PT,
                 va="top", color="#444444")
    return fig


def _errors_head(errors: Misclassified, shown: int, width: float) -> tuple[list[str], list[str]]:
    """The gallery's title and subtitle wrapped to its width (at least 4.5 inches)."""
    total = len(errors.indices)
    what = (f"{shown} of {total:,} misclassified images (accuracy {errors.accuracy:.4f} on {errors.total:,}), "
            f"most confident mistakes first" if total else f"no misclassified images among {errors.total:,}")
    sub = "image index: true class → predicted class, the model's confidence" if total else ""
    return wrap_inches(what, 11, max(width, 4.5)), wrap_inches(sub, MIN_PT, max(width, 4.5)) if sub else []


def _mistake(fig: Figure, raw: np.ndarray, caption: str, rect: list[float]) -> None:
    """One misclassified picture, framed in red, its caption above; rect in inches."""
    W, H = fig.get_size_inches()
    gx = fig.add_axes([rect[0] / W, rect[1] / H, rect[2] / W, rect[3] / H])
    show_picture(gx, raw)
    gx.set_xticks([])
    gx.set_yticks([])
    for spine in gx.spines.values():
        spine.set_color(WRONG)
    gx.set_title(caption, fontsize=MIN_PT, color=WRONG, pad=2, linespacing=1.1)
