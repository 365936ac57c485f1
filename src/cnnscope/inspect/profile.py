"""Classification by activation patterns: per-class mean activations, the images that excite a map most
(with the patch of the input a map node sees), and the misclassified images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import RunError
from ..geometry import Geometry
from ..model import CNN
from ..spec import ModelSpec
from .activations import activations, layer_output_shape


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def _per_map(values: np.ndarray) -> np.ndarray:
    """(n, maps, h, w) -> (n, maps) spatial means; (n, units) unchanged."""
    return values.reshape(values.shape[0], values.shape[1], -1).mean(axis=2) if values.ndim == 4 else values


# --- class profile -------------------------------------------------------------------------------------------
def class_profile(model: CNN, layer: str, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Mean activation of each map (over images of the class and all positions) per class: (classes, maps).

    Dense and flatten layers give one column per unit. A class without images gets a row of NaN.
    Works batch by batch, so a whole test set of a wide layer never sits in memory at once.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(images):
        raise RunError(f"class_profile: {len(images)} images but {len(labels)} labels")
    k = int(num_classes if num_classes is not None else model.spec.num_classes)
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise RunError(f"class_profile: labels must be in 0..{k - 1}, received {labels.min()}..{labels.max()}")
    maps = layer_output_shape(model, layer)[0]
    sums = np.zeros((k, maps), np.float64)
    for start, stop in _batches(len(images), batch_size):
        values = _per_map(activations(model, layer, images[start:stop], batch_size))
        np.add.at(sums, labels[start:stop], values.astype(np.float64))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = sums / counts[:, None]
    profile[counts == 0] = np.nan
    return profile.astype(np.float32)


# --- receptive fields ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldGeometry:
    """A conv/pool layer's receptive field as top images use it: a view of the spec's `Geometry`
    (cnnscope.geometry, which does all the maths), per axis (rows, cols).

    Node i along an axis sees input pixels start + i·jump … start + i·jump + size − 1 (before clipping to the
    image; `start` is the top-left pixel, negative where `same` padding adds zeros before the first pixel).
    """

    layer: str
    geometry: Geometry

    @property
    def size(self) -> tuple[int, int]:
        return self.geometry.receptive_field

    @property
    def jump(self) -> tuple[int, int]:
        return self.geometry.jump

    @property
    def start(self) -> tuple[int, int]:
        return self.geometry.offset

    @property
    def input_hw(self) -> tuple[int, int]:
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

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "map": self.map_index,
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
    for start, stop in _batches(len(images), batch_size):
        values = activations(model, layer, images[start:stop], batch_size)[:, map_index]
        flat = values.reshape(len(values), -1)
        where[start:stop] = flat.argmax(axis=1)  # first maximum in row-major order
        peaks[start:stop] = flat.max(axis=1)
    order = np.lexsort((np.arange(len(peaks)), -peaks))[:k]  # by value descending, then index ascending
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
                     field)


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
        return 1.0 - len(self.indices) / self.total if self.total else 0.0

    def to_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        def name(c: int) -> Any:
            return class_names[c] if class_names is not None else int(c)

        return {"images": self.total, "errors": int(len(self.indices)), "accuracy": self.accuracy,
                "confusion": self.confusion.tolist(),
                "misclassified": [{"index": int(i), "true": name(int(t)), "predicted": name(int(p)),
                                   "confidence": float(c), "true_probability": float(q)}
                                  for i, t, p, c, q in zip(self.indices, self.true, self.predicted,
                                                           self.confidence, self.true_probability, strict=True)]}


@torch.no_grad()
def misclassified(model: CNN, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> Misclassified:
    """Predict preprocessed images and return the wrong ones sorted by confidence (highest first; ties by index)."""
    from ..runs import predict_proba

    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) != len(images):
        raise RunError(f"misclassified: {len(images)} images but {len(labels)} labels")
    probs = predict_proba(model, np.asarray(images, np.float32), batch_size)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    k = model.spec.num_classes
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    wrong = np.flatnonzero(pred != labels)
    confidence = probs[wrong, pred[wrong]]
    order = wrong[np.lexsort((wrong, -confidence))]
    return Misclassified(order.astype(np.int64), labels[order], pred[order].astype(np.int64),
                         probs[order, pred[order]].astype(np.float32), probs[order, labels[order]].astype(np.float32),
                         len(labels), confusion)
