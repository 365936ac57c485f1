"""The training loop, read like pytorch/examples: a step, an epoch, evaluation and a checkpoint, each a function.

`fit` loops over epochs: `train_epoch` (one `train_step` per batch), `evaluate_arrays` on the validation images,
`save_checkpoint`, then the callbacks (curves.png is drawn by one, `plots.CurvesFile`, so the loop loads
no matplotlib). Per-epoch lines go to the "cnnscope" logger. `training` sets runs up and calls `fit`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnscope.base.errors import ConfigError
from cnnscope.base.metrics import confusion_matrix, per_class_accuracy
from cnnscope.base.progress import progress_bar
from cnnscope.data.dataset import Dataset, to_nchw
from cnnscope.model.network import CNN
from cnnscope.trainer.config import TrainConfig
from cnnscope.trainer.optim import SCHEDULES
from cnnscope.trainer.rules_torch import Optimizer

log = logging.getLogger("cnnscope")

DATA_LOSS_KEYS = ("data_loss", "val_data_loss")  # absent from runs trained before they were recorded


@dataclass(frozen=True)
class EpochLog:
    """What one epoch produced; callbacks receive it.

    `loss` is the training objective (data loss with label smoothing, plus the regularization penalty);
    `data_loss` the plain data loss of the same training batches, comparable with `val_data_loss`.
    """

    epoch: int
    epochs: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    images_per_second: float
    lr: float
    history: dict[str, Any]
    model: CNN  # the model being trained (on its training device); callbacks must not modify it
    run_dir: Path
    data_loss: float = math.nan
    val_data_loss: float = math.nan


Callback = Callable[[EpochLog], None]


def pick_device(name: str) -> torch.device:
    """The torch device for TrainConfig.device ('auto': CUDA, else MPS, else CPU); ConfigError if absent."""
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device auto or cpu")
    if name == "mps" and not mps:
        raise ConfigError("device 'mps' requested but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def process_seconds() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms ticks); None where that cannot be read."""
    try:
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - start
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def data_loss(model: CNN, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss of the data alone: cross-entropy (softmax output) or binary cross-entropy (sigmoid), no penalty."""
    logits = logits.float()
    if model.spec.output_activation == "softmax":
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    target = F.one_hot(y, logits.shape[1]).float()
    target = target * (1 - label_smoothing) + label_smoothing / logits.shape[1]
    return F.binary_cross_entropy_with_logits(logits, target)


def compute_loss(model: CNN, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Data loss for the spec's output activation plus the regularization penalty (as Keras reports it)."""
    return data_loss(model, logits, y, label_smoothing) + model.regularization_loss()


@torch.no_grad()
def evaluate_arrays(model: CNN, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                    batch_size: int = 1000, label_smoothing: float = 0.0) -> dict[str, Any]:
    """"loss" (the data loss with `label_smoothing`, plus the penalty: the objective when the training's smoothing
    is given), "data_loss" (what "loss" means in every summary), accuracy, predictions, confusion matrix."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x_t, y_t = torch.as_tensor(x), torch.as_tensor(y)
    total_loss, total_data, preds = 0.0, 0.0, []
    try:
        for i in range(0, len(x_t), batch_size):
            xb, yb = x_t[i:i + batch_size].to(device), y_t[i:i + batch_size].to(device)
            logits = model(xb)
            total_loss += float(compute_loss(model, logits, yb, label_smoothing)) * len(xb)
            total_data += float(data_loss(model, logits, yb)) * len(xb)
            preds.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)
    truth = y_t.numpy()
    k = model.spec.num_classes
    confusion = confusion_matrix(truth, pred, k)
    per_class = per_class_accuracy(confusion)
    count = max(1, len(truth))
    return {"loss": total_loss / count, "data_loss": total_data / count,
            "accuracy": float((pred == truth).mean()) if len(truth) else 0.0,
            "per_class_accuracy": per_class.tolist(), "confusion": confusion.tolist(), "predictions": pred}


def shift_batch(raw: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image (N, C, H, W) by whole pixels in [-max_shift, max_shift], zero fill."""
    n, _, h, w = raw.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    padded = F.pad(raw, (max_shift,) * 4)
    rows = (torch.arange(h)[None, :] + max_shift - shifts[:, :1]).clamp(0, h + 2 * max_shift - 1)  # (N, H)
    cols = (torch.arange(w)[None, :] + max_shift - shifts[:, 1:]).clamp(0, w + 2 * max_shift - 1)  # (N, W)
    index = torch.arange(n)[:, None, None]
    # advanced indices (N, H, W) around the channel slice put the channels last: (N, H, W, C) -> (N, C, H, W)
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def flip_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A new batch (N, C, H, W) with a random half of the images mirrored left to right (`x` is not changed)."""
    mirrored = torch.rand(len(x), generator=generator) < 0.5  # (N,)
    return torch.where(mirrored[:, None, None, None], x.flip(-1), x)


def erase_batch(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """A new batch (N, C, H, W) where each image, with probability `p`, has one random rectangle set to 0: random
    erasing (Zhong et al. 2017), 2-40 % of the area, aspect 0.3-3.3 (`x` is not changed)."""
    n, _, h, w = x.shape
    area = torch.empty(n).uniform_(0.02, 0.4, generator=generator) * (h * w)
    aspect = torch.empty(n).uniform_(math.log(0.3), math.log(1 / 0.3), generator=generator).exp()
    eh = (area * aspect).sqrt().round().clamp(1, h).long()  # (N,)
    ew = (area / aspect).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
    on = torch.rand(n, generator=generator) < p
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (N, W)
    mask = on[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return x.masked_fill(mask[:, None], 0.0)


class Batches:
    """The training images, batch by batch, in the order the seed gives each epoch (shifted if asked).

    Each batch is gathered with `index_select` into buffers allocated once (measured faster than fancy indexing,
    benchmarks/README.md): a batch's tensors are overwritten by the next one, so use them before asking for it.
    """

    def __init__(self, dataset: Dataset, config: TrainConfig) -> None:
        self.x, self.y = torch.as_tensor(dataset.train_x), torch.as_tensor(dataset.train_y)
        self.n, self.size, self.seed, self.shift = len(self.x), config.batch_size, config.seed, config.augment_shift
        self.per_epoch = math.ceil(self.n / self.size)
        self.flip, self.erase = config.augment_flip, config.augment_erase
        source = self.x
        if self.shift:
            self.raw = torch.from_numpy(to_nchw(dataset.train_raw).astype(np.float32))  # (N, C, H, W)
            self.mean = torch.as_tensor(dataset.preprocessor.mean)
            self.scale = torch.as_tensor(dataset.preprocessor.scale)
            source = self.raw
        rows = min(self.size, self.n)
        self.x_buffer = torch.empty((rows, *source.shape[1:]), dtype=source.dtype)
        self.y_buffer = torch.empty(rows, dtype=self.y.dtype)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) of each batch of epoch `epoch` (0-based), on the CPU."""
        shifts = torch.Generator().manual_seed(self.seed * 100_003 + epoch) if self.shift else None
        flips = torch.Generator().manual_seed(self.seed * 100_019 + epoch) if self.flip else None
        erasing = torch.Generator().manual_seed(self.seed * 100_043 + epoch) if self.erase else None
        order = torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(self.n))
        for b in range(self.per_epoch):
            idx = order[b * self.size:(b + 1) * self.size]
            k = len(idx)
            yb = torch.index_select(self.y, 0, idx, out=self.y_buffer[:k])
            if self.shift:
                raw = torch.index_select(self.raw, 0, idx, out=self.x_buffer[:k])
                xb = (shift_batch(raw, self.shift, shifts) - self.mean) / self.scale
            else:
                xb = torch.index_select(self.x, 0, idx, out=self.x_buffer[:k])
            xb = flip_batch(xb, flips) if flips is not None else xb
            yield (erase_batch(xb, self.erase, erasing) if erasing is not None else xb), yb


class Penalty:
    """The spec's L1/L2 penalty added straight to the gradients after backward, instead of through the loss.

    `grad += coefficient * 2w` (L2) or `coefficient * sign(w)` (L1) on the same weights as
    `CNN.regularization_loss`: bit for bit what autograd adds for the penalty in the loss (Keras' `l2(λ)` is
    coupled weight decay 2λ), for every optimizer, without the penalty's graph (tests/test_train.py).
    """

    def __init__(self, model: CNN) -> None:
        reg = model.spec.regularizer
        self.kind, self.coefficient = reg.kind, float(reg.coefficient)
        active = reg.kind != "none" and reg.coefficient != 0
        self.weights = [m.weight for m in model.modules() if active and (
            isinstance(m, torch.nn.Linear) or (reg.conv and isinstance(m, torch.nn.Conv2d)))]

    @torch.no_grad()
    def apply(self) -> torch.Tensor | float:
        """Add the penalty's gradient to the weights' gradients; the penalty's value (0.0 when there is none)."""
        if not self.weights:
            return 0.0
        total = None
        for w in self.weights:
            term = w.abs().sum() if self.kind == "l1" else w.pow(2).sum()
            total = term if total is None else total + term
            if w.grad is not None:  # grad + c·2w, the product rounded first: as autograd accumulates it
                w.grad.add_(torch.sign(w) * self.coefficient if self.kind == "l1" else w * (2 * self.coefficient))
        return self.coefficient * total


@dataclass
class Loop:
    """What the steps of one training share: model, optimizer, batches, device, and where it stands."""

    run_dir: Path
    model: CNN
    optimizer: Optimizer
    config: TrainConfig
    batches: Batches
    device: torch.device
    memory_format: torch.memory_format
    step: int = 0
    start_epoch: int = 0
    penalty: Penalty | None = None  # None: the model's own (set in __post_init__)

    def __post_init__(self) -> None:
        if self.penalty is None:
            self.penalty = Penalty(self.model)

    @property
    def totals_dtype(self) -> torch.dtype:
        """The per-epoch sums' dtype: float64 (as Python floats), float32 where the device has no float64 (MPS)."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def lr(self) -> float:
        """The scheduled learning rate of the current step."""
        c = self.config
        return SCHEDULES[c.schedule].fn(c.lr, self.step, self.batches.per_epoch * c.epochs, **c.schedule_args)

    def autocast(self) -> Any:
        """bf16 mixed precision when configured, else a no-op context."""
        bf16 = self.config.precision == "bf16"
        return torch.autocast(self.device.type, **({"dtype": torch.bfloat16} if bf16 else {"enabled": False}))


def train_step(loop: Loop, xb: torch.Tensor, yb: torch.Tensor, lr: float) -> torch.Tensor:
    """One optimizer step on a batch: [objective, plain data loss, correct predictions] of the batch, summed over
    its images, as one tensor on the device (no host sync: the epoch adds them up and reads them once)."""
    for group in loop.optimizer.param_groups:
        group["lr"] = lr
    with loop.autocast():
        logits = loop.model(xb)
    smoothing = loop.config.label_smoothing
    loss = data_loss(loop.model, logits, yb, smoothing)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    penalty = loop.penalty.apply()  # the penalty's gradient, from the weights before this step
    loop.optimizer.step()
    with torch.no_grad():  # from the same forward pass: no smoothing, no penalty, so it compares with val_data_loss
        loss = loss.detach()
        plain = data_loss(loop.model, logits.detach(), yb) if smoothing else loss
        hits = (logits.argmax(1) == yb).sum()
        n = len(yb)
        return torch.stack([(loss + penalty) * n, plain * n, hits.to(loss.dtype)]).to(loop.totals_dtype)


def train_epoch(loop: Loop, epoch: int, progress: bool | None) -> dict[str, Any]:
    """One pass over the training images: mean objective, data loss and accuracy, the lr of each step, seconds."""
    t0 = time.perf_counter()
    totals, lrs = torch.zeros(3, dtype=loop.totals_dtype, device=loop.device), []
    bar = progress_bar(loop.batches.epoch(epoch), show=progress, total=loop.batches.per_epoch, unit="batch",
                       leave=False, desc=f"epoch {epoch + 1}/{loop.config.epochs}")
    for b, (xb, yb) in enumerate(bar):
        xb = xb.to(loop.device, memory_format=loop.memory_format)
        lrs.append(loop.lr())
        totals += train_step(loop, xb, yb.to(loop.device), lrs[-1])
        loop.step += 1
        if b == 0 and epoch == loop.start_epoch:  # start-up time (issue 12): shown when CNNSCOPE_STARTUP_LOG=1
            log.log(logging.INFO if os.environ.get("CNNSCOPE_STARTUP_LOG") == "1" else logging.DEBUG,
                    "first training step done %.2f s after the process started", process_seconds() or math.nan)
        if b % 20 == 0 and not bar.disable:  # the only host sync inside an epoch, and only with a progress bar
            bar.set_postfix(loss=f"{float(totals[0]) / ((b + 1) * loop.config.batch_size):.4f}")
    bar.close()
    loss_sum, data_sum, correct = totals.tolist()
    n = loop.batches.n
    return {"loss": loss_sum / n, "data_loss": data_sum / n, "accuracy": correct / n, "lrs": lrs,
            "seconds": time.perf_counter() - t0}
