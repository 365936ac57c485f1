"""Sweep parameters: `KEY=DIST` parsed into a frozen, validated `Param`, and a trial's values applied to a config.

Distributions (DIST):
  choice:a,b,c      one of the values (numbers, true/false or names)
  range:lo:hi       the integers lo, lo+1, …, hi-1 (hi exclusive, like Python's range)
  int:lo:hi         the integers lo … hi (hi inclusive)
  uniform:lo:hi     a real number in [lo, hi]
  loguniform:lo:hi  a real number in [lo, hi], uniform in log scale (lo > 0)
KEY is any key of a run configuration's [model], [train] or [data] table, e.g. train.lr, model.preset, data.val_size.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from cnnscope.base.errors import SweepError, brief
from cnnscope.data.dataset import DataConfig
from cnnscope.model.spec import ModelSpec
from cnnscope.model.zoo import get_preset
from cnnscope.trainer.config import TrainConfig

KINDS = ("choice", "range", "int", "uniform", "loguniform")
MAX_CHOICES = 1000
MAX_GRID = 100_000
_INT = re.compile(r"[-+]?[0-9]{1,18}")
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,80}")
Value = bool | int | float | str


def valid_keys() -> dict[str, tuple[str, ...]]:
    """The keys a parameter may set, per table: model (preset and ModelSpec's fields), train, data."""
    fields = {f.name for f in dataclasses.fields(DataConfig)} - {"data_dir"}
    return {"model": ("preset", *(f.name for f in dataclasses.fields(ModelSpec))),
            "train": tuple(f.name for f in dataclasses.fields(TrainConfig)),
            "data": tuple(f.name for f in dataclasses.fields(DataConfig) if f.name in fields)}


def check_key(key: Any) -> str:
    """`key` when it names a field of the run configuration (table.name); SweepError listing the valid keys."""
    keys = valid_keys()
    table, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
    if table in keys and name in keys[table]:
        return key
    valid = ", ".join(f"{t}.{n}" for t, names in keys.items() for n in names)
    raise SweepError(f"unknown parameter key {brief(key)}; valid: {valid}")


def _number(text: str, what: str) -> int | float:
    """An int when `text` is written as one, else a finite float; SweepError otherwise."""
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SweepError(f"{what}: expected a finite number, received {brief(text)}")
    return value


def _choice_value(text: str) -> Value:
    """A choice token: true/false, an int, a float, else a name (letters, digits, _ . + -)."""
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    if not _NAME.fullmatch(text):
        raise SweepError(f"choice value {brief(text)}: expected a number, true/false or a name of letters, digits, "
                         f"_ . + - (at most 80)")
    return text


@dataclass(frozen=True)
class Param:
    """One searched setting: its config key, its distribution kind and bounds (or choices)."""

    key: str
    kind: str
    low: int | float = 0
    high: int | float = 0
    choices: tuple[Value, ...] = ()

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.kind not in KINDS:
            raise SweepError(f"{self.key}: unknown distribution {brief(self.kind)}; valid: {', '.join(KINDS)}")
        if self.kind == "choice":
            if not 1 <= len(self.choices) <= MAX_CHOICES or len(set(map(repr, self.choices))) != len(self.choices):
                raise SweepError(f"{self.key}: choice needs 1 to {MAX_CHOICES} different values, received "
                                 f"{brief(self.choices)}")
            return
        if self.kind in ("range", "int") and not all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in (self.low, self.high)):
            raise SweepError(f"{self.key}: {self.kind} needs integer bounds, received {self.low!r}:{self.high!r}")
        empty = self.low >= self.high if self.kind == "range" else self.low > self.high
        if empty or (self.kind == "uniform" and self.low == self.high):
            raise SweepError(f"{self.key}: {self.kind}:{self.low}:{self.high} is empty; lo must be below hi")
        if self.kind == "loguniform" and self.low <= 0:
            raise SweepError(f"{self.key}: loguniform needs lo > 0, received {self.low!r}")

    def text(self) -> str:
        """The distribution as written on the command line (parse_param(p.text()) == p)."""
        if self.kind == "choice":
            return "choice:" + ",".join(str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float)
                                        else str(v) for v in self.choices)
        return f"{self.kind}:{self.low!r}:{self.high!r}"

    def grid(self) -> list[Value] | None:
        """Every value, for the grid sampler; None for the continuous distributions."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("range", "int"):
            stop = int(self.high) + (1 if self.kind == "int" else 0)
            return list(range(int(self.low), stop)) if stop - int(self.low) <= MAX_GRID else None
        return None

    def distribution(self) -> Any:
        """The Optuna distribution (Optuna imported here, when a study runs)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind in ("range", "int"):
            return IntDistribution(int(self.low), int(self.high) - (1 if self.kind == "range" else 0))
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")


def parse_param(text: Any) -> Param:
    """`KEY=DIST` (see the module docstring) as a Param; SweepError saying what is wrong."""
    if not isinstance(text, str) or "=" not in text:
        raise SweepError(f"--param expects KEY=DIST (e.g. train.lr=loguniform:1e-4:1e-2), received {brief(text)}")
    key, _, dist = text.partition("=")
    return param_from(key.strip(), dist.strip())


def param_from(key: str, dist: Any) -> Param:
    """The Param of `key` with distribution text `dist` (e.g. 'range:0:3')."""
    check_key(key)
    if not isinstance(dist, str):
        raise SweepError(f"{key}: the distribution must be text such as 'choice:a,b', received {brief(dist)}")
    kind, _, rest = dist.partition(":")
    if kind not in KINDS:
        raise SweepError(f"{key}: unknown distribution {brief(kind)}; valid: choice:a,b,c, range:lo:hi (hi "
                         f"exclusive), int:lo:hi (hi inclusive), uniform:lo:hi, loguniform:lo:hi")
    if kind == "choice":
        return Param(key, kind, choices=tuple(_choice_value(v.strip()) for v in rest.split(",")))
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise SweepError(f"{key}: {kind} expects {kind}:lo:hi, received {brief(dist)}")
    low, high = (_number(b.strip(), f"{key} {kind}") for b in bounds)
    if kind in ("uniform", "loguniform"):
        low, high = float(low), float(high)
    return Param(key, kind, low, high)


def apply_params(tables: dict[str, Any], values: dict[str, Value]) -> dict[str, Any]:
    """A copy of the config tables with each `table.key` value set (a preset expanded when a model field is set)."""
    out = copy.deepcopy(tables)
    ordered = sorted(values.items(), key=lambda item: item[0] != "model.preset")  # the preset before its fields
    for key, value in ordered:
        table, _, name = key.partition(".")
        target = out.setdefault(table, {})
        if table == "model" and name == "preset":
            out["model"] = {"preset": value}
            continue
        if table == "model" and "preset" in target:
            out["model"] = target = get_preset(target["preset"]).to_dict()
        target[name] = value
    return out
