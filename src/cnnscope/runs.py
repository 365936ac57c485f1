"""Run directories: self-describing, atomically written, reloaded from their own spec."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import RunConfig, TrainConfig
from .data import DataConfig, Dataset, Preprocessor, load_dataset
from .errors import CnnscopeError, RunError
from .fileio import atomic_write, read_json, read_toml, write_json
from .model import CNN, build_model
from .spec import ModelSpec

CONFIG = "config.toml"
WEIGHTS = "model.safetensors"
INITIAL = "initial.safetensors"
STATE = "state.safetensors"  # optimizer + RNG state, for resuming
STATE_META = "state.json"
PREPROCESS = "preprocess.json"
HISTORY = "history.json"
METRICS = "metrics.json"
CURVES = "curves.png"


# --- writing -------------------------------------------------------------------------------------
def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Write a model's state dict as safetensors, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load safetensors weights into `model`; RunError when missing or not matching the spec."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"missing weights file {path}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise RunError(f"{path}: weights do not match the run's model spec ({' '.join(first)})") from None


def save_training_state(run_dir: Path, optimizer: torch.optim.Optimizer, step: int, epoch: int) -> None:
    """Optimizer tensors and the torch RNG state (safetensors) plus the scalar rest (JSON), for resuming."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    scalars: dict[str, Any] = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    atomic_write(run_dir / STATE, lambda tmp: save_file(tensors, str(tmp)))
    write_json(run_dir / STATE_META, {"step": step, "epoch": epoch, "param_groups": state["param_groups"],
                                      "scalars": scalars})


def load_training_state(run_dir: Path, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore what save_training_state wrote; returns (step, epoch)."""
    meta = read_json(run_dir / STATE_META, RunError)
    tensors = load_file(str(run_dir / STATE))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), int(meta["epoch"])


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a set of files is written whole (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def check_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """RunError unless `out` can receive a new run (checked before any slow work starts)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory; choose another --out")
    if (path / CONFIG).exists() and not overwrite:
        raise RunError(f"{path} already holds a run; choose another --out, pass --overwrite, or --resume it")
    return path


def init_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create `out` for a new run; refuse to clobber an existing run unless asked."""
    path = check_run_dir(out, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_run_files(run_dir: Path, config: RunConfig, preprocessor: Preprocessor) -> None:
    """The files that describe a run: config.toml and preprocess.json."""
    config.save(run_dir / CONFIG)
    write_json(run_dir / PREPROCESS, preprocessor.to_dict())


# --- reading -------------------------------------------------------------------------------------
@dataclass
class Run:
    """A loaded run: its model (rebuilt from the saved spec), configuration, history and metrics."""

    path: Path
    run_config: RunConfig
    model: CNN
    preprocessor: Preprocessor
    history: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return self.run_config.model

    @property
    def config(self) -> TrainConfig:
        return self.run_config.train

    @property
    def data_config(self) -> DataConfig:
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
        return self.predict(images).argmax(axis=1)

    def reset_weights(self) -> None:
        """Put the model back to the initial weights saved when it was built."""
        load_weights(self.path / INITIAL, self.model)


@torch.no_grad()
def predict_proba(model: CNN, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Probabilities (n, classes) for preprocessed inputs (n, C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [model.probabilities(model(torch.as_tensor(x[i:i + batch_size], device=device))).cpu().numpy()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.spec.num_classes), np.float32)


def read_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"run directory not found: {path}")
    if not (path / CONFIG).is_file():
        raise RunError(f"{path} is not a run directory (no {CONFIG}); pass a directory written by "
                       f"'cnnscope train'")
    try:
        return RunConfig.from_dict(read_toml(path / CONFIG, RunError), where=str(path / CONFIG))
    except RunError:
        raise
    except CnnscopeError as exc:
        raise RunError(f"{path / CONFIG}: {exc}") from None


def load_run(path: str | Path, weights: str = WEIGHTS) -> Run:
    """Load a run directory: rebuild the model from its saved spec and load its weights."""
    path = Path(path)
    config = read_run_config(path)
    model = build_model(config.model)
    load_weights(path / weights, model)
    model.eval()
    preprocessor = Preprocessor.from_dict(read_json(path / PREPROCESS, RunError))
    history = read_json(path / HISTORY, RunError) if (path / HISTORY).is_file() else {}
    metrics = read_json(path / METRICS, RunError) if (path / METRICS).is_file() else {}
    return Run(path, config, model, preprocessor, history, metrics)

