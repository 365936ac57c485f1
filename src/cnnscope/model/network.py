"""Build a PyTorch CNN from a ModelSpec; every layer is a named, addressable module.

A layer with batch norm holds it inside: `conv -> bn -> act` (`linear -> bn -> act` for dense), so the layer's
output, the one every view shows, is after the activation, as without batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnscope.base.errors import SpecError, choice_error
from cnnscope.model.geometry import window_padding
from cnnscope.model.spec import MAX_ACTIVATIONS, MAX_PARAMS, BatchNormSpec, ModelSpec, check_model_size  # noqa: F401 (the

# size check lives in spec, free of torch, so that reading a config loads no torch; imported from here too)


_ACTIVATIONS = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "selu": nn.SELU,
    "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity,
}


def batch_norm(norm: BatchNormSpec | None, channels: int, dims: int) -> nn.Module:
    """BatchNorm1d/2d for `norm` (a learnt scale and shift only when asked), or Identity when there is none."""
    if norm is None:
        return nn.Identity()
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    module = cls(channels, eps=norm.epsilon, momentum=norm.momentum, affine=False)
    if norm.scale:
        module.weight = nn.Parameter(torch.ones(channels))
    if norm.center:
        module.bias = nn.Parameter(torch.zeros(channels))
    return module


class ConvBlock(nn.Module):
    """Conv2d, then batch norm when the spec asks for it, then the activation; `same` padding is TensorFlow's
    (extra pixel bottom/right)."""

    def __init__(self, in_channels: int, in_hw: tuple[int, int], conv_spec) -> None:
        super().__init__()
        (kh, kw), (sh, sw) = conv_spec.kernel, conv_spec.stride
        if conv_spec.padding == "same":
            (top, bottom), (left, right) = window_padding(in_hw, (kh, kw), (sh, sw), "same")
            self.pad: nn.Module = nn.ZeroPad2d((left, right, top, bottom))
        else:
            self.pad = nn.Identity()
        self.conv = nn.Conv2d(in_channels, conv_spec.filters, (kh, kw), stride=(sh, sw))
        self.bn = batch_norm(conv_spec.batch_norm, conv_spec.filters, 2)
        self.act = _ACTIVATIONS[conv_spec.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, convolve, normalise, activate: (N, C_in, H, W) -> (N, filters, H', W')."""
        return self.act(self.bn(self.conv(self.pad(x))))


class DenseBlock(nn.Module):
    """Linear, then batch norm when the spec asks for it, then the activation."""

    def __init__(self, in_features: int, units: int, activation: str, norm: BatchNormSpec | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        self.bn = batch_norm(norm, units, 1)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Linear map, normalise, activate: (N, in) -> (N, units)."""
        return self.act(self.bn(self.linear(x)))


class CNN(nn.Module):
    """A sequential CNN whose layers live in `self.layers` under their spec names; returns logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        check_model_size(spec)  # before any weight is allocated
        self.spec = spec
        infos = spec.layers()
        layers: dict[str, nn.Module] = {}
        shape: tuple[int, ...] = spec.input_shape
        it = iter(infos)
        for conv_spec in spec.conv:
            info = next(it)
            layers[info.name] = ConvBlock(shape[0], shape[1:], conv_spec)
            shape = info.output_shape
            if conv_spec.pool is not None:
                info = next(it)
                pool = conv_spec.pool
                cls = nn.MaxPool2d if pool.kind == "max" else nn.AvgPool2d
                layers[info.name] = cls(pool.size, stride=pool.stride)
                shape = info.output_shape
        for info in it:
            if info.type == "Flatten":
                layers[info.name] = nn.Flatten()
            elif info.type == "Dropout":
                layers[info.name] = nn.Dropout(spec.dropout)
            elif info is infos[-1]:
                layers[info.name] = nn.Linear(shape[0], spec.num_classes)
            else:
                dense = spec.dense[sum(1 for m in layers.values() if isinstance(m, DenseBlock))]
                layers[info.name] = DenseBlock(shape[0], dense.units, dense.activation, dense.batch_norm)
            shape = info.output_shape
        self.layers = nn.ModuleDict(layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' defaults: Glorot-uniform kernels, zero biases; batch norm: scale 1, shift 0, fresh statistics."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.reset_running_stats()
                for param, value in ((module.weight, 1.0), (module.bias, 0.0)):
                    if param is not None:
                        nn.init.constant_(param, value)

    @property
    def layer_names(self) -> list[str]:
        """The layer names, input to output."""
        return list(self.layers.keys())

    def layer(self, name: str) -> nn.Module:
        """The module called `name`; SpecError listing the valid names otherwise."""
        if name not in self.layers:
            raise choice_error(SpecError, "layer", name, self.layer_names)
        return self.layers[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order: (N, C, H, W) -> (N, classes) logits (before softmax)."""
        for module in self.layers.values():
            x = module(x)
        return x

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the spec's output activation (softmax or sigmoid) to logits."""
        if self.spec.output_activation == "softmax":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)

    def regularization_loss(self) -> torch.Tensor:
        """coefficient * sum(|w|) or sum(w²) over dense kernels (and conv kernels if asked)."""
        reg = self.spec.regularizer
        total = torch.zeros(())
        if reg.kind == "none" or reg.coefficient == 0:
            return total
        for module in self.modules():
            if isinstance(module, nn.Linear) or (reg.conv and isinstance(module, nn.Conv2d)):
                w = module.weight
                total = total.to(w.device) + (w.abs().sum() if reg.kind == "l1" else w.pow(2).sum())
        return reg.coefficient * total


def build_model(spec: ModelSpec, seed: int | None = None) -> CNN:
    """A freshly initialised CNN for `spec` (deterministic when `seed` is given); SpecError if too big."""
    if seed is None:
        return CNN(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CNN(spec)
