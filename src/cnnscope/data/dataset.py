"""Datasets as the model sees them: DataConfig (which data, how prepared), preprocessing statistics and the
loaded, split Dataset. Files and readers live in cnnscope.data.formats, the sources (built-in, npz:, folder:) and
class names in cnnscope.data.sources."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnscope.base.display import RichDisplay
from cnnscope.base.errors import DataError, brief, choice_error
from cnnscope.data.cache import cached_source
from cnnscope.data.download import cache_dir, download, resolve_data_dir
from cnnscope.data.formats import MAX_IDX_BYTES, check_labels, read_idx, read_pair
from cnnscope.data.raw import MAX_SEED, RawData
from cnnscope.data.sources import (
    DATASETS,
    FILES,
    DatasetInfo,
    class_names_of,
    ensure_files,
    load_raw,
    parse_source,
    short_name,
)

__all__ = ["DATASETS", "DEFAULT_PREPROCESS", "FILES", "MAX_IDX_BYTES", "PREPROCESS", "SPLITS", "DataConfig",
           "Dataset", "DatasetInfo", "Preprocessor", "RawData", "cache_dir", "check_labels", "class_names_of",
           "download", "ensure_files", "load_dataset", "raw_channels", "read_idx", "read_pair", "resolve_data_dir",
           "to_nchw"]

PREPROCESS = ("standard", "standard-floor", "standard-clip", "global", "channel", "unit")
# New runs' default; "standard" stays for the series recipe (configs/seed-iv-series.toml) and Keras imports.
# Measured in benchmarks/README.md ("Preprocessing: where top images land").
DEFAULT_PREPROCESS = "unit"
SPLITS = ("official", "reshuffle")
MAX_IMAGE_SIDE = 4096
VAL_SEED_TAG = 7_061_124  # mixed with the data seed for the stratified validation holdout (its own stream)


@dataclass(frozen=True)
class DataConfig:
    """Which data a run uses and how it is prepared."""

    dataset: str = "mnist"  # a built-in name, npz:FILE or folder:PATH (stored as an absolute path)
    preprocess: str = DEFAULT_PREPROCESS
    split: str = "official"
    val_size: int = 0  # images held out of the training part for validation (0: validate on test)
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0  # for the reshuffle split and the validation holdout
    data_dir: str | None = None  # local directory holding <dataset>/ folders; None: env var or cache
    image_size: tuple[int, int] | None = None  # folder: resize pictures to (H, W); None: as they are
    channels: int | None = None  # folder: 1 or 3; None: what the pictures are (the most common)
    skip_bad: bool = False  # folder: go on without unreadable pictures (listed in the notes)
    test_size: int | None = None  # folder without train/ and test/: pictures held out for testing
    class_names: tuple[str, ...] | None = None  # npz:/folder: the classes found when the run was trained
    val_fraction: float | None = None  # instead of val_size: a share of each class held out (stratified, seeded)

    def __post_init__(self) -> None:
        self._check_dataset()
        for key, valid in (("preprocess", PREPROCESS), ("split", SPLITS)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in valid:
                raise choice_error(DataError, key, value, valid)
        for key in ("val_size", "limit_train", "limit_test", "seed", "test_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise DataError(f"{key} must be a non-negative integer, received {brief(value)}")
        for key in ("limit_train", "limit_test"):
            if getattr(self, key) == 0:
                raise DataError(f"{key} must be at least 1, received 0")
        fraction = self.val_fraction
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                     or not 0 <= fraction < 1):
            raise DataError(f"val_fraction must be a share in [0, 1), e.g. 0.1, received {brief(fraction)}")
        if fraction and self.val_size:
            raise DataError(f"give one of val_size ({self.val_size} images) or val_fraction ({fraction:g}), "
                            f"not both")
        if self.seed > MAX_SEED:
            raise DataError(f"seed must be an integer in [0, {MAX_SEED}], received {self.seed}")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir
                                          or "\0" in self.data_dir):
            raise DataError(f"data_dir must be a directory path, received {brief(self.data_dir)}")
        self._check_folder_options()

    def _check_dataset(self) -> None:
        if not isinstance(self.dataset, str):
            raise choice_error(DataError, "dataset", self.dataset, [*DATASETS, "npz:FILE", "folder:PATH"])
        kind, value = parse_source(self.dataset)
        if kind != "builtin":  # absolute, so a saved run finds its data from any directory
            object.__setattr__(self, "dataset", f"{kind}:{os.path.abspath(os.path.expanduser(value))}")
        names = self.class_names
        if names is not None:
            if isinstance(names, (list, tuple)) and all(isinstance(n, str) and n for n in names) and names:
                object.__setattr__(self, "class_names", tuple(names))
            else:
                raise DataError(f"class_names must be a list of names, received {brief(names)}")

    def _check_folder_options(self) -> None:
        size = self.image_size
        if size is not None:
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in size)):
                raise DataError(f"image_size must be two integers H W in [1, {MAX_IMAGE_SIDE}], received "
                                f"{brief(size)}")
            object.__setattr__(self, "image_size", tuple(size))
        if self.channels is not None and (isinstance(self.channels, bool) or self.channels not in (1, 3)):
            raise DataError(f"channels must be 1 or 3, received {brief(self.channels)}")
        if not isinstance(self.skip_bad, bool):
            raise DataError(f"skip_bad must be true or false, received {brief(self.skip_bad)}")
        given = [k for k in ("image_size", "channels", "test_size") if getattr(self, k) is not None]
        if (given or self.skip_bad) and not self.dataset.startswith("folder:"):
            raise DataError(f"{(given or ['skip_bad'])[0]} applies to folder:PATH datasets only; "
                            f"--dataset is {self.dataset}")


# --- preprocessing ------------------------------------------------------------------------------
PREPROCESS_HELP = {
    "standard": "per-pixel mean/deviation, as the article series (rarely inked border pixels get huge values)",
    "standard-floor": "per-pixel mean/deviation, the deviation floored at the training images' global one",
    "standard-clip": "per-pixel mean/deviation after clipping each pixel to the range seen in training",
    "global": "one mean and deviation over all training pixels",
    "channel": "one mean and deviation per colour channel over all training pixels",
    "unit": "pixels / 255 (0..1)",
}


def to_nchw(images: np.ndarray) -> np.ndarray:
    """Raw pictures (n, H, W), (n, H, W, C) or (n, 1, H, W) -> (n, C, H, W), a view of the same pixels.

    Raw pixels are kept as pictures are drawn: (n, H, W) for one channel, (n, H, W, C) for colour; the model
    reads (n, C, H, W). A 4-D array whose second axis is 1 is already one-channel NCHW.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        return x.transpose(0, 3, 1, 2)
    raise DataError(f"expected images of shape (n, H, W) or (n, H, W, C) with C in 1, 3, 4, received "
                    f"{tuple(x.shape)}")


def raw_channels(images: np.ndarray) -> int:
    """How many channels raw pictures (n, H, W) or (n, H, W, C) have."""
    return int(to_nchw(images).shape[1])


def mean_std(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-position mean and deviation over axis 0 in float64, `chunk` images at a time (two passes, as numpy's std):
    numpy's own makes a float64 copy of the whole set, 376 MB for MNIST's training images, whose first touch alone
    takes seconds (2.2 s against 0.37 s here); the results agree to 1e-10, and exactly once cast to float32."""
    total = np.zeros(x.shape[1:], np.float64)
    for start in range(0, len(x), chunk):
        total += x[start:start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / len(x)
    squares = np.zeros_like(mean)
    for start in range(0, len(x), chunk):
        deviation = x[start:start + chunk] - mean
        squares += np.einsum("i...,i...->...", deviation, deviation)
    return mean, np.sqrt(squares / len(x))


def _fit_stats(kind: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, deviation) in float64 that `kind` uses, for NCHW images: per pixel (C, H, W) (one channel:
    (H, W)), per channel (C, 1, 1), or global ()."""
    if kind == "unit":
        return np.zeros(()), np.full((), 255.0)
    if kind == "global":
        return np.asarray(images.mean(dtype=np.float64)), np.asarray(images.std(dtype=np.float64))
    if kind == "channel":
        return (images.mean(axis=(0, 2, 3), dtype=np.float64)[:, None, None],
                images.std(axis=(0, 2, 3), dtype=np.float64)[:, None, None])
    mean, std = mean_std(images)
    if kind == "standard-floor":
        std = np.maximum(std, images.std(dtype=np.float64))
    if images.shape[1] == 1:  # one channel keeps the (H, W) statistics that runs have always saved
        mean, std = mean[0], std[0]
    return mean, std


@dataclass(frozen=True)
class Preprocessor:
    """Maps raw pixels (0..255) to model input; statistics fitted on training images only."""

    kind: str
    mean: np.ndarray  # per pixel (H, W) or (C, H, W), per channel (C, 1, 1), or () for global and unit
    scale: np.ndarray  # same shape; zero-std pixels get scale 1 (as StandardScaler), so they map to 0
    low: np.ndarray | None = None  # standard-clip: per-pixel raw minimum seen in training (same shape)
    high: np.ndarray | None = None  # standard-clip: per-pixel raw maximum seen in training (same shape)

    @classmethod
    def fit(cls, kind: str, images: np.ndarray) -> Preprocessor:
        """Fit on raw training images (n, H, W) or (n, H, W, C) uint8."""
        if kind not in PREPROCESS:
            raise choice_error(DataError, "preprocess", kind, PREPROCESS)
        x = to_nchw(images)
        mean, std = _fit_stats(kind, x)
        scale = np.where(std == 0, 1.0, std)
        low = high = None
        if kind == "standard-clip":
            low, high = x.min(axis=0).astype(np.float32), x.max(axis=0).astype(np.float32)
            if x.shape[1] == 1:
                low, high = low[0], high[0]
        return cls(kind, mean.astype(np.float32), scale.astype(np.float32), low, high)

    def fits(self, input_shape: tuple[int, int, int]) -> bool:
        """Whether these statistics apply to model inputs of shape (C, H, W)."""
        c, h, w = input_shape
        shapes = {(), (c, h, w), (c, 1, 1)} | ({(h, w)} if c == 1 else set())
        return tuple(self.mean.shape) in shapes and self.scale.shape == self.mean.shape

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Raw (n, H, W) or (n, H, W, C) pixels (or (n, 1, H, W)) -> float32 (n, C, H, W)."""
        x = to_nchw(images).astype(np.float32)
        if not self.fits(x.shape[1:]):
            wanted = "×".join(str(d) for d in self.mean.shape[-2:])
            raise DataError(f"images are {x.shape[2]}×{x.shape[3]} with {x.shape[1]} channel(s), the run's "
                            f"preprocessing expects {wanted} with {self.channels or 'any number of'} channel(s)")
        if self.low is not None and self.high is not None:
            np.clip(x, self.low, self.high, out=x)
        x -= self.mean  # in place, on astype's copy: new arrays cost their first touch (a 60,000-image set: 3x)
        x /= self.scale
        return x

    @property
    def channels(self) -> int | None:
        """Channels the statistics were fitted on (None for global and unit, which fit any)."""
        return None if self.mean.ndim == 0 else (1 if self.mean.ndim == 2 else int(self.mean.shape[0]))

    def to_dict(self) -> dict[str, Any]:
        """The statistics as preprocess.json holds them (and the ONNX export's metadata): kind, shape, values."""
        data = {"kind": self.kind, "shape": list(self.mean.shape),
                "mean": self.mean.ravel().tolist(), "scale": self.scale.ravel().tolist()}
        if self.low is not None and self.high is not None:
            data["low"], data["high"] = self.low.ravel().tolist(), self.high.ravel().tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild saved statistics (preprocess.json); DataError when they are malformed."""
        try:
            shape = tuple(data["shape"])
            if len(shape) not in (0, 2, 3):
                raise ValueError(f"shape {list(shape)} is none of [], [H, W], [C, H, W], [C, 1, 1]")
            kind = data["kind"]
            clip = kind == "standard-clip"
            if clip and len(shape) < 2:
                raise ValueError("standard-clip needs per-pixel statistics (shape [H, W] or [C, H, W])")
            keys = ("mean", "scale", "low", "high") if clip else ("mean", "scale")
            with np.errstate(over="ignore"):
                arrays = [np.asarray(data[key], dtype=np.float32).reshape(shape) for key in keys]
        except KeyError as exc:
            raise DataError(f"preprocessing data is malformed (missing key {exc})") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"preprocessing data is malformed ({brief(exc)})") from None
        if not isinstance(kind, str) or kind not in PREPROCESS:
            raise choice_error(DataError, "preprocess", kind, PREPROCESS)
        if not (np.isfinite(arrays[0]).all() and np.isfinite(arrays[1]).all() and (arrays[1] > 0).all()):
            raise DataError("preprocessing data is malformed: mean and scale must be finite, scale > 0")
        if clip and not (np.isfinite(arrays[2]).all() and np.isfinite(arrays[3]).all()
                         and (arrays[2] <= arrays[3]).all()):
            raise DataError("preprocessing data is malformed: low and high must be finite, low ≤ high")
        return cls(kind, *arrays)


# --- the dataset ---------------------------------------------------------------------------------
@dataclass(repr=False)
class Dataset(RichDisplay):
    """Preprocessed arrays (float32 (n, C, H, W), int64 labels) plus the raw pixels they came from.

    In a notebook it shows its sizes, classes with their counts and a strip of pictures per class
    (cnnscope.views.display); repr() is one line.
    """

    config: DataConfig
    class_names: tuple[str, ...]
    preprocessor: Preprocessor
    train_raw: np.ndarray
    train_y: np.ndarray
    test_raw: np.ndarray
    test_y: np.ndarray
    val_raw: np.ndarray | None = None
    val_y: np.ndarray | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. how many pictures a folder resized

    def __post_init__(self) -> None:
        for split, raw, labels in (("train", self.train_raw, self.train_y), ("test", self.test_raw, self.test_y),
                                   ("val", self.val_raw, self.val_y)):
            if raw is None and labels is None:
                continue
            if raw is None or labels is None or len(raw) != len(labels):
                raise DataError(f"the {split} split needs as many labels as images")
            check_labels(np.asarray(labels), len(self.class_names), f"{split} labels")
        for raw in (self.train_raw, self.test_raw, self.val_raw):
            if raw is not None:  # pictures the statistics do not fit fail here; the arrays come on first use
                self.preprocessor(raw[:1])

    @functools.cached_property
    def train_x(self) -> np.ndarray:
        """The training images preprocessed, float32 (n, C, H, W), made on first use: a command that looks at the
        test images never pays for the training ones (about 1 s and 188 MB for MNIST)."""
        return self.preprocessor(self.train_raw)

    @functools.cached_property
    def test_x(self) -> np.ndarray:
        """The test images preprocessed, float32 (n, C, H, W), made on first use."""
        return self.preprocessor(self.test_raw)

    @functools.cached_property
    def val_x(self) -> np.ndarray | None:
        """The held-out validation images preprocessed (None without a holdout), made on first use."""
        return None if self.val_raw is None else self.preprocessor(self.val_raw)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split} {len(labels):,}" for split, labels in self.split_labels().items())
        c, h, w = self.input_shape
        return f"Dataset({self.name!r}: {sizes} images of {c}×{h}×{w}, {len(self.class_names)} classes)"

    def split_labels(self) -> dict[str, np.ndarray]:
        """The labels of each split there is: {"train": …, "val": … (when held out), "test": …}."""
        found = {"train": self.train_y, "val": self.val_y, "test": self.test_y}
        return {split: labels for split, labels in found.items() if labels is not None}

    @property
    def name(self) -> str:
        """The dataset's short name, e.g. 'mnist', or an npz file's / a folder's name."""
        return short_name(self.config.dataset)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model input (C, H, W) these pictures make."""
        return tuple(int(d) for d in to_nchw(self.train_raw[:1]).shape[1:])

    def validation(self) -> tuple[np.ndarray, np.ndarray, str]:
        """(x, y, source): the holdout when there is one, else the test set (as the series does)."""
        if self.val_raw is not None:
            return self.val_x, self.val_y, "validation"
        return self.test_x, self.test_y, "test"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, raw) of 'train', 'test' or 'val'."""
        names = ("train", "test", "val") if self.val_raw is not None else ("train", "test")
        if name not in names:
            raise choice_error(DataError, "set", name, names)
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y"), getattr(self, f"{name}_raw")


def _source(config: DataConfig) -> tuple[DataConfig, RawData]:
    """The raw data of `config`, and the config with the classes found recorded (npz:/folder:)."""
    raw = load_raw(config)
    if parse_source(config.dataset)[0] == "builtin":
        return config, raw
    if config.class_names is not None and tuple(config.class_names) != tuple(raw.class_names):
        raise DataError(f"{config.dataset} now holds classes {', '.join(raw.class_names)}, the run was trained on "
                        f"{', '.join(config.class_names)}; restore the data the run was trained on")
    return dataclasses.replace(config, class_names=tuple(raw.class_names)), raw


def _holdout(config: DataConfig, train_raw: np.ndarray, train_y: np.ndarray):
    """(train_raw, train_y, val_raw, val_y): config.val_size training images held out (seeded), or
    config.val_fraction of each class (stratified, seeded)."""
    if config.val_fraction:
        return _stratified_holdout(config, train_raw, train_y)
    if not config.val_size:
        return train_raw, train_y, None, None
    if config.val_size >= len(train_raw):
        raise DataError(f"val_size {config.val_size} leaves no training images (training part holds "
                        f"{len(train_raw)})")
    order = np.random.default_rng(config.seed + 1).permutation(len(train_raw))
    val_idx, train_idx = np.sort(order[:config.val_size]), np.sort(order[config.val_size:])
    return train_raw[train_idx], train_y[train_idx], train_raw[val_idx], train_y[val_idx]


def _stratified_holdout(config: DataConfig, train_raw: np.ndarray, train_y: np.ndarray):
    """config.val_fraction of every class's training images (rounded) held out, drawn with config.seed: the
    same images for every run of the same data and seed, whatever else it changes (a sweep's trials)."""
    rng = np.random.default_rng([VAL_SEED_TAG, config.seed])
    picked = []
    for label in np.unique(train_y):
        members = np.flatnonzero(train_y == label)
        picked.append(rng.permutation(members)[:round(config.val_fraction * len(members))])
    val_idx = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    if not 0 < len(val_idx) < len(train_raw):
        raise DataError(f"val_fraction {config.val_fraction:g} of {len(train_raw)} training images leaves "
                        f"{len(val_idx)} for validation and {len(train_raw) - len(val_idx)} for training; "
                        f"choose a share that leaves some of each")
    keep = np.ones(len(train_raw), dtype=bool)
    keep[val_idx] = False
    return train_raw[keep], train_y[keep], train_raw[val_idx], train_y[val_idx]


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None,
                 preprocess: str = DEFAULT_PREPROCESS,
                 split: str = "official", *, val_size: int = 0, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0, preprocessor: Preprocessor | None = None,
                 config: DataConfig | None = None) -> Dataset:
    """Load a dataset (a built-in name, npz:FILE or folder:PATH), split it and preprocess it (statistics fitted
    on its training part only).

    Pass `config` instead of the keyword settings to reuse a saved DataConfig, and `preprocessor` to reuse
    saved statistics instead of fitting new ones.
    """
    if config is None:
        config = DataConfig(name, preprocess, split, val_size, limit_train, limit_test, seed,
                            None if data_dir is None else str(data_dir))
    elif data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    config, raw = cached_source(config, _source)  # decoded arrays cached (datacache.py, issue 12)
    train_raw, train_y, test_raw, test_y = raw.train_raw, raw.train_y, raw.test_raw, raw.test_y
    if config.split == "reshuffle":  # the series: merge all, shuffle with the seed, split back
        n_test = len(test_raw)
        all_raw, all_y = np.concatenate([train_raw, test_raw]), np.concatenate([train_y, test_y])
        order = np.random.default_rng(config.seed).permutation(len(all_raw))
        train_raw, train_y = all_raw[order[:-n_test]], all_y[order[:-n_test]]
        test_raw, test_y = all_raw[order[-n_test:]], all_y[order[-n_test:]]
    train_raw, train_y, val_raw, val_y = _holdout(config, train_raw, train_y)
    if config.limit_train:
        train_raw, train_y = train_raw[:config.limit_train], train_y[:config.limit_train]
    if config.limit_test:
        test_raw, test_y = test_raw[:config.limit_test], test_y[:config.limit_test]
    if preprocessor is None:
        preprocessor = Preprocessor.fit(config.preprocess, train_raw)
    return Dataset(config, tuple(raw.class_names), preprocessor, train_raw, train_y, test_raw, test_y, val_raw,
                   val_y, list(raw.notes))
