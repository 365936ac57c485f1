"""One registry of attribution methods: what the CLI, the viewer and the report offer, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import ConfigError, choice_error
from cnnscope.inspect.attribution import (
    Baseline,
    deeplift,
    guided_backprop,
    input_x_gradient,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)
from cnnscope.inspect.common import Target
from cnnscope.inspect.gradcam import grad_cam, guided_grad_cam
from cnnscope.model.network import CNN


@dataclass(frozen=True)
class AttributionMethod:
    """A heat-map method: `method(model, images, target=None, **options) -> (n, H, W)` plus what it needs."""

    name: str
    title: str
    function: Callable[..., np.ndarray]
    signed: bool  # values of both signs: draw on a scale centred on zero
    uses_baseline: bool  # takes `baseline` (pass a black image, preprocessed)
    uses_layer: bool  # takes `layer` (a conv or pool layer); may return NaN on pixels the layer never sees
    channels: str = "summed"  # how a colour pixel's channels become one value: summed, max |·| over, shared

    def __call__(self, model: CNN, images: np.ndarray | torch.Tensor, target: Target = None,
                 **options: Any) -> np.ndarray:
        """The (n, H, W) heat maps for preprocessed images."""
        return self.function(model, images, target, **options)


METHODS: dict[str, AttributionMethod] = {m.name: m for m in (
    AttributionMethod("integrated-gradients", "Integrated gradients", integrated_gradients, True, True, False),
    AttributionMethod("saliency", "Saliency |∂score/∂x|", saliency, False, False, False, "max"),
    AttributionMethod("input-x-gradient", "Input × gradient", input_x_gradient, True, False, False),
    AttributionMethod("smoothgrad", "SmoothGrad", smoothgrad, False, False, False, "max"),
    AttributionMethod("guided-backprop", "Guided backprop", guided_backprop, True, False, False),
    AttributionMethod("deeplift", "DeepLift", deeplift, True, True, False),
    AttributionMethod("occlusion", "Occlusion (4×4)", occlusion, True, True, False, "shared"),
    AttributionMethod("gradcam", "Grad-CAM", grad_cam, False, False, True, "shared"),
    AttributionMethod("guided-gradcam", "Guided Grad-CAM", guided_grad_cam, True, False, True),
)}

# Integrated gradients (black-image baseline) pass the deletion test against the brightness ranking (no model) on
# the most test images: 88.6 % of 500 (DeepLift 88.0 %); benchmarks/README.md, "Issue 18".
DEFAULT_METHOD = "integrated-gradients"


def channel_note(names: list[str] | tuple[str, ...], channels: int) -> str:
    """'' for one input channel; else how the heat maps of `names` give one value per pixel of a colour image,
    e.g. 'one value per pixel: the 3 colour channels summed (saliency: max |·| over them)'."""
    if channels <= 1:
        return ""
    how = {"summed": "summed", "max": "max |·| over them", "shared": "shared (patch or layer based)"}
    short = {"summed": "summed", "max": "max |·|", "shared": "shared"}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(METHODS[name].channels if name in METHODS else "summed", []).append(name)
    if len(groups) == 1:
        kind = next(iter(groups))
        return f"one value per pixel: the {channels} colour channels {how[kind]}"
    main = "summed" if "summed" in groups else next(iter(groups))
    rest = "; ".join(f"{', '.join(v)}: {short[k]}" for k, v in groups.items() if k != main)
    return f"one value per pixel: the {channels} colour channels {how[main]} ({rest})"


def get_method(name: str) -> AttributionMethod:
    """The attribution method called `name` (see METHODS); ConfigError listing the valid names otherwise."""
    if name not in METHODS:
        raise choice_error(ConfigError, "method", name, METHODS)
    return METHODS[name]


def attribute(model: CNN, images: np.ndarray | torch.Tensor, method: str = DEFAULT_METHOD, target: Target = None,
              *, baseline: Baseline = None, layer: str | None = None, **options: Any) -> np.ndarray:
    """(n, H, W) heat maps by `method`; `baseline` goes to the methods that use one, `layer` to Grad-CAM's."""
    chosen = get_method(method)
    if layer is not None and not chosen.uses_layer:
        with_layer = ", ".join(m.name for m in METHODS.values() if m.uses_layer)
        raise ConfigError(f"a layer applies to {with_layer} only, not to {method}")
    if chosen.uses_baseline and baseline is not None:
        options["baseline"] = baseline
    if chosen.uses_layer and layer is not None:
        options["layer"] = layer
    return chosen(model, images, target, **options)
