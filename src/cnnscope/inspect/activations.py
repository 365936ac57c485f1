"""Outputs of named layers, captured with forward hooks (the model is never rebuilt)."""

from __future__ import annotations

import numpy as np
import torch

from ..model import CNN


def _device(model: CNN) -> torch.device:
    return next(model.parameters()).device


def capture(model: CNN, layers: list[str], x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run `model` on preprocessed x (N, C, H, W) and return ({layer: output}, logits).

    Gradients flow (callers wrap in no_grad when they need none); hooks are removed in `finally`.
    """
    modules = {name: model.layer(name) for name in layers}  # SpecError listing valid names on a typo
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(
                lambda _m, _inp, out, name=name: outputs.__setitem__(name, out)))
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, logits


@torch.no_grad()
def activations(model: CNN, layer: str, images: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Output of `layer` for preprocessed images (n, C, H, W): (n, maps, h, w) for conv/pool layers,
    (n, units) for flatten/dense layers. Eval mode, no gradients; the model's mode is restored."""
    was_training = model.training
    model.eval()
    device = _device(model)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
    if x.ndim == 3:  # (n, H, W) single-channel
        x = x[:, None]
    parts = []
    try:
        for i in range(0, len(x), batch_size):
            outputs, _ = capture(model, [layer], x[i:i + batch_size].to(device))
            parts.append(outputs[layer].float().cpu().contiguous().numpy())
    finally:
        model.train(was_training)
    if not parts:
        model.layer(layer)
        return np.zeros((0, *layer_output_shape(model, layer)), np.float32)
    return np.concatenate(parts)


def layer_output_shape(model: CNN, layer: str) -> tuple[int, ...]:
    """Output shape of `layer` for one image: (maps, h, w) or (units,)."""
    model.layer(layer)
    return model.spec.layer(layer).output_shape
