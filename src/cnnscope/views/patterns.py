"""The patterns view: input patterns that maximise a layer's maps, next to the maps' values over the test set."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.activations import layer_output_shape
from cnnscope.inspect.patterns import input_bounds, map_statistics, maximize_activation_result, parse_maps
from cnnscope.inspect.profile import dead_maps
from cnnscope.plots.patterns import pattern_pixels, patterns_figure
from cnnscope.views.common import PathLike, ViewResult, load, save

log = logging.getLogger("cnnscope")


def patterns_data(run, layer: str, maps: list[int], reached: np.ndarray, stats: dict[str, np.ndarray],
                  test_images: int, steps: int, restarts: int, seed: int, seconds: float) -> dict[str, Any]:
    """JSON-ready: per map the activation reached (spatial mean of the map for the pattern), the map's 99th
    percentile and maximum of the same quantity over the test images, whether it is dead (0 on every test
    image), and the share of the live maps above p99 and max (dead maps counted beside, never as successes)."""
    reached, p99, top = (np.asarray(v, np.float64) for v in (reached, stats["p99"], stats["max"]))
    dead = np.zeros(len(maps), bool)
    dead[dead_maps(stats["max_abs"])] = True
    live = ~dead

    def share(beats: np.ndarray) -> float | None:
        return float(beats[live].mean()) if live.any() else None

    return {"run": str(run.path), "layer": layer, "steps": steps, "restarts": restarts, "seed": seed,
            "seconds": round(seconds, 3), "test_images": test_images, "live_maps": int(live.sum()),
            "dead_maps": [m for m, d in zip(maps, dead, strict=True) if d],
            "above_test_p99": share(reached > p99), "above_test_max": share(reached > top),
            "maps": [{"map": m, "activation": a, "test_p99": p, "test_max": t, "dead": bool(d)}
                     for m, a, p, t, d in zip(maps, reached.tolist(), p99.tolist(), top.tolist(), dead,
                                              strict=True)]}


def beats_line(data: dict[str, Any]) -> str:
    """The share of live maps whose pattern beats every test image, with the dead maps counted beside."""
    dead = len(data["dead_maps"])
    beside = f"; {dead} dead map(s), 0 on every test image, left out" if dead else ""
    if data["above_test_max"] is None:
        return f"every map is dead: 0 on all {data['test_images']:,} test images"
    return f"{data['above_test_max']:.0%} of {data['live_maps']} live maps beat every test image{beside}"


def _subtitle(data: dict[str, Any]) -> str:
    return (f"under each: map number, mean activation reached; grey: the map's 99th percentile over "
            f"{data['test_images']:,} test images (\"dead\": 0 on every one).\n{beats_line(data)}. "
            f"Raw pixels 0..255; {data['restarts']} restarts × {data['steps']} steps, seed {data['seed']}.")


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
    data = patterns_data(run, layer, chosen, result.activation, stats, len(dataset.test_x), steps, restarts, seed,
                         seconds)
    fig = patterns_figure(pattern_pixels(result.patterns, run.preprocessor), chosen, result.activation,
                          layer=layer, reference=stats["p99"], cols=cols, dead=[m["dead"] for m in data["maps"]],
                          title=f"{layer}: input patterns that maximise each map  ({run.path.name})",
                          subtitle=_subtitle(data))
    paths = save(fig, out, run.path / f"patterns-{layer}.png", svg)
    return ViewResult(paths, data)
