"""Training and run configuration: frozen dataclasses, strict TOML loading, defaults -> file -> flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataConfig
from .errors import CnnscopeError, ConfigError, choice_error
from .fileio import read_toml, write_toml
from .optim import OPTIMIZERS, schedule_params
from .spec import ModelSpec, get_preset, spec_from_any

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the series' recipe (RMSprop, momentum 0.5, batch 64)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "rmsprop"
    lr: float = 0.001
    momentum: float = 0.5  # rmsprop and sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0  # decoupled for adamw, coupled otherwise
    schedule: str = "none"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    augment_shift: int = 0  # random translation of up to N pixels per training image (0: off)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: PyTorch's default
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            _check_int(key, getattr(self, key), 1)
        for key in ("augment_shift", "seed", "threads"):
            _check_int(key, getattr(self, key), 0)
        for key in ("lr", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{key} must be a non-negative number, received {value!r}")
        if self.lr == 0:
            raise ConfigError("lr must be > 0, received 0")
        if self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing must be < 1, received {self.label_smoothing}")
        if self.optimizer not in OPTIMIZERS:
            raise choice_error(ConfigError, "optimizer", self.optimizer, OPTIMIZERS)
        if self.device not in DEVICES:
            raise choice_error(ConfigError, "device", self.device, DEVICES)
        if self.precision not in PRECISIONS:
            raise choice_error(ConfigError, "precision", self.precision, PRECISIONS)
        # Store the schedule's full parameter set so a saved config says exactly what ran.
        object.__setattr__(self, "schedule_args", schedule_params(self.schedule, self.schedule_args))


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, received {value!r}")


def from_table(cls: type, data: Any, where: str, error: type[CnnscopeError] = ConfigError):
    """Build dataclass `cls` from a dict; unknown keys are errors listing the valid ones."""
    if not isinstance(data, dict):
        raise error(f"[{where}] must be a table, received {data!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise error(f"[{where}] unknown key {key!r}; valid: {', '.join(valid)}")
    try:
        return cls(**data)
    except CnnscopeError as exc:
        raise type(exc)(f"[{where}] {exc}") from None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs: model spec, training and data settings (a run's config.toml)."""

    model: ModelSpec
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None}
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train), "data": data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        unknown = [k for k in data if k not in ("model", "train", "data")]
        if unknown:
            raise ConfigError(f"{where}: unknown table [{unknown[0]}]; valid: [model], [train], [data]")
        model = spec_from_any(data.get("model", {"preset": "seed-iv"}), f"{where} [model]")
        return cls(model, from_table(TrainConfig, data.get("train", {}), "train"),
                   from_table(DataConfig, data.get("data", {}), "data"))

    def save(self, path: str | Path) -> None:
        write_toml(path, self.to_dict())


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into its raw tables (validated when combined with flags)."""
    data = read_toml(path, ConfigError)
    unknown = [k for k in data if k not in ("model", "train", "data")]
    if unknown:
        raise ConfigError(f"{path}: unknown table [{unknown[0]}]; valid: [model], [train], [data]")
    return data


def build_run_config(file: str | Path | None = None, preset: str | None = None,
                     train: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the TOML file, then explicit overrides (e.g. CLI flags); validated once."""
    tables = load_config(file) if file else {}
    model_table = tables.get("model")
    if preset is not None:
        model = get_preset(preset)
    elif model_table is not None:
        model = spec_from_any(model_table, f"{file} [model]")
    else:
        model = get_preset("seed-iv")
    train_table = {**tables.get("train", {}), **(train or {})}
    data_table = {**tables.get("data", {}), **(data or {})}
    return RunConfig(model, from_table(TrainConfig, train_table, "train"),
                     from_table(DataConfig, data_table, "data"))
