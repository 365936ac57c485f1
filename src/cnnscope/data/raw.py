"""What every data source gives: raw pictures, labels and class names (`RawData`), checked the same way for
built-in, npz: and folder: datasets; and the range of data seeds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnnscope.base.errors import DataError
from cnnscope.data.formats import check_labels

MAX_SEED = 2**32 - 1  # seeds are mixed into others (seed + 1, seed * 100_003 + epoch) that must stay in range


@dataclass
class RawData:
    """A dataset's raw pictures (uint8 (n, H, W) or (n, H, W, 3)), int64 labels, class names and notes."""

    train_raw: np.ndarray
    train_y: np.ndarray
    test_raw: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def shape_text(raw: np.ndarray) -> str:
    """A picture array's size per picture, as 28×28 or 32×32×3."""
    return "×".join(str(d) for d in raw.shape[1:])


def check_raw(raw: RawData, where: str) -> None:
    """One DataError for the first problem: too few classes, an empty split, labels out of range or mismatched,
    pictures of different shapes or channels."""
    names = raw.class_names
    if len(names) < 2:
        raise DataError(f"{where}: a single class ({', '.join(names) or 'none'}); a classifier needs at least 2")
    for split, x, y in (("train", raw.train_raw, raw.train_y), ("test", raw.test_raw, raw.test_y)):
        if len(x) == 0:
            raise DataError(f"{where}: the {split} split is empty")
        if len(x) != len(y):
            raise DataError(f"{where}: the {split} split has {len(x)} pictures but {len(y)} labels")
        check_labels(np.asarray(y), len(names), f"{where}: {split} labels")
    if raw.train_raw.shape[1:] != raw.test_raw.shape[1:]:
        raise DataError(f"{where}: training pictures are {shape_text(raw.train_raw)} but test ones "
                        f"{shape_text(raw.test_raw)}; both splits must have the same size and channels")
    if len(np.unique(raw.train_y)) < 2:
        raise DataError(f"{where}: the training split holds a single class ({names[int(raw.train_y[0])]}); a "
                        f"classifier needs at least 2")
