"""The core CLI (summary, train, evaluate): exit codes, JSON output, one-line errors, --debug."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import one_line_error, run_cli


@pytest.mark.parametrize(("preset", "total"), [("seed-iv", 208_982), ("seed-ii", 96_844)])
def test_summary_json_totals(capsys, preset, total):
    code, out, _ = run_cli(capsys, "summary", "--preset", preset, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["total_params"] == total
    assert [layer["name"] for layer in summary["layers"]][:3] == ["Conv2D_1", "Max_Pool_1", "Conv2D_2"]


def test_summary_table_shows_receptive_fields(capsys):
    code, out, _ = run_cli(capsys, "summary", "--preset", "seed-ii")
    assert code == 0
    assert "96,844" in out
    fields = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith(("Conv2D", "Max_"))}
    assert fields == {"Conv2D_1": "3×3", "Max_Pool_1": "4×4", "Conv2D_2": "8×8", "Max_Pool_2": "10×10",
                      "Conv2D_3": "18×18"}


def test_summary_of_a_run_directory(capsys, trained_run):
    code, out, _ = run_cli(capsys, "summary", trained_run, "--json")
    assert code == 0 and json.loads(out)["layers"][0]["name"] == "Conv2D_1"


def test_unknown_preset_lists_the_valid_ones(capsys):
    code, _, err = run_cli(capsys, "summary", "--preset", "seed-v")
    assert code == 2
    line = one_line_error(err)
    assert "seed-v" in line and "seed-ii" in line and "seed-iv" in line


def test_bad_config_value_and_unknown_key(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\noptimizer = "adagrad"\n')
    code, _, err = run_cli(capsys, "train", "--config", bad, "--out", tmp_path / "r")
    assert code == 2
    assert "unknown optimizer 'adagrad'; valid: rmsprop, adam, nadam, adamax, sgd, adamw" in one_line_error(err)
    bad.write_text("[train]\nepochz = 3\n")
    code, _, err = run_cli(capsys, "train", "--config", bad, "--out", tmp_path / "r")
    assert code == 2 and "[train] unknown key 'epochz'" in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_negative_learning_rate_flag(capsys, tmp_path, data_dir):
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--lr", "-1", "--data-dir", data_dir,
                        "--out", tmp_path / "r")
    line = one_line_error(err)
    assert code == 2 and "lr must be" in line and "received -1.0" in line


def test_corrupt_data_file_is_one_line(capsys, tmp_path, data_dir):
    broken = shutil.copytree(data_dir, tmp_path / "data")
    target = broken / "mnist" / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:40])
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--data-dir", broken, "--out", tmp_path / "r")
    assert code == 2
    line = one_line_error(err)
    assert "train-labels-idx1-ubyte.gz" in line


def test_wrong_magic_number(capsys, tmp_path, data_dir):
    broken = shutil.copytree(data_dir, tmp_path / "data")
    target = broken / "mnist" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(target, "wb") as fh:
        fh.write(b"\x00\x00\x09\x99" + b"\x00" * 64)
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--data-dir", broken, "--out", tmp_path / "r")
    assert code == 2 and "t10k-images-idx3-ubyte.gz" in one_line_error(err) and "magic" in err


def test_train_then_evaluate(capsys, tmp_path, data_dir):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--preset", "tiny", "--epochs", 1, "--batch-size", 64,
                           "--optimizer", "adam", "--lr", 0.003, "--data-dir", data_dir, "--out", out,
                           "--limit-train", 600, "--no-report", "--no-plot", "--val-size", "10%")
    assert code == 0, stdout
    assert "trained 1 epoch(s)" in stdout and f"run directory: {out}" in stdout
    history = json.loads((out / "history.json").read_text())
    assert history["val_source"] == "validation" and "val_fraction = 0.1" in (out / "config.toml").read_text()
    assert not (out / "report.html").exists()
    stdout_of_train = stdout
    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json", "--data-dir", data_dir)
    assert code == 0
    result = json.loads(stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert result["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)  # the data loss, in both
    assert f"test loss {metrics['test_loss']:.4f} on 300 images" in stdout_of_train
    assert len(result["per_class_accuracy"]) == 10 and (out / "confusion.png").is_file()
    # the same --out again is refused, and nothing of the first run is touched
    before = (out / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--epochs", 1, "--data-dir", data_dir, "--out", out)
    assert code == 2 and "already holds a run" in one_line_error(err)
    assert (out / "model.safetensors").read_bytes() == before


def test_resume_only_accepts_epochs(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "--resume", trained_run, "--lr", 0.1)
    assert code == 2 and "--resume continues a run with its saved settings" in one_line_error(err)


def test_evaluate_missing_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "nope")
    assert code == 2 and one_line_error(err) == f"error: run directory not found: {tmp_path / 'nope'}"


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--debug", "evaluate", tmp_path / "nope")
    assert code == 2 and "Traceback" in err and "RunError" in err


def test_usage_errors_and_no_command(capsys):
    assert run_cli(capsys, "summary", "--bogus")[0] == 2
    code, _, err = run_cli(capsys)
    assert code == 2 and one_line_error(err).startswith("error: no command given; one of: summary, train, ")
    assert run_cli(capsys, "--version")[0] == 0


def test_module_entry_point_runs_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "cnnscope", "summary", "--preset", "seed-iv", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_params"] == 208_982


def test_log_handler_follows_the_current_stderr(capsys, tmp_path):
    import io
    import logging

    assert run_cli(capsys, "summary", "--preset", "tiny")[0] == 0
    swapped = io.StringIO()
    old, sys.stderr = sys.stderr, swapped
    try:
        logging.getLogger("cnnscope").warning("after main")
    finally:
        sys.stderr = old
    assert "warning: after main" in swapped.getvalue()


@given(st.text(max_size=12))
def test_val_size_is_a_count_a_share_or_a_usage_error(text):
    from cnnscope.cli.train import val_size

    try:
        value = val_size(text)
    except argparse.ArgumentTypeError as exc:
        assert "expected N images or a share such as 10% or 0.1" in str(exc)
    else:
        assert (isinstance(value, int) and value >= 0) or (isinstance(value, float) and 0 <= value < 1)
    assert val_size("10%") == 0.1 and val_size("0.25") == 0.25 and val_size("500") == 500 and val_size("0") == 0
