"""cnnscope.views: every view returns one ViewResult whose files exist and whose data matches cnnscope.inspect;
default figure names (explain --target has its own) and what the filters figure says a kernel is."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError, SpecError
from cnnscope.inspect import class_profile, map_layers, misclassified, top_images
from cnnscope.views import ViewResult
from cnnscope.views.activations import activations, all_layers, filters
from cnnscope.views.compare import compare
from cnnscope.views.explain import explain, resolve_class
from cnnscope.views.patterns import patterns
from cnnscope.views.profile import errors, profile
from cnnscope.views.profile import top_images as top_images_view

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


def _check(result, *paths) -> dict:
    """A ViewResult that wrote exactly `paths` (PNG first) and whose --json form is strict JSON."""
    assert isinstance(result, ViewResult)
    assert result.paths == list(paths) and all(p.is_file() for p in paths)
    assert paths[0].read_bytes()[:8] == PNG
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["figures"] == [str(p) for p in paths]
    return result.data


def _probs(run, raw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return run.model.probabilities(run.model(torch.from_numpy(run.preprocessor(raw[None]))))[0].numpy()


def test_activations_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "a.png"
    data = _check(activations(trained_run, "Conv2D_2", index=4, data_dir=data_dir, out=out, svg=True), out,
                  tmp_path / "a.svg")
    ds = run.dataset(data_dir)
    probs = _probs(run, ds.test_raw[4])
    assert data["source"] == "test image 4" and data["layers"] == ["Conv2D_2"]
    assert data["prediction"]["class"] == str(int(probs.argmax()))
    assert data["prediction"]["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert data["prediction"]["true_class"] == str(int(ds.test_y[4]))


def test_all_layers_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "all.png"
    data = _check(all_layers(trained_run, index=0, split="train", data_dir=data_dir, out=out), out)
    assert data["layers"] == map_layers(run.model) and data["source"] == "train image 0"


def test_views_refuse_bad_options_before_loading_the_run(tmp_path):
    missing = tmp_path / "no-run"  # not read: the options fail first
    with pytest.raises(ConfigError, match="clip must be a percentile"):
        activations(missing, "Conv2D_1", index=0, clip=0)
    with pytest.raises(ConfigError, match="unknown colour map 'nope'"):
        all_layers(missing, index=0, cmap="nope")
    with pytest.raises(ConfigError, match="unknown method 'lime'"):
        explain(missing, index=0, method="lime")
    with pytest.raises(ConfigError, match="unknown profile norm 'x'"):
        profile(missing, "Conv2D_1", norm="x")


@pytest.mark.parametrize("layer, channel, words", [
    ("Conv2D_1", None, "each kernel as it sees the input image (one channel)"),
    ("Conv2D_2", 1, "each kernel as it sees input channel 1 of 6"),
    ("Conv2D_2", None, "each filter's kernel on its strongest of 6 input channels"),
])
def test_filters_view_says_what_a_kernel_shows(run, trained_run, tmp_path, monkeypatch, layer, channel, words):
    import cnnscope.views.activations as module

    texts = []
    draw = module.filters_figure

    def spy(found, **kwargs):
        fig = draw(found, **kwargs)
        texts.extend(t.get_text() for t in fig.texts)
        return fig

    monkeypatch.setattr(module, "filters_figure", spy)
    out = tmp_path / "f.png"
    data = _check(filters(trained_run, layer, channel=channel, out=out), out)
    assert data["layer"] == layer and data["filters"] == run.model.layer(layer).conv.out_channels
    assert any(text.startswith(words) for text in texts), texts
    assert not any("the kernel on the input image" in text for text in texts)


def test_explain_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "e.png"
    data = _check(explain(trained_run, index=3, method="saliency", target="7", data_dir=data_dir, out=out), out)
    probs = _probs(run, run.dataset(data_dir).test_raw[3])
    assert data["predicted"]["index"] == int(probs.argmax())
    assert data["target"] == {"class": "7", "index": 7, "probability": pytest.approx(float(probs[7]), rel=1e-5)}
    assert data["methods"] == [{"method": "saliency", "layer": None, "deletion": data["deletion"]}]
    assert resolve_class("7", [str(k) for k in range(10)]) == 7


def test_explain_target_gets_its_own_default_file(trained_run, data_dir, tmp_path):
    """explain --target C must not overwrite the predicted class's figure: the target is in the file name."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    plain = explain(copy, index=0, method="saliency", data_dir=data_dir)
    target = explain(copy, index=0, method="saliency", target=3, data_dir=data_dir)
    by_name = explain(copy, index=0, method="saliency", target="3", data_dir=data_dir)
    assert plain.paths == [copy / "explain-saliency-test-image-0.png"]
    assert target.paths == by_name.paths == [copy / "explain-saliency-test-image-0-target3.png"]
    assert plain.paths[0].is_file() and target.paths[0].is_file()


def test_profile_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "p.png"
    data = _check(profile(trained_run, "Conv2D_3", limit=100, data_dir=data_dir, out=out), out)
    ds = run.dataset(data_dir)
    expected = class_profile(run.model, "Conv2D_3", ds.test_x[:100], ds.test_y[:100])
    np.testing.assert_allclose(np.array(data["profile"], np.float64), expected, atol=2e-6)
    assert data["images"] == 100 and data["maps"] == 16


def test_top_images_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "t.png"
    data = _check(top_images_view(trained_run, "Conv2D_2", 3, k=4, limit=100, data_dir=data_dir, out=out), out)
    ds = run.dataset(data_dir)
    expected = top_images(run.model, "Conv2D_2", 3, ds.test_x[:100], 4)
    assert [item["index"] for item in data["images"]] == expected.indices.tolist()
    assert [item["class"] for item in data["images"]] == [str(int(y)) for y in ds.test_y[expected.indices]]
    assert data["searched"] == 100 and data["set"] == "test"


def test_errors_view(run, trained_run, data_dir, tmp_path):
    out = tmp_path / "err.png"
    data = _check(errors(trained_run, max_images=3, limit=120, data_dir=data_dir, out=out), out)
    ds = run.dataset(data_dir)
    expected = misclassified(run.model, ds.test_x[:120], ds.test_y[:120])
    assert data["errors"] == len(expected.indices) and data["shown"] == min(3, len(expected.indices))
    assert data["images"] == 120


def test_compare_view(trained_run, data_dir, tmp_path):
    out = tmp_path / "c.png"
    data = _check(compare(trained_run, trained_run, "Conv2D_1", limit=40, index=2, pairs=4, kernels=False,
                          data_dir=data_dir, out=out), out)
    assert data["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
    assert data["images"] == 40 and data["example_index"] == 2 and "correlation" not in data


def test_patterns_view(trained_run, data_dir, tmp_path):
    out = tmp_path / "pat.png"
    data = _check(patterns(trained_run, "Conv2D_1", maps="0:2", steps=3, restarts=1, data_dir=data_dir, out=out),
                  out)
    assert [row["map"] for row in data["maps"]] == [0, 1] and data["test_images"] == 300
    with pytest.raises(SpecError, match="unknown layer 'Conv9'"):
        patterns(trained_run, "Conv9", data_dir=data_dir, out=out)
