import math

import pytest
import torch

from cnnscope.errors import ConfigError
from cnnscope.optim import OPTIMIZERS, SCHEDULES, lr_at, make_optimizer, schedule_params


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
