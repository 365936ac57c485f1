"""Helpers the inspect modules share: the model's device, eval mode for a while, and images and target classes
checked and copied for a gradient-based method."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from cnnscope.base.errors import ConfigError
from cnnscope.model.network import CNN

Target = int | Sequence[int] | np.ndarray | None


def model_device(model: CNN) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


@contextmanager
def evaluating(model: CNN) -> Iterator[None]:
    """Eval mode inside, the caller's mode after; Captum's notes about the hooks it sets (and removes) hushed."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(hooks|backward hook|non-linear).*")
            yield
    finally:
        model.train(was_training)


def input_batch(model: CNN, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A private float32 copy of the images, (n, C, H, W) on the model's device (the caller's stays as it was)."""
    if torch.is_tensor(images):
        x = images.detach().to(device=model_device(model), dtype=torch.float32).clone(
            memory_format=torch.contiguous_format)
    else:
        x = torch.tensor(np.asarray(images, dtype=np.float32), device=model_device(model))
    if x.ndim == 3:  # (n, H, W) single-channel
        x = x[:, None]
    expected = tuple(model.spec.input_shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ConfigError(f"expected preprocessed images of shape (n, {', '.join(map(str, expected))}), "
                          f"received {tuple(np.shape(images))}")
    return x


def class_targets(model: CNN, x: torch.Tensor, target: Target) -> torch.Tensor:
    """(n,) class indices checked against the model's classes: the predicted class when target is None."""
    classes = model.spec.num_classes
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    t = torch.as_tensor(np.asarray(target, dtype=np.int64), device=x.device)
    if t.ndim == 0:
        t = t.expand(len(x))
    if t.shape != (len(x),):
        raise ConfigError(f"target must be one class or one per image ({len(x)}), received {t.numel()} values")
    bad = t[(t < 0) | (t >= classes)]
    if len(bad):
        raise ConfigError(f"target class {int(bad[0])} is not a class of this model (valid: 0..{classes - 1})")
    return t


def target_scores(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each row's score for its own class: (n, classes) scores and (n,) classes give (n,)."""
    return scores[torch.arange(len(scores), device=scores.device), target]


def gradient_inputs(model: CNN, images: np.ndarray | torch.Tensor,
                    target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """A gradient-tracking copy of the images, (n, C, H, W), and their (n,) target classes."""
    x = input_batch(model, images)
    with evaluating(model):
        t = class_targets(model, x, target)
    return x.requires_grad_(True), t  # our own copy: Captum then leaves its requires_grad alone
