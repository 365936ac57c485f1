"""Run directories: self-describing files, exact reload, clear errors for damaged runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import cnnscope
from cnnscope.base.errors import RunError
from cnnscope.runs.checkpoint import init_run_dir
from cnnscope.runs.layout import CONFIG, HISTORY, INITIAL, METRICS, PREPROCESS, WEIGHTS
from cnnscope.runs.load import load_run


@pytest.fixture()
def run_copy(trained_run, tmp_path):
    """A private copy of the session's trained run that a test may damage."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_run_directory_holds_the_documented_files(trained_run):
    for name in (CONFIG, WEIGHTS, INITIAL, PREPROCESS, HISTORY, METRICS, "curves.png"):
        assert (trained_run / name).is_file(), name
    assert not list(trained_run.glob("*.tmp*")), "temporary files left behind"


def test_load_run_rebuilds_the_saved_spec_and_predicts_the_same(trained_run, data_dir, tiny_spec):
    run = load_run(trained_run)
    assert run.spec == tiny_spec
    ds = run.dataset(data_dir)
    again = load_run(trained_run)
    np.testing.assert_array_equal(run.predict(ds.test_raw), again.predict(ds.test_raw))
    accuracy = float((run.predict_classes(ds.test_raw) == ds.test_y).mean())
    assert accuracy == pytest.approx(run.metrics["test_accuracy"], abs=1e-9)


def test_predict_on_raw_pixels_equals_the_model_on_preprocessed_inputs(trained_run, data_dir):
    import torch

    run = load_run(trained_run)
    ds = run.dataset(data_dir)
    with torch.no_grad():
        direct = torch.softmax(run.model(torch.as_tensor(ds.test_x[:50])), dim=1).numpy()
    np.testing.assert_allclose(run.predict(ds.test_raw[:50]), direct, atol=1e-6)


def test_reset_weights_returns_to_the_initial_weights(run_copy, data_dir):
    run = load_run(run_copy)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.reset_weights()
    after = run.model.state_dict()
    assert any(not (before[k] == after[k]).all() for k in before)
    initial = load_run(run_copy, weights=INITIAL).model.state_dict()
    assert all((initial[k] == after[k]).all() for k in after)


def test_missing_directory_and_non_run_directory(tmp_path):
    with pytest.raises(RunError, match="run directory not found: .*nowhere"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(RunError, match=r"is not a run directory \(no config.toml\)"):
        load_run(tmp_path)


def test_missing_weights(run_copy):
    (run_copy / WEIGHTS).unlink()
    with pytest.raises(RunError, match="missing weights file .*model.safetensors"):
        load_run(run_copy)


def test_corrupt_weights_file(run_copy):
    (run_copy / WEIGHTS).write_bytes(b"\x00\x01 not safetensors")
    with pytest.raises(RunError, match="model.safetensors: not a valid safetensors file"):
        load_run(run_copy)


def test_weights_that_do_not_match_the_spec(run_copy):
    text = (run_copy / CONFIG).read_text()
    assert "units = 24" in text
    (run_copy / CONFIG).write_text(text.replace("units = 24", "units = 25"))
    with pytest.raises(RunError, match="weights do not match the run's model spec"):
        load_run(run_copy)


def test_unknown_key_in_a_saved_config(run_copy):
    with open(run_copy / CONFIG, "a") as fh:
        fh.write("\n[extra]\nx = 1\n")
    with pytest.raises(RunError, match=r"unknown table \[extra\]; valid: \[model\], \[train\], \[data\]"):
        load_run(run_copy)


def test_broken_preprocess_json(run_copy):
    (run_copy / PREPROCESS).write_text("{not json")
    with pytest.raises(RunError, match="preprocess.json"):
        load_run(run_copy)


def test_init_run_dir_refuses_to_overwrite_a_run(trained_run, tmp_path):
    with pytest.raises(RunError, match="already holds a run; choose another --out, pass --overwrite, or --resume"):
        init_run_dir(trained_run)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="exists and is not a directory"):
        init_run_dir(tmp_path / "file")


def test_front_door_names():
    for name in ("load_dataset", "presets", "build_model", "train", "TrainConfig", "load_run", "import_keras"):
        assert hasattr(cnnscope, name), name
