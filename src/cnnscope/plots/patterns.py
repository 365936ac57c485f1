"""Figures of the input patterns that maximise a layer's maps, and the run-level `patterns` command's work."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..errors import ConfigError
from . import backend  # noqa: F401  (Agg, except in a notebook)
from .activations import get_cmap, save_figure_as

log = logging.getLogger("cnnscope")


def pattern_pixels(patterns: np.ndarray, preprocessor) -> np.ndarray:
    """Preprocessed patterns (k, H, W) back to raw pixel values (0..255), the run's preprocessing inverted."""
    x = np.asarray(patterns, dtype=np.float32)
    mean, scale = np.asarray(preprocessor.mean, np.float32), np.asarray(preprocessor.scale, np.float32)
    return np.clip(x * scale + mean, 0, 255)


def patterns_figure(images: np.ndarray, maps: Sequence[int], activation: Sequence[float], *, layer: str,
                    reference: Sequence[float] | None = None, cols: int = 8, cmap: str | None = "gray",
                    vmin: float = 0.0, vmax: float = 255.0, title: str | None = None,
                    subtitle: str | None = None) -> Figure:
    """A grid of patterns (k, H, W), each labelled with its map number and the activation it reached
    (and, when given, a reference value such as the map's 99th percentile over the test set)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ConfigError(f"patterns must be (k, H, W), received shape {images.shape}")
    k, h, w = images.shape
    if len(maps) != k or len(activation) != k or (reference is not None and len(reference) != k):
        raise ConfigError("maps, activation and reference need one value per pattern")
    cols = max(1, min(int(cols), k))
    rows = math.ceil(k / cols)
    gap = max(2, w // 14)  # pixels between cells
    band = round(h * (0.42 if reference is not None else 0.28))  # room for the labels under each cell
    cell_w, cell_h = w + gap, h + band
    canvas = np.full((rows * cell_h, cols * cell_w - gap), np.nan, np.float32)  # NaN: background
    for i in range(k):
        r, c = divmod(i, cols)
        canvas[r * cell_h:r * cell_h + h, c * cell_w:c * cell_w + w] = images[i]
    px = min(0.9 / w, 8.0 / canvas.shape[1])  # inches per pixel: cells up to 0.9 in, grid up to 8 in wide
    head = 0.75 if title or subtitle else 0.1
    fig_w, fig_h = canvas.shape[1] * px + 0.3, canvas.shape[0] * px + head + 0.1
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes([0.15 / fig_w, 0.1 / fig_h, canvas.shape[1] * px / fig_w, canvas.shape[0] * px / fig_h])
    colormap = get_cmap(cmap, False).with_extremes(bad="white")
    ax.imshow(canvas, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    size = max(5.0, min(8.0, w * px * 72 * 0.2))
    for i in range(k):
        r, c = divmod(i, cols)
        x, y = c * cell_w + w / 2, r * cell_h + h + band * 0.08
        ax.text(x, y, f"#{maps[i]}  {activation[i]:.3g}", ha="center", va="top", fontsize=size)
        if reference is not None:
            ax.text(x, y + band * 0.45, f"p99 {reference[i]:.3g}", ha="center", va="top", fontsize=size * 0.9,
                    color="#666666")
    if title:
        fig.text(0.15 / fig_w, 1 - 0.12 / fig_h, title, fontsize=12, fontweight="bold", va="top")
    if subtitle:
        fig.text(0.15 / fig_w, 1 - 0.42 / fig_h, subtitle, fontsize=8, va="top", color="#444444")
    return fig


@dataclass
class PatternsReport:
    """What `render_patterns` computed and wrote."""

    run: str
    layer: str
    maps: list[int]
    activation: list[float]
    test_p99: list[float]
    test_max: list[float]
    test_images: int
    steps: int
    restarts: int
    seed: int
    seconds: float
    paths: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per map the activation reached (spatial mean of the map for the pattern), the map's
        99th percentile and maximum of the same quantity over the test images, and the share above them."""
        reached, p99, top = (np.asarray(v) for v in (self.activation, self.test_p99, self.test_max))
        return {"run": self.run, "layer": self.layer, "steps": self.steps, "restarts": self.restarts,
                "seed": self.seed, "seconds": round(self.seconds, 3), "test_images": self.test_images,
                "above_test_p99": float((reached > p99).mean()), "above_test_max": float((reached > top).mean()),
                "maps": [{"map": m, "activation": a, "test_p99": p, "test_max": t}
                         for m, a, p, t in zip(self.maps, self.activation, self.test_p99, self.test_max,
                                               strict=True)],
                "figures": [str(p) for p in self.paths]}


def render_patterns(run_dir: str | Path, layer: str, *, maps: str | Sequence[int] | None = None, steps: int = 48,
                    restarts: int = 4, seed: int = 0, cols: int = 8, out: str | Path | None = None,
                    svg: bool = False, data_dir: str | Path | None = None) -> PatternsReport:
    """Load a run, find the patterns that maximise the chosen maps of `layer` (pixels kept inside the per-pixel
    range of the run's preprocessed training data), compare each with the map's values over the test set, and
    save the grid (default: RUN_DIR/patterns-LAYER.png)."""
    from ..inspect.activations import layer_output_shape
    from ..inspect.patterns import input_bounds, map_statistics, maximize_activation_result, parse_maps
    from ..runs import load_run

    if steps < 1 or restarts < 1:
        raise ConfigError(f"--steps and --restarts must be >= 1, received {steps} and {restarts}")
    run = load_run(run_dir)
    model = run.model
    shape = layer_output_shape(model, layer)  # a wrong layer name fails before any data is read
    chosen = parse_maps(maps, shape[0], layer)
    dataset = run.dataset(data_dir)
    lo, hi = input_bounds(dataset.train_x)
    log.info("optimising %d map(s) of %s: %d restarts, %d steps", len(chosen), layer, restarts, steps)
    start = time.perf_counter()
    result = maximize_activation_result(model, layer, chosen, steps, seed, restarts=restarts, lo=lo, hi=hi)
    seconds = time.perf_counter() - start
    stats = map_statistics(model, layer, dataset.test_x, chosen)
    pixels = pattern_pixels(result.patterns, run.preprocessor)
    above = float((result.activation > stats["max"]).mean())
    fig = patterns_figure(
        pixels, chosen, result.activation, layer=layer, reference=stats["p99"], cols=cols,
        title=f"{layer}: input patterns that maximise each map  ({run.path.name})",
        subtitle=(f"under each: map number, mean activation reached; grey: the map's 99th percentile over "
                  f"{len(dataset.test_x):,} test images.\n{above:.0%} of these maps beat every test image. "
                  f"Raw pixels 0..255; {restarts} restarts × {steps} steps, seed {seed}."))
    paths = save_figure_as(fig, out if out else run.path / f"patterns-{layer}.png", svg)
    return PatternsReport(str(run.path), layer, chosen, result.activation.tolist(), stats["p99"].tolist(),
                          stats["max"].tolist(), len(dataset.test_x), steps, restarts, seed, seconds, paths)
