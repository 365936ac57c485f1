"""`cnnscope train --probe INDEX`: a record per epoch (first-layer filters, the image's maps); the report's strip."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base import imaging
from cnnscope.base.errors import ConfigError, RunError
from cnnscope.cli import main
from cnnscope.inspect.activations import capture
from cnnscope.model.zoo import get_preset
from cnnscope.report import PROBE_ROWS, tiles_png
from cnnscope.runs.checkpoint import load_weights
from cnnscope.runs.layout import PROBE
from cnnscope.runs.load import load_run
from cnnscope.runs.probe import ProbeData, read_probe, write_probe
from cnnscope.training.probe import Probe

INDEX = 5
MAP_LAYERS = ["Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2"]  # the tiny preset's conv and pool layers


def train_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--epochs", "2", "--batch-size", "64", "--optimizer", "adam",
            "--lr", "0.003", "--limit-test", "100", "--data-dir", str(data_dir), "--out", str(out), "--no-plot",
            "--no-report", "--seed", "0", *extra]


@pytest.fixture(scope="module")
def probe_run(data_dir, tmp_path_factory) -> Path:
    """The tiny preset trained 2 epochs with --probe 5 (module-wide, read-only)."""
    out = tmp_path_factory.mktemp("probe") / "run"
    assert main(train_args(data_dir, out, "--probe", str(INDEX))) == 0
    return out


@pytest.fixture(scope="module")
def dataset(data_dir):
    return cnnscope.load_dataset("mnist", data_dir=data_dir, limit_test=100)


def last_line(err: str) -> str:
    """The error line (warnings about the synthetic files' checksums may come before it); exactly one error."""
    assert err.count("error:") == 1 and err.endswith("\n"), err
    return err.splitlines()[-1]


def first_conv_weight(model: torch.nn.Module) -> np.ndarray:
    return model.layers["Conv2D_1"].conv.weight.detach().float().numpy()


# --- what is stored ----------------------------------------------------------------------------------------
def test_one_record_per_epoch_and_the_initial_weights(probe_run, dataset):
    probe = read_probe(probe_run)
    assert probe.epochs == [0, 1, 2]
    assert (probe.index, probe.split, probe.label) == (INDEX, "test", int(dataset.test_y[INDEX]))
    assert np.array_equal(probe.image, dataset.test_raw[INDEX])
    assert probe.filters_layer == "Conv2D_1" and probe.layers == MAP_LAYERS
    shapes = {layer.name: layer.output_shape for layer in get_preset("tiny").layers()}
    for epoch in probe.epochs:
        assert probe.filters[epoch].shape == (8, 1, 3, 3)
        assert {name: maps.shape for name, maps in probe.maps[epoch].items()} == {n: shapes[n] for n in MAP_LAYERS}
    assert not np.array_equal(probe.filters[1], probe.filters[0])  # the filters move while it learns
    assert not np.array_equal(probe.filters[2], probe.filters[1])


def test_stored_filters_are_the_models_weights(probe_run):
    probe = read_probe(probe_run)
    final = load_run(probe_run).model
    assert np.array_equal(probe.filters[2], first_conv_weight(final))  # last epoch = the saved model, exactly
    initial = load_run(probe_run).model
    load_weights(probe_run / "initial.safetensors", initial)
    assert np.array_equal(probe.filters[0], first_conv_weight(initial))


def test_stored_maps_are_the_final_models_activations(probe_run, dataset):
    probe = read_probe(probe_run)
    with torch.no_grad():
        captured, _ = capture(load_run(probe_run).model.eval(), MAP_LAYERS,
                              torch.as_tensor(dataset.test_x[INDEX:INDEX + 1]))
    for name in MAP_LAYERS:
        expected = captured[name][0].numpy()
        assert probe.maps[2][name].shape == expected.shape
        peak = float(np.abs(expected).max())
        assert peak > 0
        np.testing.assert_allclose(probe.maps[2][name], expected, rtol=2e-3, atol=2e-3 * peak)  # stored as float16


def test_the_file_is_written_atomically(probe_run):
    names = {p.name for p in probe_run.iterdir()}
    assert PROBE in names and not [n for n in names if n.endswith(".tmp")]


def test_resume_continues_the_strip(probe_run, tmp_path):
    run_dir = Path(shutil.copytree(probe_run, tmp_path / "run"))
    before = read_probe(run_dir)
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--probe", str(INDEX), "--no-report",
                 "--no-plot"]) == 0
    after = read_probe(run_dir)
    assert after.epochs == [0, 1, 2, 3]
    for epoch in (0, 1, 2):  # what the first session recorded is kept as it was
        assert np.array_equal(after.filters[epoch], before.filters[epoch])
    assert np.array_equal(after.filters[3], first_conv_weight(load_run(run_dir).model))


# --- bad input ---------------------------------------------------------------------------------------------
def test_bad_probe_index_fails_before_training(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, "--probe", "100")) == 2
    captured = capsys.readouterr()
    assert last_line(captured.err) == "error: --probe 100 is out of range: the test set holds 100 images (0 to 99)"
    assert "trained" not in captured.out
    assert not out.exists()  # refused before a run directory was made

    assert main(train_args(data_dir, out, "--probe", "-1")) == 2
    assert last_line(capsys.readouterr().err) == "error: --probe expects a test image index >= 0, received -1"
    assert not out.exists()


def test_bad_probe_index_on_resume_leaves_the_run_alone(probe_run, tmp_path, capsys):
    run_dir = Path(shutil.copytree(probe_run, tmp_path / "run"))
    config_before = (run_dir / "config.toml").read_text()
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--probe", "1000"]) == 2
    err = last_line(capsys.readouterr().err)
    assert err == "error: --probe 1000 is out of range: the test set holds 100 images (0 to 99)"
    assert (run_dir / "config.toml").read_text() == config_before  # --epochs 3 was not written
    assert read_probe(run_dir).epochs == [0, 1, 2]


def test_library_probe_validates_too(dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"--probe expects a test image index >= 0, received True"):
        Probe(True)
    with pytest.raises(ConfigError, match=r"--probe 100 is out of range: the test set holds 100 images"):
        cnnscope.train(get_preset("tiny"), dataset, cnnscope.TrainConfig(epochs=1), out=tmp_path / "run",
                       callbacks=[Probe(100)], progress=False)
    assert not (tmp_path / "run").exists()


def test_unreadable_probe_file(probe_run, tmp_path):
    run_dir = Path(shutil.copytree(probe_run, tmp_path / "run"))
    (run_dir / PROBE).write_bytes(b"not a safetensors file")
    with pytest.raises(RunError, match=rf"{re.escape(str(run_dir / PROBE))}: not a readable probe file"):
        read_probe(run_dir)


# --- the report --------------------------------------------------------------------------------------------
def strip_rows(text: str) -> list[tuple[str, list[str]]]:
    """(row label, image data URIs) for each epoch row of the report's probe strip."""
    strip = re.search(r'<div class="probe">(.*?)</div></div>', text, flags=re.S)
    assert strip, "the report has no probe strip"
    rows = re.findall(r"<tr><th>((?:initial|epoch \d+))</th>(.*?)</tr>", strip.group(1), flags=re.S)
    return [(label, re.findall(r'src="(data:image/png;base64,[^"]+)"', body)) for label, body in rows]


def test_report_shows_the_strip_across_epochs(probe_run, data_dir, dataset, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(probe_run), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    text = out.read_text(encoding="utf-8")
    training = re.search(r'<section id="training">(.*?)</section>', text, flags=re.S).group(1)
    assert f"Watching it learn: test image {INDEX} (class {dataset.class_names[dataset.test_y[INDEX]]})" in training
    header = re.search(r'<table class="strip"><tr><th></th>(.*?)</tr>', training, flags=re.S).group(1)
    assert re.findall(r"<th>([^<]+)</th>", header) == ["Conv2D_1 filters", *MAP_LAYERS]

    rows = strip_rows(training)
    assert [label for label, _ in rows] == ["initial", "epoch 1", "epoch 2"]
    probe = read_probe(probe_run)
    peak = max(float(np.abs(probe.filters[e]).max()) for e in probe.epochs)
    for (_, uris), epoch in zip(rows, probe.epochs, strict=True):
        assert len(uris) == 1 + len(MAP_LAYERS)
        # the filters picture is this epoch's stored weights on the strip's one colour scale
        filters = tiles_png(probe.filters[epoch][:, 0], cmap="RdBu_r", symmetric=True, vmax=peak)
        assert uris[0] == imaging.data_uri(filters)
        for uri, name in zip(uris[1:], MAP_LAYERS, strict=True):
            assert base64.b64decode(uri.split(",", 1)[1]) == tiles_png(probe.maps[epoch][name])


def test_long_histories_are_thinned_to_evenly_spaced_rows(probe_run, tmp_path):
    from cnnscope.views.common import class_names
    from cnnscope.views.report_sections import probe_html

    run_dir = Path(shutil.copytree(probe_run, tmp_path / "run"))
    probe = read_probe(run_dir)
    long = ProbeData(probe.index, probe.split, probe.label, probe.image, probe.filters_layer, probe.layers)
    for epoch in range(31):  # 0 (initial) to 30
        long.epochs.append(epoch)
        long.filters[epoch] = probe.filters[2] * (epoch + 1)
        long.maps[epoch] = probe.maps[2]
    write_probe(run_dir, long)
    run = load_run(run_dir)
    labels = [label for label, _ in strip_rows(probe_html(run, class_names(run)))]
    assert len(labels) == PROBE_ROWS
    assert labels[0] == "initial" and labels[-1] == "epoch 30"
    epochs = [0] + [int(label.split()[1]) for label in labels[1:]]
    assert epochs == sorted(set(epochs))
    assert max(np.diff(epochs)) - min(np.diff(epochs)) <= 1  # evenly spaced
