"""Outputs of named layers, captured with forward hooks (the model is never rebuilt), and their grids (the colour
ranges they are shown with: cnnscope.inspect.display)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from cnnscope.base.errors import ConfigError, SpecError, StopForward
from cnnscope.inspect.common import evaluating, model_device
from cnnscope.model.layers import CONV, DENSE
from cnnscope.model.network import CNN

ACTIVATED = (CONV, DENSE)  # the layer kinds with an activation function (and so a pre-activation output)


def _hook_target(model: CNN, name: str, pre_activation: bool) -> nn.Module:
    """The module whose output is `name`'s output, or (pre_activation) its conv/linear before the activation."""
    module = model.layer(name)  # SpecError listing valid names on a typo
    if not pre_activation:
        return module
    if model.spec.layer(name).kind not in ACTIVATED:
        valid = model.spec.layer_names(*ACTIVATED)
        raise SpecError(f"layer {name!r} has no activation function, so it has no pre-activation output; "
                        f"layers with one: {', '.join(valid)}")
    if name == model.spec.output_layer_name:  # a plain Linear: its outputs, the logits, are before the softmax
        return module
    if model.spec.layer(name).norm_params:  # conv -> BatchNorm -> activation: the batch norm's output
        return module.bn
    return module.conv if model.spec.layer(name).kind == CONV else module.linear


def capture(model: CNN, layers: list[str], x: torch.Tensor, *, pre_activation: bool = False,
            stop_early: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Run `model` on preprocessed x (N, C, H, W) and return ({layer: output}, logits).

    Eval mode (batch norm uses its running statistics and never updates them; the caller's mode is restored);
    gradients flow (callers wrap in no_grad when they need none); hooks are removed in `finally`.
    pre_activation: capture conv/dense layers before their activation function (signed values).
    stop_early: end the forward pass after the last requested layer (logits are then None).
    """
    modules = {name: _hook_target(model, name, pre_activation) for name in layers}
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str):
        def store(_module, _inp, out):
            outputs[name] = out
            if stop_early and len(outputs) == len(modules):
                raise StopForward
        return store

    logits = None
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook(name)))
        try:
            with evaluating(model):
                logits = model(x)
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()
    return outputs, logits


@torch.no_grad()
def activations(model: CNN, layer: str, images: np.ndarray | torch.Tensor, batch_size: int = 1000, *,
                pre_activation: bool = False) -> np.ndarray:
    """Output of `layer` for preprocessed images (n, C, H, W): (n, maps, h, w) for conv/pool layers,
    (n, units) for flatten/dense layers. Eval mode, no gradients; the model's mode is restored.

    pre_activation: for conv/dense layers, the output before the activation function (signed).
    """
    _hook_target(model, layer, pre_activation)  # validate the name before any work
    was_training = model.training
    model.eval()
    device = model_device(model)
    x = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if x.ndim == 3:  # (n, H, W) single-channel
        x = x[:, None]
    out = np.empty((len(x), *layer_output_shape(model, layer)), np.float32)  # filled batch by batch
    try:
        for i in range(0, len(x), batch_size):
            outputs, _ = capture(model, [layer], x[i:i + batch_size].to(device), pre_activation=pre_activation,
                                 stop_early=True)  # later layers are not computed
            out[i:i + batch_size] = outputs[layer].float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def layer_output_shape(model: CNN, layer: str) -> tuple[int, ...]:
    """Output shape of `layer` for one image: (maps, h, w) or (units,)."""
    model.layer(layer)
    return model.spec.layer(layer).output_shape


def map_layers(model: CNN) -> list[str]:
    """Names of the layers whose outputs are maps (conv and pool layers), in order."""
    return model.spec.map_layer_names()


def conv_layers(model: CNN) -> list[str]:
    """Names of the conv layers, in order."""
    return model.spec.layer_names(CONV)


# --- display ---------------------------------------------------------------------------------------------------
def as_maps(values: np.ndarray) -> np.ndarray:
    """One image's layer output as maps: (maps, h, w) unchanged, (units,) -> (units, 1, 1)."""
    values = np.asarray(values)
    if values.ndim == 1:
        return values[:, None, None]
    if values.ndim != 3:
        raise ConfigError(f"expected one image's maps (maps, h, w) or units (units,), received shape "
                          f"{values.shape}")
    return values


def standardize_maps(maps: np.ndarray) -> np.ndarray:
    """The series' display standardisation, per map: (x − mean)/std·64 + 128, clipped to 0..255.

    A map with zero std has nothing to standardise: it becomes the constant 128 (its mean)."""
    x = np.asarray(maps, dtype=np.float32)
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    safe = np.where(std > 0, std, 1.0)
    out = np.where(std > 0, (x - mean) / safe * 64.0 + 128.0, 128.0)
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def activation_grid(maps: np.ndarray, cols: int = 8, scale: bool = False) -> np.ndarray:
    """Tile one image's maps (maps, h, w) into (ceil(maps/cols)·h, cols·w), row by row, top-down.

    No map is ever dropped; empty trailing cells are NaN. scale=True applies `standardize_maps` first.
    """
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ConfigError(f"cols must be a positive integer, received {cols!r}")
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ConfigError(f"activation_grid expects one image's maps (maps, h, w), received shape {maps.shape}")
    if scale:
        maps = standardize_maps(maps)
    n, h, w = maps.shape
    rows = math.ceil(n / cols)
    cells = np.full((rows * cols, h, w), np.nan, np.float32)
    cells[:n] = maps
    # (rows, cols, h, w) -> (rows, h, cols, w) -> (rows·h, cols·w)
    return cells.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
