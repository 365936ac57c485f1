"""Conv kernels and biases as arrays, ready to show as a grid: one 2-D kernel per filter, every input channel's
kernel of each filter, or (first layer of a colour model) each filter's three kernels as one RGB picture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnscope.base.errors import ConfigError, SpecError
from cnnscope.inspect.activations import conv_layers
from cnnscope.model.network import CNN

CHANNEL_VIEWS = ("strongest", "rgb", "split", "mean")  # how a filter with several input channels is shown


@dataclass(frozen=True)
class Filters:
    """The kernels of one conv layer: one 2-D kernel per filter (`kernels`) and every input channel's (`weights`)."""

    layer: str
    kernels: np.ndarray  # (filters, kh, kw): the kernel drawn per filter (one channel, a chosen one, or their mean)
    biases: np.ndarray  # (filters,)
    in_channels: int
    view: str  # what a kernel shows, e.g. "input channel 3" or "mean over 32 input channels"
    weights: np.ndarray | None = None  # (filters, in_channels, kh, kw): every kernel, for the split and RGB views
    channels: str = "mean"  # a CHANNEL_VIEWS name (one channel: "mean" is the kernel itself)
    sources: np.ndarray | None = None  # (filters,) the input channel each kernel is ("strongest"), else None


def _weights(model: CNN, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(weights (filters, in_channels, kh, kw), biases) of conv layer `layer`; SpecError listing the conv layers."""
    valid = conv_layers(model)
    if layer not in valid:
        what = "unknown layer" if layer not in model.layers else "layer"
        suffix = "" if layer not in model.layers else " is not a conv layer and has no filters"
        raise SpecError(f"{what} {layer!r}{suffix}; conv layers: {', '.join(valid)}")
    conv = model.layer(layer).conv
    weight = conv.weight.detach().float().cpu().numpy().copy()
    bias = (conv.bias.detach().float().cpu().numpy().copy() if conv.bias is not None
            else np.zeros(weight.shape[0], np.float32))
    return weight, bias


def colour_layer(model: CNN, layer: str) -> bool:
    """Whether `layer` is the first conv layer of a model with 3-channel (RGB) input: its kernels have colours."""
    convs = conv_layers(model)
    return model.spec.input_shape[0] == 3 and bool(convs) and layer == convs[0]


def default_channels(model: CNN, layer: str) -> str:
    """The view a layer's filters get by default: 'rgb' on a colour model's first conv layer, 'strongest' on a
    layer with several input channels (a mean over channels is no kernel of the model: it blurs them), else
    'mean' (one channel: the kernel itself)."""
    if colour_layer(model, layer):
        return "rgb"
    return "strongest" if model.layer(layer).conv.in_channels > 1 else "mean"


def _strongest_channels(weight: np.ndarray) -> np.ndarray:
    """(filters,) for weights (filters, in_channels, kh, kw): the input channel whose kernel has the largest L2
    norm in each filter (the first on ties)."""
    return np.argmax(np.sqrt((weight.astype(np.float64) ** 2).sum(axis=(2, 3))), axis=1)


def conv_filters(model: CNN, layer: str, channel: int | None = None, channels: str | None = None) -> Filters:
    """Kernels of conv layer `layer`: with one input channel, each filter's kernel; with more, the kernel for
    input channel `channel`, or by `channels`: 'strongest' (each filter's input channel of largest L2 norm,
    its number in `sources`), 'mean' over input channels, 'split' (every channel's kernel, in
    `weights`) or 'rgb' (a colour model's first layer: each filter's 3 kernels as one RGB picture). channels=None
    picks 'mean' (the RGB view is asked for explicitly, or see default_channels)."""
    weight, bias = _weights(model, layer)
    n_in = weight.shape[1]
    if channels is not None and channels not in CHANNEL_VIEWS:
        raise ConfigError(f"unknown channels view {channels!r}; valid: {', '.join(CHANNEL_VIEWS)}")
    if channels == "rgb" and not colour_layer(model, layer):
        raise ConfigError(f"the RGB view needs the first conv layer of a model with 3 input channels; {layer} "
                          f"has {n_in} input channel{'s' if n_in != 1 else ''}: use --channels split or mean")
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < n_in:
            raise SpecError(f"input channel {channel} is outside {layer}'s {n_in} input channel"
                            f"{'s' if n_in != 1 else ''} (valid: 0 to {n_in - 1})")
        return Filters(layer, weight[:, channel].copy(), bias, n_in, f"input channel {channel} of {n_in}", weight)
    if n_in == 1:
        return Filters(layer, weight[:, 0].copy(), bias, n_in, "the kernel on the input image", weight)
    if channels == "strongest":
        chosen = _strongest_channels(weight)
        kernels = weight[np.arange(len(weight)), chosen].copy()
        return Filters(layer, kernels, bias, n_in, f"strongest of {n_in} input channels (largest L2 norm)", weight,
                       "strongest", chosen)
    view = {"rgb": f"the {n_in} colour channels' kernels as one RGB picture",
            "split": f"each of the {n_in} input channels' kernels"}.get(channels or "mean",
                                                                       f"mean over {n_in} input channels")
    return Filters(layer, weight.mean(axis=1), bias, n_in, view, weight, channels or "mean")
