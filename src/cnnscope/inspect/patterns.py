"""Input patterns that maximise a map: gradient ascent on the input, all maps of a layer in one batch."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.base.errors import ConfigError, RunError
from cnnscope.base.progress import bar
from cnnscope.inspect.activations import activations, capture, layer_output_shape
from cnnscope.inspect.common import model_device
from cnnscope.model.network import CNN
from cnnscope.trainer.rules_torch import Optimizer

log = logging.getLogger("cnnscope")

Bound = float | np.ndarray | torch.Tensor | None


@dataclass(frozen=True)
class PatternResult:
    """Patterns (k, H, W) — (k, C, H, W) for multi-channel inputs — and the activation each reached."""

    layer: str
    maps: tuple[int, ...]
    patterns: np.ndarray  # preprocessed input space, inside [lo, hi]
    activation: np.ndarray  # (k,) spatial mean of map maps[i] for patterns[i] (the unit's value for dense layers)
    restart_activation: np.ndarray  # (k, restarts) what each restart reached after the exploration phase
    steps: int
    restarts: int
    seed: int


def parse_maps(text: str | Sequence[int] | None, count: int, layer: str = "layer") -> list[int]:
    """Map numbers from '0:32' (Python slice, end excluded), '5', '1,4,9' or a mix ('0:4,9'); None = all.

    ConfigError for bad syntax, RunError for numbers outside 0..count-1 (the message states the count).
    """
    if text is None:
        return list(range(count))
    if isinstance(text, str):
        items: list[int] = []
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise ConfigError(f"--maps expects 'START:END', 'N' or 'N,M,…' (e.g. 0:32, 5, 1,4,9), received {text!r}")
        for part in parts:
            m = re.fullmatch(r"(\d*)\s*:\s*(\d*)", part)
            if m:
                start = int(m.group(1)) if m.group(1) else 0
                end = int(m.group(2)) if m.group(2) else count
                if end <= start:
                    raise ConfigError(f"--maps range {part!r} is empty; END must be greater than START")
                if end > count:
                    raise RunError(f"maps {part} go past the end of {layer}, which has {count} maps "
                                   f"(valid: 0..{count - 1})")
                items.extend(range(start, end))
            elif re.fullmatch(r"\d+", part):
                items.append(int(part))
            else:
                raise ConfigError(f"--maps expects 'START:END', 'N' or 'N,M,…' (e.g. 0:32, 5, 1,4,9), "
                                  f"received {text!r}")
    else:
        items = [int(v) for v in text]
    bad = [v for v in items if not 0 <= v < count]
    if bad:
        raise RunError(f"map {bad[0]} is not in {layer}, which has {count} maps (valid: 0..{count - 1})")
    if not items:
        raise ConfigError("no maps selected")
    return list(dict.fromkeys(items))  # drop repeats, keep order


def input_bounds(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (lo, hi) of preprocessed training images (n, C, H, W): the range patterns are kept inside."""
    x = np.asarray(train_x, dtype=np.float32)
    return x.min(axis=0), x.max(axis=0)


def _bound(value: Bound, shape: tuple[int, ...], default: float, device: torch.device) -> torch.Tensor:
    if value is None:
        return torch.full(shape, default, device=device)
    t = torch.as_tensor(np.asarray(value, dtype=np.float32) if not torch.is_tensor(value) else value,
                        dtype=torch.float32, device=device)
    if t.ndim == 4 and t.shape[0] == 1:  # (1, C, H, W)
        t = t[0]
    try:
        return torch.broadcast_to(t, shape).contiguous()
    except RuntimeError:
        raise ConfigError(f"pattern bounds of shape {tuple(t.shape)} do not fit the input shape {shape}") from None


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable 3×3 Gaussian blur per channel (reflect padding keeps the border values honest)."""
    k = torch.exp(-torch.tensor([1.0, 0.0, 1.0], device=x.device) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1).repeat(c, 1, 1, 1), groups=c)


def _surrogate(model: CNN, layer: str, x: torch.Tensor, leak: float) -> torch.Tensor:
    """The layer's output with its ReLU made leaky (slope `leak`), so maps that start dead still get a gradient;
    other layers' outputs unchanged. The forward pass stops at `layer`."""
    leaky = leak > 0 and isinstance(getattr(model.layer(layer), "act", None), nn.ReLU)
    outputs, _ = capture(model, [layer], x, pre_activation=leaky, stop_early=True)
    return F.leaky_relu(outputs[layer], leak) if leaky else outputs[layer]


def _objective(out: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Per batch element b: spatial mean of map maps[b] (conv/pool outputs) or unit maps[b] (dense)."""
    picked = out[torch.arange(len(out), device=out.device), maps]
    return picked.flatten(1).mean(1) if picked.ndim > 1 else picked


@dataclass(frozen=True)
class _Ascent:
    """One gradient ascent's fixed parts: the model and layer, the pixel box, the step schedule and its tricks.

    The ascent optimises u in [0, 1] with x = lo + span·u: every pixel's step is sized to its own range, so
    pixels that were always 0 in training (span 0) stay fixed and the rest can reach any value seen there."""

    model: CNN
    layer: str
    lo: torch.Tensor  # (C, H, W)
    span: torch.Tensor  # (C, H, W), hi - lo
    reg_steps: int
    lr: float
    jitter: int
    blur_sigma: float
    blur_every: int
    decay: float
    leak: float

    def to_x(self, u: torch.Tensor) -> torch.Tensor:
        """Pixels from the box coordinates u in [0, 1]."""
        return self.lo + self.span * u

    def to_u(self, x: torch.Tensor) -> torch.Tensor:
        """Box coordinates of pixels x (0 where a pixel's range is empty)."""
        return torch.where(self.span > 0, (x - self.lo) / self.span.clamp_min(1e-12), 0.0)

    def step_loss(self, u: torch.Tensor, target: torch.Tensor, step: int, gen: torch.Generator) -> torch.Tensor:
        """Minus the targets' objective (jittered during the regularised steps), plus the optional decay."""
        inp = self.to_x(u)
        if step < self.reg_steps and self.jitter:
            dy, dx = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=gen))
            inp = torch.roll(inp, (dy, dx), dims=(2, 3))
        loss = -_objective(_surrogate(self.model, self.layer, inp, self.leak), target).sum()
        if self.decay:
            loss = loss + self.decay * inp.pow(2).flatten(1).sum(1).sum()
        return loss

    def ascend(self, x: torch.Tensor, target: torch.Tensor, first: int, last: int, gen: torch.Generator,
               desc: str) -> torch.Tensor:
        """Steps first..last-1 of Adam on the box coordinates, blurring now and then, kept inside the box."""
        u = self.to_u(x).clone().requires_grad_(True)
        opt = Optimizer("adam", [u], self.lr)  # torch.optim.Adam's rule, without its 1.1 s dynamo import
        for step in bar(range(first, last), desc=desc, unit="step"):
            opt.zero_grad(set_to_none=True)
            (u.grad,) = torch.autograd.grad(self.step_loss(u, target, step, gen), u)
            opt.step()
            with torch.no_grad():
                blur = self.blur_sigma > 0 and self.blur_every and step % self.blur_every == self.blur_every - 1
                if step < self.reg_steps and blur:
                    u.copy_(self.to_u(_blur(self.to_x(u), self.blur_sigma)))
                u.clamp_(0.0, 1.0)
        return self.to_x(u.detach())

    @torch.no_grad()
    def score(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each target map's objective for its pattern."""
        outputs, _ = capture(self.model, [self.layer], x, stop_early=True)
        return _objective(outputs[self.layer], target)


def maximize_activation_result(model: CNN, layer: str, maps: Sequence[int] | str | None = None, steps: int = 48,
                               seed: int = 0, *, restarts: int = 4, explore: float = 0.25, lo: Bound = None,
                               hi: Bound = None, lr: float = 0.05, init_scale: float = 0.1, jitter: int = 1,
                               blur_sigma: float = 0.5, blur_every: int = 4, decay: float = 0.0,
                               regularize: float = 0.5, leak: float = 0.1) -> PatternResult:
    """Gradient ascent on the input for each requested map of `layer`; see `maximize_activation`."""
    if steps < 1 or restarts < 1:
        raise ConfigError(f"steps and restarts must be >= 1, received steps={steps}, restarts={restarts}")
    shape = layer_output_shape(model, layer)  # SpecError listing the valid layer names
    chosen = parse_maps(maps, shape[0], layer)
    device = model_device(model)
    c, h, w = model.spec.input_shape
    lo_t, hi_t = _bound(lo, (c, h, w), -3.0, device), _bound(hi, (c, h, w), 3.0, device)
    if bool((lo_t > hi_t).any()):
        raise ConfigError("pattern bounds: lo is above hi for some pixels")
    ascent = _Ascent(model, layer, lo_t, hi_t - lo_t, round(steps * regularize), lr, jitter, blur_sigma, blur_every,
                     decay, leak)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = len(chosen)
    explore_steps = max(1, round(steps * explore)) if restarts > 1 else 0
    was_training = model.training
    model.eval()
    try:
        start = init_scale * torch.randn((restarts * k, c, h, w), generator=gen).to(device)
        x = torch.maximum(torch.minimum(start, hi_t), lo_t)  # (restarts*k, C, H, W), restart-major
        target = torch.tensor(chosen, device=device).repeat(restarts)
        reached = torch.zeros((1, k))
        if restarts > 1:  # explore from every start, keep each map's best, then refine it
            x = ascent.ascend(x, target, 0, explore_steps, gen, f"exploring from {restarts} starts per map")
            reached = ascent.score(x, target).view(restarts, k)  # (restarts, k)
            x = x.view(restarts, k, c, h, w)[reached.argmax(0), torch.arange(k, device=device)]
            target = target[:k]
        x = ascent.ascend(x, target, explore_steps, steps, gen, f"ascending for {k} map(s)")
        final = ascent.score(x, target)
    finally:
        model.train(was_training)
    patterns = x.cpu().numpy()
    return PatternResult(layer, tuple(chosen), patterns[:, 0] if c == 1 else patterns, final.cpu().numpy(),
                         reached.T.cpu().numpy(), steps, restarts, seed)


def maximize_activation(model: CNN, layer: str, maps: Sequence[int] | str | None = None, steps: int = 48,
                        seed: int = 0, **options) -> np.ndarray:
    """Input patterns (k, H, W) — (k, C, H, W) for colour inputs — that maximise the spatial mean of each
    requested map of `layer`.

    Gradient ascent (Adam, `lr` in preprocessed units) on the input, from a small random start
    (`init_scale`·N(0, 1), i.e. near the training mean for standardised data). All maps are optimised together
    in one batch of maps × `restarts`; after the first `explore` fraction of the steps each map keeps its best
    restart and only that one is refined. Pixels are projected into [`lo`, `hi`] after every step (scalars or
    per-pixel arrays: pass `input_bounds(train_x)` for the range of the preprocessed training data).
    Regularisation, during the first `regularize` fraction of the steps only: a random shift of up to `jitter`
    pixels each step (patterns must work wherever they sit) and a 3×3 Gaussian blur of sigma `blur_sigma` every
    `blur_every` steps (suppresses pixel-level noise); optional L2 `decay` towards 0. The last steps are
    unregularised so the pattern settles on a true local maximum inside the bounds. Same seed, same patterns.
    Defaults suit small inputs, 28×28 grey or 32×32 colour (no upsampling, no ImageNet normalisation).
    """
    return maximize_activation_result(model, layer, maps, steps, seed, **options).patterns


@torch.no_grad()
def map_statistics(model: CNN, layer: str, images: np.ndarray, maps: Sequence[int] | str | None = None,
                   batch_size: int = 500) -> dict[str, np.ndarray]:
    """Per map over preprocessed `images`: the 99th percentile and the maximum of its spatial mean per image
    (the quantity `maximize_activation` raises), and the largest single element anywhere in it.

    Returns {"p99": (k,), "max": (k,), "max_element": (k,), "max_abs": (k,)} — max_abs, the largest |value|
    anywhere, is 0 for a dead map (cnnscope.inspect.dead_maps); computed in batches (no (n, maps, h, w) array).
    """
    shape = layer_output_shape(model, layer)
    chosen = parse_maps(maps, shape[0], layer)
    x = np.asarray(images, dtype=np.float32)
    if len(x) == 0:
        raise ConfigError("map statistics need at least one image")
    means, peaks, sizes = [], [], []
    for i in bar(range(0, len(x), batch_size), desc=f"the maps' values over {len(x):,} images", unit="batch"):
        out = activations(model, layer, x[i:i + batch_size])[:, chosen]  # (b, k, h, w) or (b, k)
        flat = out.reshape(len(out), len(chosen), -1)
        means.append(flat.mean(2))
        peaks.append(flat.max(2))
        sizes.append(np.abs(flat).max(2))
    mean = np.concatenate(means)  # (n, k)
    return {"p99": np.percentile(mean, 99, axis=0), "max": mean.max(0),
            "max_element": np.concatenate(peaks).max(0), "max_abs": np.concatenate(sizes).max(0)}
