"""The arrays behind the web viewer's panels, computed through cnnscope.inspect: one image's maps or dense units,
the test set's map peaks and class read-out, and maximising patterns (cnnscope.views.panels turns them into
answers).

The viewer (cnnscope.serve.viewer) holds the model lock, the caches and the background thread; the long
computations here run batch by batch through the `drain` it passes (one batch under its lock, then a pause), so
a page request never waits for a whole pass over the test set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from cnnscope.inspect import patterns as search  # the module: a test holds its search to watch the locks
from cnnscope.inspect.activations import activations, capture
from cnnscope.inspect.profile import map_peak_batches, readout_batches
from cnnscope.views.panels import pattern_png

Drain = Callable[[Iterator[Any]], list[Any]]  # every part a batch generator yields, computed as the caller likes


def layer_maps(model, layer: str, x: np.ndarray) -> np.ndarray:
    """(maps, h, w): a conv or pool layer's output for one preprocessed image x (1, C, H, W)."""
    return activations(model, layer, x)[0]


def dense_outputs(model, layer: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the dense layer's values (units,), the class probabilities (classes,)) for one preprocessed image x
    (1, C, H, W), in one forward pass without gradients."""
    with torch.no_grad():
        outputs, logits = capture(model, [layer], torch.from_numpy(x))
        probs = model.probabilities(logits)[0].float().cpu().numpy()
    return outputs[layer][0].float().cpu().numpy(), probs


def peak_table(model, layers: list[str], x: np.ndarray, batch: int,
               drain: Drain) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer: each image's spatial maximum of every map, where it is, and its largest |value|
    (cnnscope.inspect.profile.map_peak_batches over the preprocessed images x, `batch` at a time)."""
    parts = drain(map_peak_batches(model, layers, x, batch))
    return {name: tuple(np.concatenate([p[name][i] for p in parts]) for i in range(3)) for name in layers}


def class_readout_table(model, layer: str, x: np.ndarray, batch: int, drain: Drain) -> np.ndarray:
    """(classes, maps): d logit_c / d (spatial mean of the map), averaged over the preprocessed images x
    (cnnscope.inspect.profile.readout_batches, `batch` at a time)."""
    parts = drain(readout_batches(model, layer, x, batch))
    return np.sum(parts, axis=0) / max(len(x), 1)


def pattern_bounds(train_x: np.ndarray) -> dict[str, np.ndarray]:
    """The pixel range the training images span (preprocessed), as the pattern search's `lo` and `hi`."""
    lo, hi = search.input_bounds(train_x)
    return {"lo": lo, "hi": hi}


def map_pattern(model, layer: str, index: int, bounds: dict[str, np.ndarray], preprocessor,
                cmap: str = "gray") -> bytes:
    """PNG of the input (in pixels, 0..255) that maximises the spatial mean of map `index` of `layer`: gradient
    ascent by cnnscope.inspect.patterns.maximize_activation inside `bounds` (pattern_bounds)."""
    pattern = np.asarray(search.maximize_activation(model, layer, [index], **bounds), dtype=np.float32)
    return pattern_png(pattern[0], preprocessor, cmap)  # (H, W) or (C, H, W)


__all__ = ["class_readout_table", "dense_outputs", "layer_maps", "map_pattern", "pattern_bounds", "peak_table"]
