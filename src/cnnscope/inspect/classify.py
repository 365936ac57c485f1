"""Classification by activation patterns (series part VI): does a layer's class-average pattern already classify,
and what does a trained linear read-out of the same activations add?

For each layer (and the input pixels, as the baseline that knows no network) every test image goes to the class
whose mean pattern over the training images is nearest, by cosine and by Euclidean distance; a multinomial
logistic regression trained on the same training activations is the linear read-out. Two kinds of features:

- "pattern": the layer's whole output flattened, (maps, h, w) -> maps·h·w values; a layer with more than
  `max_features` values is first average-pooled over space to the largest grid that fits (a documented loss
  of detail that keeps memory bounded: Conv2D_1 of seed-iv is 32×26×26 = 21,632 values per image);
- "profile": one value per map, its spatial mean (the class profile's columns).

Memory stays bounded: the class means are running sums; the training features of one layer at a time are kept
(train_images × features float32, 10,000 × 2,048 × 4 B = 82 MB at the defaults) for the read-out; the test
images are classified batch by batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnscope.base.errors import ConfigError, RunError
from cnnscope.base.metrics import confusion_matrix
from cnnscope.base.progress import batches
from cnnscope.inspect.activations import capture
from cnnscope.inspect.common import evaluating
from cnnscope.model.network import CNN
from cnnscope.runs.load import predict_proba
from cnnscope.trainer.rules_torch import Optimizer

log = logging.getLogger("cnnscope")

INPUT = "input"  # the pseudo-layer of the raw (preprocessed) pixels: the baseline without a network
FEATURES = ("pattern", "profile")
METHODS = ("nearest_cosine", "nearest_euclidean", "linear")
MAX_FEATURES = 2048  # pattern values kept per image (a wider layer is average-pooled over space)
TRAIN_IMAGES = 10_000  # default training images for the class means and the read-out (a seeded random sample)


@dataclass(frozen=True)
class Readout:
    """How the linear read-out is trained: softmax regression, zero-initialised, on features standardised with
    the training images' mean and standard deviation; Adam, mini-batches shuffled with `seed`, L2 on weights."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    l2: float = 1e-4
    seed: int = 0

    def describe(self) -> str:
        """One line for reports and --help."""
        return (f"multinomial logistic regression on the standardised training activations: Adam lr {self.lr:g}, "
                f"batch {self.batch_size}, {self.epochs} epochs, L2 {self.l2:g}, zero start, seed {self.seed}; "
                f"evaluated on the test images")


@dataclass(frozen=True)
class LayerClassification:
    """One layer's test accuracies: accuracy[kind][method] for kind in FEATURES, method in METHODS, and the
    confusion (rows true, columns predicted) of the nearest-mean-pattern classifier (cosine) per kind."""

    layer: str
    shape: tuple[int, ...]  # the layer's output (maps, h, w); (C, H, W) for the input
    grid: tuple[int, int]  # positions kept in the pattern features (h, w after pooling)
    features: int  # values per image in the pattern features
    accuracy: dict[str, dict[str, float]]
    confusion: dict[str, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"layer": self.layer, "shape": list(self.shape), "grid": list(self.grid), "features": self.features,
                "pooled": tuple(self.grid) != tuple(self.shape[1:]), "accuracy": self.accuracy,
                "confusion": {kind: c.tolist() for kind, c in self.confusion.items()}}


@dataclass(frozen=True)
class PatternClassification:
    """Every layer's accuracies beside the full model's and chance, and what they were computed on."""

    layers: tuple[LayerClassification, ...]
    model_accuracy: float  # the whole network on the same test images
    chance: float  # 1 / classes
    majority: float  # the largest class's share of the test images (always guessing it)
    train_images: int
    test_images: int
    train_counts: tuple[int, ...]  # training images per class behind each mean
    readout: Readout
    max_features: int = MAX_FEATURES  # wider outputs were average-pooled over space to fit

    def layer(self, name: str) -> LayerClassification:
        """The result of layer `name`; RunError listing the layers classified otherwise."""
        for item in self.layers:
            if item.layer == name:
                return item
        raise RunError(f"layer {name!r} was not classified; classified: {', '.join(i.layer for i in self.layers)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"model_accuracy": self.model_accuracy, "chance": self.chance, "majority": self.majority,
                "train_images": self.train_images, "test_images": self.test_images,
                "train_counts": list(self.train_counts), "readout": self.readout.describe(),
                "max_features": self.max_features, "layers": [item.to_dict() for item in self.layers]}


def pooled_grid(shape: tuple[int, ...], max_features: int = MAX_FEATURES) -> tuple[int, int]:
    """The (h, w) grid a (maps, h, w) output is average-pooled to so maps·h·w <= max_features (the output's own
    grid when it fits; at least 1×1, which is the map's spatial mean)."""
    maps, h, w = shape
    if maps * h * w <= max_features:
        return h, w
    scale = math.sqrt(max_features / (maps * h * w))
    return max(1, math.floor(h * scale)), max(1, math.floor(w * scale))


def _features(out: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pattern (b, maps·gh·gw), profile (b, maps)) float32 from a layer's output (b, maps, h, w)."""
    out = out.detach().float().cpu()
    pooled = out if tuple(out.shape[2:]) == grid else F.adaptive_avg_pool2d(out, grid)
    return pooled.flatten(1), out.mean(dim=(2, 3))


@torch.no_grad()
def _layer_batches(model: CNN, layer: str, images: np.ndarray, batch_size: int):
    """Per batch: the layer's output (b, maps, h, w), or the images themselves for INPUT."""
    device = next(model.parameters()).device
    for start in batches(len(images), batch_size, f"{layer} over {len(images):,} images"):
        x = torch.as_tensor(images[start:start + batch_size], device=device)
        if layer == INPUT:
            yield x
            continue
        with evaluating(model):
            outputs, _ = capture(model, [layer], x, stop_early=True)
        yield outputs[layer]


def nearest_mean(features: torch.Tensor, means: torch.Tensor, metric: str) -> torch.Tensor:
    """Index of the nearest class mean (k, d) for each row of features (b, d): largest cosine similarity or
    smallest Euclidean distance. Classes whose mean is NaN (no training image) are never chosen; a zero vector
    has cosine 0 with every mean (it goes to the first class present)."""
    present = ~torch.isnan(means).any(dim=1)
    means = torch.nan_to_num(means)
    if metric == "cosine":
        score = F.normalize(features, dim=1) @ F.normalize(means, dim=1).T  # (b, k)
    elif metric == "euclidean":
        score = -(means.pow(2).sum(1)[None, :] - 2 * features @ means.T)  # -(|f - m|² - |f|²)
    else:
        raise ConfigError(f"unknown metric {metric!r}; valid: cosine, euclidean")
    return score.masked_fill(~present[None, :], -torch.inf).argmax(dim=1)


def fit_readout(features: torch.Tensor, labels: torch.Tensor, classes: int,
                readout: Readout = Readout()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train the linear read-out (see Readout) on (n, d) features; returns (mean, std, weight (d, k), bias (k,))
    so that logits = ((f - mean) / std) @ weight + bias. Features constant in training get std 1."""
    mean = features.mean(0)
    std = features.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    weight = torch.zeros((features.shape[1], classes), requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = Optimizer("adam", [weight, bias], readout.lr)
    gen = torch.Generator().manual_seed(readout.seed)
    for _ in range(readout.epochs):
        for idx in torch.randperm(len(features), generator=gen).split(readout.batch_size):
            z = (features[idx] - mean) / std
            loss = F.cross_entropy(z @ weight + bias, labels[idx]) + 0.5 * readout.l2 * weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            weight.grad, bias.grad = torch.autograd.grad(loss, [weight, bias])
            opt.step()
    return mean, std, weight.detach(), bias.detach()


def class_sums(batches, labels: np.ndarray, classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Consume (pattern, profile) feature batches of labelled images: ([pattern sums (k, d), profile sums],
    [all pattern features (n, d), all profile features]) — the sums in float64 (running, over any n)."""
    sums: list[torch.Tensor] = []
    kept: list[list[torch.Tensor]] = [[], []]
    start = 0
    for parts in batches:
        y = torch.as_tensor(labels[start:start + len(parts[0])])
        start += len(parts[0])
        if not sums:
            sums = [torch.zeros((classes, p.shape[1]), dtype=torch.float64) for p in parts]
        for i, p in enumerate(parts):
            sums[i].index_add_(0, y, p.cpu().double())
            kept[i].append(p.cpu())
    return sums, [torch.cat(k) for k in kept]


def _class_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(k, d) float32 means from float64 sums; NaN rows for classes without training images."""
    means = sums / counts.clamp_min(1)[:, None]
    means[counts == 0] = torch.nan
    return means.float()


def _predictions(f: torch.Tensor, means: torch.Tensor, fit) -> dict[str, torch.Tensor]:
    """The three classifiers' predictions for one batch of features."""
    mean, std, weight, bias = fit
    return {"nearest_cosine": nearest_mean(f, means, "cosine"),
            "nearest_euclidean": nearest_mean(f, means, "euclidean"),
            "linear": (((f - mean) / std) @ weight + bias).argmax(dim=1)}


def classify_layer(model: CNN, layer: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                   *, readout: Readout = Readout(), max_features: int = MAX_FEATURES,
                   batch_size: int = 500) -> LayerClassification:
    """The nearest-mean-pattern classifiers (cosine, Euclidean) and the linear read-out of one layer (or INPUT):
    means and read-out from the preprocessed training images and labels `train`, accuracies on `test`."""
    classes = model.spec.num_classes
    shape = tuple(model.spec.input_shape) if layer == INPUT else tuple(model.spec.layer(layer).output_shape)
    if len(shape) != 3:
        raise RunError(f"layer {layer!r} has no maps; classify by the patterns of: {', '.join(classifiable(model))}")
    grid = pooled_grid(shape, max_features)
    (train_x, train_y), (test_x, test_y) = train, test
    sums, kept = class_sums((_features(out, grid) for out in _layer_batches(model, layer, train_x, batch_size)),
                            train_y, classes)
    counts = torch.bincount(torch.as_tensor(train_y), minlength=classes)
    means = [_class_means(s, counts) for s in sums]
    labels = torch.as_tensor(train_y)
    fits = [fit_readout(k, labels, classes, readout) for k in kept]
    del kept
    found: dict[str, dict[str, list[torch.Tensor]]] = {kind: {m: [] for m in METHODS} for kind in FEATURES}
    for out in _layer_batches(model, layer, test_x, batch_size):
        for kind, f, mean, fit in zip(FEATURES, _features(out, grid), means, fits, strict=True):
            for method, pred in _predictions(f, mean, fit).items():
                found[kind][method].append(pred)
    truth = np.asarray(test_y).astype(np.int64)
    accuracy, confusion = {}, {}
    for kind in FEATURES:
        preds = {m: torch.cat(p).numpy() if p else np.zeros(0, np.int64) for m, p in found[kind].items()}
        accuracy[kind] = {m: float((p == truth).mean()) if len(truth) else 0.0 for m, p in preds.items()}
        confusion[kind] = confusion_matrix(truth, preds["nearest_cosine"], classes)
    return LayerClassification(layer, shape, grid, int(shape[0] * grid[0] * grid[1]), accuracy, confusion)


def classifiable(model: CNN) -> list[str]:
    """The layers `classify_by_patterns` looks at by default: INPUT, then every conv and pool layer."""
    return [INPUT, *model.spec.map_layer_names()]


def _check_labelled(x: np.ndarray, y: np.ndarray, classes: int, what: str) -> np.ndarray:
    y = np.asarray(y).astype(np.int64).ravel()
    if len(y) != len(x):
        raise RunError(f"classify: {len(x)} {what} images but {len(y)} labels")
    if not len(y):
        raise RunError(f"classify needs at least one {what} image")
    if y.min() < 0 or y.max() >= classes:
        raise RunError(f"classify: {what} labels must be in 0..{classes - 1}, received {y.min()}..{y.max()}")
    return y


def classify_by_patterns(model: CNN, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                         test_y: np.ndarray, layers: list[str] | None = None, *, readout: Readout = Readout(),
                         max_features: int = MAX_FEATURES, batch_size: int = 500) -> PatternClassification:
    """Series part VI for preprocessed images (n, C, H, W): per layer (default `classifiable(model)`: the input
    pixels, every conv and pool layer) the test accuracy of the nearest class-mean pattern (cosine, Euclidean;
    means over `train_x`) and of a linear read-out trained on `train_x`'s activations (see Readout), for the
    whole output ("pattern", pooled to at most `max_features` values) and the per-map means ("profile"); beside
    the whole model's test accuracy, chance (1/classes) and the majority class's share. Leaves the model as it
    was; memory: one layer's training features at a time."""
    classes = model.spec.num_classes
    train_y = _check_labelled(train_x, train_y, classes, "training")
    test_y = _check_labelled(test_x, test_y, classes, "test")
    if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
        raise ConfigError(f"max_features must be a positive integer, received {max_features!r}")
    layers = classifiable(model) if layers is None else list(layers)
    for name in layers:
        if name != INPUT:
            model.layer(name)  # SpecError listing the valid names
    results = []
    for i, name in enumerate(layers, 1):
        log.info("classifying by the patterns of %s (%d of %d): %d training, %d test images", name, i, len(layers),
                 len(train_y), len(test_y))
        results.append(classify_layer(model, name, (train_x, train_y), (test_x, test_y), readout=readout,
                                      max_features=max_features, batch_size=batch_size))
    probs = predict_proba(model, np.asarray(test_x, np.float32))
    counts = np.bincount(test_y, minlength=classes)
    return PatternClassification(tuple(results), float((probs.argmax(1) == test_y).mean()), 1.0 / classes,
                                 float(counts.max() / len(test_y)), len(train_y), len(test_y),
                                 tuple(int(c) for c in np.bincount(train_y, minlength=classes)), readout,
                                 max_features)


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random sample of min(limit, n) of n images (all of them when limit is None):
    a random sample, not the first N, so a data set stored class by class still gives every class."""
    if limit is None or limit >= n:
        return np.arange(n)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"the training-image limit must be a positive integer, received {limit!r}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
