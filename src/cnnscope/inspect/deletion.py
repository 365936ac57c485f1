"""The deletion test: does blanking the pixels a heat map ranks highest hurt the class more than random ones?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..model import CNN
from .common import Target, class_targets, evaluating, input_batch, target_scores


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
        """Per image: the probability lost by blanking the top-ranked pixels."""
        return self.probability - self.after_top

    @property
    def drop_random(self) -> np.ndarray:
        """Per image: the probability lost by blanking random pixels (mean over the draws)."""
        return self.probability - self.after_random

    @property
    def beats_random(self) -> np.ndarray:
        """Per image: True where blanking the top-ranked pixels lowers the probability more than random ones."""
        return self.drop_top > self.drop_random

    def summary(self) -> dict[str, float]:
        """Means over the images, JSON-ready."""
        return {"fraction": self.fraction, "images": int(len(self.target)),
                "probability": float(self.probability.mean()),
                "after_top": float(self.after_top.mean()), "after_random": float(self.after_random.mean()),
                "drop_top": float(self.drop_top.mean()), "drop_random": float(self.drop_random.mean()),
                "top_beats_random": float(self.beats_random.mean())}


def _ranking(heat: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, P) pixel order, highest heat first; NaN ("not seen") last; ties in random (seeded) order."""
    heat = torch.where(torch.isnan(heat), -torch.inf, heat)
    shuffled = torch.argsort(torch.rand(heat.shape, generator=gen), 1)
    # A stable sort on a shuffled order: random order among equal values.
    return torch.gather(shuffled, 1, torch.argsort(-torch.gather(heat, 1, shuffled), dim=1, stable=True))


def _heat(heatmaps: np.ndarray | torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    values = heatmaps.detach().cpu() if torch.is_tensor(heatmaps) else heatmaps
    heat = torch.tensor(np.asarray(values, dtype=np.float32))
    if heat.numel() != n * h * w:
        raise ConfigError(f"expected one ({h}, {w}) heat map per image ({n}), received shape {tuple(heat.shape)}")
    return heat.reshape(n, h * w)


@torch.no_grad()
def deletion_score(model: CNN, images: np.ndarray | torch.Tensor, heatmaps: np.ndarray, fraction: float = 0.2, *,
                   blank: float | np.ndarray, target: Target = None, random_draws: int = 4,
                   seed: int = 0) -> DeletionResult:
    """Deletion test: set the `fraction` of pixels a heat map ranks highest to `blank` and measure the drop in
    the target class's probability, next to the drop for a random `fraction` (mean of `random_draws`).

    `blank` is the preprocessed value of a black raw pixel (scalar, per pixel (H, W) or per pixel and channel
    (C, H, W)), e.g. `preprocessor(np.zeros_like(raw[:1]))[0]`; a blanked pixel is blanked in every channel.
    Ties in a heat map are broken at random (seeded); NaN pixels ("not seen" by Grad-CAM's layer) are ranked last.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be between 0 and 1, received {fraction}")
    x = input_batch(model, images)
    n, c, h, w = x.shape
    heat = _heat(heatmaps, n, h, w)
    fill = torch.as_tensor(np.asarray(blank, dtype=np.float32), device=x.device)
    fill = torch.broadcast_to(fill.reshape(-1, h, w) if fill.numel() > 1 else fill, (c, h, w))
    k = int(round(fraction * h * w))
    gen = torch.Generator().manual_seed(seed)
    with evaluating(model):
        t = class_targets(model, x, target)

        def prob_after(ranked: torch.Tensor) -> torch.Tensor:  # ranked: (n, h*w) pixel order, first = blank
            mask = torch.zeros(n, h * w, dtype=torch.bool)
            mask.scatter_(1, ranked[:, :k], True)
            mask = mask.view(n, 1, h, w).to(x.device)
            return target_scores(model.probabilities(model(torch.where(mask, fill, x))), t)

        probability = target_scores(model.probabilities(model(x)), t)
        after_top = prob_after(_ranking(heat, gen))
        after_random = torch.stack([prob_after(torch.argsort(torch.rand(n, h * w, generator=gen), 1))
                                    for _ in range(max(1, random_draws))]).mean(0)
    return DeletionResult(fraction, t.cpu().numpy(), probability.cpu().numpy(), after_top.cpu().numpy(),
                          after_random.cpu().numpy())
