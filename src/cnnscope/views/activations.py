"""Views of what a layer sees: one layer's maps for one image, every conv and pool layer, a conv layer's filters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import ConfigError, choice_error
from cnnscope.inspect.activations import ACTIVATED, capture, map_layers
from cnnscope.inspect.display import DEFAULT_CLIP, display_maps, is_vector, layer_display, overview_displays
from cnnscope.inspect.filters import CHANNEL_VIEWS, conv_filters, default_channels
from cnnscope.plots.activations import (
    FILTER_NORMS,
    Prediction,
    activations_figure,
    filters_figure,
    overview_figure,
    vector_figure,
)
from cnnscope.plots.figures import get_cmap
from cnnscope.plots.output import output_figure
from cnnscope.views.common import PathLike, ViewResult, class_names, image_slug, load, pick_image, save


def check_display(norm: str | None, fixed: tuple[float, float] | None, scale: bool, cmap: str | None,
                  clip: float) -> None:
    """Refuse bad display options before any work: the colour map's name, the clip percentile, and norm /
    fixed / scale (checked by cnnscope.inspect.display_maps on a one-pixel map, so the messages are its own)."""
    get_cmap(cmap, False)
    if not 0 < clip <= 100:
        raise ConfigError(f"clip must be a percentile in (0, 100], received {clip!r}")
    display_maps(np.zeros((1, 1, 1), np.float32), norm or ("map" if scale else "layer"), fixed, scale)


def stage_words(model, layer: str, pre_activation: bool) -> str:
    """Words on what a layer's values are, e.g. 'after ReLU' or 'before its ReLU' ('' for a layer without an
    activation function, such as pooling)."""
    if model.spec.layer(layer).kind not in ACTIVATED:
        return ""
    if layer == model.spec.output_layer_name:  # no activation module: the softmax/sigmoid is applied apart
        return f"logits, before {model.spec.output_activation}"
    act = type(model.layer(layer).act).__name__
    return f"before its {act}" if pre_activation else f"after {act}"


def _outputs(run, layers: list[str], raw: np.ndarray, pre_activation: bool) -> tuple[dict[str, np.ndarray],
                                                                                      np.ndarray]:
    """Each layer's output for one raw image, and the class probabilities (one forward pass)."""
    x = torch.from_numpy(run.preprocessor(raw[None]))
    with torch.no_grad():
        outputs, logits = capture(run.model, layers, x, pre_activation=pre_activation)
        probs = run.model.probabilities(logits)[0].detach().cpu().numpy()
    return {name: outputs[name][0].float().cpu().numpy() for name in layers}, probs


def _prediction(run, probs: np.ndarray, label: int | None) -> Prediction:
    names = class_names(run)
    k = int(probs.argmax())
    return Prediction(names[k], float(probs[k]), None if label is None else names[label])


def _data(run, picked, layers: list[str], prediction: Prediction) -> dict[str, Any]:
    return {"run": str(run.path), "source": picked.source, "layers": layers,
            "prediction": {"class": prediction.class_name, "probability": prediction.probability,
                           "true_class": prediction.true_name}}


def activations(run_dir: PathLike, layer: str, *, index: int | None = None, split: str = "test",
                image: PathLike | None = None, cols: int = 8, scale: bool = False, cmap: str | None = None,
                norm: str | None = None, fixed: Sequence[float] | None = None, pre_activation: bool = False,
                clip: float = DEFAULT_CLIP, out: PathLike | None = None, svg: bool = False,
                data_dir: PathLike | None = None) -> ViewResult:
    """One layer's maps (or a dense layer's units) for one image (test/train `index` or a user's picture),
    beside the image; saved to `out` or RUN_DIR/activations-LAYER-IMAGE.png. data: run, source, layers,
    prediction {class, probability, true_class}; notes: how a picture was converted."""
    fixed_pair = None if fixed is None else (float(fixed[0]), float(fixed[1]))
    check_display(norm, fixed_pair, scale, cmap, clip)
    run = load(run_dir)
    stage = stage_words(run.model, layer, pre_activation)  # a wrong name fails before the data is loaded
    picked = pick_image(run, index, split, image, data_dir)
    arrays, probs = _outputs(run, [layer], picked.raw, pre_activation)
    prediction = _prediction(run, probs, picked.label)
    if layer == run.spec.output_layer_name:  # the logits and the probabilities they become, per class
        return _output(run, picked, arrays[layer], probs, prediction, out, svg, image)
    values, labels = arrays[layer], {"layer": layer, "source": picked.source, "prediction": prediction,
                                      "cmap": cmap, "stage": stage}
    if is_vector(values):  # a dense layer: one bar per unit
        fig = vector_figure(picked.raw, values, **labels)
    else:
        fig = activations_figure(picked.raw, layer_display(values, norm, fixed_pair, scale, clip), cols=cols,
                                 **labels)
    paths = save(fig, out, run.path / f"activations-{layer}-{image_slug(picked, image)}.png", svg)
    return ViewResult(paths, _data(run, picked, [layer], prediction), list(picked.notes))


def _output(run, picked, logits: np.ndarray, probs: np.ndarray, prediction: Prediction, out: PathLike | None,
            svg: bool, image: PathLike | None) -> ViewResult:
    """The output layer's figure (plots.output) and data: the logits and the probabilities per class."""
    layer, names = run.spec.output_layer_name, class_names(run)
    fig = output_figure(picked.raw, logits, probs, names, layer=layer, activation=run.spec.output_activation,
                        source=picked.source, prediction=prediction, true_class=picked.label)
    paths = save(fig, out, run.path / f"activations-{layer}-{image_slug(picked, image)}.png", svg)
    data = {**_data(run, picked, [layer], prediction), "class_names": list(names),
            "logits": [float(v) for v in logits], "probabilities": [float(v) for v in probs]}
    return ViewResult(paths, data, list(picked.notes))


def all_layers(run_dir: PathLike, *, index: int | None = None, split: str = "test", image: PathLike | None = None,
               scale: bool = False, cmap: str | None = None, norm: str | None = None,
               fixed: Sequence[float] | None = None, clip: float = DEFAULT_CLIP, out: PathLike | None = None,
               svg: bool = False, data_dir: PathLike | None = None) -> ViewResult:
    """Every conv and pool layer's maps for one image in one overview; saved to `out` or
    RUN_DIR/activations-all-IMAGE.png. data and notes as in `activations`."""
    fixed_pair = None if fixed is None else (float(fixed[0]), float(fixed[1]))
    check_display(norm, fixed_pair, scale, cmap, clip)
    run = load(run_dir)
    layers = map_layers(run.model)
    picked = pick_image(run, index, split, image, data_dir)
    arrays, probs = _outputs(run, layers, picked.raw, False)
    prediction = _prediction(run, probs, picked.label)
    displays, shared = overview_displays(arrays, norm, fixed_pair, scale, clip)
    fig = overview_figure(picked.raw, arrays, displays, shared, source=picked.source, prediction=prediction,
                          cmap=cmap)
    paths = save(fig, out, run.path / f"activations-all-{image_slug(picked, image)}.png", svg)
    return ViewResult(paths, _data(run, picked, layers, prediction), list(picked.notes))


def filters(run_dir: PathLike, layer: str, *, channel: int | None = None, channels: str | None = None,
            cols: int = 8, cmap: str | None = None, norm: str = "filter", out: PathLike | None = None,
            svg: bool = False) -> ViewResult:
    """A conv layer's kernels and biases: one input channel, the chosen `channel`, or by `channels` ('rgb': a
    colour model's first layer, each filter as one RGB picture, its default; 'strongest': each filter's input
    channel of largest norm, the default on other layers with several input channels; 'split': every input
    channel's kernel; 'mean': their mean); colours by `norm` ('filter': each filter its own scale, the default;
    'layer': one for all); saved to `out` or RUN_DIR/filters-LAYER[-channelC|-VIEW].png.
    data: run, layer, view, channels, in_channels, filters, norm (and sources: each kernel's input channel)."""
    get_cmap(cmap, True)
    if norm not in FILTER_NORMS:
        raise choice_error(ConfigError, "norm", norm, FILTER_NORMS)
    if channels is not None and channels not in CHANNEL_VIEWS:
        raise ConfigError(f"unknown --channels {channels!r}; valid: {', '.join(CHANNEL_VIEWS)}")
    if channel is not None and channels is not None:
        raise ConfigError("give either --channel C (one input channel) or --channels VIEW, not both")
    run = load(run_dir)
    conv_filters(run.model, layer)  # a wrong layer name fails first, listing the conv layers
    default = default_channels(run.model, layer)
    chosen = None if channel is not None else (channels or default)
    found = conv_filters(run.model, layer, channel, chosen)
    fig = filters_figure(found, cols=cols, cmap=cmap, norm=norm)
    suffix = f"-channel{channel}" if channel is not None else ("" if chosen == default else f"-{chosen}")
    paths = save(fig, out, run.path / f"filters-{layer}{suffix}.png", svg)
    data = {"run": str(run.path), "layer": layer, "view": found.view, "channels": found.channels,
            "in_channels": found.in_channels, "filters": int(len(found.kernels)), "norm": norm}
    if found.sources is not None:
        data["sources"] = [int(c) for c in found.sources]
    return ViewResult(paths, data)
