"""Registries of optimizers and learning-rate schedules, looked up by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnscope.base.errors import ConfigError, brief, check_number, choice_error

if TYPE_CHECKING:  # the rules import torch: loaded when an optimizer is made, not when a config is read
    from cnnscope.trainer.rules_torch import Optimizer

# --- optimizers ------------------------------------------------------------------------------------
# Two sets of update rules for the same names. "keras" (the default): Keras 3's formulas (trainer/rules_keras.py;
# the series trained with Keras). "torch": torch.optim's (trainer/rules_torch.py: the same ops, without importing
# torch._dynamo), the rules of every run trained before they were a setting. Both with Keras' defaults (the series
# used Keras): eps 1e-7, RMSprop rho 0.9.
OPTIMIZER_RULES = ("keras", "torch")


def _make(name: str, rules: str, params: Iterable, lr: float, weight_decay: float, **hyper: Any) -> Optimizer:
    # imported here: torch is loaded when an optimizer is made, not when a config is read (a finished study's
    # "nothing to do" needs no torch)
    from cnnscope.trainer.rules_keras import KERAS_RULES
    from cnnscope.trainer.rules_torch import RULES, Optimizer

    return Optimizer((KERAS_RULES if rules == "keras" else RULES)[name], params, lr, weight_decay, **hyper)


def _rmsprop(params: Iterable, lr: float, momentum: float, nesterov: bool, weight_decay: float,
             rules: str) -> Optimizer:
    return _make("rmsprop", rules, params, lr, weight_decay, alpha=0.9, eps=1e-7, momentum=momentum)


def _sgd(params: Iterable, lr: float, momentum: float, nesterov: bool, weight_decay: float, rules: str) -> Optimizer:
    return _make("sgd", rules, params, lr, weight_decay, momentum=momentum, nesterov=nesterov)


def _adam_like(name: str) -> Callable[..., Optimizer]:
    return lambda params, lr, momentum, nesterov, weight_decay, rules: _make(
        name, rules, params, lr, weight_decay, eps=1e-7)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "rmsprop": _rmsprop,
    "adam": _adam_like("adam"),
    "nadam": _adam_like("nadam"),
    "adamax": _adam_like("adamax"),
    "sgd": _sgd,
    "adamw": _adam_like("adamw"),
}


def make_optimizer(name: str, params: Iterable, lr: float, momentum: float = 0.0, nesterov: bool = False,
                   weight_decay: float = 0.0, rules: str = "keras") -> Optimizer:
    """An optimizer by name, with torch.optim's calling shape (`step()`, `zero_grad()`, `param_groups`,
    `state_dict()`, `load_state_dict()`).

    Args:
        name: rmsprop, adam, nadam, adamax, sgd or adamw (Keras' defaults: eps 1e-7, RMSprop rho 0.9).
        params: the tensors to update (e.g. `model.parameters()`); lr: the learning rate (a schedule sets
            `param_groups[0]["lr"]` before each step, as the training loop does).
        momentum: of rmsprop and sgd; nesterov: sgd's Nesterov momentum.
        weight_decay: coupled L2 (wd·w added to the gradient), decoupled for adamw.
        rules: "keras" (Keras 3's update formulas, the default) or "torch" (torch.optim's); the README's
            "Optimizers" section says how they differ.

    ConfigError for an unknown name or rules (listing the valid ones) or a bad value.
    """
    check_optimizer(name, rules, lr, momentum, nesterov, weight_decay)
    return OPTIMIZERS[name](params, lr, momentum, nesterov, weight_decay, rules)


def check_optimizer(name: Any, rules: Any, lr: Any, momentum: Any, nesterov: Any, weight_decay: Any) -> None:
    """ConfigError for the first bad optimizer setting (the one check of `[train]` and of make_optimizer)."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise choice_error(ConfigError, "optimizer", name, OPTIMIZERS)
    if not isinstance(rules, str) or rules not in OPTIMIZER_RULES:
        raise choice_error(ConfigError, "rules", rules, OPTIMIZER_RULES)
    check_number(ConfigError, "lr", lr, 0, low_open=True)
    check_number(ConfigError, "momentum", momentum, 0, 1)
    check_number(ConfigError, "weight_decay", weight_decay, 0)
    if not isinstance(nesterov, bool):
        raise ConfigError(f"nesterov must be true or false, received {brief(nesterov)}")
    if name == "sgd" and nesterov and momentum == 0:
        raise ConfigError("sgd with nesterov needs momentum > 0; set momentum (e.g. 0.9) or nesterov = false")


# --- schedules --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """lr(step) = fn(lr0, step, total_steps, **params); `defaults` lists every accepted parameter."""

    fn: Callable[..., float]
    defaults: dict[str, Any]
    doc: str


def _decay_periods(step: int, decay_steps: int, staircase: bool) -> float:
    """Keras' p = step/decay_steps, floored with staircase (the lr then drops once every decay_steps steps)."""
    return step // decay_steps if staircase else step / decay_steps


def _power(lr0: float, step: int, total: int, rate: float, decay_steps: int, staircase: bool) -> float:
    return lr0 / (1.0 + rate * _decay_periods(step, decay_steps, staircase))  # Keras InverseTimeDecay


def _exponential(lr0: float, step: int, total: int, rate: float, decay_steps: int, staircase: bool) -> float:
    return lr0 * rate ** _decay_periods(step, decay_steps, staircase)  # Keras ExponentialDecay


def _cosine(lr0: float, step: int, total: int, min_lr: float, warmup_steps: int) -> float:
    if step < warmup_steps:
        return lr0 * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return min_lr + 0.5 * (lr0 - min_lr) * (1 + math.cos(math.pi * progress))


def _one_cycle(lr0: float, step: int, total: int, pct_start: float, div_factor: float,
               final_div_factor: float) -> float:
    # lr0 is the peak; cosine up from lr0/div_factor, then cosine down to lr0/(div_factor*final_div_factor),
    # as torch.optim.lr_scheduler.OneCycleLR.
    start, end = lr0 / div_factor, lr0 / (div_factor * final_div_factor)
    up = max(1, int(pct_start * total))
    if step < up:
        return start + (lr0 - start) * 0.5 * (1 - math.cos(math.pi * step / up))
    progress = min(1.0, (step - up) / max(1, total - up))
    return end + (lr0 - end) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Schedule] = {
    "none": Schedule(lambda lr0, step, total: lr0, {}, "constant learning rate"),
    "power": Schedule(_power, {"rate": 0.001, "decay_steps": 1, "staircase": False},
                      "lr0 / (1 + rate*step/decay_steps) (Keras InverseTimeDecay, the series' 'power'; staircase: "
                      "step/decay_steps rounded down)"),
    "exponential": Schedule(_exponential, {"rate": 0.96, "decay_steps": 1000, "staircase": False},
                            "lr0 * rate^(step/decay_steps) (Keras ExponentialDecay; staircase: step/decay_steps "
                            "rounded down)"),
    "cosine": Schedule(_cosine, {"min_lr": 0.0, "warmup_steps": 0}, "cosine from lr0 to min_lr over the run"),
    "one-cycle": Schedule(_one_cycle, {"pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4},
                          "warm up to lr0 then anneal (OneCycleLR); lr is the peak"),
}


# Valid range of each schedule parameter: (low, high, low_open, high_open); a missing high is unbounded.
_RANGES: dict[tuple[str, str], tuple[float, float | None, bool, bool]] = {
    ("power", "rate"): (0, None, False, True),
    ("exponential", "rate"): (0, 1, True, False),
    ("cosine", "min_lr"): (0, None, False, True),
    ("one-cycle", "pct_start"): (0, 1, False, False),
    ("one-cycle", "div_factor"): (0, None, True, True),
    ("one-cycle", "final_div_factor"): (0, None, True, True),
}
_INT_MINIMUM = {"decay_steps": 1, "warmup_steps": 0}


def schedule_params(name: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The schedule's defaults overridden by `given`; unknown names or keys and bad values are ConfigErrors."""
    if not isinstance(name, str) or name not in SCHEDULES:
        raise choice_error(ConfigError, "schedule", name, SCHEDULES)
    if given is not None and not isinstance(given, dict):
        raise ConfigError(f"schedule_args must be a table of numbers, received {brief(given)}")
    defaults = SCHEDULES[name].defaults
    params = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            valid = ", ".join(defaults) or "none"
            raise ConfigError(f"schedule {name!r} has no parameter {brief(key)}; valid: {valid}")
        params[key] = _schedule_value(name, key, value)
    return params


def _schedule_value(name: str, key: str, value: Any) -> int | float | bool:
    """One schedule parameter, checked finite and in its range (integral where the parameter counts steps)."""
    if key == "staircase":
        if not isinstance(value, bool):
            raise ConfigError(f"schedule parameter staircase must be true or false, received {brief(value)}")
        return value
    if key in _INT_MINIMUM:
        number = check_number(ConfigError, f"schedule parameter {key}", value, _INT_MINIMUM[key])
        if not number.is_integer():
            raise ConfigError(f"schedule parameter {key} must be a whole number of steps, received {brief(value)}")
        return int(number)
    low, high, low_open, high_open = _RANGES[(name, key)]
    return check_number(ConfigError, f"{name} schedule parameter {key}", value, low, high, low_open=low_open,
                        high_open=high_open)


def lr_at(name: str, lr0: float, step: int, total_steps: int, params: dict[str, Any] | None = None) -> float:
    """Learning rate of schedule `name` at optimizer step `step` (0-based, as Keras' iterations)."""
    return SCHEDULES[name].fn(lr0, step, total_steps, **schedule_params(name, params))
