"""Why this class: heat maps over the input (saliency, Grad-CAM, integrated gradients) and a deletion test.

Every method has the same call shape, Captum-style: `method(model, images, target=None, ...) -> (n, H, W)`,
with `images` preprocessed (n, C, H, W) or (n, H, W) and `target` None (the predicted class), one class for
all images, or one class per image. Scores are the target class's logit (before softmax), as in Captum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, SpecError, choice_error
from ..model import CNN, ConvBlock
from .activations import _device, capture

Target = int | Sequence[int] | np.ndarray | None


def _inputs(model: CNN, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images, dtype=np.float32))
    x = x.float()
    if x.ndim == 3:  # (n, H, W) single-channel
        x = x[:, None]
    expected = tuple(model.spec.input_shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ConfigError(f"expected preprocessed images of shape (n, {', '.join(map(str, expected))}), "
                          f"received {tuple(images.shape)}")
    return x.to(_device(model))


def _targets(model: CNN, x: torch.Tensor, target: Target) -> torch.Tensor:
    """(n,) class indices: the predicted class when target is None."""
    classes = model.spec.num_classes
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    t = torch.as_tensor(np.asarray(target, dtype=np.int64), device=x.device)
    if t.ndim == 0:
        t = t.expand(len(x))
    if t.shape != (len(x),):
        raise ConfigError(f"target must be one class or one per image ({len(x)}), received {len(t)} values")
    bad = t[(t < 0) | (t >= classes)]
    if len(bad):
        raise ConfigError(f"target class {int(bad[0])} is not a class of this model (valid: 0..{classes - 1})")
    return t


def _score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits[torch.arange(len(logits), device=logits.device), target]


def _eval(model: CNN) -> bool:
    was_training = model.training
    model.eval()
    return was_training


def saliency(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None) -> np.ndarray:
    """|∂ score / ∂ pixel| (max over input channels): which pixels would change the score fastest."""
    was_training = _eval(model)
    try:
        x = _inputs(model, images).requires_grad_(True)
        t = _targets(model, x.detach(), target)
        (grad,) = torch.autograd.grad(_score(model(x), t).sum(), x)
    finally:
        model.train(was_training)
    return grad.abs().amax(1).cpu().numpy()  # (n, H, W)


def last_conv_layer(model: CNN) -> str:
    """Name of the model's last conv layer (Grad-CAM's default)."""
    names = [name for name, module in model.layers.items() if isinstance(module, ConvBlock)]
    if not names:
        raise SpecError("this model has no conv layer; Grad-CAM needs one")
    return names[-1]


def _input_grid(model: CNN, layer: str) -> tuple[tuple[float, float, float], ...]:
    """Per axis (start, jump, rf): output cell i of `layer` is centred on input pixel start + jump·i and sees
    an rf-pixel-wide window around it."""
    start, jump, rf = [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]
    for name, module in model.layers.items():
        if isinstance(module, ConvBlock):
            kernel, stride = module.conv.kernel_size, module.conv.stride
            pad = getattr(module.pad, "padding", (0, 0, 0, 0))  # (left, right, top, bottom)
            before = (pad[2], pad[0])
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride = nn.modules.utils._pair(module.kernel_size), nn.modules.utils._pair(module.stride)
            before = (0, 0)
        else:
            break
        for d in range(2):
            start[d] += ((kernel[d] - 1) / 2 - before[d]) * jump[d]
            rf[d] += (kernel[d] - 1) * jump[d]
            jump[d] *= stride[d]
        if name == layer:
            break
    return (start[0], jump[0], rf[0]), (start[1], jump[1], rf[1])


def _to_input(cam: torch.Tensor, grid: tuple[tuple[float, float, float], ...], size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of (n, h, w) cells placed at their receptive-field centres onto (n, H, W) pixels;
    pixels no cell sees (valid convolutions and pools drop edges) get 0."""
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
    return heat * (seen[0][:, None] & seen[1][None, :])


def grad_cam(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM: ReLU(Σ_k mean(∂score/∂A_k)·A_k) on `layer` (default: the last conv layer), resampled onto
    the input so each cell sits at the centre of its receptive field."""
    layer = layer or last_conv_layer(model)
    module = model.layer(layer)  # SpecError listing valid names
    if not isinstance(module, (ConvBlock, nn.MaxPool2d, nn.AvgPool2d)):
        valid = [n for n, m in model.layers.items() if isinstance(m, (ConvBlock, nn.MaxPool2d, nn.AvgPool2d))]
        raise SpecError(f"Grad-CAM needs a layer with maps; {layer!r} has none; valid: {', '.join(valid)}")
    was_training = _eval(model)
    try:
        x = _inputs(model, images)
        t = _targets(model, x, target)
        outputs, logits = capture(model, [layer], x)
        maps = outputs[layer]  # (n, K, h, w)
        (grad,) = torch.autograd.grad(_score(logits, t).sum(), maps)
        with torch.no_grad():
            weights = grad.mean((2, 3), keepdim=True)  # (n, K, 1, 1)
            cam = F.relu((weights * maps).sum(1))  # (n, h, w)
            heat = _to_input(cam, _input_grid(model, layer), tuple(x.shape[2:]))
    finally:
        model.train(was_training)
    return heat.cpu().numpy()


def integrated_gradients(model: CNN, images: np.ndarray | torch.Tensor, target: Target = None, steps: int = 32,
                         baseline: float | np.ndarray | None = None) -> np.ndarray:
    """Integrated gradients (x − baseline)·mean over the path of ∂score/∂x, summed over channels; signed.

    `baseline` defaults to zeros, as in Captum; for images, pass the preprocessed value of a black image
    (what `deletion_score` calls `blank`). Midpoint rule with `steps` points; attributions sum to about
    score(x) − score(baseline).
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, received {steps}")
    was_training = _eval(model)
    try:
        x = _inputs(model, images)
        t = _targets(model, x, target)
        base = torch.zeros_like(x) if baseline is None else torch.as_tensor(
            np.asarray(baseline, dtype=np.float32), device=x.device).expand_as(x)
        total = torch.zeros_like(x)
        for i in range(steps):
            alpha = (i + 0.5) / steps
            point = (base + alpha * (x - base)).requires_grad_(True)
            (grad,) = torch.autograd.grad(_score(model(point), t).sum(), point)
            total += grad
    finally:
        model.train(was_training)
    return ((x - base) * total / steps).sum(1).cpu().numpy()


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "gradcam": grad_cam, "saliency": saliency, "integrated-gradients": integrated_gradients,
}


def get_method(name: str) -> Callable[..., np.ndarray]:
    """The attribution function called `name` (gradcam, saliency, integrated-gradients)."""
    if name not in METHODS:
        raise choice_error(ConfigError, "method", name, METHODS)
    return METHODS[name]


@dataclass(frozen=True)
class DeletionResult:
    """Class probability before and after blanking the top-ranked vs a random `fraction` of the pixels."""

    fraction: float
    target: np.ndarray  # (n,) class scored
    probability: np.ndarray  # (n,) on the intact images
    after_top: np.ndarray  # (n,) after blanking the pixels the heat map ranks highest
    after_random: np.ndarray  # (n,) after blanking random pixels (mean over the draws)

    @property
    def drop_top(self) -> np.ndarray:
        return self.probability - self.after_top

    @property
    def drop_random(self) -> np.ndarray:
        return self.probability - self.after_random

    def summary(self) -> dict[str, float]:
        """Means over the images, JSON-ready."""
        return {"fraction": self.fraction, "images": int(len(self.target)),
                "probability": float(self.probability.mean()),
                "after_top": float(self.after_top.mean()), "after_random": float(self.after_random.mean()),
                "drop_top": float(self.drop_top.mean()), "drop_random": float(self.drop_random.mean()),
                "top_beats_random": float((self.drop_top > self.drop_random).mean())}


@torch.no_grad()
def deletion_score(model: CNN, images: np.ndarray | torch.Tensor, heatmaps: np.ndarray, fraction: float = 0.2, *,
                   blank: float | np.ndarray, target: Target = None, random_draws: int = 4,
                   seed: int = 0) -> DeletionResult:
    """Deletion test: set the `fraction` of pixels a heat map ranks highest to `blank` and measure the drop in
    the target class's probability, next to the drop for a random `fraction` (mean of `random_draws`).

    `blank` is the preprocessed value of a black raw pixel (scalar or per-pixel (H, W)), e.g.
    `preprocessor(np.zeros((1, 28, 28)))`. Ties in a heat map are broken at random (seeded).
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be between 0 and 1, received {fraction}")
    was_training = _eval(model)
    try:
        x = _inputs(model, images)
        n, c, h, w = x.shape
        heat = torch.as_tensor(np.asarray(heatmaps, dtype=np.float32)).reshape(n, h * w)
        t = _targets(model, x, target)
        fill = torch.as_tensor(np.asarray(blank, dtype=np.float32), device=x.device)
        fill = fill.reshape(-1, h, w) if fill.numel() > 1 else fill
        fill = torch.broadcast_to(fill, (c, h, w))
        k = int(round(fraction * h * w))
        gen = torch.Generator().manual_seed(seed)

        def prob_after(ranked: torch.Tensor) -> torch.Tensor:  # ranked: (n, h*w) pixel order, first = blank
            mask = torch.zeros(n, h * w, dtype=torch.bool)
            mask.scatter_(1, ranked[:, :k], True)
            mask = mask.view(n, 1, h, w).to(x.device)
            return _score(model.probabilities(model(torch.where(mask, fill, x))), t)

        probability = _score(model.probabilities(model(x)), t)
        tiebreak = torch.rand(n, h * w, generator=gen)
        # Sort by heat, random order among equal values: a stable sort on a shuffled order.
        shuffled = torch.argsort(tiebreak, 1)
        order = torch.gather(shuffled, 1, torch.argsort(-torch.gather(heat, 1, shuffled), dim=1, stable=True))
        after_top = prob_after(order)
        after_random = torch.stack([prob_after(torch.argsort(torch.rand(n, h * w, generator=gen), 1))
                                    for _ in range(max(1, random_draws))]).mean(0)
    finally:
        model.train(was_training)
    return DeletionResult(fraction, t.cpu().numpy(), probability.cpu().numpy(), after_top.cpu().numpy(),
                          after_random.cpu().numpy())
