"""cnnscope sweep without training: the parameter parser (properties), the definition, CLI errors (pinned, exit 2)."""

from __future__ import annotations

import importlib.util
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnscope.base.errors import SweepError
from cnnscope.sweep import definition, parse_param
from cnnscope.sweep.params import KINDS, Param, apply_params, valid_keys
from conftest import one_line_error, run_cli

KEYS = [f"{t}.{n}" for t, names in valid_keys().items() for n in names]
names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True).filter(lambda s: s not in ("true", "false", "inf",
                                                                                          "nan", "infinity"))
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def params(draw) -> Param:
    key, kind = draw(st.sampled_from(KEYS)), draw(st.sampled_from(KINDS))
    if kind == "choice":
        values = draw(st.lists(st.one_of(st.integers(-1000, 1000), finite, st.booleans(), names), min_size=1,
                               max_size=6, unique_by=repr))
        return Param(key, kind, choices=tuple(values))
    if kind in ("range", "int"):
        low = draw(st.integers(-1000, 1000))
        return Param(key, kind, low, low + draw(st.integers(1 if kind == "range" else 0, 50)))
    low = draw(st.floats(1e-8, 1e3) if kind == "loguniform" else finite)
    return Param(key, kind, low, low + draw(st.floats(1e-3, 1e3)))


@given(params())
def test_a_param_round_trips_through_its_text(param):
    assert parse_param(f"{param.key}={param.text()}") == param


@given(st.text(max_size=60))
def test_any_text_is_a_param_or_one_sweep_error(text):
    try:
        param = parse_param(text)
    except SweepError as exc:
        assert "\n" not in str(exc)
    else:
        assert param.key in KEYS and param.kind in KINDS


@given(params())
def test_the_distribution_covers_the_grid(param):
    grid = param.grid()
    if param.kind in ("uniform", "loguniform"):
        assert grid is None
    else:
        assert grid and all(param.distribution()._contains(param.distribution().to_internal_repr(v)) for v in grid)


def test_range_excludes_hi_and_int_includes_it():
    assert parse_param("train.seed=range:0:3").grid() == [0, 1, 2]
    assert parse_param("train.seed=int:0:3").grid() == [0, 1, 2, 3]
    assert parse_param("train.optimizer=choice:adam,rmsprop").grid() == ["adam", "rmsprop"]
    p = parse_param("train.lr=loguniform:1e-4:1e-2")
    assert (p.low, p.high) == (1e-4, 1e-2) and p.distribution().log


@pytest.mark.parametrize(("text", "message"), [
    ("train.lr", "--param expects KEY=DIST (e.g. train.lr=loguniform:1e-4:1e-2), received 'train.lr'"),
    ("train.lrr=uniform:0:1", "unknown parameter key 'train.lrr'; valid: model.preset, model.conv"),
    ("train.lr=normal:0:1", "train.lr: unknown distribution 'normal'; valid: choice:a,b,c, range:lo:hi (hi exclusive)"),
    ("train.seed=range:3:3", "train.seed: range:3:3 is empty; lo must be below hi"),
    ("train.seed=range:0:2.5", "train.seed: range needs integer bounds, received 0:2.5"),
    ("train.lr=loguniform:0:1", "train.lr: loguniform needs lo > 0, received 0.0"),
    ("train.lr=uniform:a:1", "train.lr uniform: expected a finite number, received 'a'"),
    ("train.lr=uniform:0:nan", "train.lr uniform: expected a finite number, received 'nan'"),
    ("train.optimizer=choice:adam,adam", "train.optimizer: choice needs 1 to 1000 different values"),
    ("model.preset=choice:a b", "choice value 'a b': expected a number, true/false or a name"),
])
def test_bad_params_are_one_line(text, message):
    with pytest.raises(SweepError) as info:
        parse_param(text)
    assert str(info.value).startswith(message)


def test_apply_params_sets_keys_and_expands_a_preset():
    base = {"model": {"preset": "tiny"}, "train": {"epochs": 1}}
    out = apply_params(base, {"train.lr": 0.01, "model.dropout": 0.25, "data.val_size": 10})
    assert base == {"model": {"preset": "tiny"}, "train": {"epochs": 1}}  # not changed
    assert out["train"] == {"epochs": 1, "lr": 0.01} and out["data"] == {"val_size": 10}
    assert out["model"]["dropout"] == 0.25 and "preset" not in out["model"] and len(out["model"]["conv"]) == 2
    assert apply_params(base, {"model.preset": "seed-ii"})["model"] == {"preset": "seed-ii"}


def test_a_sweep_table_in_the_toml(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[model]\npreset = "tiny"\n[sweep]\ntrials = 7\nsampler = "random"\n'
                    '[sweep.params]\n"train.lr" = "loguniform:1e-4:1e-2"\n"train.seed" = "range:0:3"\n')
    spec = definition.spec_from_options(toml, ["train.seed=choice:5,6"], {"workers": 2, "trials": None})
    assert spec.trials == 7 and spec.sampler == "random" and spec.workers == 2 and spec.direction == "maximize"
    assert {p.key: p.text() for p in spec.params} == {"train.lr": "loguniform:0.0001:0.01",
                                                       "train.seed": "choice:5,6"}
    assert spec.config == {"model": {"preset": "tiny"}, "data": {"val_fraction": 0.1}}  # held out by default
    assert definition.spec_from_options(None, ["train.lr=uniform:0:1"], {"metric": "val_loss"}).direction == "minimize"


def test_run_flags_change_the_base_and_a_validation_split_is_the_default():
    overrides = {"model": {"preset": "tiny"}, "train": {"epochs": 2, "batch_size": 32},
                 "data": {"limit_train": 500, "val_fraction": None}}
    spec = definition.spec_from_options(None, ["train.lr=uniform:0.001:0.01"], {}, overrides)
    assert spec.config == {"model": {"preset": "tiny"}, "train": {"epochs": 2, "batch_size": 32},
                           "data": {"limit_train": 500, "val_fraction": 0.1}}
    assert spec.selected_on == "validation" and "10 % of each class held out" in spec.selection_text()
    counted = definition.spec_from_options(None, ["train.lr=uniform:0.001:0.01"], {},
                                           {"data": {"val_size": 300, "val_fraction": None}})
    assert counted.config["data"] == {"val_size": 300} and "300 training images held out" in counted.selection_text()
    on_test = definition.spec_from_options(None, ["train.lr=uniform:0.001:0.01"], {"select_on_test": True},
                                           {"data": {"val_size": 0}})
    assert on_test.selected_on == "test" and on_test.to_dict()["select_on_test"] is True
    saved = on_test.to_dict()  # continued without --select-on-test: refused again
    with pytest.raises(SweepError, match="the sweep would choose its best trial on the test set"):
        definition.spec_from_study(saved, {})
    assert definition.spec_from_study(saved, {"select_on_test": True}).selected_on == "test"


def test_grid_needs_discrete_params():
    with pytest.raises(SweepError, match="the grid sampler needs choice, range or int parameters; train.lr is "
                                         "continuous"):
        definition.spec_from_options(None, ["train.lr=uniform:0:1"], {"sampler": "grid"})
    spec = definition.spec_from_options(None, ["train.seed=range:0:3", "train.lr=choice:0.1,0.2"],
                                        {"sampler": "grid"})
    assert spec.grid_size() == 6


@pytest.fixture
def base_toml(tmp_path, data_dir):
    path = tmp_path / "base.toml"
    path.write_text(f'[model]\npreset = "tiny"\n[train]\nepochs = 1\n[data]\ndata_dir = "{data_dir}"\n')
    return path


@pytest.mark.parametrize(("argv", "message"), [
    (["--param", "train.lrr=uniform:0:1"], "error: unknown parameter key 'train.lrr'; valid: model.preset,"),
    (["--param", "train.lr=uniform:0"], "error: train.lr: uniform expects uniform:lo:hi, received 'uniform:0'"),
    ([], "error: a sweep needs at least one --param KEY=DIST (or a [sweep.params] table)"),
    (["--param", "train.lr=uniform:0:1", "--sampler", "grdi"], "error: argument --sampler: invalid choice: 'grdi'"),
    (["--param", "train.lr=uniform:0:1", "--trials", "0"], "error: argument --trials: expected a positive integer"),
    (["--param", "train.lr=uniform:0:1", "--param", "train.lr=uniform:0:2"], "error: parameter train.lr is given "
                                                                              "twice"),
    (["--param", "train.lr=uniform:0:1", "--val-size", "0"], "error: the sweep would choose its best trial on the "
     "test set: the recipe holds out no validation images (data.val_size = 0 and no data.val_fraction); hold some "
     "out with --val-size 10% (a new study's default) or add --select-on-test to do it knowingly"),
    (["--param", "train.lr=uniform:0:1", "--metric", "test_accuracy"], "error: --metric test_accuracy would choose "
     "the best trial on the test set; use val_accuracy or val_loss"),
    (["--param", "data.seed=range:0:2"], "error: parameter data.seed would change which images validate each trial"),
    (["--param", "train.lr=uniform:0:1", "--val-size", "150%"], "error: argument --val-size: expected N images or a "
                                                                 "share such as 10% or 0.1, received '150%'"),
])
def test_cli_errors(capsys, tmp_path, base_toml, argv, message):
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", tmp_path / "study", *argv)
    assert code == 2 and one_line_error(err).startswith(message)
    assert not (tmp_path / "study" / "study.db").exists()


def test_a_bad_base_config_is_one_line(capsys, tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[train]\nepochs = 0\n")
    code, _, err = run_cli(capsys, "sweep", "--config", toml, "--out", tmp_path / "s", "--param",
                           "train.lr=uniform:0:1")
    assert code == 2 and one_line_error(err) == ("error: the base configuration is invalid: [train] epochs must be "
                                                 "an integer >= 1, received 0")


def test_another_definition_on_a_study_dir_says_what_differs(capsys, tmp_path, base_toml):
    study = tmp_path / "study"
    spec = definition.spec_from_options(base_toml, ["train.lr=uniform:0.001:0.01"], {})
    study.mkdir()
    definition.save_study(study, spec)
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", study, "--param",
                           "train.lr=uniform:0.001:0.02")
    assert code == 2 and one_line_error(err) == (
        f"error: {study} holds another study: parameter train.lr=uniform:0.001:0.01 in the study, "
        f"train.lr=uniform:0.001:0.02 now; use another --out, or the study's own settings (see {study}/study.toml)")
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", study, "--param",
                           "train.lr=uniform:0.001:0.01", "--metric", "val_loss")
    assert code == 2 and "holds another study: metric was 'val_accuracy', now 'val_loss'" in one_line_error(err)


def test_a_study_from_before_validation_splits_is_told_apart(capsys, tmp_path, base_toml):
    study = tmp_path / "study"
    study.mkdir()
    new = definition.spec_from_options(base_toml, ["train.lr=uniform:0.001:0.01"], {})
    config = {**new.config, "data": {k: v for k, v in new.config["data"].items() if k != "val_fraction"}}
    definition.save_study(study, definition.SweepSpec(config, new.params, select_on_test=True))  # before issue 18
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", study, "--param",
                           "train.lr=uniform:0.001:0.01")
    assert code == 2 and one_line_error(err) == (
        f"error: {study} holds another study: it holds out no validation images, so it was chosen on the test set, "
        f"and a new study would hold 10 % out; start one with another --out, or continue this one with --val-size 0 "
        f"--select-on-test; use another --out, or the study's own settings (see {study}/study.toml)")
    code, _, err = run_cli(capsys, "sweep", "--out", study)  # continued as it was: refused without the flag
    assert code == 2 and "the sweep would choose its best trial on the test set" in one_line_error(err)


def test_a_missing_extra_is_one_line(capsys, tmp_path, base_toml, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("optuna", "ray")
                        else real(name, *a))
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", tmp_path / "s", "--param",
                           "train.lr=uniform:0:1")
    assert code == 2 and one_line_error(err) == 'error: cnnscope sweep needs Optuna: pip install "cnnscope[sweep]"'
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    code, _, err = run_cli(capsys, "sweep", "--config", base_toml, "--out", tmp_path / "s", "--param",
                           "train.lr=uniform:0.1:1", "--engine", "ray")
    assert code == 2 and one_line_error(err) == ('error: cnnscope sweep --engine ray needs Ray: pip install '
                                                 '"cnnscope[ray]"')


def test_plots_draw_the_values_given():
    from cnnscope.plots.sweep import history_figure, importance_figure, params_figure

    fig = params_figure({"train.lr": [1e-4, 1e-2, 1e-3], "train.optimizer": ["adam", "sgd", "adam"]},
                        [0.9, 0.5, 0.95], ["completed", "pruned", "completed"], "val_accuracy")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2 and fig.axes[0].get_xscale() == "log"
    fig = history_figure([0, 1, 2], [0.9, 0.5, 0.95], ["completed", "pruned", "completed"], "val_accuracy",
                         "maximize")
    step = [line for line in fig.axes[0].lines if line.get_label() == "best so far"][0]
    assert list(step.get_ydata()) == [0.9, 0.95]
    fig = params_figure({"train.lr": [2e-3, 3e-3], "train.epochs": [1, 3]}, [0.9, 0.8], ["completed"] * 2,
                        "val_accuracy", log_keys=["train.lr"], tests=[0.88, None])
    lr, epochs = fig.axes[:2]
    assert lr.get_xscale() == "log" and epochs.get_xscale() == "linear"  # drawn log-uniformly, however narrow
    assert all(float(t).is_integer() for t in epochs.get_xticks())
    crosses = [c for c in lr.collections if c.get_label() == "test (reported only)"]
    assert len(crosses) == 1 and crosses[0].get_offsets()[0].tolist() == [2e-3, 0.88]
    fig = history_figure([0, 1], [0.9, 0.5], ["completed", "completed"], "val_accuracy", "maximize")
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    fig = importance_figure({"a": 0.75, "b": 0.25}, "val_accuracy")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]
    assert math.isclose(sum(p.get_width() for p in fig.axes[0].patches), 1.0)
