"""Figures of classification by activation patterns: class profiles, the images that excite a map most
(receptive field highlighted), and the misclassified images beside the confusion matrix."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.classify import PatternClassification
from cnnscope.inspect.profile import Misclassified, TopImages
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import show_picture
from cnnscope.plots.training import confusion_figure

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


def _label_cells(ax, class_names: Sequence[str], cols: np.ndarray, size: float) -> None:
    """Class names down, map numbers across, white lines between the cells."""
    k = len(class_names)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_ylabel("class", fontsize=8)
    ax.set_xticks(range(len(cols)), [str(i) for i in cols], fontsize=size, rotation=90)
    ax.tick_params(length=2, pad=1.5)
    ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)


def _side_colorbar(fig: Figure, axes: list, image, label: str) -> None:
    """One colour bar right of the first panel, reaching down to the last."""
    first, last = axes[0].get_position(), axes[-1].get_position()
    cax = fig.add_axes([first.x0 + first.width + 0.15 / fig.get_figwidth(), last.y0, 0.12 / fig.get_figwidth(),
                        first.y1 - last.y0])
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


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
    chunks = max(1, math.ceil(m / chunk))
    per = min(m, chunk)
    cell = 0.19 if per > 32 else 0.3
    width = max(6.0, per * cell + 2.6)
    panel_h = k * cell + 0.55
    fig = new_figure(figsize=(width, chunks * panel_h + 0.75))
    colour = matplotlib.colormaps[cmap].with_extremes(bad="#cfcfcf")
    image = None
    axes = []
    for c in range(chunks):
        cols = columns[c * chunk:(c + 1) * chunk]
        top = 1 - (0.55 + c * panel_h) / fig.get_figheight()
        ax = fig.add_axes([1.3 / width, top - k * cell / fig.get_figheight(), len(cols) * cell / width,
                           k * cell / fig.get_figheight()])
        image = ax.imshow(shown[:, cols], cmap=colour, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        _label_cells(ax, class_names, cols, 6 if per > 32 else 8)
        if c == chunks - 1:
            ax.set_xlabel("map" if order == "index" else "map (sorted by preferred class)", fontsize=8)
        axes.append(ax)
    over = f" over {images:,} images" if images else ""
    fig.suptitle(f"Class profile of {layer}: mean activation of each map per class{over}", fontsize=11,
                 x=1.3 / width, ha="left", y=1 - 0.2 / fig.get_figheight(), va="top")
    _side_colorbar(fig, axes, image, label)
    if silent.any():
        named = f"; dead (0 everywhere on every image): {_listed(dead)}" if len(dead) else ""
        fig.text(1.3 / width, 0.05 / fig.get_figheight(), f"grey: {int(silent.sum())} map(s) with no positive class "
                 f"mean on these images{named}", fontsize=7.5, color="#555555", va="bottom")
    return fig


# --- classification by activation patterns (series part VI) --------------------------------------------------
METHOD_STYLE = {"nearest_cosine": ("nearest class mean, cosine", "#3b6fb6"),
                "nearest_euclidean": ("nearest class mean, Euclidean", "#7fb3e6"),
                "linear": ("linear read-out", "#e08a2c")}


def _accuracy_panel(ax, found: PatternClassification) -> None:
    """Grouped bars per layer (whole-output patterns), hollow markers for the per-map means, the model and
    chance as lines."""
    names = [item.layer for item in found.layers]
    x = np.arange(len(names))
    width = 0.8 / len(METHOD_STYLE)
    for i, (method, (label, colour)) in enumerate(METHOD_STYLE.items()):
        offset = (i - (len(METHOD_STYLE) - 1) / 2) * width
        ax.bar(x + offset, [item.accuracy["pattern"][method] for item in found.layers], width, color=colour,
               label=label)
        ax.plot(x + offset, [item.accuracy["profile"][method] for item in found.layers], "o", mfc="white",
                mec="#333333", ms=4, label="same, on the per-map means only" if i == 0 else None)
    ax.axhline(found.model_accuracy, color="#2a8a3e", lw=1.3, label=f"the whole model {found.model_accuracy:.2%}")
    ax.axhline(found.chance, color="#888888", lw=1, ls=":", label=f"chance {found.chance:.0%} (largest class "
               f"{found.majority:.1%})")
    ax.set_xticks(x, ["input\n(pixels)" if n == "input" else n.replace("_", "_\n", 1) if len(n) > 9 else n
                      for n in names], fontsize=7.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy", fontsize=8.5)
    ax.tick_params(labelsize=7.5)
    ax.grid(axis="y", color="#e4e4e4", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)


def _confusion_panel(ax, confusion: np.ndarray, class_names: Sequence[str], title: str) -> None:
    """Counts, colours by each true class's share (rows sum to 1), per-class accuracy beside the class name."""
    matrix = np.asarray(confusion)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, matrix / np.maximum(rows, 1), 0.0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    k = len(matrix)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6 if k > 10 else 7,
                        color="white" if share[i, j] > 0.5 else "black")
    recall = [f"{name} {share[i, i]:.0%}" if rows[i, 0] else f"{name} —" for i, name in enumerate(class_names)]
    ax.set_yticks(range(k), recall, fontsize=7.5)
    ax.set_xticks(range(k), list(class_names), fontsize=7.5, rotation=90 if max(map(len, class_names)) > 3 else 0)
    ax.set_ylabel("true class (share it gets right)", fontsize=8.5)
    ax.set_xlabel("nearest class-mean pattern", fontsize=8.5)
    ax.set_title(title, fontsize=9)


def classify_figure(found: PatternClassification, class_names: Sequence[str], *, layer: str) -> Figure:
    """Series part VI: test accuracy per layer of the nearest class-mean pattern (cosine, Euclidean) and of a
    linear read-out, beside the whole model and chance; and the confusion of the nearest-mean (cosine)
    classifier on `layer`'s patterns."""
    item = found.layer(layer)
    k = len(class_names)
    side = max(3.6, 0.34 * k + 1.6)
    fig = new_figure(figsize=(max(6.5, 0.95 * len(found.layers) + 2.0) + side + 0.6, max(5.4, side + 1.7)))
    W, H = fig.get_size_inches()
    left_w = W - side - 1.7
    ax = fig.add_axes([0.6 / W, 1.45 / H, left_w / W, (H - 2.35) / H])
    _accuracy_panel(ax, found)
    cx = fig.add_axes([(W - side - 0.15) / W, 0.95 / H, (side - 0.9) / W, (H - 1.9) / H])
    _confusion_panel(cx, item.confusion["pattern"], class_names,
                     f"{layer}, nearest class mean (cosine): {item.accuracy['pattern']['nearest_cosine']:.2%} right")
    pooled = "" if all(tuple(i.grid) == tuple(i.shape[1:]) for i in found.layers) else \
        f" (layers wider than {found.max_features:,} values average-pooled over space first)"
    fig.text(0.6 / W, 1 - 0.15 / H, "Classification by activation patterns: is each test image nearest its own "
             "class's mean pattern?", fontsize=11, va="top")
    note = (f"Class means over {found.train_images:,} training images; accuracy on {found.test_images:,} test "
            f"images. Bars: the layer's whole output flattened{pooled}. Read-out: {found.readout.describe()}.")
    fig.text(0.6 / W, 1 - 0.45 / H, "\n".join(textwrap.wrap(note, round(W * 15))), fontsize=7.5, va="top",
             color="#444444", linespacing=1.3)
    return fig


def _listed(maps: Sequence[int], most: int = 12) -> str:
    """Map numbers for a caption: '3, 17, 40' or the first `most` and how many more."""
    shown = ", ".join(str(m) for m in list(maps)[:most])
    return shown + (f" and {len(maps) - most} more" if len(maps) > most else "")


# --- top images ----------------------------------------------------------------------------------------------
def top_images_figure(raw_images: np.ndarray, top: TopImages, *, labels: Sequence[int] | None = None,
                      class_names: Sequence[str] | None = None, cols: int = 8, searched: int | None = None) -> Figure:
    """The images that excite a map most, each with the patch of the input its strongest node sees highlighted
    (outline; the rest of the image under a dark wash), the image's index, class and the map's value. A dead
    map (0 on every image searched) says so in the title: its "top" images are just the first ones."""
    raw_images = np.asarray(raw_images)
    n = len(top.indices)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    size, title_h, head = 1.45, 0.38, 0.75
    fig = new_figure(figsize=(cols * size + 0.2, rows * (size + title_h) + head))
    W, H = fig.get_size_inches()
    for slot, (index, value, box) in enumerate(zip(top.indices, top.values, top.boxes, strict=True)):
        r, c = divmod(slot, cols)
        ax = fig.add_axes([(0.1 + c * size + 0.04) / W, (H - head - (r + 1) * (size + title_h)) / H,
                           (size - 0.08) / W, (size - 0.08) / H])
        img = raw_images[slot]
        h, w = img.shape[:2]
        show_picture(ax, img)
        t, left, b, right = (int(v) for v in box)
        if top.receptive_field is not None:
            wash = np.zeros((h, w, 4))
            wash[..., :3] = (0.12, 0.16, 0.32)
            wash[..., 3] = 0.62
            wash[t:b, left:right, 3] = 0.0
            ax.imshow(wash, interpolation="nearest")
            ax.add_patch(Rectangle((left - 0.5, t - 0.5), right - left, b - t, fill=False, edgecolor=HIGHLIGHT,
                                   linewidth=1.6))
        label = ""
        if labels is not None:
            y = int(labels[slot])
            label = f" · {class_names[y] if class_names is not None else y}"
        ax.set_title(f"#{int(index)}{label}\n{float(value):.2f}", fontsize=7.5, pad=2, linespacing=1.1)
        ax.set_xticks([])
        ax.set_yticks([])
    kind = "unit" if top.receptive_field is None else "map"
    field = "" if top.receptive_field is None else (
        f"; outlined: the {top.receptive_field[0]}×{top.receptive_field[1]} input patch (clipped to the image) "
        f"seen by the node where the map peaks")
    over = f" of {searched:,}" if searched else ""
    head = (f"{top.layer}, {kind} {top.map_index} is dead: 0 everywhere on all{over} images searched (shown: the "
            f"first {n}, not a ranking)" if top.dead else
            f"{top.layer}, {kind} {top.map_index}: the {n} images{over} that excite it most")
    fig.text(0.5, 1 - 0.12 / H, head, fontsize=10.5, ha="center", va="top", color="#b00020" if top.dead else "black")
    fig.text(0.5, 1 - 0.42 / H, f"title: image index · class, then the {kind}'s maximum{field}", fontsize=8,
             ha="center", va="top", color="#444444")
    return fig


# --- errors --------------------------------------------------------------------------------------------------
def _figure_pixels(fig: Figure, dpi: int = 220) -> np.ndarray:
    """Render a figure to an RGBA array (to place one figure inside another)."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def _percent(p: float) -> str:
    """A probability as a percentage that never rounds a mistake up to a certain 100 %."""
    return ">99.9%" if p > 0.999 else f"{p:.1%}"


def errors_figure(raw_images: np.ndarray, errors: Misclassified, class_names: Sequence[str], *,
                  max_images: int = 36, cols: int | None = None) -> Figure:
    """The confusion matrix (cnnscope.plots.confusion_figure) beside a gallery of misclassified images, most
    confident mistakes first, each with its true and predicted class and the model's confidence."""
    shown = min(max_images, len(errors.indices))
    matrix = _figure_pixels(confusion_figure(errors.confusion, list(class_names)))
    mh, mw = matrix.shape[:2]
    matrix_w = 5.6 if len(class_names) <= 10 else 7.0
    matrix_h = matrix_w * mh / mw
    long_names = max(len(name) for name in class_names) > 3
    cell_w, cell_h = (1.3, 1.75) if long_names else (1.1, 1.42)
    if cols is None:  # as many rows as fit beside the matrix, 6 to 9 images a row
        cols = min(9, max(6, math.ceil(shown / max(1, round(matrix_h / cell_h)))))
    cols = max(1, min(cols, max(shown, 1)))
    rows = max(1, math.ceil(shown / cols))
    gallery_w = cols * cell_w
    height = max(matrix_h + 0.6, rows * cell_h + 0.9)
    fig = new_figure(figsize=(matrix_w + gallery_w + 0.6, height))
    W, H = fig.get_size_inches()
    ax = fig.add_axes([0.1 / W, (H - 0.5 - matrix_h) / H, matrix_w / W, matrix_h / H])
    ax.imshow(matrix, interpolation="antialiased")
    ax.axis("off")
    left = (matrix_w + 0.4) / W
    for slot in range(shown):
        r, c = divmod(slot, cols)
        x0 = left + c * cell_w / W
        y0 = (H - 0.55 - (r + 1) * cell_h) / H
        gx = fig.add_axes([x0 + 0.05 / W, y0, (cell_w - 0.1) / W, (cell_h - 0.5) / H])
        show_picture(gx, raw_images[slot])
        gx.set_xticks([])
        gx.set_yticks([])
        for spine in gx.spines.values():
            spine.set_color(WRONG)
        t, p = class_names[int(errors.true[slot])], class_names[int(errors.predicted[slot])]
        sure = _percent(float(errors.confidence[slot]))
        text = (f"#{int(errors.indices[slot])}\n{t}\n→ {p} ({sure})" if long_names
                else f"#{int(errors.indices[slot])}: {t} → {p}\n{sure}")
        gx.set_title(text, fontsize=6.8 if long_names else 7.5, color=WRONG, pad=2, linespacing=1.1)
    total = len(errors.indices)
    what = (f"{shown} of {total:,} misclassified images (accuracy {errors.accuracy:.4f} on {errors.total:,}), "
            f"most confident mistakes first" if total else f"no misclassified images among {errors.total:,}")
    fig.text(left, (H - 0.12) / H, what, fontsize=10, va="top")
    if total:
        fig.text(left, (H - 0.34) / H, "image index: true class → predicted class, the model's confidence",
                 fontsize=8, va="top", color="#444444")
    return fig
