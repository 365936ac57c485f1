"""Readers of the official dataset formats (IDX, CIFAR-10 binary) that check headers before allocating."""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnscope.base.errors import DataError

log = logging.getLogger("cnnscope")

MAX_IDX_BYTES = 2**31  # 2 GiB of pixels: 40× the MNIST training images; larger headers are corrupt or hostile
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes of a 32×32 picture
MAX_CIFAR_RECORDS = 100_000  # per batch file (the official ones hold 10,000)
def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or plain) of unsigned bytes into an array of its declared shape.

    The header is checked before the payload is read: sizes that overflow, exceed MAX_IDX_BYTES or disagree
    with the file's length are DataErrors, so a corrupt or hostile file never causes a large allocation.
    """
    path = Path(path)
    try:
        with _open(path) as fh:
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


def read_pair(images_path: Path, labels_path: Path, num_classes: int | None = None,
              label_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) uint8 and labels (n,) int64 of one split (minus `label_offset`, e.g. 1 for EMNIST
    letters); labels checked against `num_classes`."""
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
    labels = labels.astype(np.int64) - label_offset
    if num_classes is not None:
        check_labels(labels, num_classes, str(labels_path), label_offset)
    return images, labels


def check_labels(labels: np.ndarray, num_classes: int, where: str, offset: int = 0) -> None:
    """DataError naming the first label outside 0..num_classes-1 (as stored: + `offset`), if any."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"{where}: label {int(labels[bad[0]]) + offset} at index {int(bad[0])} is out of range; "
                        f"the dataset has {num_classes} classes ({offset}–{num_classes - 1 + offset}); the file "
                        f"is corrupt")


def read_cifar_batches(paths: list[Path], num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batches -> pictures (n, 32, 32, 3) uint8 and labels (n,) int64.

    Each record is one label byte then 1024 red, 1024 green and 1024 blue bytes (rows of 32); a file's length
    is checked to be a whole number of records before it is read.
    """
    images, labels = [], []
    for path in paths:
        try:
            size = path.stat().st_size
            if size == 0 or size % CIFAR_RECORD or size // CIFAR_RECORD > MAX_CIFAR_RECORDS:
                raise DataError(f"{path}: {size:,} bytes is not a whole number of CIFAR-10 records "
                                f"({CIFAR_RECORD} bytes each, at most {MAX_CIFAR_RECORDS:,}); the file is corrupt")
            records = np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
        except FileNotFoundError:
            raise DataError(f"missing file {path}") from None
        except IsADirectoryError:
            raise DataError(f"{path} is a directory, expected a CIFAR-10 batch file") from None
        y = records[:, 0].astype(np.int64)
        check_labels(y, num_classes, str(path))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
