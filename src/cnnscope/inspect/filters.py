"""Conv kernels and biases as arrays, ready to show as a grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..model import CNN
from .activations import conv_layers


@dataclass(frozen=True)
class Filters:
    """The kernels of one conv layer, reduced to one 2-D kernel per filter."""

    layer: str
    kernels: np.ndarray  # (filters, kh, kw)
    biases: np.ndarray  # (filters,)
    in_channels: int
    view: str  # what a kernel shows, e.g. "input channel 3" or "mean over 32 input channels"


def conv_filters(model: CNN, layer: str, channel: int | None = None) -> Filters:
    """Kernels of conv layer `layer`: with one input channel, each filter's kernel; with more, the kernel for
    input channel `channel`, or the mean over input channels when `channel` is None."""
    valid = conv_layers(model)
    if layer not in valid:
        what = "unknown layer" if layer not in model.layers else "layer"
        suffix = "" if layer not in model.layers else " is not a conv layer and has no filters"
        raise SpecError(f"{what} {layer!r}{suffix}; conv layers: {', '.join(valid)}")
    conv = model.layer(layer).conv
    weight = conv.weight.detach().float().cpu().numpy()  # (filters, in_channels, kh, kw)
    bias = (conv.bias.detach().float().cpu().numpy() if conv.bias is not None
            else np.zeros(weight.shape[0], np.float32))
    n_in = weight.shape[1]
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < n_in:
            raise SpecError(f"input channel {channel} is outside {layer}'s {n_in} input channel"
                            f"{'s' if n_in != 1 else ''} (valid: 0 to {n_in - 1})")
        return Filters(layer, weight[:, channel].copy(), bias, n_in, f"input channel {channel} of {n_in}")
    if n_in == 1:
        return Filters(layer, weight[:, 0].copy(), bias, n_in, "the kernel on the input image")
    return Filters(layer, weight.mean(axis=1), bias, n_in, f"mean over {n_in} input channels")
