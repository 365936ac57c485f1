"""A trial's data as the driver loaded it, to be shipped to a node that has neither the files nor the driver's
paths and environment (the Ray engine: one object in Ray's object store per data configuration of a study).

The driver resolves the trial's [data] table (built-in name, npz: or folder:, --data-dir or CNNSCOPE_DATA_DIR),
loads and checks it once (load_dataset: split, validation holdout, limits) and packs the raw pictures and labels
of each split with the fitted preprocessing statistics. The node rebuilds the Dataset from them without touching
a file: its config still names the driver's data (what the returned run directory records, so that every command
on the driver reopens it), but nothing on the node reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnscope.data.dataset import DataConfig, Dataset, Preprocessor, load_dataset
from cnnscope.sweep.params import apply_params
from cnnscope.trainer.config import from_table


@dataclass(frozen=True)
class DataParcel:
    """The raw pictures and labels of a loaded dataset's splits, its classes, notes and preprocessing statistics."""

    config: DataConfig
    class_names: tuple[str, ...]
    preprocessor: Preprocessor
    train_raw: np.ndarray
    train_y: np.ndarray
    test_raw: np.ndarray
    test_y: np.ndarray
    val_raw: np.ndarray | None = None
    val_y: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, dataset: Dataset) -> DataParcel:
        """What a node needs to rebuild `dataset` (the preprocessed arrays are recomputed there: 4× smaller)."""
        return cls(dataset.config, tuple(dataset.class_names), dataset.preprocessor, dataset.train_raw,
                   dataset.train_y, dataset.test_raw, dataset.test_y, dataset.val_raw, dataset.val_y,
                   tuple(dataset.notes))

    def dataset(self, preprocessor: Preprocessor | None = None) -> Dataset:
        """The Dataset again (with a resumed run's saved statistics when given). The arrays are copied: those of
        Ray's object store are read-only, and several trials of a node share them."""
        def own(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else np.array(array)

        return Dataset(self.config, self.class_names, preprocessor or self.preprocessor, own(self.train_raw),
                       own(self.train_y), own(self.test_raw), own(self.test_y), own(self.val_raw), own(self.val_y),
                       list(self.notes))

    @property
    def nbytes(self) -> int:
        """The arrays' size in bytes (what travels to each node once)."""
        arrays = (self.train_raw, self.train_y, self.test_raw, self.test_y, self.val_raw, self.val_y)
        return sum(int(a.nbytes) for a in arrays if a is not None)


def trial_data_config(config: dict[str, Any], values: dict[str, Any]) -> DataConfig:
    """The [data] of a trial: the study's base tables with the trial's values (CnnscopeError when invalid; the
    rest of the trial's configuration is checked where it trains, as with the local engine)."""
    return from_table(DataConfig, apply_params(config, values).get("data", {}), "data")


def load_parcel(config: DataConfig) -> DataParcel:
    """Load and check a trial's data here (the driver) and pack it (DataError, one line, when it cannot be)."""
    return DataParcel.of(load_dataset(config=config))
