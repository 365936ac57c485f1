"""Classification by activation patterns: per-class mean activations, the images that excite a map most
(with the patch of the input a map node sees), and the misclassified images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnscope.base.errors import RunError
from cnnscope.base.metrics import confusion_matrix
from cnnscope.base.progress import batches
from cnnscope.inspect.activations import activations, capture, layer_output_shape
from cnnscope.inspect.common import evaluating
from cnnscope.model.geometry import Geometry
from cnnscope.model.network import CNN
from cnnscope.model.spec import ModelSpec
from cnnscope.runs.load import predict_proba


def _batches(n: int, batch_size: int, desc: str = ""):
    """(start, stop) of each batch; with `desc`, a bar when there is more than one."""
    for start in batches(n, batch_size, desc) if desc else range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def _per_map(values: np.ndarray) -> np.ndarray:
    """(n, maps, h, w) -> (n, maps) spatial means; (n, units) unchanged."""
    return values.reshape(values.shape[0], values.shape[1], -1).mean(axis=2) if values.ndim == 4 else values


# --- dead maps ---------------------------------------------------------------------------------------------
def dead_maps(peak_abs: np.ndarray) -> list[int]:
    """The maps (or units) that are 0 at every position of every image looked at, from each map's largest
    |value| over them (maps,): a map that never fires is not a detector, whatever else is said about it."""
    return [int(i) for i in np.flatnonzero(np.asarray(peak_abs) == 0)]


def _peak_abs(values: np.ndarray) -> np.ndarray:
    """(n, maps, ...) -> (maps,) largest |value| over images and positions (0 for no images)."""
    flat = np.abs(values.reshape(values.shape[0], values.shape[1], -1))
    return flat.max(axis=(0, 2)) if len(flat) else np.zeros(values.shape[1], values.dtype)


# --- class profile -------------------------------------------------------------------------------------------
def class_profile(model: CNN, layer: str, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Mean activation of each map (over images of the class and all positions) per class: (classes, maps).

    Dense and flatten layers give one column per unit. A class without images gets a row of NaN.
    Works batch by batch, so a whole test set of a wide layer never sits in memory at once.
    """
    return class_profile_dead(model, layer, images, labels, num_classes, batch_size)[0]


def class_profile_dead(model: CNN, layer: str, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
                       batch_size: int = 500) -> tuple[np.ndarray, list[int]]:
    """`class_profile` and, from the same pass, the dead maps (`dead_maps`: 0 everywhere on these images)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(images):
        raise RunError(f"class_profile: {len(images)} images but {len(labels)} labels")
    k = int(num_classes if num_classes is not None else model.spec.num_classes)
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise RunError(f"class_profile: labels must be in 0..{k - 1}, received {labels.min()}..{labels.max()}")
    maps = layer_output_shape(model, layer)[0]
    sums = np.zeros((k, maps), np.float64)
    peak = np.zeros(maps, np.float64)
    for start, stop in _batches(len(images), batch_size, f"{layer}'s maps over {len(images):,} images"):
        batch = activations(model, layer, images[start:stop], batch_size)
        np.add.at(sums, labels[start:stop], _per_map(batch).astype(np.float64))
        peak = np.maximum(peak, _peak_abs(batch))
    return _divide(sums, labels, k), dead_maps(peak)


def _divide(sums: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = sums / counts[:, None]
    profile[counts == 0] = np.nan
    return profile.astype(np.float32)


def class_means(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class means of per-image values (n, maps) -> (classes, maps), NaN for a class without images: the
    class profile from spatial means already computed (e.g. by `layer_means`)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    values = np.asarray(values, dtype=np.float64)
    sums = np.zeros((int(num_classes), values.shape[1]), np.float64)
    np.add.at(sums, labels, values)
    return _divide(sums, labels, int(num_classes))


def layer_means(model: CNN, layers: list[str], images: np.ndarray,
                batch_size: int = 500) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One pass over preprocessed images: (class probabilities (n, classes), {layer: spatial means (n, maps)})
    for map layers (units for dense ones). What a whole-test-set summary needs without a pass per question."""
    probs, means, _ = layer_summary(model, layers, images, batch_size)
    return probs, means


@torch.no_grad()
def layer_summary(model: CNN, layers: list[str], images: np.ndarray, batch_size: int = 500
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`layer_means` and, from the same pass, {layer: each map's largest |value| over every image and position
    (maps,)} (`dead_maps` reads it)."""
    for name in layers:
        layer_output_shape(model, name)  # SpecError listing the valid names
    probs: list[np.ndarray] = []
    means: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    peaks = {name: np.zeros(layer_output_shape(model, name)[0], np.float32) for name in layers}
    with evaluating(model):
        for start, stop in _batches(len(images), batch_size, f"{len(layers)} layers over {len(images):,} images"):
            batch = torch.as_tensor(images[start:stop]).contiguous(memory_format=torch.channels_last)
            outputs, logits = capture(model, layers, batch)
            probs.append(model.probabilities(logits).float().cpu().numpy())
            for name in layers:
                values = outputs[name].float().cpu().numpy()
                means[name].append(_per_map(values))
                peaks[name] = np.maximum(peaks[name], _peak_abs(values))
    k = model.spec.num_classes
    return (np.concatenate(probs) if probs else np.zeros((0, k), np.float32),
            {name: np.concatenate(parts) if parts else np.zeros((0, layer_output_shape(model, name)[0]), np.float32)
             for name, parts in means.items()}, peaks)


# --- receptive fields ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldGeometry:
    """A conv/pool layer's receptive field as top images use it: a view of the spec's `Geometry`
    (cnnscope.model.geometry, which does all the maths), per axis (rows, cols).

    Node i along an axis sees input pixels start + i·jump … start + i·jump + size − 1 (before clipping to the
    image; `start` is the top-left pixel, negative where `same` padding adds zeros before the first pixel).
    """

    layer: str
    geometry: Geometry

    @property
    def size(self) -> tuple[int, int]:
        """Receptive field (rows, cols) in input pixels."""
        return self.geometry.receptive_field

    @property
    def jump(self) -> tuple[int, int]:
        """Input pixels between neighbouring nodes (rows, cols)."""
        return self.geometry.jump

    @property
    def start(self) -> tuple[int, int]:
        """Top-left input pixel (row, col) that node (0, 0) sees; negative under `same` padding."""
        return self.geometry.offset

    @property
    def input_hw(self) -> tuple[int, int]:
        """Input height and width in pixels."""
        return self.geometry.input_hw

    def box(self, row: int, col: int, clip: bool = True) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of node (row, col), bottom/right exclusive, clipped to the input."""
        return self.geometry.box(row, col, clip)


def field_geometry(spec: ModelSpec, layer: str) -> FieldGeometry:
    """Receptive field size, jump and top-left start of a conv/pool layer (`ModelSpec.geometry`); SpecError
    naming the layers with maps for any other layer."""
    return FieldGeometry(layer, spec.geometry(layer))


# --- top images ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopImages:
    """The images that excite one map (or unit) most: image indices, the map's maximum in each, where that
    maximum is (row, col on the map) and the input patch (top, left, bottom, right; exclusive) its node sees."""

    layer: str
    map_index: int
    indices: np.ndarray  # (k,) int
    values: np.ndarray  # (k,) float: the map's maximum over positions
    locations: np.ndarray  # (k, 2) int (row, col); (0, 0) for dense units
    boxes: np.ndarray  # (k, 4) int; the whole input for dense units
    receptive_field: tuple[int, int] | None  # None for dense units
    dead: bool = False  # the map is 0 at every position of every image searched (its "top" images mean nothing)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: layer, map, receptive field, whether the map is dead and one entry per image."""
        return {"layer": self.layer, "map": self.map_index, "dead": self.dead,
                "receptive_field": None if self.receptive_field is None else list(self.receptive_field),
                "images": [{"index": int(i), "value": float(v), "row": int(rc[0]), "col": int(rc[1]),
                            "box": [int(b) for b in box]}
                           for i, v, rc, box in zip(self.indices, self.values, self.locations, self.boxes,
                                                     strict=True)]}


def check_map(model: CNN, layer: str, map_index: int) -> int:
    """`map_index` as an int when it names a map (or unit) of `layer`; RunError saying the valid range otherwise."""
    count = layer_output_shape(model, layer)[0]
    if isinstance(map_index, bool) or not isinstance(map_index, (int, np.integer)) or not 0 <= map_index < count:
        kind = "maps" if len(layer_output_shape(model, layer)) == 3 else "units"
        raise RunError(f"map {map_index!r} is out of range: {layer} has {count} {kind} (0..{count - 1})")
    return int(map_index)


def top_images(model: CNN, layer: str, map_index: int, images: np.ndarray, k: int = 16,
               batch_size: int = 500) -> TopImages:
    """The k images (preprocessed, (n, C, H, W)) in which map `map_index` of `layer` reaches its highest value.

    Ties go to the lower index. For a dense/flatten layer the "map" is a unit and the box is the whole input.
    """
    map_index = check_map(model, layer, map_index)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RunError(f"k must be a positive integer, received {k!r}")
    shape = layer_output_shape(model, layer)
    spatial = len(shape) == 3
    peaks = np.empty(len(images), np.float32)
    where = np.zeros(len(images), np.int64)
    largest = 0.0  # |value| anywhere: 0 means a dead map
    for start, stop in _batches(len(images), batch_size):
        values = activations(model, layer, images[start:stop], batch_size)[:, map_index]
        flat = values.reshape(len(values), -1)
        where[start:stop] = flat.argmax(axis=1)  # first maximum in row-major order
        peaks[start:stop] = flat.max(axis=1)
        largest = max(largest, float(np.abs(flat).max(initial=0.0)))
    order = rank_images(peaks, k)  # by value descending, then index ascending
    _, in_h, in_w = model.spec.input_shape
    if spatial:
        geometry = field_geometry(model.spec, layer)
        rows, cols = np.divmod(where[order], shape[2])
        locations = np.stack([rows, cols], axis=1)
        boxes = np.array([geometry.box(int(r), int(c)) for r, c in locations], np.int64).reshape(-1, 4)
        field = geometry.size
    else:
        locations = np.zeros((len(order), 2), np.int64)
        boxes = np.tile(np.array([0, 0, in_h, in_w], np.int64), (len(order), 1))
        field = None
    return TopImages(layer, map_index, order.astype(np.int64), peaks[order], locations.astype(np.int64), boxes,
                     field, dead=len(images) > 0 and largest == 0)


# --- whole-set tables the viewer's map cards read ------------------------------------------------------------
def rank_images(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first, ties to the lower index (as `top_images`)."""
    values = np.asarray(values)
    return np.lexsort((np.arange(len(values)), -values))[:k].astype(np.int64)


def map_peak_batches(model: CNN, layers: list[str], images: np.ndarray,
                     batch_size: int = 64) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per batch of preprocessed images: {layer: (each image's spatial maximum of every map (b, maps), its
    row-major position (b, maps) int32, each image's largest |value| of every map (b, maps): 0 in every image
    for a dead map)}. A generator, so a caller may pause or take a lock between batches."""
    for start, stop in _batches(len(images), batch_size):
        batch = torch.as_tensor(images[start:stop]).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), evaluating(model):
            outputs, _ = capture(model, layers, batch)
        part = {}
        for name in layers:
            flat = outputs[name].flatten(2)
            values, positions = flat.max(dim=2)  # (b, maps)
            part[name] = (values.cpu().numpy(), positions.cpu().numpy().astype(np.int32),
                          flat.abs().amax(dim=2).cpu().numpy())
        yield part


def map_peaks(model: CNN, layers: list[str], images: np.ndarray,
              batch_size: int = 64) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{layer: (spatial maximum of every map in every image (n, maps), its row-major position (n, maps), the
    largest |value| (n, maps))}: `map_peak_batches` joined."""
    parts = list(map_peak_batches(model, layers, images, batch_size))
    return {name: tuple(np.concatenate([p[name][i] for p in parts]) for i in range(3))
            for name in layers} if parts else {}


def readout_batches(model: CNN, layer: str, images: np.ndarray, batch_size: int = 64) -> Iterator[np.ndarray]:
    """Per batch: (classes, maps) sums over its images of d logit_c / d (spatial sum of map m) — the gradient of
    each class logit through the layers after `layer`. A generator (pause or lock between batches)."""
    names = list(model.layers.keys())
    rest = [model.layers[name] for name in names[names.index(layer) + 1:]]
    for start, stop in _batches(len(images), batch_size):
        with evaluating(model):
            with torch.no_grad():
                outputs, _ = capture(model, [layer], torch.as_tensor(images[start:stop]))
            features = outputs[layer].detach().requires_grad_(True)  # (b, maps, h, w)
            logits = features
            for module in rest:
                logits = module(logits)
            rows = []
            for c in range(logits.shape[1]):
                (grad,) = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=True)
                rows.append(grad.sum(dim=(2, 3)).sum(dim=0))  # (maps,)
        yield torch.stack(rows).detach().cpu().numpy()


def class_readout(model: CNN, layer: str, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(classes, maps): how much each class logit rises when map m of `layer` rises by one everywhere (mean over
    the images of sum_ij d logit_c / d A[m, i, j]). Meaningful from the last conv layer on."""
    model.layer(layer)  # SpecError listing the valid names
    total = sum(readout_batches(model, layer, images, batch_size))
    return np.asarray(total, np.float64) / max(len(images), 1)


# --- errors --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Misclassified:
    """The images a model gets wrong, most confident mistakes first."""

    indices: np.ndarray  # (e,) int, into the images given
    true: np.ndarray  # (e,) int
    predicted: np.ndarray  # (e,) int
    confidence: np.ndarray  # (e,) float: probability of the predicted class
    true_probability: np.ndarray  # (e,) float: probability the model gave the true class
    total: int  # images looked at
    confusion: np.ndarray  # (classes, classes) int, rows true, columns predicted

    @property
    def accuracy(self) -> float:
        """Fraction of the images looked at that the model got right (0 when none)."""
        return 1.0 - len(self.indices) / self.total if self.total else 0.0

    def to_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """Plain data for JSON: counts, accuracy, confusion matrix and the mistakes (classes named when given)."""
        def name(c: int) -> Any:
            return class_names[c] if class_names is not None else int(c)

        return {"images": self.total, "errors": int(len(self.indices)), "accuracy": self.accuracy,
                "confusion": self.confusion.tolist(),
                "misclassified": [{"index": int(i), "true": name(int(t)), "predicted": name(int(p)),
                                   "confidence": float(c), "true_probability": float(q)}
                                  for i, t, p, c, q in zip(self.indices, self.true, self.predicted,
                                                           self.confidence, self.true_probability, strict=True)]}


def mistakes(probs: np.ndarray, labels: np.ndarray) -> Misclassified:
    """The wrong ones among predictions already made (probabilities (n, classes)), most confident first, ties
    by index; with the confusion matrix."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(probs):
        raise RunError(f"misclassified: {len(probs)} predictions but {len(labels)} labels")
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    confusion = confusion_matrix(labels, pred, probs.shape[1])
    wrong = np.flatnonzero(pred != labels)
    confidence = probs[wrong, pred[wrong]]
    order = wrong[np.lexsort((wrong, -confidence))]
    return Misclassified(order.astype(np.int64), labels[order], pred[order].astype(np.int64),
                         probs[order, pred[order]].astype(np.float32), probs[order, labels[order]].astype(np.float32),
                         len(labels), confusion)


@torch.no_grad()
def misclassified(model: CNN, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> Misclassified:
    """Predict preprocessed images and return the wrong ones sorted by confidence (highest first; ties by index)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(images):
        raise RunError(f"misclassified: {len(images)} images but {len(labels)} labels")
    probs = predict_proba(model, np.asarray(images, np.float32), batch_size)
    if not len(probs):
        probs = np.zeros((0, model.spec.num_classes), np.float32)
    return mistakes(probs, labels)
