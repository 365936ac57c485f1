"""The optimizer rules setting (keras by default, torch kept), its record in a run, and Keras' staircase schedules."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError
from cnnscope.runs.load import read_run_config
from cnnscope.trainer.config import RunConfig, build_run_config
from cnnscope.trainer.optim import OPTIMIZERS, lr_at, make_optimizer, schedule_params
from conftest import run_cli

SERIES = dict(epochs=2, batch_size=100, optimizer="rmsprop", momentum=0.5, schedule="power",
              schedule_args={"rate": 0.01, "decay_steps": 1}, seed=5)


@pytest.fixture(scope="module")
def ds(data_dir):
    return cnnscope.load_dataset("mnist", data_dir=data_dir)


def _weights(run) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def _stop_after_first(log) -> None:
    if log.epoch == 1:
        raise KeyboardInterrupt


def test_a_run_saved_without_the_key_resumes_with_torch_rules_bit_for_bit(ds, tiny_spec, tmp_path):
    """A run trained before the setting existed (torch.optim's rules, no `rules` in config.toml) goes on with the
    rules it was trained with: the same weights, bit for bit, as training it through with torch's rules."""
    torch_rules = cnnscope.TrainConfig(**SERIES, rules="torch")
    full = cnnscope.train(tiny_spec, ds, torch_rules, out=tmp_path / "full", progress=False, plot=False)
    cnnscope.train(tiny_spec, ds, torch_rules, out=tmp_path / "old", progress=False, plot=False,
                   callbacks=[_stop_after_first])
    config = tmp_path / "old" / "config.toml"
    text = config.read_text()
    assert 'rules = "torch"\n' in text
    config.write_text(text.replace('rules = "torch"\n', ""))  # as written before the setting existed
    assert read_run_config(tmp_path / "old").train.rules == "torch"
    resumed = cnnscope.resume(tmp_path / "old", dataset=ds, progress=False, plot=False)
    for (name, a), b in zip(_weights(full).items(), _weights(resumed).values(), strict=True):
        assert torch.equal(a, b), name
    assert read_run_config(tmp_path / "old").train.rules == "torch"
    keras = cnnscope.train(tiny_spec, ds, cnnscope.TrainConfig(**SERIES), out=tmp_path / "keras", progress=False,
                           plot=False)
    assert not any(torch.equal(a, b) for a, b in zip(_weights(keras).values(), _weights(full).values(), strict=True))


def test_new_configs_default_to_keras_and_record_it(ds, tiny_spec, tmp_path):
    assert cnnscope.TrainConfig().rules == "keras"
    assert build_run_config(train={"epochs": 1}).train.rules == "keras"
    assert RunConfig.from_dict({"train": {}}).train.rules == "keras"  # a config file, not a saved run
    assert RunConfig.from_saved({"train": {}}).train.rules == "torch"
    assert RunConfig.from_saved({"train": {"rules": "keras"}}).train.rules == "keras"
    cnnscope.train(tiny_spec, ds, cnnscope.TrainConfig(epochs=1, batch_size=200), out=tmp_path / "r",
                   progress=False, plot=False)
    assert 'rules = "keras"\n' in (tmp_path / "r" / "config.toml").read_text()
    assert read_run_config(tmp_path / "r").train.rules == "keras"


def test_bad_rules_are_one_clear_error(capsys, data_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown rules 'tf'; valid: keras, torch"):
        cnnscope.TrainConfig(rules="tf")
    with pytest.raises(ConfigError, match="unknown rules 'tf'; valid: keras, torch"):
        make_optimizer("adam", [torch.nn.Parameter(torch.ones(2))], 0.1, rules="tf")
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--data-dir", data_dir, "--epochs", 1,
                           "--optimizer-rules", "tf", "--out", tmp_path / "r")
    assert code == 2 and err.strip() == "error: [train] unknown rules 'tf'; valid: keras, torch"


def test_the_cli_flag_is_recorded_in_the_run(capsys, data_dir, tmp_path):
    code, out, _ = run_cli(capsys, "train", "--preset", "tiny", "--data-dir", data_dir, "--epochs", 1,
                           "--optimizer-rules", "torch", "--limit-train", 200, "--out", tmp_path / "r")
    assert code == 0 and "rmsprop (torch rules)" in out
    assert read_run_config(tmp_path / "r").train.rules == "torch"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_make_optimizer_has_torch_optims_calling_shape(name):
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = cnnscope.make_optimizer(name, [w], lr=0.1, momentum=0.5)
    for _ in range(2):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert bool((w.abs() < torch.tensor([1.0, 2.0])).all())  # both moved towards 0
    assert opt.param_groups[0]["lr"] == 0.1 and set(opt.state_dict()) == {"state", "param_groups"}


def test_keras_rmsprop_first_step_is_lr_over_the_root_of_one_minus_rho():
    """Keras: lr·g/√(v+ε) with v = (1−ρ)g² → ≈ lr/√0.1 = 3.16·lr for any gradient; torch's g/(√v+ε) is the
    same to first order, but their momentum buffers differ by the factor lr (checked in the Keras fixtures)."""
    w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    opt = make_optimizer("rmsprop", [w], 1e-3)
    w.grad = torch.tensor([1e-3, -5.0])
    opt.step()
    assert w.detach().tolist() == pytest.approx([-1e-3 / math.sqrt(0.1 + 1e-7 / 1e-6), 1e-3 / math.sqrt(0.1)],
                                                rel=1e-5)


def test_staircase_floors_the_periods_as_keras():
    power = {"rate": 1.0, "decay_steps": 2, "staircase": True}
    assert [lr_at("power", 1.0, s, 10, power) for s in range(5)] == [1.0, 1.0, 0.5, 0.5, 1 / 3]
    exponential = {"rate": 0.5, "decay_steps": 3, "staircase": True}
    assert [lr_at("exponential", 1.0, s, 10, exponential) for s in (0, 2, 3, 5, 6)] == [1, 1, 0.5, 0.5, 0.25]
    smooth = {"rate": 0.5, "decay_steps": 3}
    assert lr_at("exponential", 1.0, 2, 10, smooth) == pytest.approx(0.5 ** (2 / 3))
    with pytest.raises(ConfigError, match="staircase must be true or false, received 1"):
        schedule_params("power", {"staircase": 1})
    with pytest.raises(ConfigError, match="schedule 'cosine' has no parameter 'staircase'"):
        schedule_params("cosine", {"staircase": True})


def test_staircase_from_the_cli(capsys, data_dir, tmp_path):
    code, _, _ = run_cli(capsys, "train", "--preset", "tiny", "--data-dir", data_dir, "--epochs", 1,
                         "--schedule", "exponential", "--schedule-arg", "staircase=true", "--schedule-arg",
                         "decay_steps=2", "--limit-train", 200, "--out", tmp_path / "r")
    assert code == 0
    assert read_run_config(tmp_path / "r").train.schedule_args == {"rate": 0.96, "decay_steps": 2,
                                                                    "staircase": True}


def test_the_readme_optimizer_snippet_runs(tiny_spec):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Optimizers: Keras' rules or torch's"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    model = cnnscope.build_model(tiny_spec, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    exec(compile(snippet, "README optimizer snippet", "exec"), {"cnnscope": cnnscope, "model": model, "loss": loss})
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
