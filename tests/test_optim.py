import math

import pytest
import torch

from cnnscope.base.errors import ConfigError
from cnnscope.trainer.optim import OPTIMIZERS, SCHEDULES, lr_at, make_optimizer, schedule_params


def test_power_schedule_matches_keras_inverse_time_decay():
    value = lr_at("power", 0.001, 75_040, 75_040, {"rate": 0.001, "decay_steps": 1})
    assert abs(value - 1.31509732e-05) / 1.31509732e-05 < 1e-6
    assert lr_at("power", 0.001, 0, 10) == 0.001


def test_exponential_cosine_one_cycle_shapes():
    assert math.isclose(lr_at("exponential", 0.1, 1000, 5000, {"rate": 0.5, "decay_steps": 1000}), 0.05)
    assert math.isclose(lr_at("cosine", 0.1, 0, 100), 0.1)
    assert lr_at("cosine", 0.1, 100, 100) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at("one-cycle", 0.1, s, 100) for s in range(100)]
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 0.1 / 25


def test_schedule_errors_list_valid_names():
    valid = "none, power, exponential, cosine, one-cycle"
    with pytest.raises(ConfigError, match=f"unknown schedule 'step'; valid: {valid}"):
        schedule_params("step", {})
    with pytest.raises(ConfigError, match="schedule 'power' has no parameter 'gamma'; valid: rate, decay_steps"):
        schedule_params("power", {"gamma": 1})
    assert set(SCHEDULES) == {"none", "power", "exponential", "cosine", "one-cycle"}


def test_every_optimizer_steps():
    for name in OPTIMIZERS:
        w = torch.nn.Parameter(torch.ones(3))
        opt = make_optimizer(name, [w], 0.1, momentum=0.5)
        (w ** 2).sum().backward()
        opt.step()
        assert (w < 1).all(), name
    with pytest.raises(ConfigError, match="unknown optimizer 'lamb'; valid: rmsprop, adam, nadam, adamax, sgd, adamw"):
        make_optimizer("lamb", [w], 0.1)


@pytest.mark.parametrize(("name", "args", "message"), [
    ("power", {"rate": float("inf")}, r"power schedule parameter rate must be a finite number >= 0, received inf"),
    ("power", {"decay_steps": 1.5}, r"schedule parameter decay_steps must be a whole number of steps, received 1.5"),
    ("power", {"decay_steps": float("nan")}, r"decay_steps must be a finite number >= 1, received nan"),
    ("exponential", {"rate": 0}, r"exponential schedule parameter rate must be a finite number in \(0, 1\]"),
    ("exponential", {"rate": 1.5}, r"received 1.5"),
    ("cosine", {"warmup_steps": -1}, r"warmup_steps must be a finite number >= 0, received -1"),
    ("one-cycle", {"div_factor": 0}, r"div_factor must be a finite number > 0, received 0"),
    ("one-cycle", {"pct_start": 2}, r"pct_start must be a finite number in \[0, 1\], received 2"),
    ("one-cycle", {"final_div_factor": "big"}, r"final_div_factor must be a finite number > 0, received 'big'"),
    (["none"], {}, r"unknown schedule \['none'\]; valid"),
    ("none", "rate=1", r"schedule_args must be a table of numbers, received 'rate=1'"),
])
def test_schedule_values_are_finite_and_in_range(name, args, message):
    with pytest.raises(ConfigError, match=message):
        schedule_params(name, args)


def test_schedule_values_keep_their_types():
    params = schedule_params("power", {"decay_steps": 4.0, "rate": 1})
    assert params == {"rate": 1.0, "decay_steps": 4, "staircase": False} and isinstance(params["decay_steps"], int)
    assert schedule_params("one-cycle", {"pct_start": 1})["pct_start"] == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": float("nan")}, "lr must be a finite number > 0, received nan"),
    ({"lr": 0.1, "momentum": 1.5}, r"momentum must be a finite number in \[0, 1\), received 1.5"),
    ({"lr": 0.1, "weight_decay": -1}, "weight_decay must be a finite number >= 0, received -1"),
])
def test_make_optimizer_checks_its_numbers(kwargs, message):
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ConfigError, match=message):
        make_optimizer("sgd", [w], **kwargs)
