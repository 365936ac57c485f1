"""`cnnscope data NAME`: summary text, JSON, the preprocessing figure, one-line errors."""

from __future__ import annotations

import json

import pytest

from cnnscope.data import DataConfig
from conftest import one_line_error, run_cli


def test_data_json_and_figure(capsys, data_dir, tmp_path):
    out = tmp_path / "pre.png"
    code, stdout, _ = run_cli(capsys, "data", "mnist", "--data-dir", data_dir, "--preprocess", "standard",
                           "--out", out, "--json")
    assert code == 0
    info = json.loads(stdout)
    assert info["dataset"] == "mnist" and info["preprocess"] == "standard" and info["image_size"] == [28, 28]
    assert info["channels"] == 1 and info["classes"][:2] == ["0", "1"]
    assert info["splits"]["train"]["images"] == 1200 and sum(info["splits"]["test"]["counts"].values()) == 300
    assert info["splits"]["train"]["raw_range"] == [0, 255]
    assert info["figures"] == [str(out)] and out.read_bytes()[:4] == b"\x89PNG"
    assert set(info["test_far"]) == {"limit", "images", "max_value", "outside_training_range"}


def test_data_text_uses_the_default_preprocessing(capsys, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_cli(capsys, "data", "fashion-mnist", "--data-dir", data_dir)
    kind = DataConfig().preprocess
    assert code == 0
    assert stdout.startswith(f"fashion-mnist: 28×28 pixels, 1 channel (grey), 10 classes; preprocess {kind}\n")
    assert "  train: 1200 images (T-shirt/top " in stdout and "per-pixel deviation" in stdout
    assert f"figure: fashion-mnist-{kind}-preprocessing.png" in stdout
    assert (tmp_path / f"fashion-mnist-{kind}-preprocessing.png").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "emnist"], "error: unknown dataset 'emnist'; valid: mnist, fashion-mnist"),
    (["data", "mnist", "--preprocess", "minmax"], "error: unknown preprocess 'minmax'; valid: standard, "),
    (["data", "mnist", "--out", "x.gif"], "error: "),
])
def test_data_errors_are_one_line(capsys, data_dir, argv, message):
    code, _, err = run_cli(capsys, *argv, "--data-dir", data_dir)
    assert code == 2
    assert one_line_error(err).startswith(message)


def test_data_missing_directory(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "mnist", "--data-dir", tmp_path / "nowhere")
    assert code == 2
    assert "missing file" in one_line_error(err) and "--data-dir" in err
