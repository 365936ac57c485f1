"""Configuration: defaults -> TOML file -> flags, strict keys, and the shipped recipe files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnscope.base.errors import CnnscopeError, ConfigError
from cnnscope.trainer.config import RunConfig, TrainConfig, build_run_config
from cnnscope.trainer.optim import lr_at

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


SHIPPED = {  # recipe -> (dataset, parameters of its model): every file in configs/ must be listed
    "seed-iv-series.toml": ("mnist", 208_982), "seed-iv-fast.toml": ("mnist", 208_982),
    "seed-iv-40s.toml": ("mnist", 208_982), "fashion-mnist-fast.toml": ("fashion-mnist", 299_878),
    "cifar10-fast.toml": ("cifar10", 272_746),
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_build_their_model_for_their_dataset(path):
    config = build_run_config(path)
    assert path.name in SHIPPED, f"{path.name}: add it to SHIPPED with its dataset and parameter count"
    assert (config.data.dataset, config.model.total_params) == SHIPPED[path.name]


def test_series_config_is_the_series_recipe():
    train = build_run_config(CONFIGS / "seed-iv-series.toml").train
    assert (train.epochs, train.batch_size, train.optimizer, train.lr, train.momentum) == (80, 64, "rmsprop",
                                                                                           0.001, 0.5)
    lr = lr_at(train.schedule, train.lr, 75_040, 75_040, train.schedule_args)
    assert lr == pytest.approx(1.31509732e-05, rel=1e-6)


def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nepochs = 3\nlr = 0.01\n[data]\nlimit_train = 100\n')
    config = build_run_config(path, preset="tiny", train={"lr": 0.02})
    assert (config.train.epochs, config.train.lr, config.train.batch_size) == (3, 0.02, TrainConfig().batch_size)
    assert config.data.limit_train == 100 and config.model.conv[0].filters != 32


def test_saved_config_round_trips(tmp_path):
    config = build_run_config(CONFIGS / "seed-iv-fast.toml")
    config.save(tmp_path / "config.toml")
    from cnnscope.base.fileio import read_toml

    assert RunConfig.from_dict(read_toml(tmp_path / "config.toml", ConfigError)) == config


@pytest.mark.parametrize(("text", "message"), [
    ("[trian]\n", r"unknown table \[trian\]; valid: \[model\], \[train\], \[data\]"),
    ("[train]\nbatch_size = 0\n", "batch_size must be an integer >= 1, received 0"),
    ("[train]\nschedule = 'step'\n", "unknown schedule 'step'"),
    ("[data]\nsplit = 'random'\n", "unknown split 'random'; valid: official, reshuffle"),
    ("[train\n", "c.toml"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(CnnscopeError, match=message):  # ConfigError, or DataError for [data] values
        build_run_config(path)


# --- every float setting finite and in range, every choice a name (issue 8, point 5) ----------------------------
@pytest.mark.parametrize(("settings", "message"), [
    ({"lr": float("nan")}, r"lr must be a finite number > 0, received nan"),
    ({"lr": float("inf")}, r"lr must be a finite number > 0, received inf"),
    ({"lr": 0}, r"lr must be a finite number > 0, received 0"),
    ({"lr": 10**400}, r"lr must be a finite number > 0, received 1000000000.*…"),
    ({"momentum": 5}, r"momentum must be a finite number in \[0, 1\), received 5"),
    ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\), received 1.0"),
    ({"momentum": -0.1}, r"momentum must be a finite number in \[0, 1\), received -0.1"),
    ({"weight_decay": float("inf")}, r"weight_decay must be a finite number >= 0, received inf"),
    ({"label_smoothing": float("nan")}, r"label_smoothing must be a finite number in \[0, 1\), received nan"),
    ({"lr": "0.1"}, r"lr must be a finite number > 0, received '0.1'"),
    ({"lr": True}, r"lr must be a finite number > 0, received True"),
    ({"nesterov": 1}, r"nesterov must be true or false, received 1"),
    ({"optimizer": ["sgd"]}, r"unknown optimizer \['sgd'\]; valid: rmsprop, adam"),
    ({"device": 3}, r"unknown device 3; valid: auto, cpu, cuda, mps"),
    ({"seed": 2**32}, r"seed must be an integer in \[0, 4294967295\], received 4294967296"),
    ({"threads": 10**6}, r"threads must be an integer in \[0, 1024\], received 1000000"),
    ({"augment_shift": 1000}, r"augment_shift must be an integer in \[0, 64\], received 1000"),
    ({"optimizer": "sgd", "nesterov": True, "momentum": 0}, r"sgd with nesterov needs momentum > 0"),
    ({"schedule": "cosine", "schedule_args": {"min_lr": float("nan")}},
     r"cosine schedule parameter min_lr must be a finite number >= 0, received nan"),
    ({"schedule": "power", "schedule_args": [1]}, r"schedule_args must be a table of numbers, received \[1\]"),
])
def test_train_settings_are_checked_when_built(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)


def test_limits_are_inclusive():
    config = TrainConfig(momentum=0, label_smoothing=0.0, weight_decay=0, seed=2**32 - 1, augment_shift=64)
    assert (config.momentum, config.seed, config.augment_shift) == (0, 2**32 - 1, 64)


@pytest.mark.parametrize(("tables", "message"), [
    ([1, 2], r"config: expected a table with \[model\], \[train\], \[data\], received \[1, 2\]"),
    ({"train": 3}, r"config: \[train\] must be a table, received 3"),
    ({"model": "tiny"}, r"config: \[model\] must be a table, received 'tiny'"),
    ({"model": {"preset": ["tiny"]}}, r"config \[model\]: preset must be a name \(string\), received \['tiny'\]"),
    ({"data": {"dataset": {}}}, r"\[data\] unknown dataset \{\}; valid: mnist, fashion-mnist"),
    ({"data": {"data_dir": 5}}, r"\[data\] data_dir must be a directory path, received 5"),
    ({"data": {"seed": -1}}, r"\[data\] seed must be a non-negative integer, received -1"),
    ({"tra\nin": {}}, r"config: unknown table \[tra\\nin\]"),
])
def test_bad_tables_from_dict(tables, message):
    with pytest.raises(CnnscopeError, match=message) as info:
        RunConfig.from_dict(tables)
    assert "\n" not in str(info.value)


def test_model_over_the_size_limit_is_refused_in_the_config(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("[model]\nconv = [{filters = 64}]\ndense = [{units = 4096}]\n")  # 64*26*26*4096 weights
    with pytest.raises(CnnscopeError, match=r"the model has 177,\d{3},\d{3} parameters \(0.7 GiB at fp32\), more "
                                            r"than the limit of 100,000,000"):
        build_run_config(path)


@pytest.mark.parametrize(("flags", "message"), [
    (["--lr", "nan"], "error: [train] lr must be a finite number > 0, received nan"),
    (["--lr", "inf"], "error: [train] lr must be a finite number > 0, received inf"),
    (["--momentum", "5"], "error: [train] momentum must be a finite number in [0, 1), received 5.0"),
    (["--schedule", "exponential", "--schedule-arg", "rate=nan"],
     "error: [train] exponential schedule parameter rate must be a finite number in (0, 1], received nan"),
    (["--schedule", "power", "--schedule-arg", "decay_steps=0.5"],
     "error: [train] schedule parameter decay_steps must be a finite number >= 1, received 0.5"),
])
def test_cli_refuses_bad_floats_in_one_line(flags, message, tmp_path, capsys):
    from cnnscope.cli import main

    code = main(["train", "--preset", "tiny", "--epochs", "1", "--out", str(tmp_path / "run"), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code, lines) == (2, [message])
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_huge_model_with_its_size(tmp_path, capsys):
    from cnnscope.cli import main

    path = tmp_path / "big.toml"
    path.write_text("[model]\nconv = [{filters = 64}]\ndense = [{units = 4096}]\n")
    code = main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: the model has 177,")
    assert "limit of 100,000,000" in lines[0] and not (tmp_path / "run").exists()
