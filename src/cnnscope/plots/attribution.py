"""The explain figures: input, heat map, overlay and the deletion test's curves with its verdict; every method side
by side, each with its colour bar and verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.methods import METHODS
from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import MIN_PT, show_picture

NOT_SEEN = "#b8c4cc"  # pixels no cell of Grad-CAM's layer sees: drawn grey, not as a zero


def _title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def _heat_style(heat: np.ndarray, signed: bool | None, cmap: str | None) -> tuple[Normalize, Any]:
    """Diverging map centred on zero for signed heat maps, sequential otherwise; NaN drawn as 'not seen'."""
    finite = heat[np.isfinite(heat)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if signed is None:
        signed = lo < 0 < hi
    if signed:
        bound = max(abs(lo), abs(hi)) or 1.0
        return TwoSlopeNorm(0.0, -bound, bound), matplotlib.colormaps[cmap or "RdBu_r"].with_extremes(bad=NOT_SEEN)
    return Normalize(min(lo, 0.0), hi or 1.0), matplotlib.colormaps[cmap or "inferno"].with_extremes(bad=NOT_SEEN)


def _overlay(ax, image: np.ndarray, heat: np.ndarray, norm: Normalize, colormap) -> None:
    """The heat map over the image; opacity follows |heat| so low values leave the digit visible."""
    show_picture(ax, image)
    scale = np.nanmax(np.abs(heat)) if np.isfinite(heat).any() else 0.0
    alpha = np.sqrt(np.clip(np.nan_to_num(np.abs(heat)) / (scale or 1.0), 0, 1)) * 0.85
    alpha = np.where(np.isnan(heat), 0.6, alpha)
    ax.imshow(heat, cmap=colormap, norm=norm, alpha=alpha, interpolation="nearest")


def _unseen_note(heat: np.ndarray, layer: str | None) -> str:
    if not np.isnan(heat).any():
        return ""
    return f"grey: pixels no {layer or 'layer'} cell sees"


RANKING_STYLE = {"method": ("#5b3fd6", "method"), "brightness": ("#e08a00", "brightness (no model)"),
                 "random": ("#8a8a8a", "random")}


def _colour_bar(fig: Figure, ax, norm: Normalize, colormap) -> None:
    bar = fig.colorbar(ScalarMappable(norm, colormap), ax=ax, fraction=0.046, pad=0.03)
    bar.ax.yaxis.set_major_locator(MaxNLocator(5))  # five ticks leave room for MIN_PT labels
    bar.ax.tick_params(labelsize=MIN_PT)


def _verdict(deletion: dict[str, Any]) -> tuple[str, bool]:
    """The deletion panel's title: one image's verdict, or the share of images that pass."""
    passes = deletion["passes"]
    if isinstance(passes, bool):
        return f"deletion (lower is better): {'PASSES' if passes else 'FAILS'}", passes
    return f"deletion: passes on {passes:.0%} of {deletion['images']} images", passes >= 0.5


def _curves(ax, deletion: dict[str, Any], kind: str, method: str) -> None:
    """One panel: the method's, the brightness and the random ranking's deletion (or insertion) curves, AUCs in
    the legend; the verdict in the title of the deletion panel."""
    fractions = 100 * np.asarray(deletion["fractions"])
    for name, row in deletion["rankings"].items():
        colour, label = RANKING_STYLE[name]
        label = _title(method) if name == "method" else label
        ax.plot(fractions, row[kind], color=colour, lw=2.2 if name == "method" else 1.4, marker=".", ms=4,
                label=f"{label}: AUC {row[f'{kind}_auc']:.3f}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"% of pixels {'blanked' if kind == 'deletion' else 'inserted into black'},\nmost important first",
                  fontsize=MIN_PT)
    ax.set_ylabel("class probability", fontsize=MIN_PT)
    ax.tick_params(labelsize=MIN_PT)
    # below the panel, where it hides no curve: three lines of MIN_PT text do not fit inside it
    ax.legend(fontsize=MIN_PT, loc="upper center", bbox_to_anchor=(0.5, -0.24), frameon=False)
    if kind == "deletion":
        text, good = _verdict(deletion)
        ax.set_title(text, fontsize=9.5, color="#1a7f37" if good else "#c0392b", fontweight="bold")
    else:
        ax.set_title("insertion (higher is better)", fontsize=9.5)


def explain_figure(image: np.ndarray, heatmap: np.ndarray, *, method: str, caption: str = "",
                   title: str = "", deletion: dict[str, Any] | None = None, cmap: str | None = None,
                   signed: bool | None = None, layer: str | None = None) -> Figure:
    """Input image (raw pixels), heat map, heat map over the image, and optionally the deletion test of one image
    (`DeletionResult.summary(i)`): deletion and insertion curves of the method, brightness and random rankings
    with the verdict. Signed heat maps get a diverging map centred on zero; NaN pixels (never seen by Grad-CAM's
    layer) are drawn grey as 'not seen'."""
    image, heat = np.asarray(image, np.float32), np.asarray(heatmap, np.float32)
    if image.shape[:2] != heat.shape or heat.ndim != 2 or not (image.ndim == 2 or image.shape[2:] == (3,)):
        raise ConfigError(f"the image must be (H, W) or (H, W, 3) and the heat map (H, W), received {image.shape} "
                          f"and {heat.shape}")
    norm, colormap = _heat_style(heat, signed, cmap)
    panels = 5 if deletion is not None else 3
    fig = new_figure(figsize=(2.75 * panels + 0.6, 3.9 if deletion is None else 4.6))
    axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": [1, 1, 1, 1.35, 1.35][:panels]})
    show_picture(axes[0], image)
    axes[0].set_title("input", fontsize=10)
    axes[1].imshow(heat, cmap=colormap, norm=norm, interpolation="nearest")
    axes[1].set_title(_title(method), fontsize=10)
    axes[1].set_xlabel(_unseen_note(heat, layer), fontsize=MIN_PT)
    _colour_bar(fig, axes[1], norm, colormap)
    _overlay(axes[2], image, heat, norm, colormap)
    axes[2].set_title("overlay", fontsize=10)
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    if deletion is not None:
        _curves(axes[3], deletion, "deletion", method)
        _curves(axes[4], deletion, "insertion", method)
    if caption:
        axes[0].set_xlabel(caption, fontsize=MIN_PT, loc="left")
    if title:
        fig.suptitle(title, fontsize=11.5, fontweight="bold", x=0.02, ha="left")
    fig.tight_layout()
    return fig


def deletion_curves_figure(deletion: dict[str, Any], method: str, title: str = "") -> Figure:
    """The deletion and insertion curves of a deletion test (`DeletionResult.summary()`, one image or the mean
    over many) side by side, with the verdict."""
    fig = new_figure(figsize=(8.6, 4.5))
    axes = fig.subplots(1, 2)
    _curves(axes[0], deletion, "deletion", method)
    _curves(axes[1], deletion, "insertion", method)
    if title:
        fig.suptitle(title, fontsize=10.5, x=0.02, ha="left")
    fig.tight_layout()
    return fig


def deletion_caption(summary: dict[str, Any]) -> str:
    """One image's deletion test in words, a line per ranking (deletion / insertion AUC) and the verdict against
    brightness; lines short enough for a 3-inch panel at MIN_PT."""
    r = summary["rankings"]
    if summary["passes"]:
        verdict = "PASSES: beats brightness" + ("" if summary["beats_random"] else " (not random)")
    else:
        verdict = "FAILS: not below brightness" + ("" if summary["beats_random"] else ", nor random")
    rows = [f"{label} {r[name]['deletion_auc']:.3f} / {r[name]['insertion_auc']:.3f}"
            for name, label in (("method", "method"), ("brightness", "bright"), ("random", "random"))]
    return "AUC deletion / insertion:\n" + "\n".join(rows) + f"\n{verdict}"


def _sign_legend(fig: Figure) -> None:
    """One legend for every panel: what the colours of signed and unsigned methods mean."""
    handles = [Patch(color=matplotlib.colormaps["RdBu_r"](0.9), label="signed methods: red raises the class score"),
               Patch(color=matplotlib.colormaps["RdBu_r"](0.1), label="signed: blue lowers it (white: 0)"),
               Patch(color=matplotlib.colormaps["inferno"](0.85), label="unsigned methods: bright matters most"),
               Patch(color=NOT_SEEN, label="grey: pixels the layer never sees")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=MIN_PT, frameon=False)


def methods_figure(image: np.ndarray, heats: dict[str, np.ndarray], captions: dict[str, str], *, caption: str = "",
                   title: str = "", layer: str | None = None, cols: int = 5) -> Figure:
    """The input and one overlay per method side by side, each with its colour bar and captioned with its
    deletion result; one legend below for the colours of signed and unsigned methods."""
    image = np.asarray(image, np.float32)
    rows = -(-(len(heats) + 1) // cols)
    fig = new_figure(figsize=(3.1 * cols, 4.6 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    show_picture(flat[0], image)
    flat[0].set_title("input", fontsize=10)
    flat[0].set_xlabel(caption, fontsize=MIN_PT, loc="left")
    for ax, (name, heat) in zip(flat[1:], heats.items(), strict=False):
        heat = np.asarray(heat, np.float32)
        norm, colormap = _heat_style(heat, METHODS[name].signed if name in METHODS else None, None)
        _overlay(ax, image, heat, norm, colormap)
        _colour_bar(fig, ax, norm, colormap)
        note = _unseen_note(heat, layer)
        ax.set_title(_title(name) + (f" ({layer})" if note else ""), fontsize=9.5)
        ax.set_xlabel(captions.get(name, "") + (f"\n{note}" if note else ""), fontsize=MIN_PT)
    for ax in flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in flat[len(heats) + 1:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11.5, fontweight="bold", x=0.02, ha="left")
    _sign_legend(fig)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return fig


def input_caption(source: str, label: str | None, names: Sequence[str], probs: np.ndarray, cls: int) -> str:
    """Where the image comes from, its true class, the prediction and (when different) the class explained."""
    predicted = int(probs.argmax())
    truth = f"  true: {label}\n" if label is not None else "\n"
    caption = f"{source}{truth}predicted {names[predicted]} ({probs[predicted]:.1%})"
    if cls != predicted:
        caption += f"\ntarget {names[cls]} ({probs[cls]:.1%})"
    return caption


def explanation_figure(method: str, raw: np.ndarray, results: dict[str, tuple[np.ndarray, dict[str, Any]]],
                       class_name: str, caption: str, why: str, layer: str, run_name: str,
                       note: str = "") -> Figure:
    """The explain command's figure from its results ({method: (heat map, one image's deletion test)}): one
    method gives input, heat map, overlay and its deletion and insertion curves with the verdict; method 'all'
    every method's overlay side by side, each with its verdict. `note` (e.g. how a colour image's channels became
    one value per pixel) goes on a second title line."""
    if method == "all":
        captions = {name: deletion_caption(summary) for name, (_, summary) in results.items()}
        passed = sum(summary["passes"] for _, summary in results.values())
        beat = sum(summary["beats_random"] for _, summary in results.values())
        return methods_figure(raw, {name: heat for name, (heat, _) in results.items()}, captions, caption=caption,
                              title=f"{why} {len(results)} methods: {passed} pass (deletion AUC below the "
                              f"brightness ranking's), {beat} beat random  ({run_name})"
                              + (f"\n{note}" if note else ""),
                              layer=layer)
    heat, summary = results[method]
    where = f" on {layer}" if METHODS[method].uses_layer else ""
    return explain_figure(np.asarray(raw), heat, method=method, caption=caption, deletion=summary,
                          title=f"{why} {METHODS[method].title}{where}  ({run_name})" + (f"\n{note}" if note else ""),
                          signed=METHODS[method].signed, layer=layer)
