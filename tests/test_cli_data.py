"""`cnnscope data NAME|npz:FILE|folder:PATH`: summary text, JSON, the preprocessing figure, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnscope.data.dataset import DataConfig
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


def colour_folder(root: Path) -> Path:
    """root/<red|green|blue>/*.png: 10×12 pictures whose bright channel is their class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for channel, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            x = rng.integers(0, 40, (10, 12, 3)).astype(np.uint8)
            x[..., channel] = 220
            Image.fromarray(x).save(root / name / f"{i}.png")
    return root


def test_folder_dataset_described_and_trained(capsys, tmp_path):
    root = colour_folder(tmp_path / "shapes")
    code, out, err = run_cli(capsys, "data", f"folder:{root}", "--test-size", "3", "--json", "--out",
                             tmp_path / "d.png")
    assert code == 0, err
    info = json.loads(out)
    assert info["channels"] == 3 and info["classes"] == ["blue", "green", "red"] and info["image_size"] == [10, 12]
    assert info["splits"]["train"]["images"] + info["splits"]["test"]["images"] == 18
    assert info["splits"]["train"]["channel_ranges"][0] == [0, 220] and (tmp_path / "d.png").is_file()
    code, out, err = run_cli(capsys, "train", "--dataset", f"folder:{root}", "--test-size", "3", "--image-size",
                             "16", "16", "--preset", "tiny", "--epochs", "1", "--out", tmp_path / "run",
                             "--no-report", "--no-plot")
    assert code == 0, err
    from cnnscope.runs.load import load_run
    from cnnscope.views.common import class_names

    run = load_run(tmp_path / "run")
    assert run.spec.input_shape == (3, 16, 16) and class_names(run) == ["blue", "green", "red"]
    assert run.data_config.image_size == (16, 16) and run.dataset().test_raw.shape[1:] == (16, 16, 3)


def test_folder_options_are_refused_for_other_datasets(capsys, data_dir):
    code, _, err = run_cli(capsys, "data", "mnist", "--data-dir", data_dir, "--channels", "3")
    assert code == 2 and one_line_error(err) == "error: channels applies to folder:PATH datasets only; --dataset " \
                                                "is mnist"
