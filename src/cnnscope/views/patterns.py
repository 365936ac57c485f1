"""The patterns view: input patterns that maximise a layer's maps, next to the maps' values over the test set."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..inspect.activations import layer_output_shape
from ..inspect.patterns import input_bounds, map_statistics, maximize_activation_result, parse_maps
from ..plots.patterns import pattern_pixels, patterns_figure
from .common import PathLike, ViewResult, load, save

log = logging.getLogger("cnnscope")


def patterns_data(run, layer: str, maps: list[int], reached: np.ndarray, stats: dict[str, np.ndarray],
                  test_images: int, steps: int, restarts: int, seed: int, seconds: float) -> dict[str, Any]:
    """JSON-ready: per map the activation reached (spatial mean of the map for the pattern), the map's 99th
    percentile and maximum of the same quantity over the test images, and the share above them."""
    reached, p99, top = (np.asarray(v, np.float64) for v in (reached, stats["p99"], stats["max"]))
    return {"run": str(run.path), "layer": layer, "steps": steps, "restarts": restarts, "seed": seed,
            "seconds": round(seconds, 3), "test_images": test_images,
            "above_test_p99": float((reached > p99).mean()), "above_test_max": float((reached > top).mean()),
            "maps": [{"map": m, "activation": a, "test_p99": p, "test_max": t}
                     for m, a, p, t in zip(maps, reached.tolist(), p99.tolist(), top.tolist(), strict=True)]}


def _subtitle(test_images: int, above: float, restarts: int, steps: int, seed: int) -> str:
    return (f"under each: map number, mean activation reached; grey: the map's 99th percentile over "
            f"{test_images:,} test images.\n{above:.0%} of these maps beat every test image. "
            f"Raw pixels 0..255; {restarts} restarts × {steps} steps, seed {seed}.")


def patterns(run_dir: PathLike, layer: str, *, maps: str | Sequence[int] | None = None, steps: int = 48,
             restarts: int = 4, seed: int = 0, cols: int = 8, out: PathLike | None = None, svg: bool = False,
             data_dir: PathLike | None = None) -> ViewResult:
    """The patterns that maximise the chosen maps of `layer` (pixels kept inside the per-pixel range of the
    run's preprocessed training data), each compared with the map's values over the test set; the grid saved
    to `out` or RUN_DIR/patterns-LAYER.png. data: see patterns_data."""
    if steps < 1 or restarts < 1:
        raise ConfigError(f"--steps and --restarts must be >= 1, received {steps} and {restarts}")
    run = load(run_dir)
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
    above = float((result.activation > stats["max"]).mean())
    fig = patterns_figure(pattern_pixels(result.patterns, run.preprocessor), chosen, result.activation,
                          layer=layer, reference=stats["p99"], cols=cols,
                          title=f"{layer}: input patterns that maximise each map  ({run.path.name})",
                          subtitle=_subtitle(len(dataset.test_x), above, restarts, steps, seed))
    paths = save(fig, out, run.path / f"patterns-{layer}.png", svg)
    data = patterns_data(run, layer, chosen, result.activation, stats, len(dataset.test_x), steps, restarts, seed,
                         seconds)
    return ViewResult(paths, data)
