"""Grad-CAM (Captum's LayerGradCam) placed on the input at each cell's receptive-field centre, and guided
Grad-CAM. Pixels that no cell of the layer sees are NaN ("not seen"), never a zero that reads as "unimportant".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.base.errors import SpecError
from cnnscope.inspect.common import Target, evaluating, gradient_inputs
from cnnscope.model.layers import CONV
from cnnscope.model.network import CNN

Grid = tuple[tuple[float, float, float], ...]


def last_conv_layer(model: CNN) -> str:
    """Name of the model's last conv layer (Grad-CAM's default)."""
    names = model.spec.layer_names(CONV)
    if not names:
        raise SpecError("this model has no conv layer; Grad-CAM needs one")
    return names[-1]


def _input_grid(model: CNN, layer: str) -> Grid:
    """Per axis (start, jump, rf): output cell i of `layer` is centred on input pixel start + jump·i and sees
    an rf-pixel-wide window around it (the spec's geometry, cnnscope.model.geometry)."""
    g = model.spec.geometry(layer)
    return tuple((float(g.start[d]), float(g.jump[d]), float(g.receptive_field[d])) for d in range(2))


def _map_layer(model: CNN, layer: str | None) -> tuple[str, nn.Module]:
    layer = layer or last_conv_layer(model)
    module = model.layer(layer)  # SpecError listing valid names
    if not model.spec.layer(layer).has_maps:
        valid = model.spec.map_layer_names()
        raise SpecError(f"Grad-CAM needs a layer with maps; {layer!r} has none; valid: {', '.join(valid)}")
    return layer, module


def seen_pixels(model: CNN, layer: str | None = None) -> np.ndarray:
    """Boolean (H, W): the input pixels at least one cell of `layer` (default: the last conv layer) sees."""
    layer, _ = _map_layer(model, layer)
    h, w = model.spec.input_shape[1:]
    cells = model.spec.layer(layer).output_shape[1:]
    seen = []
    for (start, jump, rf), n, pixels in zip(_input_grid(model, layer), cells, (h, w), strict=True):
        pos = np.arange(pixels)
        seen.append((pos >= start - (rf - 1) / 2) & (pos <= start + jump * (n - 1) + (rf - 1) / 2))
    return seen[0][:, None] & seen[1][None, :]


def _to_input(cam: torch.Tensor, grid: Grid, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of (n, h, w) cells placed at their receptive-field centres onto (n, H, W) pixels;
    pixels no cell sees (valid convolutions and pools drop edges) get NaN."""
    n, h, w = cam.shape
    axes, seen = [], []
    for (start, jump, rf), cells, pixels in zip(grid, (h, w), size, strict=True):
        pos = torch.arange(pixels, dtype=torch.float32, device=cam.device)
        index = ((pos - start) / jump).clamp(0, cells - 1)
        axes.append(index / (cells - 1) * 2 - 1 if cells > 1 else torch.zeros_like(index))
        seen.append((pos >= start - (rf - 1) / 2) & (pos <= start + jump * (cells - 1) + (rf - 1) / 2))
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid_xy = torch.stack([gx, gy], -1).expand(n, *size, 2)
    heat = F.grid_sample(cam[:, None], grid_xy, mode="bilinear", align_corners=True)[:, 0]
    return torch.where(seen[0][:, None] & seen[1][None, :], heat, torch.nan)


def _placed_cam(model: CNN, x: torch.Tensor, t: torch.Tensor, layer: str, module: nn.Module) -> torch.Tensor:
    from captum.attr import LayerGradCam

    with evaluating(model):
        cam = LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)  # (n, 1, h, w)
    return _to_input(cam.detach()[:, 0].float(), _input_grid(model, layer), tuple(x.shape[2:]))


def grad_cam(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM: ReLU(Σ_k mean(∂score/∂A_k)·A_k) on `layer` (default: the last conv layer), resampled onto
    the input so each cell sits at the centre of its receptive field; NaN on pixels no cell sees."""
    layer, module = _map_layer(model, layer)
    x, t = gradient_inputs(model, images, target)
    return _placed_cam(model, x, t, layer, module).cpu().numpy()


def guided_grad_cam(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None,
                    layer: str | None = None) -> np.ndarray:
    """Guided Grad-CAM: guided backprop (summed over channels) × the placed Grad-CAM map; NaN where unseen."""
    layer, module = _map_layer(model, layer)
    x, t = gradient_inputs(model, images, target)
    from captum.attr import GuidedBackprop

    cam = _placed_cam(model, x, t, layer, module)
    with evaluating(model):
        guided = GuidedBackprop(model).attribute(x, target=t).detach().sum(1)
    return (guided * cam).float().cpu().numpy()
