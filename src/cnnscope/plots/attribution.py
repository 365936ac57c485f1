"""The explain figures: input, heat map, overlay and what blanking the top pixels does; every method side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from ..errors import ConfigError
from . import backend  # noqa: F401  (Agg, except in a notebook)
from .figures import show_picture

NOT_SEEN = "#b8c4cc"  # pixels no cell of Grad-CAM's layer sees: drawn grey, not as a zero


def _title(method: str) -> str:
    from ..inspect.methods import METHODS

    return METHODS[method].title if method in METHODS else method


def top_pixel_mask(heatmap: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Boolean (H, W): the `fraction` of pixels the heat map ranks highest (NaN, "not seen", ranks last)."""
    flat = np.nan_to_num(np.asarray(heatmap, dtype=np.float64).ravel(), nan=-np.inf)
    k = int(round(fraction * flat.size))
    mask = np.zeros(flat.size, bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(np.shape(heatmap))


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


def explain_figure(image: np.ndarray, heatmap: np.ndarray, *, method: str, caption: str = "",
                   title: str = "", blanked: np.ndarray | None = None, blanked_mask: np.ndarray | None = None,
                   blanked_caption: str = "", cmap: str | None = None, signed: bool | None = None,
                   layer: str | None = None) -> Figure:
    """Input image (raw pixels), heat map, heat map over the image, and optionally the image with its top-ranked
    pixels blanked. Signed heat maps get a diverging map centred on zero; NaN pixels (never seen by Grad-CAM's
    layer) are drawn grey as 'not seen'."""
    image, heat = np.asarray(image, np.float32), np.asarray(heatmap, np.float32)
    if image.shape[:2] != heat.shape or heat.ndim != 2 or not (image.ndim == 2 or image.shape[2:] == (3,)):
        raise ConfigError(f"the image must be (H, W) or (H, W, 3) and the heat map (H, W), received {image.shape} "
                          f"and {heat.shape}")
    norm, colormap = _heat_style(heat, signed, cmap)
    panels = 4 if blanked is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(2.55 * panels + 0.6, 3.7))
    show_picture(axes[0], image)
    axes[0].set_title("input", fontsize=10)
    shown = axes[1].imshow(heat, cmap=colormap, norm=norm, interpolation="nearest")
    axes[1].set_title(_title(method), fontsize=10)
    axes[1].set_xlabel(_unseen_note(heat, layer), fontsize=8)
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=7)
    _overlay(axes[2], image, heat, norm, colormap)
    axes[2].set_title("overlay", fontsize=10)
    if blanked is not None:
        show_picture(axes[3], blanked)
        if blanked_mask is not None:  # outline the pixels blanking changed (many were black already)
            axes[3].contour(np.asarray(blanked_mask, float), levels=[0.5], colors="#00d5ff", linewidths=0.9)
        axes[3].set_title("deletion test", fontsize=10)
        axes[3].set_xlabel(blanked_caption, fontsize=8.5)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if caption:
        axes[0].set_xlabel(caption, fontsize=8.5, loc="left")
    if title:
        fig.suptitle(title, fontsize=11.5, fontweight="bold", x=0.02, ha="left")
    fig.tight_layout()
    return fig


def deletion_caption(summary: dict[str, Any], class_name: str) -> str:
    """The deletion result in words: top vs random blanking, and whether the map beats chance."""
    fraction = summary["fraction"]
    verdict = "beats random blanking" if summary["top_beats_random"] else "NOT better than random blanking"
    return (f"top {fraction:.0%}: p({class_name}) {summary['probability']:.1%} → {summary['after_top']:.1%}\n"
            f"random {fraction:.0%}: → {summary['after_random']:.1%}\n{verdict}")


def methods_figure(image: np.ndarray, heats: dict[str, np.ndarray], captions: dict[str, str], *, caption: str = "",
                   title: str = "", layer: str | None = None, cols: int = 5) -> Figure:
    """The input and one overlay per method side by side, each captioned with its deletion result."""
    from ..inspect.methods import METHODS

    image = np.asarray(image, np.float32)
    rows = -(-(len(heats) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.75 * rows), squeeze=False)
    flat = list(axes.ravel())
    show_picture(flat[0], image)
    flat[0].set_title("input", fontsize=10)
    flat[0].set_xlabel(caption, fontsize=8, loc="left")
    for ax, (name, heat) in zip(flat[1:], heats.items(), strict=False):
        heat = np.asarray(heat, np.float32)
        norm, colormap = _heat_style(heat, METHODS[name].signed if name in METHODS else None, None)
        _overlay(ax, image, heat, norm, colormap)
        note = _unseen_note(heat, layer)
        ax.set_title(_title(name) + (f" ({layer})" if note else ""), fontsize=9.5)
        ax.set_xlabel(captions.get(name, "") + (f"\n{note}" if note else ""), fontsize=7.5)
    for ax in flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in flat[len(heats) + 1:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11.5, fontweight="bold", x=0.02, ha="left")
    fig.tight_layout()
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
                       class_name: str, caption: str, why: str, layer: str, fraction: float, run_name: str,
                       note: str = "") -> Figure:
    """The explain command's figure from its results ({method: (heat map, deletion summary)}): one method gives
    input, heat map, overlay and deletion test; method 'all' every method's overlay side by side. `note` (e.g. how
    a colour image's channels became one value per pixel) goes on a second title line."""
    from ..inspect.methods import METHODS

    captions = {name: deletion_caption(summary, class_name) for name, (_, summary) in results.items()}
    if method == "all":
        beat = sum(summary["top_beats_random"] for _, summary in results.values())
        return methods_figure(raw, {name: heat for name, (heat, _) in results.items()}, captions, caption=caption,
                              title=f"{why} {len(results)} methods; {beat} beat random blanking  ({run_name})"
                              + (f"\n{note}" if note else ""),
                              layer=layer)
    heat, _ = results[method]
    mask = top_pixel_mask(heat, fraction)
    where = f" on {layer}" if METHODS[method].uses_layer else ""
    raw = np.asarray(raw)
    colour = raw.ndim == 3
    blanked = np.where(mask[..., None] if colour else mask, 0, raw)
    inked = (raw > 0).any(axis=-1) if colour else raw > 0
    return explain_figure(raw, heat, method=method, caption=caption, blanked=blanked,
                          blanked_mask=mask & inked, blanked_caption=captions[method],
                          title=f"{why} {METHODS[method].title}{where}  ({run_name})" + (f"\n{note}" if note else ""),
                          signed=METHODS[method].signed,
                          layer=layer)
