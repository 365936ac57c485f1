"""What preprocessing does to a dataset: per-pixel mean and deviation of the raw training pixels, what a white
pixel becomes after preprocessing, how far an input lies outside the training range, and where a layer's top
images land (how many at the image's edge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnscope.base.errors import DataError, RunError
from cnnscope.data.dataset import Preprocessor, mean_std, to_nchw
from cnnscope.inspect.activations import activations, layer_output_shape

FAR_LIMIT = 10.0  # preprocessed values beyond ±10 (10 σ for the standard kinds) are far outside normal input


@dataclass(frozen=True)
class PixelStats:
    """Per-pixel statistics of raw training images (0..255): mean, deviation, minimum and maximum, each (H, W)
    for one channel or (C, H, W) for colour."""

    count: int
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def channels(self) -> int:
        """1 for grey statistics (H, W), C for colour ones (C, H, W)."""
        return 1 if self.mean.ndim == 2 else int(self.mean.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Summary numbers (JSON-ready); the arrays themselves are drawn, not printed. Colour adds per channel
        mean, minimum and maximum ("per_channel")."""
        ink = self.high if self.mean.ndim == 2 else self.high.max(axis=0)
        data = {"images": self.count, "shape": list(self.mean.shape),
                "mean": float(self.mean.mean()), "std_min": float(self.std.min()),
                "std_median": float(np.median(self.std)), "std_max": float(self.std.max()),
                "never_inked_pixels": int((ink == 0).sum())}
        if self.mean.ndim == 3:
            data["per_channel"] = [{"mean": float(m.mean()), "min": float(lo.min()), "max": float(hi.max())}
                                   for m, lo, hi in zip(self.mean, self.low, self.high, strict=True)]
        return data


def pixel_stats(images: np.ndarray) -> PixelStats:
    """Per-pixel mean, deviation, minimum and maximum of raw images (n, H, W), (n, 1, H, W) or (n, H, W, C)."""
    raw = np.asarray(images)
    if raw.ndim not in (3, 4) or len(raw) == 0:
        raise DataError(f"expected raw images of shape (n, H, W) or (n, H, W, C) with n ≥ 1, received {raw.shape}")
    x = to_nchw(raw)
    stats = (*mean_std(x), x.min(axis=0), x.max(axis=0))
    if x.shape[1] == 1:
        stats = tuple(v[0] for v in stats)
    return PixelStats(len(raw), *(v.astype(np.float32) for v in stats))


def as_picture(values: np.ndarray) -> np.ndarray:
    """Per-pixel values (H, W) or (C, H, W) as one raw picture (1, H, W) or (1, H, W, C) for a preprocessor."""
    values = np.asarray(values)
    return values[None] if values.ndim == 2 else values.transpose(1, 2, 0)[None]


def _squeeze(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) when C is 1."""
    return x[0] if x.shape[0] == 1 else x


def white_pixel_value(preprocessor: Preprocessor, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) or (C, H, W): what a white pixel (255) at each position becomes after `preprocessor`."""
    return _squeeze(preprocessor(as_picture(np.full(shape, 255, np.uint8)))[0])


def preprocessing_arrays(preprocessor: Preprocessor, images: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays a preprocessing figure draws, from raw training images: "mean" and "std" (raw pixels), "scale"
    (the deviation the run divides by), "white" (what a white pixel becomes) and "train_max" (the largest value
    each pixel takes over the preprocessed training images); each (H, W), or (C, H, W) for colour."""
    stats = pixel_stats(images)
    shape = stats.mean.shape
    scale = np.asarray(preprocessor.scale, np.float32)
    if scale.ndim == 3 and len(shape) == 2:
        scale = scale[0]
    scale = np.broadcast_to(scale, shape).copy()
    train_max = _squeeze(preprocessor(as_picture(stats.high))[0])  # preprocessing is increasing per pixel
    return {"mean": stats.mean, "std": stats.std, "scale": scale,
            "white": white_pixel_value(preprocessor, shape), "train_max": train_max}


@dataclass(frozen=True)
class OutsideRange:
    """How far preprocessed inputs lie outside what training showed the model, per image."""

    max_value: np.ndarray  # (n,) largest |preprocessed value| in each image
    far_fraction: np.ndarray  # (n,) share of pixels beyond ±limit
    outside_fraction: np.ndarray | None  # (n,) share of pixels outside their training range (None: unknown)
    excess: np.ndarray | None  # (n,) largest distance beyond a pixel's training range, preprocessed units
    limit: float

    @property
    def far(self) -> np.ndarray:
        """(n,) bool: the image holds a value beyond ±limit, or lies beyond its training range by more than limit."""
        flags = self.max_value > self.limit
        return flags if self.excess is None else flags | (self.excess > self.limit)

    def to_dict(self) -> dict[str, Any]:
        """Per image: max_value, far_fraction, outside_fraction, excess, far (JSON-ready)."""
        rows = []
        for i in range(len(self.max_value)):
            row = {"max_value": float(self.max_value[i]), "far_fraction": float(self.far_fraction[i]),
                   "far": bool(self.far[i])}
            if self.excess is not None:
                row.update(outside_fraction=float(self.outside_fraction[i]), excess=float(self.excess[i]))
            rows.append(row)
        return {"limit": self.limit, "images": rows}


def outside_training_range(preprocessor: Preprocessor, images: np.ndarray, stats: PixelStats | None = None,
                           limit: float = FAR_LIMIT) -> OutsideRange:
    """How far raw images (n, H, W) or (n, H, W, C) lie outside the training range after `preprocessor`.

    Always: the largest |value| and the share of pixels beyond ±limit. With the training images' `stats` (or a
    standard-clip preprocessor, which keeps the range), also the share of pixels outside their per-pixel training
    range and the largest distance beyond it, in preprocessed units.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise RunError(f"limit must be a positive number, received {limit!r}")
    x = preprocessor(images)
    flat = np.abs(x).reshape(len(x), -1)
    max_value = flat.max(axis=1) if flat.size else np.zeros(len(x), np.float32)
    far_fraction = (flat > limit).mean(axis=1) if flat.size else np.zeros(len(x))
    low, high = (stats.low, stats.high) if stats is not None else (preprocessor.low, preprocessor.high)
    if low is None or high is None:
        return OutsideRange(max_value, far_fraction, None, None, float(limit))
    plain = Preprocessor(preprocessor.kind, preprocessor.mean, preprocessor.scale)  # without clipping
    lo, hi = (plain(as_picture(v))[0] for v in (low, high))
    raw = plain(images)
    beyond = np.maximum(np.maximum(raw - hi, lo - raw), 0).reshape(len(raw), -1)
    return OutsideRange(max_value, far_fraction, (beyond > 0).mean(axis=1), beyond.max(axis=1), float(limit))


def range_warnings(preprocessor: Preprocessor, raw: np.ndarray, limit: float = FAR_LIMIT) -> list[str]:
    """'warning: …' notes for one user's picture (H, W) whose preprocessed values lie far outside what training
    showed the model (beyond ±limit): its answer then says little. [] when the picture is within range. The
    picture is (H, W) or (H, W, C)."""
    found = outside_training_range(preprocessor, np.asarray(raw)[None], limit=limit)
    if not bool(found.far[0]):
        return []
    return [f"warning: after the run's {preprocessor.kind} preprocessing this picture reaches "
            f"{float(found.max_value[0]):.3g} ({100 * float(found.far_fraction[0]):.1f} % of its pixels beyond "
            f"±{limit:g}); training inputs stay far below that, so the prediction says little"]


def edge_share(spec, layer: str, locations: np.ndarray, margin: int = 3) -> float:
    """Share of map positions (k, 2) of a conv/pool `layer` whose receptive-field centre lies within `margin`
    pixels of the image's edge (at most `margin` pixels from the outermost row or column; margin 0: on it)."""
    geometry = spec.geometry(layer)
    h, w = geometry.input_hw
    locations = np.asarray(locations).reshape(-1, 2)
    if not len(locations):
        return 0.0
    centres = np.array([geometry.centre(int(r), int(c)) for r, c in locations])
    distance = np.minimum.reduce([centres[:, 0], centres[:, 1], h - 1 - centres[:, 0], w - 1 - centres[:, 1]])
    return float((distance <= margin).mean())


def top_edge_share(model, layer: str, images: np.ndarray, k: int = 16, margin: int = 3,
                   batch_size: int = 500) -> dict[str, Any]:
    """Top-k images of every map of a conv/pool `layer` (preprocessed images, chosen as profile.top_images does:
    by peak, ties to the lower index): the share of their peak positions within `margin` px of the edge, and the
    largest peak. One pass over the images for all maps."""
    shape = layer_output_shape(model, layer)
    if len(shape) != 3:
        raise RunError(f"top_edge_share needs a layer with maps; {layer} has units")
    peaks = np.empty((len(images), shape[0]), np.float32)
    where = np.empty((len(images), shape[0]), np.int64)
    for start in range(0, len(images), batch_size):
        values = activations(model, layer, images[start:start + batch_size], batch_size)
        flat = values.reshape(len(values), shape[0], -1)
        peaks[start:start + len(flat)], where[start:start + len(flat)] = flat.max(axis=2), flat.argmax(axis=2)
    index = np.arange(len(images))
    locations = []
    for m in range(shape[0]):
        order = np.lexsort((index, -peaks[:, m]))[:k]
        locations.append(np.stack(np.divmod(where[order, m], shape[2]), axis=1))
    locations = np.concatenate(locations)
    return {"layer": layer, "maps": shape[0], "k": k, "margin": margin, "positions": len(locations),
            "edge_share": edge_share(model.spec, layer, locations, margin), "max_peak": float(peaks.max())}


def class_examples(labels: np.ndarray, num_classes: int, per_class: int = 1) -> np.ndarray:
    """Indices of the first `per_class` images of each class, class by class (fewer where a class has fewer)."""
    labels = np.asarray(labels).ravel()
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    return np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
