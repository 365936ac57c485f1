"""ONNX export: onnxruntime's outputs equal PyTorch's, dynamic batch, named layer outputs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError, RunError
from cnnscope.cli import main
from cnnscope.inspect import activations
from cnnscope.interop.onnx import export_onnx

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'cnnscope[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'cnnscope[onnx]')")

KERAS = Path(__file__).parent / "fixtures" / "keras"


@pytest.fixture(scope="module")
def images(data_dir, trained_run):
    return cnnscope.load_run(trained_run).dataset(data_dir).test_x[:7]  # (7, 1, 28, 28) preprocessed


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset", [17, 20])
def test_onnxruntime_equals_pytorch_for_any_batch(trained_run, images, tmp_path, opset):
    run = cnnscope.load_run(trained_run)
    info = export_onnx(trained_run, tmp_path / "model.onnx", opset=opset)
    assert info["outputs"] == ["probabilities", "logits"] and info["opset"] == opset
    session = _session(tmp_path / "model.onnx")
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    for n in (1, 7):
        probs, logits = session.run(None, {"input": images[:n]})
        with torch.no_grad():
            expected = run.model(torch.from_numpy(images[:n]))
        assert logits.shape == (n, 10)
        np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(probs, run.model.probabilities(expected).numpy(), rtol=1e-5, atol=1e-5)
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert model.opset_import[0].version == opset
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["cnnscope.preprocess"])["kind"] == run.preprocessor.kind
    assert json.loads(meta["cnnscope.layers"]) == run.model.layer_names
    assert json.loads(meta["cnnscope.class_names"])[:2] == ["0", "1"]


def test_with_layers_outputs_match_activations(trained_run, images, tmp_path):
    run = cnnscope.load_run(trained_run)
    info = export_onnx(run, tmp_path / "layers.onnx", with_layers=True)
    assert info["outputs"] == ["probabilities", "logits", *run.model.layer_names]
    session = _session(tmp_path / "layers.onnx")
    assert [o.name for o in session.get_outputs()] == info["outputs"]
    assert not run.model.training  # export leaves the model as it found it
    for n in (1, 7):
        outputs = dict(zip(info["outputs"], session.run(None, {"input": images[:n]}), strict=True))
        for name in run.model.layer_names:
            np.testing.assert_allclose(outputs[name], activations(run.model, name, images[:n]), rtol=1e-5, atol=1e-5,
                                       err_msg=name)
        np.testing.assert_allclose(outputs[run.model.layer_names[-1]], outputs["logits"], rtol=0, atol=0)


def test_imported_keras_model_exports_same_padding_and_average_pools(tmp_path, data_dir):
    """'same' padding (an explicit pad), strides, average pooling and dropout survive the export."""
    x = np.load(KERAS / "inputs.npy")[:, None]
    for fname in ("padding_strides.keras", "avg_pool.keras", "dropout.keras"):
        run = cnnscope.import_keras(KERAS / "keras3" / fname, tmp_path / fname, data_dir=data_dir)
        export_onnx(run, tmp_path / f"{fname}.onnx", with_layers=True)
        names = ["probabilities", "logits", *run.model.layer_names]
        outputs = dict(zip(names, _session(tmp_path / f"{fname}.onnx").run(None, {"input": x}), strict=True))
        keras_probs = np.load(KERAS / "keras3" / fname.replace(".keras", ".out.npy"))
        np.testing.assert_allclose(outputs["probabilities"], keras_probs, rtol=1e-5, atol=1e-5)
        for name in run.model.layer_names:
            np.testing.assert_allclose(outputs[name], activations(run.model, name, x), rtol=1e-5, atol=1e-5)


def test_export_errors(trained_run, tmp_path):
    with pytest.raises(ConfigError, match="opset must be an integer from 17 to 20, received 16"):
        export_onnx(trained_run, tmp_path / "m.onnx", opset=16)
    with pytest.raises(RunError, match="is a directory"):
        export_onnx(trained_run, tmp_path)
    with pytest.raises(RunError, match="run directory not found"):
        export_onnx(tmp_path / "missing", tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))  # nothing half-written


def test_export_overwrites_atomically(trained_run, tmp_path):
    target = tmp_path / "sub" / "m.onnx"
    export_onnx(trained_run, target)
    first = target.read_bytes()
    export_onnx(trained_run, target, with_layers=True)
    assert target.read_bytes() != first
    assert [p.name for p in target.parent.iterdir()] == ["m.onnx"]


def test_cli_export(trained_run, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--onnx", str(target), "--with-layers"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {target} (ONNX opset 17" in out
    assert "outputs: probabilities, logits, Conv2D_1, Max_Pool_1" in out
    assert main(["export", str(trained_run), "--onnx", str(target), "--opset", "18", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["opset"] == 18 and info["outputs"] == ["probabilities", "logits"]
    assert main(["export", str(trained_run), "--onnx", str(target), "--opset", "12"]) == 2
    assert capsys.readouterr().err == "error: opset must be an integer from 17 to 20, received 12\n"
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(target)]) == 2
    assert "error: run directory not found" in capsys.readouterr().err
