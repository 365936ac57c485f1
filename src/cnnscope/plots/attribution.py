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

METHOD_TITLES = {"gradcam": "Grad-CAM", "saliency": "Saliency |∂score/∂x|",
                 "integrated-gradients": "Integrated gradients"}


def top_pixel_mask(heatmap: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Boolean (H, W): the `fraction` of pixels the heat map ranks highest."""
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    k = int(round(fraction * flat.size))
    mask = np.zeros(flat.size, bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(np.shape(heatmap))


def explain_figure(image: np.ndarray, heatmap: np.ndarray, *, method: str, caption: str = "",
                   title: str = "", blanked: np.ndarray | None = None, blanked_mask: np.ndarray | None = None,
                   blanked_caption: str = "", cmap: str | None = None) -> Figure:
    """Input image (raw pixels), heat map, heat map over the image, and optionally the image with its top-ranked
    pixels blanked. Signed heat maps (integrated gradients) get a diverging map centred on zero."""
    image, heat = np.asarray(image, np.float32), np.asarray(heatmap, np.float32)
    if image.shape != heat.shape or image.ndim != 2:
        raise ConfigError(f"image and heat map must both be (H, W), received {image.shape} and {heat.shape}")
    signed = bool(heat.min() < 0 < heat.max())
    if signed:
        bound = float(np.abs(heat).max()) or 1.0
        norm: Normalize = TwoSlopeNorm(0.0, -bound, bound)
        colormap = matplotlib.colormaps[cmap or "RdBu_r"]
    else:
        norm = Normalize(0.0, float(heat.max()) or 1.0)
        colormap = matplotlib.colormaps[cmap or "inferno"]
    panels = 4 if blanked is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(2.55 * panels + 0.6, 3.35))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("input", fontsize=10)
    shown = axes[1].imshow(heat, cmap=colormap, norm=norm, interpolation="nearest")
    axes[1].set_title(METHOD_TITLES.get(method, method), fontsize=10)
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=7)
    axes[2].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    # Overlay: opacity follows the heat so that low values leave the digit visible.
    alpha = np.sqrt(np.clip(np.abs(heat) / (np.abs(heat).max() or 1.0), 0, 1)) * 0.85
    axes[2].imshow(heat, cmap=colormap, norm=norm, alpha=alpha, interpolation="bilinear")
    axes[2].set_title("overlay", fontsize=10)
    if blanked is not None:
        axes[3].imshow(blanked, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if blanked_mask is not None:  # outline the pixels blanking changed (many were black already)
            axes[3].contour(np.asarray(blanked_mask, float), levels=[0.5], colors="#00d5ff", linewidths=0.9)
        axes[3].set_title("top pixels blanked", fontsize=10)
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


@dataclass
class Explanation:
    """What `render_explain` computed and wrote."""

    run: str
    source: str
    method: str
    layer: str | None
    label: str | None
    predicted: dict[str, Any]
    target: dict[str, Any]
    deletion: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "source": self.source, "method": self.method, "layer": self.layer,
                "label": self.label, "predicted": self.predicted, "target": self.target, "deletion": self.deletion,
                "figures": [str(p) for p in self.paths]}


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


def render_explain(run_dir: str | Path, *, index: int | None = None, split: str = "test",
                   image: str | Path | None = None, method: str = "gradcam", layer: str | None = None,
                   target: int | str | None = None, fraction: float = 0.2, random_draws: int = 16, seed: int = 0,
                   out: str | Path | None = None, svg: bool = False,
                   data_dir: str | Path | None = None) -> Explanation:
    """Load a run, take one image (data set index or a user's picture), compute the heat map for the predicted
    (or `target`) class, run the deletion test on it (top `fraction` vs random pixels set to black) and save the
    figure (default: RUN_DIR/explain-METHOD-SOURCE.png). Integrated gradients use a black image as baseline."""
    import torch

    from ..data import DATASETS
    from ..inspect.attribution import deletion_score, get_method, last_conv_layer
    from ..inspect.images import select_image
    from ..runs import load_run

    attribute = get_method(method)  # a bad method name fails before any work
    if layer is not None and method != "gradcam":
        raise ConfigError(f"--layer applies to gradcam only, not to {method}")
    run = load_run(run_dir)
    model = run.model
    names = DATASETS[run.data_config.dataset].class_names
    wanted = resolve_class(target, names)
    if method == "gradcam":
        layer = layer or last_conv_layer(model)
        model.layer(layer)  # a wrong name fails before the data is read
    picked = select_image(run, index, split, image, data_dir)
    raw = np.asarray(picked.raw)
    x = run.preprocessor(raw[None])  # (1, C, H, W)
    blank = run.preprocessor(np.zeros_like(raw)[None])[0]  # what a black pixel becomes
    with torch.no_grad():
        probs = model.probabilities(model(torch.from_numpy(x).to(next(model.parameters()).device)))[0].cpu().numpy()
    predicted = int(probs.argmax())
    cls = predicted if wanted is None else wanted
    options: dict[str, Any] = {"layer": layer} if method == "gradcam" else {}
    if method == "integrated-gradients":
        options["baseline"] = blank
    heat = attribute(model, x, target=cls, **options)[0]
    deletion = deletion_score(model, x, heat[None], fraction, blank=blank, target=cls, random_draws=random_draws,
                              seed=seed)
    summary = deletion.summary()
    summary.pop("images")
    summary["random_draws"] = random_draws
    summary["top_beats_random"] = bool(summary["top_beats_random"])
    mask = top_pixel_mask(heat, fraction)
    blanked = np.where(mask, 0, raw)
    label = None if picked.label is None else names[picked.label]
    truth = f"  true: {label}\n" if label is not None else "\n"
    caption = f"{picked.source}{truth}predicted {names[predicted]} ({probs[predicted]:.1%})"
    if cls != predicted:
        caption += f"\ntarget {names[cls]} ({probs[cls]:.1%})"
    what = f"{names[cls]}" + (" (predicted)" if cls == predicted else " (target)")
    blanked_caption = (f"top {fraction:.0%}: p({names[cls]}) {summary['probability']:.1%} → "
                       f"{summary['after_top']:.1%}\nrandom {fraction:.0%}: → {summary['after_random']:.1%}")
    where = f" on {layer}" if method == "gradcam" else ""
    fig = explain_figure(raw, heat, method=method, caption=caption, blanked=blanked, blanked_mask=mask & (raw > 0),
                         blanked_caption=blanked_caption,
                         title=f"Why {what}? {METHOD_TITLES[method]}{where}  ({run.path.name})")
    default = f"explain-{method}-{_slug(Path(picked.source).stem if image else picked.source)}.png"
    paths = save_figure_as(fig, out if out else run.path / default, svg)
    return Explanation(
        str(run.path), picked.source, method, layer if method == "gradcam" else None, label,
        {"class": names[predicted], "index": predicted, "probability": float(probs[predicted])},
        {"class": names[cls], "index": cls, "probability": float(probs[cls])}, summary, picked.notes, paths)
