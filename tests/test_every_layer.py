"""Every view on every layer of every preset, on untrained runs: a figure or one clear error, never a traceback
(issue 23: the output layer crashed `activations`). The output layer is drawn: logits and probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from cnnscope.base.errors import CnnscopeError
from cnnscope.model.zoo import presets
from conftest import run_cli


def _untrained_run(root, name: str, spec, data_dir):
    """A run directory at its initial weights (saved as the trained ones): no training needed to look inside."""
    import cnnscope
    from cnnscope.model.network import build_model
    from cnnscope.runs.checkpoint import init_run_dir, save_weights, start_run
    from cnnscope.runs.layout import WEIGHTS
    from cnnscope.trainer.config import RunConfig, TrainConfig

    if spec.input_shape[0] == 3:
        rng = np.random.default_rng(0)
        npz = root / "colour.npz"
        np.savez(npz, x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y_train=np.arange(40) % 10,
                 x_test=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), y_test=np.arange(30) % 10)
        dataset = cnnscope.load_dataset(f"npz:{npz}")
    else:
        dataset = cnnscope.load_dataset("mnist", data_dir=data_dir, limit_train=64, limit_test=30)
    out = init_run_dir(root / name, overwrite=True)
    model = build_model(spec, seed=0)
    start_run(out, RunConfig(spec, TrainConfig(epochs=1), dataset.config), dataset.preprocessor, model)
    save_weights(out / WEIGHTS, model)
    return out


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("untrained")
    return {name: _untrained_run(root, name, spec, data_dir) for name, spec in presets.items()}


def _views(run, layer: str, data_dir, out):
    """(name, call) of every view that takes a layer, on small settings."""
    from cnnscope.views import activations as act
    from cnnscope.views import compare, explain, patterns, profile

    kw = {"data_dir": data_dir}
    return [("activations", lambda: act.activations(run, layer, index=0, out=out / "a.png", **kw)),
            ("pre-activation", lambda: act.activations(run, layer, index=0, pre_activation=True,
                                                        out=out / "p.png", **kw)),
            ("filters", lambda: act.filters(run, layer, out=out / "f.png")),
            ("patterns", lambda: patterns.patterns(run, layer, maps="0:2", steps=2, restarts=1, out=out / "m.png",
                                                   **kw)),
            ("profile", lambda: profile.profile(run, layer, limit=20, out=out / "r.png", **kw)),
            ("top-images", lambda: profile.top_images(run, layer, 0, k=2, limit=20, out=out / "t.png", **kw)),
            ("compare", lambda: compare.compare(run, run, layer, limit=20, out=out / "c.png", **kw)),
            ("gradcam", lambda: explain.explain(run, index=0, method="gradcam", layer=layer, random_draws=1,
                                                out=out / "g.png", **kw))]


@pytest.mark.parametrize("preset", list(presets))
def test_every_view_on_every_layer_draws_or_says_why(untrained, preset, data_dir, tmp_path):
    run = untrained[preset]
    failures, drawn = [], 0
    for info in presets[preset].layers():
        for name, call in _views(run, info.name, data_dir, tmp_path):
            try:
                result = call()
                drawn += 1
                assert all(path.is_file() for path in result.paths), (info.name, name)
            except CnnscopeError as exc:  # one line, naming what is valid
                assert "\n" not in str(exc) and str(exc), (info.name, name)
            except Exception as exc:  # noqa: BLE001 - the point: collect every crash, then fail with all of them
                failures.append(f"{info.name} {name}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)
    assert drawn >= 4 * len(presets[preset].layer_names("conv"))  # the conv layers draw in most views


@pytest.mark.parametrize("preset", ["tiny", "cifar-small"])
def test_output_layer_shows_logits_and_probabilities(untrained, preset, data_dir, tmp_path, capsys):
    spec = presets[preset]
    layer = spec.output_layer_name
    out = tmp_path / "out.png"
    from cnnscope.views.activations import activations

    data = activations(untrained[preset], layer, index=3, data_dir=data_dir, out=out).to_json()
    assert len(data["logits"]) == len(data["probabilities"]) == len(data["class_names"]) == spec.num_classes
    assert sum(data["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    softmax = np.exp(data["logits"]) / np.exp(data["logits"]).sum()
    np.testing.assert_allclose(data["probabilities"], softmax, atol=1e-5)
    assert data["prediction"]["class"] == data["class_names"][int(np.argmax(data["logits"]))]
    assert out.stat().st_size > 10_000
    code, stdout, err = run_cli(capsys, "activations", untrained[preset], "--layer", layer, "--index", "3",
                                "--pre-activation", "--data-dir", data_dir, "--out", out)
    assert code == 0 and "Traceback" not in err, err  # the logits are before the softmax already
    assert f"logit {data['logits'][0]:+8.3f}  probability {data['probabilities'][0]:6.1%}" in stdout


def test_viewer_shows_every_layer(untrained, data_dir):
    """The viewer: a grid and a card for each layer with maps, units for each dense layer (the output layer's:
    logits, probabilities and class names), one clear 4xx for the others."""
    from starlette.testclient import TestClient

    from cnnscope.serve import create_app

    app = create_app(untrained["tiny"], data_dir, warm_up=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:  # the host guard answers only local names
        for layer in client.get("/api/layers").json()["layers"]:
            name = layer["name"]
            units = client.get("/api/units", params={"layer": name, "index": 2})
            grid = client.get("/api/activations", params={"layer": name, "index": 2})
            assert units.status_code < 500 and grid.status_code < 500, name
            if layer["kind"] == "dense":
                answer = units.json()
                assert units.status_code == 200 and answer["units"] == layer["output_shape"][0]
                assert answer["output"] == (name == presets["tiny"].output_layer_name)
            else:
                assert units.status_code == 400 and "units are shown for the dense layers" in units.json()["error"]
            assert (grid.status_code == 200) == layer["grid"], name
            if layer["grid"]:
                assert client.get("/api/card", params={"layer": name, "map": 0, "index": 2}).status_code == 200
        out = client.get("/api/units", params={"layer": presets["tiny"].output_layer_name, "index": 2}).json()
        assert len(out["probabilities"]) == len(out["class_names"]) == len(out["values"]) == 10
        assert sum(out["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        posted = client.post("/api/units", params={"layer": "Dense_2"},
                             json={"pixels": client.get("/api/sample", params={"index": 2}).json()["pixels"]})
        assert posted.status_code == 200 and posted.json()["values"] == out["values"]


def test_report_has_the_output_layer(untrained, data_dir, tmp_path):
    from cnnscope.report import build_report

    page = build_report(untrained["tiny"], tmp_path / "r.html", data_dir=data_dir).read_text()
    assert 'id="output"' in page and "The output layer: logits and probabilities" in page
    assert page.count('<td style="background:rgba(84,39,143,') == 10 * 10  # 10 images × 10 classes


def test_output_figure_is_readable():
    """Projector check: the output layer's figure has no text under 9 pt, a bar per class in both panels and the
    chance level."""
    from cnnscope.plots.output import output_figure
    from figure_checks import smallest_text_pt

    logits = np.linspace(-2, 3, 10)
    probs = np.exp(logits) / np.exp(logits).sum()
    fig = output_figure(np.zeros((28, 28), np.uint8), logits, probs, [str(k) for k in range(10)], layer="Dense_2",
                        true_class=3)
    assert smallest_text_pt(fig) >= 9
    bars = [len(ax.patches) for ax in fig.axes if ax.patches]
    assert bars == [10, 10]
    assert any("chance, 1/10 = 10%" in ax.get_xlabel() for ax in fig.axes)
