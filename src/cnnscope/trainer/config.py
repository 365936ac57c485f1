"""Training and run configuration: frozen dataclasses, strict TOML loading, defaults -> file -> flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, ConfigError, brief, check_number, choice_error
from cnnscope.base.fileio import read_toml, write_toml
from cnnscope.data.dataset import DataConfig
from cnnscope.data.raw import MAX_SEED
from cnnscope.model.spec import ModelSpec, check_model_size
from cnnscope.model.zoo import get_preset, spec_from_any
from cnnscope.trainer.optim import SCHEDULES, check_optimizer, schedule_params

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
MAX_SHIFT = 64  # augment_shift: more than an image's width only blanks it
MAX_THREADS = 1024


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the series' recipe (RMSprop, momentum 0.5, batch 64)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "rmsprop"
    rules: str = "keras"  # the optimizer's update formulas: Keras 3's, or "torch" (a saved run without it: torch)
    lr: float = 0.001
    momentum: float = 0.5  # rmsprop and sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0  # decoupled for adamw, coupled otherwise
    schedule: str = "none"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    augment_shift: int = 0  # random translation of up to N pixels per training image (0: off)
    augment_flip: bool = False  # mirror a random half of each batch left to right (clothes, not digits)
    augment_erase: float = 0.0  # probability of erasing a random rectangle of each training image (0: off)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: PyTorch's default
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            _check_int(key, getattr(self, key), 1)
        _check_int("augment_shift", self.augment_shift, 0, MAX_SHIFT)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("threads", self.threads, 0, MAX_THREADS)
        check_optimizer(self.optimizer, self.rules, self.lr, self.momentum, self.nesterov, self.weight_decay)
        check_number(ConfigError, "label_smoothing", self.label_smoothing, 0, 1)
        check_number(ConfigError, "augment_erase", self.augment_erase, 0, 1, high_open=False)
        if not isinstance(self.augment_flip, bool):
            raise ConfigError(f"augment_flip must be true or false, received {brief(self.augment_flip)}")
        for key, valid in (("device", DEVICES), ("precision", PRECISIONS), ("schedule", SCHEDULES)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in valid:
                raise choice_error(ConfigError, key, value, valid)
        # Store the schedule's full parameter set so a saved config says exactly what ran.
        object.__setattr__(self, "schedule_args", schedule_params(self.schedule, self.schedule_args))


def _check_int(key: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        valid = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{key} must be an integer {valid}, received {brief(value)}")


def from_table(cls: type, data: Any, where: str, error: type[CnnscopeError] = ConfigError):
    """Build dataclass `cls` from a dict; unknown keys are errors listing the valid ones."""
    if not isinstance(data, dict):
        raise error(f"[{where}] must be a table, received {brief(data)}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise error(f"[{where}] unknown key {brief(key)}; valid: {', '.join(valid)}")
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

    def __post_init__(self) -> None:
        check_model_size(self.model)  # refused here, before a run directory or any weights exist

    def to_dict(self) -> dict[str, Any]:
        """The run configuration as plain data (model, train, data), unset data values left out."""
        data = {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None}
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train), "data": data}

    @classmethod
    def from_saved(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        """A run's saved config.toml: one written before the optimizer rules were a setting trained with
        torch.optim's, so a [train] without `rules` means "torch" there (and "keras" only in a new config)."""
        train = data.get("train", {}) if isinstance(data, dict) else None
        if isinstance(train, dict) and "rules" not in train:
            data = {**data, "train": {**train, "rules": "torch"}}
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        """Build from the tables of a config file ([model], [train], [data]); every value is checked."""
        _check_tables(data, where)
        model = _model_from(data.get("model", {"preset": "seed-iv"}), f"{where} [model]")
        return cls(model, from_table(TrainConfig, data.get("train", {}), "train"),
                   from_table(DataConfig, data.get("data", {}), "data"))

    def save(self, path: str | Path) -> None:
        """Write the configuration to a TOML file (atomically)."""
        write_toml(path, self.to_dict())


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into its raw tables (validated when combined with flags)."""
    data = read_toml(path, ConfigError)
    _check_tables(data, str(path))
    return data


def _check_tables(data: Any, where: str) -> None:
    """A config is a table of the tables [model], [train] and [data] (each optional)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with [model], [train], [data], received {brief(data)}")
    unknown = [k for k in data if k not in ("model", "train", "data")]
    if unknown:
        raise ConfigError(f"{where}: unknown table [{_key(unknown[0])}]; valid: [model], [train], [data]")
    for key in ("model", "train", "data"):
        if key in data and not isinstance(data[key], dict):
            raise ConfigError(f"{where}: [{key}] must be a table, received {brief(data[key])}")


def _key(key: Any) -> str:
    """A table name as written in TOML (escaped, so the message stays one line)."""
    return brief(key)[1:-1] if isinstance(key, str) and len(repr(key)) <= 80 else brief(key)


def _model_from(table: dict[str, Any], where: str) -> ModelSpec:
    """The spec of a [model] table: `preset = NAME` or a full description."""
    if "preset" in table and not isinstance(table["preset"], str):
        raise ConfigError(f"{where}: preset must be a name (string), received {brief(table['preset'])}")
    return spec_from_any(table, where)


def build_run_config(file: str | Path | None = None, preset: str | None = None,
                     train: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the TOML file, then explicit overrides (e.g. CLI flags); validated once."""
    tables = load_config(file) if file else {}
    model_table = tables.get("model")
    if preset is not None:
        model = _model_from({"preset": preset}, "preset")
    elif model_table is not None:
        model = _model_from(model_table, f"{file} [model]")
    else:
        model = get_preset("seed-iv")
    train_table = {**tables.get("train", {}), **(train or {})}
    data_table = {**tables.get("data", {}), **(data or {})}
    return RunConfig(model, from_table(TrainConfig, train_table, "train"),
                     from_table(DataConfig, data_table, "data"))


def fit_model_to_data(config: RunConfig, input_shape: tuple[int, int, int], num_classes: int,
                      file: str | Path | None = None, preset: str | None = None) -> RunConfig:
    """The config with the model's input_shape (C, H, W) and num_classes taken from the data, unless the
    [model] table of `file` sets them (then a mismatch is one ConfigError)."""
    table = load_config(file).get("model", {}) if file and preset is None else {}
    wanted = {"input_shape": tuple(input_shape), "num_classes": int(num_classes)}
    spec = config.model
    for key, value in wanted.items():
        given = getattr(spec, key)
        if key in table and given != value:
            shown = "×".join(map(str, value)) if key == "input_shape" else value
            raise ConfigError(f"the [model] of {file} sets {key} = {list(given) if key == 'input_shape' else given}"
                              f" but the data {config.data.dataset} gives {shown}; remove {key} from [model] to "
                              f"take the data's")
    if all(getattr(spec, key) == value for key, value in wanted.items()):
        return config
    try:
        return dataclasses.replace(config, model=dataclasses.replace(spec, **wanted))
    except CnnscopeError as exc:
        raise ConfigError(f"the model does not fit the data {config.data.dataset} "
                          f"({'×'.join(map(str, input_shape))}, {num_classes} classes): {exc}") from None
