"""Configuration: defaults -> TOML file -> flags, strict keys, and the shipped recipe files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnscope.config import RunConfig, TrainConfig, build_run_config
from cnnscope.errors import CnnscopeError, ConfigError
from cnnscope.optim import lr_at

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_build_the_seed_iv_model(path):
    config = build_run_config(path)
    assert config.model.total_params == 208_982
    assert config.data.dataset == "mnist"


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
    from cnnscope.fileio import read_toml

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
