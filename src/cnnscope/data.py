"""MNIST / Fashion-MNIST from the official IDX files: download or local dir, checks, preprocessing, splits."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import math
import os
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, brief, choice_error

log = logging.getLogger("cnnscope")

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset comes from and how to check it."""

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # official .gz checksums by FILES key
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
         "test_images": "9fb629c4189551a2d022fa330f9573f3", "test_labels": "ec29112dd5afa0611ce80d1b7f02629c"},
        tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
         "test_images": "bef4ecab320f06d8554ea6380940ec79", "test_labels": "bb300cfdad3c16e7a12a480ee83cd310"},
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
    ),
}

PREPROCESS = ("standard", "standard-floor", "standard-clip", "global", "channel", "unit")
# New runs' default; "standard" stays for the series recipe (configs/seed-iv-series.toml) and Keras imports.
# Measured in benchmarks/README.md ("Preprocessing: where top images land").
DEFAULT_PREPROCESS = "unit"
SPLITS = ("official", "reshuffle")
MAX_SEED = 2**32 - 1  # seeds are mixed into others (seed + 1, seed * 100_003 + epoch) that must stay in range
MAX_IDX_BYTES = 2**31  # 2 GiB of pixels: 40× the MNIST training images; larger headers are corrupt or hostile


@dataclass(frozen=True)
class DataConfig:
    """Which data a run uses and how it is prepared."""

    dataset: str = "mnist"
    preprocess: str = DEFAULT_PREPROCESS
    split: str = "official"
    val_size: int = 0  # images held out of the training part for validation (0: validate on test)
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0  # for the reshuffle split and the validation holdout
    data_dir: str | None = None  # local directory holding <dataset>/ folders; None: env var or cache

    def __post_init__(self) -> None:
        for key, valid in (("dataset", DATASETS), ("preprocess", PREPROCESS), ("split", SPLITS)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in valid:
                raise choice_error(DataError, key, value, valid)
        for key in ("val_size", "limit_train", "limit_test", "seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise DataError(f"{key} must be a non-negative integer, received {brief(value)}")
        for key in ("limit_train", "limit_test"):
            if getattr(self, key) == 0:
                raise DataError(f"{key} must be at least 1, received 0")
        if self.seed > MAX_SEED:
            raise DataError(f"seed must be an integer in [0, {MAX_SEED}], received {self.seed}")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir
                                          or "\0" in self.data_dir):
            raise DataError(f"data_dir must be a directory path, received {brief(self.data_dir)}")


# --- locating and reading files ---------------------------------------------------------------
def cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/cnnscope, else ~/.cache/cnnscope."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnscope"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """(directory, is_user_supplied): explicit argument, then CNNSCOPE_DATA_DIR, then the download cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), True
    env = os.environ.get("CNNSCOPE_DATA_DIR")
    if env:
        return Path(env).expanduser(), True
    return cache_dir(), False


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_WARNED: set[tuple[str, tuple[str, ...]]] = set()
_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _md5_cached(path: Path) -> str:
    """MD5 of a local file, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = _md5(path)
    return _MD5_CACHE[key]


def download(url: str, dest: Path, md5: str) -> None:
    """Download `url` to `dest` with a progress bar, verify its MD5, then rename into place."""
    from tqdm.auto import tqdm

    from .fileio import atomic_write

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = _md5(tmp)
        if got != md5:
            raise DataError(f"download of {url} is corrupt: MD5 {got}, expected {md5}; try again")

    atomic_write(dest, fetch)


def ensure_files(info: DatasetInfo, data_dir: str | os.PathLike | None) -> dict[str, Path]:
    """Paths of the four files; downloads into the cache when no local directory is given."""
    root, user_supplied = resolve_data_dir(data_dir)
    folder = root / info.name
    paths = {key: folder / fname for key, fname in FILES.items()}
    for key, path in paths.items():
        if path.is_file():
            continue
        plain = path.with_suffix("")  # an uncompressed copy is fine too
        if plain.is_file():
            paths[key] = plain
            continue
        if user_supplied:
            raise DataError(f"missing file {path}: the data directory must hold {info.name}/{FILES[key]} "
                            f"(official file names); fix --data-dir / CNNSCOPE_DATA_DIR")
        errors = []
        for mirror in info.mirrors:
            url = mirror + FILES[key]
            log.info("downloading %s", url)
            try:
                download(url, path, info.md5[key])
                break
            except (urllib.error.URLError, OSError, DataError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise DataError(f"could not download {FILES[key]} ({'; '.join(errors)}); without internet, "
                            f"pass --data-dir DIR (or set CNNSCOPE_DATA_DIR=DIR) holding {info.name}/{FILES[key]}")
    if user_supplied:
        differ = [p.name for key, p in paths.items() if p.suffix == ".gz" and _md5_cached(p) != info.md5[key]]
        if differ and (str(folder), tuple(differ)) not in _WARNED:  # once per process, not on every reload
            _WARNED.add((str(folder), tuple(differ)))
            log.warning("%s: %s differ%s from the official files (MD5); using them as supplied", folder,
                        ", ".join(differ), "s" if len(differ) == 1 else "")
    return paths


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or plain) of unsigned bytes into an array of its declared shape.

    The header is checked before the payload is read: sizes that overflow, exceed MAX_IDX_BYTES or disagree
    with the file's length are DataErrors, so a corrupt or hostile file never causes a large allocation.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            shape = _idx_shape(path, fh)
            expected = math.prod(shape)  # Python ints: no overflow
            if math.prod(max(d, 1) for d in shape) > MAX_IDX_BYTES:  # (0, 3e9, 3e9) is absurd too
                size = f"{expected:,} bytes" if expected else "absurd dimensions"
                raise DataError(f"{path}: header declares shape {shape} ({size}), more than the "
                                f"{MAX_IDX_BYTES:,} accepted; the file is corrupt")
            raw = fh.read(expected + 1)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, expected an IDX file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or not a valid gzip file ({exc}); delete it and download again") \
            from None
    if len(raw) != expected:
        amount = f"{len(raw)}" if len(raw) < expected else "more"
        raise DataError(f"{path}: holds {amount} data bytes, header says {expected} for shape {shape}; the "
                        f"file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, fh) -> tuple[int, ...]:
    """Read and check the magic number and the dimensions at the start of an open IDX file."""
    magic = fh.read(4)
    if not magic:
        raise DataError(f"{path}: the file is empty; expected an IDX file (delete it and download it again)")
    if len(magic) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(magic)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: wrong IDX magic number 0x{magic.hex()}; expected 0x00000801 (labels) "
                        f"or 0x00000803 (images)")
    dims = fh.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    return struct.unpack(f">{ndim}I", dims)


def read_pair(images_path: Path, labels_path: Path, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) uint8 and labels (n,) int64 of one split; labels checked against `num_classes`."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected an image file (3-D IDX), found {images.ndim}-D")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a label file (1-D IDX), found {labels.ndim}-D")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
                        f"labels; they must match")
    if images.size == 0:
        raise DataError(f"{images_path} holds no pixels (shape {images.shape}); the file is corrupt or incomplete")
    labels = labels.astype(np.int64)
    if num_classes is not None:
        check_labels(labels, num_classes, str(labels_path))
    return images, labels


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """DataError naming the first label outside 0..num_classes-1, if any."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"{where}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range; the "
                        f"dataset has {num_classes} classes (0–{num_classes - 1}); the file is corrupt")


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
    mean, std = images.mean(axis=0, dtype=np.float64), images.std(axis=0, dtype=np.float64)
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
            x = np.clip(x, self.low, self.high)
        return (x - self.mean) / self.scale

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


def _hw(images: np.ndarray) -> str:
    return f"{images.shape[1]}×{images.shape[2]}"


# --- the dataset ---------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Preprocessed arrays (float32 (n, 1, 28, 28), int64 labels) plus the raw pixels they came from."""

    config: DataConfig
    class_names: tuple[str, ...]
    preprocessor: Preprocessor
    train_raw: np.ndarray
    train_y: np.ndarray
    test_raw: np.ndarray
    test_y: np.ndarray
    val_raw: np.ndarray | None = None
    val_y: np.ndarray | None = None

    def __post_init__(self) -> None:
        for split, raw, labels in (("train", self.train_raw, self.train_y), ("test", self.test_raw, self.test_y),
                                   ("val", self.val_raw, self.val_y)):
            if raw is None and labels is None:
                continue
            if raw is None or labels is None or len(raw) != len(labels):
                raise DataError(f"the {split} split needs as many labels as images")
            check_labels(np.asarray(labels), len(self.class_names), f"{split} labels")
        self.train_x = self.preprocessor(self.train_raw)
        self.test_x = self.preprocessor(self.test_raw)
        self.val_x = None if self.val_raw is None else self.preprocessor(self.val_raw)

    @property
    def name(self) -> str:
        """The dataset's name, e.g. 'mnist'."""
        return self.config.dataset

    def validation(self) -> tuple[np.ndarray, np.ndarray, str]:
        """(x, y, source): the holdout when there is one, else the test set (as the series does)."""
        if self.val_x is not None:
            return self.val_x, self.val_y, "validation"
        return self.test_x, self.test_y, "test"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, raw) of 'train', 'test' or 'val'."""
        table = {"train": (self.train_x, self.train_y, self.train_raw),
                 "test": (self.test_x, self.test_y, self.test_raw)}
        if self.val_x is not None:
            table["val"] = (self.val_x, self.val_y, self.val_raw)
        if name not in table:
            raise choice_error(DataError, "set", name, table)
        return table[name]


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None,
                 preprocess: str = DEFAULT_PREPROCESS,
                 split: str = "official", *, val_size: int = 0, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0, preprocessor: Preprocessor | None = None,
                 config: DataConfig | None = None) -> Dataset:
    """Load a dataset, split it and preprocess it (statistics fitted on its training part only).

    Pass `config` instead of the keyword settings to reuse a saved DataConfig, and `preprocessor` to reuse
    saved statistics instead of fitting new ones.
    """
    if config is None:
        config = DataConfig(name, preprocess, split, val_size, limit_train, limit_test, seed,
                            None if data_dir is None else str(data_dir))
    elif data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    info = DATASETS[config.dataset]
    paths = ensure_files(info, config.data_dir)
    classes = len(info.class_names)  # every split is checked now, not when an epoch reaches a bad label
    train_raw, train_y = read_pair(paths["train_images"], paths["train_labels"], classes)
    test_raw, test_y = read_pair(paths["test_images"], paths["test_labels"], classes)
    if train_raw.shape[1:] != test_raw.shape[1:]:
        raise DataError(f"{paths['train_images']} holds {_hw(train_raw)} images but {paths['test_images']} "
                        f"{_hw(test_raw)} ones; both splits must have the same size")
    if config.split == "reshuffle":  # the series: merge all, shuffle with the seed, split back
        n_test = len(test_raw)
        all_raw, all_y = np.concatenate([train_raw, test_raw]), np.concatenate([train_y, test_y])
        order = np.random.default_rng(config.seed).permutation(len(all_raw))
        train_raw, train_y = all_raw[order[:-n_test]], all_y[order[:-n_test]]
        test_raw, test_y = all_raw[order[-n_test:]], all_y[order[-n_test:]]
    val_raw = val_y = None
    if config.val_size:
        if config.val_size >= len(train_raw):
            raise DataError(f"val_size {config.val_size} leaves no training images (training part holds "
                            f"{len(train_raw)})")
        order = np.random.default_rng(config.seed + 1).permutation(len(train_raw))
        val_idx, train_idx = np.sort(order[:config.val_size]), np.sort(order[config.val_size:])
        val_raw, val_y = train_raw[val_idx], train_y[val_idx]
        train_raw, train_y = train_raw[train_idx], train_y[train_idx]
    if config.limit_train:
        train_raw, train_y = train_raw[:config.limit_train], train_y[:config.limit_train]
    if config.limit_test:
        test_raw, test_y = test_raw[:config.limit_test], test_y[:config.limit_test]
    if preprocessor is None:
        preprocessor = Preprocessor.fit(config.preprocess, train_raw)
    return Dataset(config, info.class_names, preprocessor, train_raw, train_y, test_raw, test_y, val_raw, val_y)
