"""The deletion test: does a heat map find the pixels the class depends on better than a ranking that knows no
model?

Three rankings of the pixels of each image are compared: the method's heat map, random (mean of a few draws), and
the image-only baseline "brightness" (each pixel's distance from black in the raw image, on luminance for colour
data: MNIST's ink). Along each ranking the class probability is measured while 0–50 % of the pixels are deleted
(set to black, most important first) and inserted (into a black image, most important first); each curve's area
(AUC, divided by the width of the fraction range: the mean probability along the curve) sums it up. A method
passes on an image when its deletion AUC is at least BEAT_MARGIN below the brightness ranking's: blanking the
pixels it ranks first destroys the class faster than blanking the brightest pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.common import Target, class_targets, evaluating, input_batch, target_scores
from cnnscope.model.network import CNN

FRACTIONS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))  # 0, 5 %, …, 50 % of the pixels
# A method beats another ranking on an image when its deletion AUC is lower by at least this much (one percentage
# point of mean class probability): smaller differences are within the spread of random draws.
BEAT_MARGIN = 0.01
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
RANKINGS = ("method", "brightness", "random")
CRITERION = (f"passes: its deletion AUC is at least {BEAT_MARGIN} below the brightness ranking's (pixels ranked "
             "by their distance from black, no model), over 0–50 % of the pixels blanked")


def brightness_map(raw: np.ndarray, background: float = 0.0) -> np.ndarray:
    """(n, H, W) float32 image-only baseline from raw images (n, H, W) or (n, H, W, C) as stored in the data set
    (before preprocessing): |luminance − background| per pixel (BT.601 weights for 3 channels, the mean for other
    counts). `background` is black (0), what the deletion test blanks to; for MNIST this is the ink."""
    values = np.asarray(raw, dtype=np.float32)
    if values.ndim == 4:
        channels = values.shape[-1]
        weights = np.asarray(LUMINANCE if channels == 3 else [1 / channels] * channels, np.float32)
        values = values @ weights
    if values.ndim != 3:
        raise ConfigError(f"expected raw images (n, H, W) or (n, H, W, C), received shape {np.shape(raw)}")
    return np.abs(values - np.float32(background))


def curve_area(fractions: Sequence[float] | np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under (…, k) curves over `fractions`, divided by the fractions' span: the mean value along
    each curve (a probability stays in [0, 1])."""
    f = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(curves, dtype=np.float64)
    if f.ndim != 1 or len(f) < 2 or y.shape[-1] != len(f) or not (np.diff(f) > 0).all():
        raise ConfigError(f"need at least 2 increasing fractions and one value per fraction, received {len(f)} "
                          f"fractions and curves of shape {y.shape}")
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(f)).sum(-1) / (f[-1] - f[0])


@dataclass(frozen=True)
class Curves:
    """The target class's probability along one pixel ranking, at each fraction: after deleting (blanking) the
    first pixels of the ranking, and for a black image with only those pixels inserted."""

    deletion: np.ndarray  # (n, k) lower is better: the class falls fast
    insertion: np.ndarray  # (n, k) higher is better: the class comes back fast


@dataclass(frozen=True)
class DeletionResult:
    """Deletion and insertion curves of the method's ranking, the brightness ranking and random rankings."""

    fractions: np.ndarray  # (k,) shares of the pixels deleted / inserted
    target: np.ndarray  # (n,) class scored
    probability: np.ndarray  # (n,) on the intact images
    curves: dict[str, Curves]  # method, brightness, random (mean over the draws)

    def auc(self, ranking: str, kind: str = "deletion") -> np.ndarray:
        """(n,) area under `ranking`'s deletion or insertion curve (the mean probability along it)."""
        return curve_area(self.fractions, getattr(self.curves[ranking], kind))

    def beats(self, other: str, kind: str = "deletion") -> np.ndarray:
        """(n,) True where the method beats ranking `other` by BEAT_MARGIN: a lower deletion AUC, or a higher
        insertion AUC."""
        gap = self.auc(other, kind) - self.auc("method", kind)
        return gap >= BEAT_MARGIN if kind == "deletion" else -gap >= BEAT_MARGIN

    @property
    def beats_random(self) -> np.ndarray:
        """(n,) True where the method's deletion AUC is below random rankings' (by BEAT_MARGIN)."""
        return self.beats("random")

    @property
    def brightness_beats_random(self) -> np.ndarray:
        """(n,) True where the brightness ranking alone (no model) has the lower deletion AUC than random rankings
        (by BEAT_MARGIN): how little beating random says on these images."""
        return self.auc("random") - self.auc("brightness") >= BEAT_MARGIN

    @property
    def passes(self) -> np.ndarray:
        """(n,) the verdict: True where the method's deletion AUC is below the brightness ranking's (CRITERION)."""
        return self.beats("brightness")

    def summary(self, image: int | None = None) -> dict[str, Any]:
        """JSON-ready: one image's curves, AUCs and verdict (booleans), or with `image` None the means over
        the images and the share of images on which the method beats each ranking."""
        def pick(values: np.ndarray) -> Any:
            return values.mean(0) if image is None else values[image]

        def verdict(values: np.ndarray) -> bool | float:
            return float(values.mean()) if image is None else bool(values[image])

        rankings = {name: {"deletion": [round(float(v), 5) for v in pick(c.deletion)],
                           "insertion": [round(float(v), 5) for v in pick(c.insertion)],
                           "deletion_auc": float(pick(self.auc(name))),
                           "insertion_auc": float(pick(self.auc(name, "insertion")))}
                    for name, c in self.curves.items()}
        out = {"fractions": [float(f) for f in self.fractions], "probability": float(pick(self.probability)),
               "rankings": rankings, "beats_random": verdict(self.beats_random),
               "beats_brightness": verdict(self.passes),
               "insertion_beats_brightness": verdict(self.beats("brightness", "insertion")),
               "passes": verdict(self.passes),
               "brightness_beats_random": verdict(self.brightness_beats_random), "criterion": CRITERION,
               "margin": BEAT_MARGIN}
        if image is None:
            out["images"] = int(len(self.target))
        else:
            out["verdict"] = "passes" if out["passes"] else "fails"
        return out


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


def _fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or len(f) < 2 or f[0] != 0 or not (np.diff(f) > 0).all() or f[-1] >= 1:
        raise ConfigError(f"fractions must start at 0, increase and stay below 1 (at least 2), received "
                          f"{[float(v) for v in np.atleast_1d(f)]}")
    return f


def _along(model: CNN, x: torch.Tensor, fill: torch.Tensor, order: torch.Tensor, t: torch.Tensor,
           counts: list[int]) -> Curves:
    """Deletion and insertion curves along `order` (n, P): the first `count` pixels blanked / inserted."""
    n, _, h, w = x.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(n, -1))  # each pixel's place in the ranking
    deleted, inserted = [], []
    for count in counts:
        first = (rank < count).view(n, 1, h, w).to(x.device)
        both = torch.cat([torch.where(first, fill, x), torch.where(first, x, fill)])  # (2n, C, H, W)
        p = target_scores(model.probabilities(model(both)), torch.cat([t, t]))
        deleted.append(p[:n])
        inserted.append(p[n:])
    return Curves(torch.stack(deleted, 1).cpu().numpy(), torch.stack(inserted, 1).cpu().numpy())


def _fill(blank: float | np.ndarray, x: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    fill = torch.as_tensor(np.asarray(blank, dtype=np.float32), device=x.device)
    return torch.broadcast_to(fill.reshape(-1, h, w) if fill.numel() > 1 else fill, (c, h, w))


def deletion_score(model: CNN, images: np.ndarray | torch.Tensor, heatmaps: np.ndarray, *, raw: np.ndarray,
                   blank: float | np.ndarray, target: Target = None, fractions: Sequence[float] = FRACTIONS,
                   random_draws: int = 4, seed: int = 0) -> DeletionResult:
    """Deletion and insertion curves of the heat maps' pixel ranking next to the brightness ranking (from `raw`,
    the same images before preprocessing: see `brightness_map`) and random rankings (mean of `random_draws`).

    `images` are preprocessed; `blank` is the preprocessed value of a black raw pixel (scalar, per pixel (H, W)
    or per pixel and channel (C, H, W)), e.g. `preprocessor(np.zeros_like(raw[:1]))[0]`; a blanked pixel is
    blanked in every channel. Ties in a ranking are broken at random (seeded); NaN pixels ("not seen" by
    Grad-CAM's layer) are ranked last.
    """
    return deletion_scores(model, images, {"method": heatmaps}, raw=raw, blank=blank, target=target,
                           fractions=fractions, random_draws=random_draws, seed=seed)["method"]


@torch.no_grad()
def deletion_scores(model: CNN, images: np.ndarray | torch.Tensor, heatmaps: Mapping[str, np.ndarray], *,
                    raw: np.ndarray, blank: float | np.ndarray, target: Target = None,
                    fractions: Sequence[float] = FRACTIONS, random_draws: int = 4,
                    seed: int = 0) -> dict[str, DeletionResult]:
    """`deletion_score` for several methods' heat maps of the same images ({name: (n, H, W)}), the brightness
    and random curves computed once and shared: each result is the one `deletion_score` gives for that method."""
    f = _fractions(fractions)
    x = input_batch(model, images)
    n, _, h, w = x.shape
    heats = {name: _heat(heat, n, h, w) for name, heat in heatmaps.items()}
    bright = np.asarray(raw)
    if bright.shape[:3] != (n, h, w):
        raise ConfigError(f"expected the {n} raw images of shape ({h}, {w}), received shape {bright.shape}")
    fill = _fill(blank, x)
    counts = [int(round(v * h * w)) for v in f]
    gen = torch.Generator().manual_seed(seed)
    with evaluating(model):
        t = class_targets(model, x, target)
        probability = target_scores(model.probabilities(model(x)), t).cpu().numpy()
        shared = {"brightness": _along(model, x, fill, _ranking(_heat(brightness_map(bright), n, h, w), gen), t,
                                       counts)}
        draws = [_along(model, x, fill, torch.argsort(torch.rand(n, h * w, generator=gen), 1), t, counts)
                 for _ in range(max(1, random_draws))]
        shared["random"] = Curves(np.mean([d.deletion for d in draws], 0), np.mean([d.insertion for d in draws], 0))
        # Each method breaks its ties with its own generator: its result does not depend on the other methods.
        own = {name: _along(model, x, fill, _ranking(heat, torch.Generator().manual_seed(seed + 1)), t, counts)
               for name, heat in heats.items()}
    targets = t.cpu().numpy()
    return {name: DeletionResult(f, targets, probability, {"method": curves, **shared}) for name, curves in own.items()}
