"""The explain figure (input, heat map, overlay, what blanking the top pixels does) and the `explain` command's work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from ..errors import ConfigError
from . import backend  # noqa: F401  (Agg, except in a notebook)
from .activations import _slug, save_figure_as

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
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
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
    if image.shape != heat.shape or image.ndim != 2:
        raise ConfigError(f"image and heat map must both be (H, W), received {image.shape} and {heat.shape}")
    norm, colormap = _heat_style(heat, signed, cmap)
    panels = 4 if blanked is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(2.55 * panels + 0.6, 3.7))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("input", fontsize=10)
    shown = axes[1].imshow(heat, cmap=colormap, norm=norm, interpolation="nearest")
    axes[1].set_title(_title(method), fontsize=10)
    axes[1].set_xlabel(_unseen_note(heat, layer), fontsize=8)
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=7)
    _overlay(axes[2], image, heat, norm, colormap)
    axes[2].set_title("overlay", fontsize=10)
    if blanked is not None:
        axes[3].imshow(blanked, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
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


def compare_figure(image: np.ndarray, heats: dict[str, np.ndarray], captions: dict[str, str], *, caption: str = "",
                   title: str = "", layer: str | None = None, cols: int = 5) -> Figure:
    """The input and one overlay per method side by side, each captioned with its deletion result."""
    from ..inspect.methods import METHODS

    image = np.asarray(image, np.float32)
    rows = -(-(len(heats) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.75 * rows), squeeze=False)
    flat = list(axes.ravel())
    flat[0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
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


@dataclass
class Explanation:
    """What `render_explain` computed and wrote (`methods`: one entry per method shown)."""

    run: str
    source: str
    method: str
    layer: str | None
    label: str | None
    predicted: dict[str, Any]
    target: dict[str, Any]
    deletion: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    methods: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "source": self.source, "method": self.method, "layer": self.layer,
                "label": self.label, "predicted": self.predicted, "target": self.target, "deletion": self.deletion,
                "methods": self.methods, "figures": [str(p) for p in self.paths]}


def resolve_class(value: int | str | None, class_names: Sequence[str]) -> int | None:
    """A class index from a number or a class name (case-insensitive); ConfigError listing the valid ones."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        k = int(text)
        if 0 <= k < len(class_names):
            return k
        raise ConfigError(f"target class {k} is not a class of this model (valid: 0..{len(class_names) - 1})")
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    raise ConfigError(f"unknown target class {text!r}; valid: 0..{len(class_names) - 1} or "
                      f"{', '.join(class_names)}")


def _check_method(method: str, layer: str | None) -> list[str]:
    """The methods to run for `--method` (a registry name or 'all'); ConfigError listing them on a wrong name."""
    from ..inspect.methods import METHODS

    if method == "all":
        return list(METHODS)
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}, all")
    if layer is not None and not METHODS[method].uses_layer:
        with_layer = ", ".join(m.name for m in METHODS.values() if m.uses_layer)
        raise ConfigError(f"--layer applies to {with_layer} only, not to {method}")
    return [method]


def _explain_one(model, x: np.ndarray, blank: np.ndarray, name: str, layer: str, cls: int, fraction: float,
                 random_draws: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One method's heat map for class `cls` and its deletion summary (JSON-ready)."""
    from ..inspect.deletion import deletion_score
    from ..inspect.methods import METHODS, attribute

    uses_layer = METHODS[name].uses_layer
    heat = attribute(model, x, name, cls, baseline=blank, layer=layer if uses_layer else None)[0]
    summary = deletion_score(model, x, heat[None], fraction, blank=blank, target=cls, random_draws=random_draws,
                             seed=seed).summary()
    summary.pop("images")
    summary["random_draws"] = random_draws
    summary["top_beats_random"] = bool(summary["top_beats_random"])
    return heat, summary


def _predict(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.probabilities(model(torch.from_numpy(x).to(next(model.parameters()).device)))[0].cpu().numpy()


def render_explain(run_dir: str | Path, *, index: int | None = None, split: str = "test",
                   image: str | Path | None = None, method: str | None = None, layer: str | None = None,
                   target: int | str | None = None, fraction: float = 0.2, random_draws: int = 16, seed: int = 0,
                   out: str | Path | None = None, svg: bool = False,
                   data_dir: str | Path | None = None) -> Explanation:
    """Load a run, take one image (data set index or a user's picture), compute the heat map for the predicted
    (or `target`) class with `method` (default: the registry's DEFAULT_METHOD; 'all': every method side by
    side), run the deletion test on it (top `fraction` vs random pixels set to black) and save the figure
    (default: RUN_DIR/explain-METHOD-SOURCE.png). Methods with a baseline use a black image."""
    from ..data import DATASETS
    from ..inspect.gradcam import last_conv_layer
    from ..inspect.images import select_image
    from ..inspect.methods import DEFAULT_METHOD
    from ..runs import load_run

    method = method or DEFAULT_METHOD
    names_run = _check_method(method, layer)  # a bad method name fails before any work
    run = load_run(run_dir)
    model = run.model
    names = DATASETS[run.data_config.dataset].class_names
    wanted = resolve_class(target, names)
    layer = layer or last_conv_layer(model)
    model.layer(layer)  # a wrong name fails before the data is read
    picked = select_image(run, index, split, image, data_dir)
    raw = np.asarray(picked.raw)
    x = run.preprocessor(raw[None])  # (1, C, H, W)
    blank = run.preprocessor(np.zeros_like(raw)[None])[0]  # what a black pixel becomes
    probs = _predict(model, x)
    predicted = int(probs.argmax())
    cls = predicted if wanted is None else wanted
    results = {name: _explain_one(model, x, blank, name, layer, cls, fraction, random_draws, seed)
               for name in names_run}
    label = None if picked.label is None else names[picked.label]
    what = f"{names[cls]}" + (" (predicted)" if cls == predicted else " (target)")
    fig = _figure(method, raw, results, names[cls], _caption(picked.source, label, names, probs, cls),
                  f"Why {what}?", layer, fraction, run.path.name)
    default = f"explain-{method}-{_slug(Path(picked.source).stem if image else picked.source)}.png"
    paths = save_figure_as(fig, out if out else run.path / default, svg)
    rows = [{"method": name, "layer": layer if _uses_layer(name) else None, "deletion": summary}
            for name, (_, summary) in results.items()]
    return Explanation(
        str(run.path), picked.source, method, layer if any(map(_uses_layer, names_run)) else None, label,
        {"class": names[predicted], "index": predicted, "probability": float(probs[predicted])},
        {"class": names[cls], "index": cls, "probability": float(probs[cls])},
        rows[0]["deletion"] if len(rows) == 1 else None, picked.notes, paths, rows)


def _uses_layer(name: str) -> bool:
    """Whether registry method `name` works on a layer (Grad-CAM and guided Grad-CAM)."""
    from ..inspect.methods import METHODS

    return METHODS[name].uses_layer


def _caption(source: str, label: str | None, names: Sequence[str], probs: np.ndarray, cls: int) -> str:
    """Where the image comes from, its true class, the prediction and (when different) the class explained."""
    predicted = int(probs.argmax())
    truth = f"  true: {label}\n" if label is not None else "\n"
    caption = f"{source}{truth}predicted {names[predicted]} ({probs[predicted]:.1%})"
    if cls != predicted:
        caption += f"\ntarget {names[cls]} ({probs[cls]:.1%})"
    return caption


def _figure(method: str, raw: np.ndarray, results: dict[str, tuple[np.ndarray, dict[str, Any]]], class_name: str,
            caption: str, why: str, layer: str, fraction: float, run_name: str) -> Figure:
    """One method: input, heat map, overlay, deletion test; 'all': every method's overlay side by side."""
    from ..inspect.methods import METHODS

    captions = {name: deletion_caption(summary, class_name) for name, (_, summary) in results.items()}
    if method == "all":
        beat = sum(summary["top_beats_random"] for _, summary in results.values())
        return compare_figure(raw, {name: heat for name, (heat, _) in results.items()}, captions, caption=caption,
                              title=f"{why} {len(results)} methods; {beat} beat random blanking  ({run_name})",
                              layer=layer)
    heat, _ = results[method]
    mask = top_pixel_mask(heat, fraction)
    where = f" on {layer}" if METHODS[method].uses_layer else ""
    return explain_figure(raw, heat, method=method, caption=caption, blanked=np.where(mask, 0, raw),
                          blanked_mask=mask & (raw > 0), blanked_caption=captions[method],
                          title=f"{why} {METHODS[method].title}{where}  ({run_name})", signed=METHODS[method].signed,
                          layer=layer)
