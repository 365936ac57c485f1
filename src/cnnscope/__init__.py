"""Build, train and look inside small CNNs on MNIST-like data.

How to start (in a notebook, the value of each line shows itself: a table, pictures, curves):
    ds = cnnscope.load_dataset("mnist", limit_train=5000)           # the data, downloaded once
    spec = cnnscope.presets["tiny"]                                  # a small CNN and its summary
    run = cnnscope.train(spec, ds, cnnscope.TrainConfig(epochs=3))   # trained into runs/
    cnnscope.views.activations.activations(run.path, "Conv2D_1", index=0)  # what a layer sees

More: cnnscope.inspect (arrays from a model: activations, patterns, attributions), cnnscope.plots (figures of
them), cnnscope.views (a run in, figures and findings out, as the commands do), cnnscope.load_run (an earlier
run), the command line (`cnnscope --help`), README.md and the notebooks in examples/.
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


# The subpackages, as attributes after a plain `import cnnscope` (cnnscope.inspect, cnnscope.views, ...), imported
# on first use as scipy's are. None has the name of a public name above: `cnnscope.train` is the function (the
# trainer's package is cnnscope.trainer, the training functions' cnnscope.training).
SUBMODULES = ("base", "cli", "data", "inspect", "interop", "model", "plots", "report", "runs", "serve", "sweep",
              "trainer", "training", "views")


def __getattr__(name: str) -> Any:
    """Public names and subpackages load on first use (PEP 562), so `import cnnscope` (and the `cnnscope` command's
    start-up, its --help and Ctrl-C) costs almost nothing until a name that needs torch is touched."""
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # the import system keeps it as an attribute
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    """The public names and subpackages (loaded or not) and what the module holds."""
    return sorted(set(globals()) | set(__all__) | set(SUBMODULES))


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
