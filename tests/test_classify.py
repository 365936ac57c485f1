"""Classification by activation patterns (series part VI): nearest class-mean patterns and the linear read-out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnscope.base.errors import RunError, SpecError
from cnnscope.inspect import Readout, classify_by_patterns
from cnnscope.inspect.classify import INPUT, nearest_mean, pooled_grid, sample_indices
from cnnscope.model.network import build_model
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec


def one_map_model():
    """Conv2D_1 with three 1×1 filters: map 0 copies the input (w 1, b 0), map 1 is the constant 1 (w 0, b 1),
    map 2 is dead (w 0, b 0); then a 2×2 max pool."""
    spec = ModelSpec(conv=(ConvSpec(3, kernel=1, pool=PoolSpec()),), dense=(DenseSpec(4),), input_shape=(1, 8, 8),
                     num_classes=3)
    model = build_model(spec, seed=0)
    conv = model.layer("Conv2D_1").conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0] = 1.0
        conv.bias[1] = 1.0
    return model


def band_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c: a bright vertical band in columns 2c..2c+2 over faint noise; every image has the same total ink
    give or take the noise, so the classes differ only in where map 0 fires (not in any map's mean)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.1, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, :, 2 * c:2 * c + 3] += 1.0
    return x, y


def test_classes_separable_by_one_map_are_found_by_its_pattern_not_by_the_map_means():
    model = one_map_model()
    train, test = band_images(300, 0), band_images(200, 1)
    found = classify_by_patterns(model, *train, *test, readout=Readout(epochs=30, lr=1e-2))
    names = [item.layer for item in found.layers]
    assert names == [INPUT, "Conv2D_1", "Max_Pool_1"]
    for item in found.layers:
        pattern = item.accuracy["pattern"]
        assert pattern["nearest_cosine"] == 1.0 and pattern["nearest_euclidean"] == 1.0, item.layer
        assert pattern["linear"] >= 0.98, item.layer
        assert np.trace(item.confusion["pattern"]) == 200
    conv = found.layer("Conv2D_1")
    assert conv.accuracy["profile"]["nearest_euclidean"] < 0.6  # the spatial means hardly differ between classes
    assert conv.shape == (3, 8, 8) and conv.features == 3 * 64 and conv.grid == (8, 8)
    assert found.model_accuracy == pytest.approx(np.mean(build_predictions(model, test[0]) == test[1]))
    assert found.chance == pytest.approx(1 / 3)
    assert found.majority == pytest.approx(np.bincount(test[1]).max() / 200)
    assert found.train_images == 300 and sum(found.train_counts) == 300


def build_predictions(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x)).argmax(1).numpy()


def test_the_one_map_alone_is_enough():
    """Zero the informative map: the conv layer's patterns no longer classify (constant and dead maps only)."""
    model = one_map_model()
    with torch.no_grad():
        model.layer("Conv2D_1").conv.weight[0] = 0.0
    train, test = band_images(300, 0), band_images(200, 1)
    found = classify_by_patterns(model, *train, *test, layers=["Conv2D_1"], readout=Readout(epochs=2))
    accuracy = found.layer("Conv2D_1").accuracy["pattern"]
    assert accuracy["nearest_euclidean"] <= found.majority + 1e-9  # every image looks the same: one guess


def test_pooling_keeps_memory_bounded_and_still_classifies():
    model = one_map_model()
    train, test = band_images(200, 0), band_images(100, 1)
    found = classify_by_patterns(model, *train, *test, layers=["Conv2D_1"], max_features=3 * 16,
                                 readout=Readout(epochs=2))
    item = found.layer("Conv2D_1")
    assert item.grid == (4, 4) and item.features == 48 and item.to_dict()["pooled"] is True
    assert item.accuracy["pattern"]["nearest_cosine"] == 1.0  # 2-column cells still tell the bands apart
    assert pooled_grid((32, 26, 26), 2048) == (8, 8) and pooled_grid((128, 3, 3), 2048) == (3, 3)
    assert pooled_grid((512, 4, 4), 100) == (1, 1)


def test_nearest_mean_by_hand():
    means = torch.tensor([[1.0, 0.0], [0.0, 2.0], [float("nan"), float("nan")]])
    f = torch.tensor([[3.0, 0.1], [0.2, 1.5], [0.9, 1.1]])
    assert nearest_mean(f, means, "cosine").tolist() == [0, 1, 1]
    assert nearest_mean(f, means, "euclidean").tolist() == [0, 1, 0]  # 1.22 < 1.62, though cosine says 1


def test_sample_is_seeded_random_and_bounded():
    a, b = sample_indices(1000, 100), sample_indices(1000, 100)
    assert (a == b).all() and len(np.unique(a)) == 100 and (np.diff(a) > 0).all() and a.max() > 500
    assert len(sample_indices(50, 100)) == 50 and len(sample_indices(50, None)) == 50


def test_bad_input_gets_one_clear_error():
    model = one_map_model()
    x, y = band_images(10, 0)
    with pytest.raises(RunError, match="10 training images but 9 labels"):
        classify_by_patterns(model, x, y[:9], x, y)
    with pytest.raises(RunError, match=r"labels must be in 0\.\.2"):
        classify_by_patterns(model, x, y + 3, x, y)
    with pytest.raises(SpecError, match="Conv2D_1"):
        classify_by_patterns(model, x, y, x, y, layers=["Conv2D_9"])
    with pytest.raises(RunError, match="has no maps"):
        classify_by_patterns(model, x, y, x, y, layers=["Dense_1"])


# --- the command: cnnscope profile RUN --layer L --classify -------------------------------------------------
def test_profile_classify_prints_the_table_and_writes_the_figure(trained_run, data_dir, tmp_path, capsys):
    from conftest import run_cli

    args = ("profile", trained_run, "--layer", "Conv2D_3", "--classify", "--train-limit", 300, "--limit", 200,
            "--data-dir", data_dir, "--out", tmp_path / "p.png")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "class means over 300 training images (a seeded sample), accuracy on 200 test images" in out
    for layer in ("input", "Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3"):
        assert any(line.startswith(layer + " ") for line in out.splitlines()), layer
    assert "the whole model: " in out and "chance 10%" in out and "linear read-out: multinomial logistic" in out
    assert (tmp_path / "p-classify.png").stat().st_size > 10_000 and (tmp_path / "p.png").is_file()
    code, out, _ = run_cli(capsys, *args, "--json")
    found = json.loads(out)["classify"]
    code, out, _ = run_cli(capsys, "errors", trained_run, "--limit", 200, "--data-dir", data_dir, "--json",
                           "--out", tmp_path / "e.png")
    assert found["model_accuracy"] == pytest.approx(json.loads(out)["accuracy"])
    assert found["train_images"] == 300 and found["test_images"] == 200 and found["layer"] == "Conv2D_3"
    assert np.sum(found["layers"][-1]["confusion"]["pattern"]) == 200


@pytest.mark.parametrize("extra, message", [
    (("--layer", "Conv2D_3", "--set", "train"), "error: --classify trains on the training images and tests on the "
                                                "test images: drop --set"),
    (("--layer", "Dense_1"), "error: --classify needs a layer with maps; valid: Conv2D_1, Max_Pool_1, Conv2D_2, "
                             "Max_Pool_2, Conv2D_3"),
    (("--layer", "Conv2D_3", "--train-limit", "0"), "--train-limit"),
])
def test_profile_classify_errors(trained_run, data_dir, capsys, tmp_path, extra, message):
    from conftest import run_cli

    code, _, err = run_cli(capsys, "profile", trained_run, "--classify", *extra, "--data-dir", data_dir,
                           "--out", tmp_path / "p.png")
    assert code == 2 and message in err and "Traceback" not in err
