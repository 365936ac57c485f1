"""cnnscope: build, train and look inside small CNNs on MNIST-like data.

The public names load on first use (PEP 562), so `import cnnscope` (and the `cnnscope` command's start-up,
its --help and Ctrl-C) costs almost nothing until a name that needs torch is touched. The training module is
`cnnscope.training`; `cnnscope.train` is the function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {  # public name -> the submodule that defines it
    "RunConfig": "config", "TrainConfig": "config", "build_run_config": "config",
    "DataConfig": "data", "Dataset": "data", "Preprocessor": "data", "load_dataset": "data",
    "CnnscopeError": "errors", "ConfigError": "errors", "DataError": "errors", "RunError": "errors",
    "SpecError": "errors",
    "import_keras": "keras_import",
    "CNN": "model", "build_model": "model",
    "make_optimizer": "optim",
    "Run": "runs", "load_run": "runs",
    "ConvSpec": "spec", "DenseSpec": "spec", "ModelSpec": "spec", "PoolSpec": "spec", "RegularizerSpec": "spec",
    "presets": "spec", "summary_table": "spec",
    "EpochLog": "training", "resume": "training", "train": "training",
    "LivePlot": "plots.training",  # matplotlib
}

__all__ = [
    "CNN", "CnnscopeError", "ConfigError", "ConvSpec", "DataConfig", "DataError", "Dataset", "DenseSpec",
    "EpochLog", "LivePlot", "ModelSpec", "PoolSpec", "Preprocessor", "RegularizerSpec", "Run", "RunConfig", "RunError",
    "SpecError", "TrainConfig", "build_model", "build_run_config", "import_keras", "load_dataset", "load_run",
    "make_optimizer", "presets", "resume", "summary_table", "train",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines a public name on first use, and keep the name here."""
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    """The public names (loaded or not) and what the module holds."""
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .config import RunConfig, TrainConfig, build_run_config
    from .data import DataConfig, Dataset, Preprocessor, load_dataset
    from .errors import CnnscopeError, ConfigError, DataError, RunError, SpecError
    from .keras_import import import_keras
    from .model import CNN, build_model
    from .optim import make_optimizer
    from .plots.training import LivePlot
    from .runs import Run, load_run
    from .spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec, presets, summary_table
    from .training import EpochLog, resume, train
