"""cnnscope: build, train and look inside small CNNs on MNIST-like data.

The public names load on first use (PEP 562), so `import cnnscope` (and the `cnnscope` command's start-up,
its --help and Ctrl-C) costs almost nothing until a name that needs torch is touched. The public training
functions live in `cnnscope.training.api`; `cnnscope.train` is the function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnscope.base.version import __version__ as __version__  # the one place of the version

_WHERE = {  # public name -> the submodule that defines it
    "CnnscopeError": "base.errors", "ConfigError": "base.errors", "DataError": "base.errors",
    "RunError": "base.errors", "SpecError": "base.errors",
    "ConvSpec": "model.spec", "DenseSpec": "model.spec", "ModelSpec": "model.spec", "PoolSpec": "model.spec",
    "RegularizerSpec": "model.spec", "presets": "model.zoo", "summary_table": "model.summary",
    "CNN": "model.network", "build_model": "model.network",
    "DataConfig": "data.dataset", "Dataset": "data.dataset", "Preprocessor": "data.dataset",
    "load_dataset": "data.dataset",
    "RunConfig": "trainer.config", "TrainConfig": "trainer.config", "build_run_config": "trainer.config",
    "make_optimizer": "trainer.optim", "EpochLog": "trainer.loop",
    "Run": "runs.load", "load_run": "runs.load",
    "import_keras": "interop.keras.importer",
    "resume": "training.api", "train": "training.api",
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
    from cnnscope.base.errors import CnnscopeError, ConfigError, DataError, RunError, SpecError
    from cnnscope.data.dataset import DataConfig, Dataset, Preprocessor, load_dataset
    from cnnscope.interop.keras.importer import import_keras
    from cnnscope.model.network import CNN, build_model
    from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, RegularizerSpec
    from cnnscope.model.summary import summary_table
    from cnnscope.model.zoo import presets
    from cnnscope.plots.training import LivePlot
    from cnnscope.runs.load import Run, load_run
    from cnnscope.trainer.config import RunConfig, TrainConfig, build_run_config
    from cnnscope.trainer.loop import EpochLog
    from cnnscope.trainer.optim import make_optimizer
    from cnnscope.training.api import resume, train
