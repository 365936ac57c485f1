"""A study's definition: the base run configuration, the parameters and how to search (a frozen SweepSpec).

It comes from `--config`/`--param`/flags or a `[sweep]` table in the TOML, is written to STUDY/study.toml, and a
later command on the same study directory must define the same study (only --trials, --workers and the engine
may change); the one line of a mismatch says what differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, SweepError, brief, choice_error
from cnnscope.base.fileio import read_toml, write_toml
from cnnscope.runs.layout import STUDY
from cnnscope.sweep.params import Param, param_from, parse_param
from cnnscope.trainer.config import RunConfig

SAMPLERS = ("tpe", "random", "grid")
METRICS = ("val_accuracy", "test_accuracy", "val_loss")
DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("none", "median", "hyperband")
ENGINES = ("local", "ray")
MAX_TRIALS = 100_000
MAX_WORKERS = 256
IDENTITY = ("config", "params", "sampler", "metric", "direction", "prune")  # what defines a study
SWEEP_KEYS = ("params", "trials", "sampler", "metric", "direction", "workers", "prune", "engine", "ray_address",
              "storage", "tensorboard", "select_on_test")
DEFAULT_VAL_FRACTION = 0.1  # a new study holds out 10 % of each class of the training images to choose on
# parameters that would change which images validate a trial: trials judged on different data cannot be ranked
FIXED_VALIDATION = ("data.dataset", "data.split", "data.seed", "data.val_size", "data.val_fraction")
TEST_WARNING = ("chosen on the TEST set (--select-on-test): the best trial's test accuracy is biased upwards, not "
                "an estimate for new data")


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: base config tables, parameters, trials, sampler, metric/direction, workers, pruner, engine."""

    config: dict[str, Any]
    params: tuple[Param, ...]
    trials: int = 10
    sampler: str = "tpe"
    metric: str = "val_accuracy"
    direction: str = ""  # "": maximize for accuracies, minimize for val_loss
    workers: int = 1
    prune: str = "none"
    engine: str = "local"
    ray_address: str | None = None
    storage: str | None = None
    tensorboard: str | None = None  # local engine: TensorBoard logs of trial N in TENSORBOARD/NNNN
    select_on_test: bool = False  # allow a metric computed on the test set (warned on every summary)

    def __post_init__(self) -> None:
        if not self.params:
            raise SweepError("a sweep needs at least one --param KEY=DIST (or a [sweep.params] table)")
        keys = [p.key for p in self.params]
        if len(set(keys)) != len(keys):
            raise SweepError(f"parameter {next(k for k in keys if keys.count(k) > 1)} is given twice")
        if fixed := next((k for k in keys if k in FIXED_VALIDATION), None):
            raise SweepError(f"parameter {fixed} would change which images validate each trial, so their values "
                             f"could not be compared; keep it fixed (sweep train.seed for other initial weights)")
        for name, valid in (("sampler", SAMPLERS), ("metric", METRICS), ("prune", PRUNERS), ("engine", ENGINES)):
            if getattr(self, name) not in valid:
                raise choice_error(SweepError, name, getattr(self, name), valid)
        if not self.direction:
            object.__setattr__(self, "direction", "minimize" if self.metric == "val_loss" else "maximize")
        if self.direction not in DIRECTIONS:
            raise choice_error(SweepError, "direction", self.direction, DIRECTIONS)
        for name, top in (("trials", MAX_TRIALS), ("workers", MAX_WORKERS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise SweepError(f"{name} must be an integer in [1, {top}], received {brief(value)}")
        if self.sampler == "grid" and any(p.grid() is None for p in self.params):
            bad = next(p.key for p in self.params if p.grid() is None)
            raise SweepError(f"the grid sampler needs choice, range or int parameters; {bad} is continuous "
                             f"(use --sampler tpe or random)")
        if self.tensorboard and self.engine == "ray":
            raise SweepError("--tensorboard works with the local engine only (Ray workers share no filesystem)")
        for name in ("ray_address", "storage", "tensorboard"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or "\n" in value):
                raise SweepError(f"{name} must be a non-empty one-line string, received {brief(value)}")
        if not isinstance(self.select_on_test, bool):
            raise SweepError(f"select_on_test must be true or false, received {brief(self.select_on_test)}")
        self._check_selection()

    def _check_selection(self) -> None:
        """Refuse a study that would choose on the test set, unless select_on_test says so knowingly."""
        if self.select_on_test:
            return
        if self.metric == "test_accuracy":
            raise SweepError("--metric test_accuracy would choose the best trial on the test set; use val_accuracy "
                             "or val_loss (measured on images held out of the training set), or add "
                             "--select-on-test to do it knowingly")
        if self.selected_on == "test":
            raise SweepError("the sweep would choose its best trial on the test set: the recipe holds out no "
                             "validation images (data.val_size = 0 and no data.val_fraction); hold some out with "
                             "--val-size 10% (a new study's default) or add --select-on-test to do it knowingly")

    @property
    def selected_on(self) -> str:
        """Which data chooses the best trial: "validation" (held out of the training images) or "test"."""
        data = self.config.get("data", {})
        held_out = bool(data.get("val_size")) or bool(data.get("val_fraction"))
        return "validation" if held_out and self.metric != "test_accuracy" else "test"

    def selection_text(self) -> str:
        """The data the trials are judged on, in words (the summaries print it)."""
        data = self.config.get("data", {})
        if self.selected_on == "test":
            return "the test set (--select-on-test)"
        seed = data.get("seed", 0)
        if data.get("val_fraction"):
            return (f"validation: {100 * data['val_fraction']:g} % of each class held out of the training images "
                    f"(stratified, seed {seed}, the same for every trial)")
        return f"validation: {data['val_size']:,} training images held out (seed {seed}, the same for every trial)"

    def grid_size(self) -> int | None:
        """The number of grid points (grid sampler), else None."""
        if self.sampler != "grid":
            return None
        size = 1
        for p in self.params:
            size *= len(p.grid() or [])
        return size

    def identity(self) -> dict[str, Any]:
        """What defines the study (compared with study.toml): config, params, sampler, metric, direction, prune."""
        return {"config": self.config, "params": {p.key: p.text() for p in self.params}, "sampler": self.sampler,
                "metric": self.metric, "direction": self.direction, "prune": self.prune}

    def to_dict(self) -> dict[str, Any]:
        """study.toml's content: the identity, the trial count and what the trials are chosen on."""
        return {"cnnscope_study": 1, **self.identity(), "trials": self.trials, "selected_on": self.selected_on,
                "select_on_test": self.select_on_test}


def spec_from_options(config_file: str | Path | None, params: list[str], options: dict[str, Any],
                      overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The SweepSpec of the CLI: the TOML's tables and [sweep] table, the run flags (`overrides`: {"model",
    "train", "data": values}), --param and the given options; a validation split by default."""
    tables = apply_overrides(load_config_with_sweep(config_file) if config_file else {}, overrides)
    sweep = tables.pop("sweep", {})
    table_params = sweep.pop("params", {})
    if not isinstance(table_params, dict):
        raise SweepError(f"{config_file} [sweep.params] must be a table of KEY = \"DIST\", received "
                         f"{brief(table_params)}")
    unknown = [k for k in sweep if k not in SWEEP_KEYS]
    if unknown:
        raise SweepError(f"{config_file} [sweep]: unknown key {brief(unknown[0])}; valid: {', '.join(SWEEP_KEYS)}")
    found = {p.key: p for p in (param_from(str(k), v) for k, v in table_params.items())}
    flags = [parse_param(text) for text in params]
    keys = [p.key for p in flags]
    if len(set(keys)) != len(keys):
        raise SweepError(f"parameter {next(k for k in keys if keys.count(k) > 1)} is given twice")
    found.update({p.key: p for p in flags})  # a flag replaces the table's entry of a key
    settings = {**sweep, **{k: v for k, v in options.items() if v is not None}}
    data = tables.setdefault("data", {})
    if "val_size" not in data and "val_fraction" not in data:  # neither the recipe nor a flag says: hold out
        data["val_fraction"] = DEFAULT_VAL_FRACTION
    check_base_config(tables)
    return SweepSpec(tables, tuple(found.values()), **settings)


def apply_overrides(tables: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The config tables with the run flags' values set: {"model": {"preset": …}, "train": {…}, "data": {…}}
    (a None value removes the key: TOML has no null)."""
    out = {key: dict(value) for key, value in tables.items()}
    for table, values in (overrides or {}).items():
        if table == "model" and values:
            out["model"] = dict(values)
            continue
        target = out.setdefault(table, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = list(value) if isinstance(value, tuple) else value
    return out


def load_config_with_sweep(path: str | Path) -> dict[str, Any]:
    """A run config TOML that may also hold a [sweep] table: its [model], [train], [data] and [sweep] tables."""
    data = read_toml(path, SweepError)
    for key, value in data.items():
        if key not in ("model", "train", "data", "sweep"):
            raise SweepError(f"{path}: unknown table [{brief(key)[1:-1]}]; valid: [model], [train], [data], [sweep]")
        if not isinstance(value, dict):
            raise SweepError(f"{path}: [{key}] must be a table, received {brief(value)}")
    return {key: dict(value) for key, value in data.items()}


def check_base_config(tables: dict[str, Any]) -> None:
    """The base configuration must be valid by itself (a trial's values then change only what they name)."""
    try:
        RunConfig.from_dict({"model": {"preset": "seed-iv"}, **tables})
    except CnnscopeError as exc:
        raise SweepError(f"the base configuration is invalid: {exc}") from None


def read_study(study_dir: Path) -> dict[str, Any] | None:
    """STUDY/study.toml as a dict, or None when the directory holds no study yet."""
    path = study_dir / STUDY
    if not path.exists():
        return None
    data = read_toml(path, SweepError)
    if not isinstance(data.get("params"), dict) or not isinstance(data.get("config"), dict):
        raise SweepError(f"{path}: not a cnnscope study definition (no [params] or [config] table)")
    return data


def spec_from_study(saved: dict[str, Any], options: dict[str, Any],
                    overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The SweepSpec stored in study.toml, with the given run options (trials, workers, engine…) and run flags
    (a flag that changes the base configuration makes another study: refused by `difference`)."""
    params = tuple(param_from(str(k), v) for k, v in saved["params"].items())
    settings = {k: saved[k] for k in ("sampler", "metric", "direction", "prune", "trials") if k in saved}
    settings.update({k: v for k, v in options.items() if v is not None})
    return SweepSpec(apply_overrides(dict(saved["config"]), overrides), params, **settings)


def difference(saved: dict[str, Any], spec: SweepSpec) -> str | None:
    """What differs between study.toml and `spec` (one phrase), or None when they define the same study."""
    new = spec.identity()
    for key in IDENTITY:
        if saved.get(key) != new[key]:
            if key == "params":
                return _param_difference(saved.get(key) or {}, new[key])
            if key == "config" and _without_split(saved.get(key)) == _without_split(new[key]):
                return ("it holds out no validation images, so it was chosen on the test set, and a new study "
                        "would hold 10 % out; start one with another --out, or continue this one with --val-size 0 "
                        "--select-on-test")
            if key == "config":
                return "the base configuration (--config and its [model], [train], [data] tables) differs"
            return f"{key} was {brief(saved.get(key))}, now {brief(new[key])}"
    return None


def _without_split(config: Any) -> Any:
    """A study's base configuration without the default validation share (to recognise an older study)."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return config
    data = {k: v for k, v in config["data"].items() if not (k == "val_fraction" and v == DEFAULT_VAL_FRACTION)}
    return {**config, "data": data} if data else {k: v for k, v in config.items() if k != "data"}


def _param_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            was = f"{key}={old[key]}" if key in old else f"no {key}"
            now = f"{key}={new[key]}" if key in new else f"no {key}"
            return f"parameter {was} in the study, {now} now"
    return "the parameters differ"


def save_study(study_dir: Path, spec: SweepSpec) -> None:
    """Write STUDY/study.toml atomically."""
    write_toml(study_dir / STUDY, spec.to_dict())


def with_trials(spec: SweepSpec, trials: int) -> SweepSpec:
    """The same spec with another trial count."""
    return dataclasses.replace(spec, trials=trials)
