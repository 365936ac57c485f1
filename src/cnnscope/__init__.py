"""cnnscope: build, train and look inside small CNNs on MNIST-like data."""

from __future__ import annotations

from .config import RunConfig, TrainConfig, build_run_config
from .data import DataConfig, Dataset, Preprocessor, load_dataset
from .errors import CnnscopeError, ConfigError, DataError, RunError, SpecError
from .keras_import import import_keras
from .model import CNN, build_model
from .runs import Run, load_run
from .spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec, presets, summary_table
from .train import EpochLog, resume, train

__version__ = "0.1.0"


def __getattr__(name: str):
    """LivePlot loads matplotlib: import it only when asked for, so `import cnnscope` stays light."""
    if name == "LivePlot":
        from .plots.training import LivePlot

        return LivePlot
    raise AttributeError(f"module 'cnnscope' has no attribute {name!r}")

__all__ = [
    "CNN", "CnnscopeError", "ConfigError", "ConvSpec", "DataConfig", "DataError", "Dataset", "DenseSpec",
    "EpochLog", "LivePlot", "ModelSpec", "PoolSpec", "Preprocessor", "RegularizerSpec", "Run", "RunConfig", "RunError",
    "SpecError", "TrainConfig", "build_model", "build_run_config", "import_keras", "load_dataset", "load_run",
    "presets", "resume", "summary_table", "train",
]
