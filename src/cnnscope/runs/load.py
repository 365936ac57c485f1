"""Loading a run: its JSON files checked, the model rebuilt from the run's own spec, weights checked against it; `Run`
and `load_run`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnscope.base.display import RichDisplay
from cnnscope.base.errors import CnnscopeError, RunError
from cnnscope.base.fileio import read_json, read_toml
from cnnscope.base.progress import batches
from cnnscope.data.dataset import DataConfig, Dataset, Preprocessor, load_dataset
from cnnscope.data.sources import short_name
from cnnscope.model.network import CNN, build_model
from cnnscope.model.spec import ModelSpec, describe_model
from cnnscope.runs.checkpoint import check_weights_file, load_weights
from cnnscope.runs.layout import CONFIG, INITIAL, PREPROCESS, WEIGHTS
from cnnscope.runs.records import read_history, read_metrics
from cnnscope.trainer.config import RunConfig, TrainConfig

MAX_CONFIG_BYTES = 2**20
# --- reading -------------------------------------------------------------------------------------
@dataclass(repr=False)
class Run(RichDisplay):
    """A loaded run: its model (rebuilt from the saved spec), configuration, history and metrics.

    In a notebook it shows its model, data, test accuracy, epochs and curves (cnnscope.views.display); repr() is one
    line.
    """

    path: Path
    run_config: RunConfig
    model: CNN
    preprocessor: Preprocessor
    history: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        accuracy = self.metrics.get("test_accuracy")
        tested = f"test accuracy {accuracy:.4f}" if isinstance(accuracy, (int, float)) else "not tested"
        epochs = len(self.history.get("epoch", []))
        data = short_name(self.data_config.dataset)
        return (f"Run({str(self.path)!r}: {describe_model(self.spec.to_dict())} on {data}, "
                f"{epochs} epoch{'s' * (epochs != 1)}, {tested})")

    @property
    def spec(self) -> ModelSpec:
        """The run's model specification."""
        return self.run_config.model

    @property
    def config(self) -> TrainConfig:
        """The run's training configuration."""
        return self.run_config.train

    @property
    def data_config(self) -> DataConfig:
        """The run's data configuration."""
        return self.run_config.data

    def dataset(self, data_dir: str | os.PathLike | None = None) -> Dataset:
        """Reload the run's data with its split and its saved preprocessing statistics."""
        saved = self.data_config.data_dir
        if data_dir is None and not os.environ.get("CNNSCOPE_DATA_DIR") and saved and Path(saved).is_dir():
            data_dir = saved
        return load_dataset(config=self.data_config, data_dir=data_dir, preprocessor=self.preprocessor)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (n, classes) for raw pixel images (n, H, W) in 0..255."""
        x = self.preprocessor(np.asarray(images))
        return predict_proba(self.model, x, batch_size)

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        """Predicted class (n,) for raw pixel images (n, H, W) in 0..255."""
        return self.predict(images).argmax(axis=1)

    def widget(self, data_dir: str | os.PathLike | None = None) -> Any:
        """The interactive viewer of this run in a notebook cell (cnnscope.widget: the notebook extra)."""
        from cnnscope.serve.widget import widget  # the one front end a run opens itself; never at import

        return widget(self, data_dir)

    def reset_weights(self) -> None:
        """Put the model back to the initial weights saved when it was built."""
        load_weights(self.path / INITIAL, self.model)


@torch.no_grad()
def predict_proba(model: CNN, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Probabilities (n, classes) for preprocessed inputs (n, C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    starts = batches(len(x), batch_size, f"predicting {len(x):,} images")  # 10,000: 2 s here
    try:
        out = [model.probabilities(model(torch.as_tensor(x[i:i + batch_size], device=device))).cpu().numpy()
               for i in starts]
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.spec.num_classes), np.float32)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The run's config.toml, validated; RunError naming the file otherwise."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"run directory not found: {path}")
    if not (path / CONFIG).is_file():
        raise RunError(f"{path} is not a run directory (no {CONFIG}); pass a directory written by "
                       f"'cnnscope train'")
    data = read_toml(path / CONFIG, RunError, MAX_CONFIG_BYTES)
    try:
        return RunConfig.from_saved(data, where=str(path / CONFIG))
    except RunError:
        raise
    except CnnscopeError as exc:
        raise RunError(f"{path / CONFIG}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        # config.py checks every value; this is the last guard for a hostile file it has not foreseen
        raise RunError(f"{path / CONFIG}: malformed ({type(exc).__name__}: {str(exc)[:160]})") from None


def read_preprocessor(run_dir: Path, spec: ModelSpec) -> Preprocessor:
    """preprocess.json, checked against the model's input size."""
    path = run_dir / PREPROCESS
    data = read_json(path, RunError)
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, received {type(data).__name__}")
    try:
        preprocessor = Preprocessor.from_dict(data)
    except CnnscopeError as exc:
        raise RunError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise RunError(f"{path}: malformed ({type(exc).__name__}: {str(exc)[:160]})") from None
    shape = tuple(preprocessor.mean.shape)
    if not preprocessor.fits(spec.input_shape):
        raise RunError(f"{path}: statistics of shape {list(shape)} do not fit the model's input "
                       f"{list(spec.input_shape)} (C, H, W)")
    if not (np.isfinite(preprocessor.mean).all() and np.isfinite(preprocessor.scale).all()
            and (preprocessor.scale > 0).all()):
        raise RunError(f"{path}: mean and scale must be finite and scale > 0")
    return preprocessor


def load_run(path: str | Path, weights: str = WEIGHTS, *, allow_nonfinite: bool = False) -> Run:
    """Load a run directory: rebuild the model from its saved spec and load its weights (every file checked)."""
    path = Path(path)
    config = read_run_config(path)
    try:
        with torch.device("meta"):  # shapes only: a hostile spec cannot allocate before its file is checked
            shapes = build_model(config.model)
    except CnnscopeError as exc:
        raise RunError(f"{path / CONFIG}: {exc}") from None
    check_weights_file(path / weights, shapes)
    preprocessor = read_preprocessor(path, config.model)
    history, metrics = read_history(path), read_metrics(path)
    model = build_model(config.model)
    load_weights(path / weights, model, allow_nonfinite=allow_nonfinite)
    model.eval()
    return Run(path, config, model, preprocessor, history, metrics)
