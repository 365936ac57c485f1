"""Keras import: fixtures made with real Keras 2 (TF 2.15) and Keras 3 (tests/fixtures/keras/make_fixtures.py)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.cli import main
from cnnscope.inspect import activations
from cnnscope.interop.keras.importer import KerasImportError, import_keras, read_keras_file, translate
from cnnscope.model.summary import summary_dict

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
INPUTS = np.load(FIXTURES / "inputs.npy")[:, None]  # (6, 1, 28, 28) float32, what Keras saw as (6, 28, 28, 1)
MANIFESTS = {gen: json.loads((FIXTURES / gen / "manifest.json").read_text()) for gen in ("keras2", "keras3")}


def _cases(supported: bool = True):
    for gen, manifest in MANIFESTS.items():
        for name, entry in manifest["models"].items():
            if ("unsupported" in entry) != supported:
                for fname in entry["files"]:
                    yield pytest.param(gen, name, fname, id=f"{gen}/{fname}")


def _import(tmp_path, data_dir, path, **kwargs):
    return import_keras(path, tmp_path / "run", data_dir=data_dir, **kwargs)


def _softmax(x: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(x), dim=1).numpy()


def test_fixtures_cover_both_generations_and_formats():
    assert MANIFESTS["keras2"]["keras_version"].startswith("2.")
    assert MANIFESTS["keras3"]["keras_version"].startswith("3.")
    suffixes = {(gen, Path(f).suffix) for gen, m in MANIFESTS.items() for e in m["models"].values() for f in e["files"]}
    assert suffixes == {("keras2", ".h5"), ("keras2", ".keras"), ("keras3", ".h5"), ("keras3", ".keras")}


@pytest.mark.parametrize("gen,name,fname", list(_cases()))
def test_predictions_equal_keras(gen, name, fname, tmp_path, data_dir):
    entry = MANIFESTS[gen]["models"][name]
    run = _import(tmp_path, data_dir, FIXTURES / gen / fname)
    with torch.no_grad():
        logits = run.model(torch.from_numpy(INPUTS))
    ours = (logits if entry["output"] == "logits" else run.model.probabilities(logits)).numpy()
    expected = np.load(FIXTURES / gen / entry["out"])
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # Names are kept and in order; only folded activations, InputLayers and ignored dropout disappear.
    names = run.model.layer_names
    assert set(names) <= set(entry["layers"])
    assert names == [n for n in entry["layers"] if n in set(names)]
    assert run.spec.dropout == entry.get("dropout", run.spec.dropout)
    assert run.metrics["status"] == "imported"
    assert run.metrics["keras_version"] == MANIFESTS[gen]["keras_version"]
    assert run.metrics["keras_output"] == entry["output"]


@pytest.mark.parametrize("gen,name,fname", [c for c in _cases() if "layers_npz" in
                                            MANIFESTS[c.values[0]]["models"][c.values[1]]])
def test_every_layer_equals_keras(gen, name, fname, tmp_path, data_dir):
    """Each named layer's output equals Keras' (conv maps channels-first, flatten in our C, H, W order)."""
    entry = MANIFESTS[gen]["models"][name]
    run = _import(tmp_path, data_dir, FIXTURES / gen / fname)
    keras_outputs = np.load(FIXTURES / gen / entry["layers_npz"])
    x = INPUTS[:3]
    infos = run.spec.layers()
    compared = 0
    for i, info in enumerate(infos):
        keras_name = entry.get("compare", {}).get(info.name, info.name)
        if keras_name not in keras_outputs.files:
            continue
        ours, theirs = activations(run.model, info.name, x), keras_outputs[keras_name]
        if theirs.ndim == 4:
            theirs = theirs.transpose(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)
        elif info.type in ("Flatten", "Dropout") and infos[i - 1].type in ("Flatten", "Conv2D", "MaxPooling2D",
                                                                           "AveragePooling2D"):
            c, h, w = (infos[i - 1] if infos[i - 1].type != "Flatten" else infos[i - 2]).output_shape
            theirs = theirs.reshape(len(x), h, w, c).transpose(0, 3, 1, 2).reshape(len(x), -1)
        if keras_name == entry["layers"][-1] and entry["output"] == "probabilities":
            ours = _softmax(ours)  # Keras' last layer returns probabilities; our output layer returns logits
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5, err_msg=info.name)
        compared += 1
    assert compared >= len([i for i in infos if i.type != "Dropout"]) - 1


@pytest.mark.parametrize("gen,fname", [("keras2", "seed_ii.h5"), ("keras3", "seed_ii.keras"),
                                       ("keras2", "seed_iv.h5"), ("keras3", "seed_iv.keras")])
def test_series_presets_import_as_our_presets(gen, fname, tmp_path, data_dir):
    run = _import(tmp_path, data_dir, FIXTURES / gen / fname)
    preset = cnnscope.presets["seed-ii" if "seed_ii" in fname else "seed-iv"]
    assert run.spec.total_params == (96_844 if "seed_ii" in fname else 208_982)
    assert summary_dict(run.spec) == summary_dict(preset)  # names, shapes, params, receptive fields, L2 0.001
    assert f"Total params: {run.spec.total_params:,}" in cnnscope.summary_table(run.spec)


@pytest.mark.parametrize("gen,name,fname", list(_cases(supported=False)))
def test_unsupported_model_fails_naming_the_layer(gen, name, fname, tmp_path, data_dir):
    layer = MANIFESTS[gen]["models"][name]["unsupported"]
    with pytest.raises(KerasImportError) as err:
        _import(tmp_path, data_dir, FIXTURES / gen / fname)
    message = str(err.value)
    assert "\n" not in message
    assert f"layer {layer!r}" in message
    assert ("BatchNormalization" if name == "batchnorm" else "branching graphs are not supported") in message
    assert not (tmp_path / "run").exists()  # nothing written


# --- settings cnnscope cannot express, made by editing a real file's config -----------------------------
def _edit_h5(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as fh:
        config = json.loads(fh.attrs["model_config"])
        edit(config["config"]["layers"])
        fh.attrs["model_config"] = json.dumps(config)
    return dst


def _set(index: int, **values):
    return lambda layers: layers[index]["config"].update(values)


def _insert(index: int, class_name: str, **config):
    return lambda layers: layers.insert(index, {"class_name": class_name, "config": config})


@pytest.mark.parametrize("edit,expected", [
    (_set(1, data_format="channels_first"), "layer 'conv_same' (Conv2D): data_format=channels_first is not supported"),
    (_set(2, dilation_rate=[2, 2]), "layer 'conv_valid' (Conv2D): dilation_rate=[2, 2] is not supported"),
    (_set(2, groups=2), "layer 'conv_valid' (Conv2D): groups=2 is not supported"),
    (_set(3, padding="same"), "layer 'pool_overlap' (MaxPooling2D): padding='same' is not supported for pooling"),
    (_set(1, activation="swish"), "layer 'conv_same' (Conv2D): activation 'swish' is not supported"),
    (_set(7, activation="softmax"), "layer 'hidden' (Dense): activation 'softmax' is only supported on the output"),
    (_set(8, activation="relu"), "layer 'out' (Dense): output activation 'relu' is not supported"),
    (_insert(2, "Activation", name="extra", activation="tanh"),
     "layer 'extra' (Activation): cannot fold this activation into the layer before it ('conv_same' already "
     "applies 'elu')"),
    (_insert(1, "MaxPooling2D", name="early_pool", pool_size=[2, 2]),
     "layer 'early_pool' (MaxPooling2D): a pooling layer must directly follow a Conv2D"),
    (_insert(2, "MaxPooling2D", name="extra_pool", pool_size=[2, 2]),  # fits our spec, not the saved weights
     "layer 'hidden' kernel (dataset '/model_weights/hidden/hidden/kernel:0') has shape (24, 12), expected (4, 12)"),
    (_insert(4, "MaxPooling2D", name="pool_twice", pool_size=[1, 1]),
     "layer 'pool_twice' (MaxPooling2D): a pooling layer must directly follow a Conv2D"),
    (_insert(6, "Dense", name="dense_early", units=3), "layer 'dense_early' (Dense): a Dense layer before Flatten"),
    (_set(0, batch_input_shape=[None, 32, 32, 3]), "input shape (32, 32, 3) is not supported"),
    (_insert(1, "Rescaling", name="scale", scale=0.5), "layer 'scale' (Rescaling): unsupported layer type"),
    (_set(1, name="conv same"), "layer name 'conv same' is invalid"),
    (_set(5, data_format="channels_first"), "layer 'conv_even' (Conv2D): data_format=channels_first"),
    (lambda layers: layers.__setitem__(6, {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}}),
     "layer 'gap' (GlobalAveragePooling2D): unsupported layer type"),
])
def test_unsupported_setting_is_one_clear_line(edit, expected, tmp_path, data_dir):
    path = _edit_h5(FIXTURES / "keras2" / "padding_strides.h5", tmp_path / "edited.h5", edit)
    with pytest.raises(KerasImportError) as err:
        _import(tmp_path, data_dir, path)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("edited.h5: ")
    assert expected in str(err.value)


def test_activation_across_pooling(tmp_path, data_dir):
    """A relu after a max-pool folds into the conv (they commute); after an average pool it cannot."""
    def edit(kind):
        def apply(layers):
            layers[1]["config"]["activation"] = "linear"  # c1
            if kind == "max":
                layers[2]["class_name"] = "MaxPooling2D"
            layers.insert(3, {"class_name": "Activation", "config": {"name": "late_relu", "activation": "relu"}})
        return apply

    path = _edit_h5(FIXTURES / "keras2" / "avg_pool.h5", tmp_path / "max.h5", edit("max"))
    spec = translate(read_keras_file(path).config).spec
    assert spec.conv[0].activation == "relu" and spec.conv[0].pool.kind == "max"
    path = _edit_h5(FIXTURES / "keras2" / "avg_pool.h5", tmp_path / "avg.h5", edit("average"))
    with pytest.raises(KerasImportError, match="AveragePooling2D comes between it and 'c1'"):
        translate(read_keras_file(path).config)


def test_regularizers_map_when_our_spec_can_hold_them(tmp_path):
    def with_regs(dense, conv=None):
        def apply(layers):
            for layer in layers:
                if layer["class_name"] == "Dense":
                    layer["config"]["kernel_regularizer"] = dense
                if layer["class_name"] == "Conv2D":
                    layer["config"]["kernel_regularizer"] = conv
        return apply

    l1 = {"class_name": "L1", "config": {"l1": 0.0005}}
    src = FIXTURES / "keras2" / "dropout.h5"
    spec = translate(read_keras_file(_edit_h5(src, tmp_path / "a.h5", with_regs(l1))).config).spec
    assert (spec.regularizer.kind, spec.regularizer.coefficient, spec.regularizer.conv) == ("l1", 0.0005, False)
    spec = translate(read_keras_file(_edit_h5(src, tmp_path / "b.h5", with_regs(l1, l1))).config).spec
    assert spec.regularizer.conv is True
    both = {"class_name": "L1L2", "config": {"l1": 0.001, "l2": 0.001}}
    spec = translate(read_keras_file(_edit_h5(src, tmp_path / "c.h5", with_regs(both))).config).spec
    assert spec.regularizer.kind == "none"  # not expressible: dropped (training-only) with a note


def test_use_bias_false_imports_with_zero_bias(tmp_path, data_dir):
    src = FIXTURES / "keras2" / "logits.h5"
    original = import_keras(src, tmp_path / "original", data_dir=data_dir)
    path = tmp_path / "nobias.h5"
    shutil.copy(src, path)
    with h5py.File(path, "r+") as fh:
        config = json.loads(fh.attrs["model_config"])
        config["config"]["layers"][1]["config"]["use_bias"] = False  # conv
        fh.attrs["model_config"] = json.dumps(config)
        group = fh["model_weights/conv"]
        names = [n for n in group.attrs["weight_names"] if b"bias" not in (n if isinstance(n, bytes) else n.encode())]
        group.attrs["weight_names"] = names
    run = import_keras(path, tmp_path / "nobias", data_dir=data_dir)
    assert not run.model.layer("conv").conv.bias.detach().any()
    with torch.no_grad():
        original.model.layer("conv").conv.bias.zero_()
        x = torch.from_numpy(INPUTS)
        torch.testing.assert_close(run.model(x), original.model(x))


def test_ignored_dropout_is_logged(tmp_path, data_dir, caplog):
    with caplog.at_level("INFO", logger="cnnscope"):
        run = _import(tmp_path, data_dir, FIXTURES / "keras3" / "dropout_conv.keras")
    assert run.spec.dropout == 0
    assert "dropout ignored (drop_conv, drop_hidden)" in caplog.text
    assert any("dropout ignored" in note for note in run.metrics["notes"])


# --- files that are not Keras models ------------------------------------------------------------------
def test_files_that_are_not_keras_models(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as fh:
        fh["x"] = np.zeros(3)
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as fh:
        fh.attrs["layer_names"] = [b"conv"]
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    saved_model = tmp_path / "saved"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"")
    cases = {text: "is not a Keras model: neither an HDF5 (.h5) file nor a .keras zip archive",
             bare: "is not a Keras model: HDF5 file without a 'model_config' attribute",
             weights_only: "holds only weights (saved with model.save_weights)",
             archive: "is not a Keras model: a zip archive without config.json",
             saved_model: "is a TensorFlow SavedModel directory, not a Keras model file",
             tmp_path / "missing.h5": "file not found"}
    for path, expected in cases.items():
        with pytest.raises(KerasImportError) as err:
            read_keras_file(path)
        assert expected in str(err.value) and "\n" not in str(err.value)


# --- the run directory ----------------------------------------------------------------------------------
def test_imported_run_works_with_inspection(tmp_path, data_dir):
    out = tmp_path / "run"
    import_keras(FIXTURES / "keras2" / "seed_iv.h5", out, preprocess="unit", data_dir=data_dir)
    files = {p.name for p in out.iterdir()}
    assert {"config.toml", "model.safetensors", "initial.safetensors", "preprocess.json", "metrics.json"} <= files
    assert "history.json" not in files
    run = cnnscope.load_run(out)
    assert run.preprocessor.kind == "unit" and run.data_config.preprocess == "unit"
    assert run.history == {}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "imported" and metrics["keras_version"] == "2.15.0"
    assert metrics["source"].endswith("seed_iv.h5")
    ds = run.dataset()
    maps = activations(run.model, "Conv2D_2", ds.test_x[:2])
    assert maps.shape == (2, 64, 11, 11)
    probs = run.predict(ds.test_raw[:5])
    assert probs.shape == (5, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # The unit preprocessing is raw/255: the imported model sees exactly what Keras saw for those pixels.
    np.testing.assert_allclose(run.preprocessor(ds.test_raw[:2]), ds.test_raw[:2, None] / 255.0, atol=1e-7)
    with pytest.raises(cnnscope.RunError, match="already holds a run"):
        import_keras(FIXTURES / "keras2" / "seed_iv.h5", out, data_dir=data_dir)
    run.reset_weights()  # initial.safetensors holds the imported weights too
    torch.testing.assert_close(run.model.layer("Dense_2").weight, cnnscope.load_run(out).model.layer("Dense_2").weight)


def test_cli_import_keras(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert main(["import-keras", str(FIXTURES / "keras3" / "seed_ii.keras"), "--out", str(out),
                 "--data-dir", str(data_dir), "--dataset", "fashion-mnist"]) == 0
    stdout = capsys.readouterr().out
    assert "(Keras 3.15.1, .keras): 8 layers, 96,844 parameters" in stdout
    assert f"run directory: {out}" in stdout
    assert cnnscope.load_run(out).data_config.dataset == "fashion-mnist"
    assert main(["summary", str(out)]) == 0
    assert "Total params: 96,844" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json", "--out", str(tmp_path / "confusion.png")]) == 0
    assert json.loads(capsys.readouterr().out)["test_images"] == 300

    assert main(["import-keras", str(FIXTURES / "keras3" / "seed_ii.keras"), "--out", str(out),
                 "--data-dir", str(data_dir)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["import-keras", str(FIXTURES / "keras3" / "seed_ii.keras"), "--out", str(out), "--overwrite",
                 "--data-dir", str(data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 96_844


@pytest.mark.parametrize("args,expected", [
    (["keras2/batchnorm.h5"], "error: batchnorm.h5: layer 'bn' (BatchNormalization): it comes after the activation "
                              "of 'conv' (relu); cnnscope supports Conv2D/Dense (no activation) -> BatchNormalization"),
    (["keras2/seed_ii.h5", "--preprocess", "zscore"],
     "error: unknown preprocess 'zscore'; valid: standard, standard-floor, standard-clip, global, channel, unit"),
    (["keras2/seed_ii.h5", "--dataset", "cifar"], "error: unknown dataset 'cifar'; valid: mnist, fashion-mnist"),
    (["keras2/missing.h5"], "error: file not found"),
])
def test_cli_import_keras_errors(args, expected, tmp_path, data_dir, capsys):
    argv = ["import-keras", str(FIXTURES / args[0]), *args[1:], "--out", str(tmp_path / "r"), "--data-dir",
            str(data_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


# --- BatchNormalization: files written here in Keras' own layouts, checked against numpy -------------------
def _bn_layers():
    """Input 28×28×1 -> conv(3, 3×3, stride 3) -> BN -> ReLU -> max pool 3 -> flatten -> dense 5 -> BN (no
    beta) -> tanh -> dense 10 softmax, as a Keras 2 layer list."""
    return [
        {"class_name": "InputLayer", "config": {"name": "image", "batch_input_shape": [None, 28, 28, 1]}},
        {"class_name": "Conv2D", "config": {"name": "conv", "filters": 3, "kernel_size": [3, 3], "strides": [3, 3],
                                            "padding": "valid", "activation": "linear", "use_bias": True}},
        {"class_name": "BatchNormalization", "config": {"name": "bn1", "axis": [3], "momentum": 0.99,
                                                        "epsilon": 0.001, "center": True, "scale": True}},
        {"class_name": "ReLU", "config": {"name": "act1"}},
        {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [3, 3]}},
        {"class_name": "Flatten", "config": {"name": "flat"}},
        {"class_name": "Dense", "config": {"name": "hidden", "units": 5, "activation": "linear"}},
        {"class_name": "BatchNormalization", "config": {"name": "bn2", "axis": -1, "momentum": 0.9, "epsilon": 0.01,
                                                        "center": False, "scale": True}},
        {"class_name": "Activation", "config": {"name": "act2", "activation": "tanh"}},
        {"class_name": "Dense", "config": {"name": "out", "units": 10, "activation": "softmax"}},
    ]


def _bn_weights(seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.5):
        return rng.normal(0, scale, shape).astype(np.float32)

    return {"conv": [("kernel", normal(3, 3, 1, 3)), ("bias", normal(3))],
            "bn1": [("gamma", normal(3) + 1), ("beta", normal(3)), ("moving_mean", normal(3)),
                    ("moving_variance", rng.uniform(0.5, 2, 3).astype(np.float32))],
            "hidden": [("kernel", normal(27, 5)), ("bias", normal(5))],
            "bn2": [("gamma", normal(5) + 1), ("moving_mean", normal(5)),
                    ("moving_variance", rng.uniform(0.5, 2, 5).astype(np.float32))],
            "out": [("kernel", normal(5, 10)), ("bias", normal(10))]}


def _write_keras2(path, layers, weights):
    with h5py.File(path, "w") as fh:
        fh.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": layers}})
        fh.attrs["keras_version"], fh.attrs["backend"] = "2.15.0", "tensorflow"
        root = fh.create_group("model_weights")
        root.attrs["layer_names"] = [layer["config"]["name"].encode() for layer in layers[1:]]
        for name, arrays in weights.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{what}:0".encode() for what, _ in arrays]
            for what, array in arrays:
                group[f"{name}/{what}:0"] = array
    return path


def _write_keras3(path, layers, weights):
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": layer["class_name"], "name": layer["config"]["name"], "config": layer["config"]}
        for layer in layers]}}
    config["config"]["layers"][0]["config"] = {"name": "image", "batch_shape": [None, 28, 28, 1]}
    blob = tmp = path.with_suffix(".weights.h5")
    with h5py.File(tmp, "w") as fh:
        for i, (name, arrays) in enumerate(weights.items()):
            group = fh.create_group(f"layers/layer_{i}/vars")
            group.attrs["name"] = name
            for k, (_, array) in enumerate(arrays):
                group[str(k)] = array
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "backend": "tensorflow"}))
        zf.write(blob, "model.weights.h5")
    return path


def _bn_reference(x_nchw, weights):
    """The model of _bn_layers in numpy, Keras' way (NHWC, HWC flatten)."""
    w = {name: dict(arrays) for name, arrays in weights.items()}
    x = x_nchw.transpose(0, 2, 3, 1).astype(np.float64)
    patches = x[:, :27, :27].reshape(len(x), 9, 3, 9, 3, 1).transpose(0, 1, 3, 2, 4, 5)  # (n, 9, 9, 3, 3, 1)
    y = np.einsum("nijabc,abcf->nijf", patches, w["conv"]["kernel"]) + w["conv"]["bias"]
    b = w["bn1"]
    y = (y - b["moving_mean"]) / np.sqrt(b["moving_variance"] + 0.001) * b["gamma"] + b["beta"]
    y = np.maximum(y, 0).reshape(len(x), 3, 3, 3, 3, 3).max(axis=(2, 4))  # 3×3 max pool -> (n, 3, 3, 3)
    h = y.reshape(len(x), -1) @ w["hidden"]["kernel"] + w["hidden"]["bias"]
    b = w["bn2"]
    h = np.tanh((h - b["moving_mean"]) / np.sqrt(b["moving_variance"] + 0.01) * b["gamma"])
    logits = h @ w["out"]["kernel"] + w["out"]["bias"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("writer", [_write_keras2, _write_keras3])
def test_batch_norm_imports_into_its_layer_and_equals_numpy(writer, tmp_path, data_dir):
    from cnnscope.model.spec import BatchNormSpec

    weights = _bn_weights()
    path = writer(tmp_path / ("bn.h5" if writer is _write_keras2 else "bn.keras"), _bn_layers(), weights)
    run = _import(tmp_path, data_dir, path)
    assert run.model.layer_names == ["conv", "pool", "flat", "hidden", "out"]
    assert run.spec.conv[0].batch_norm == BatchNormSpec(epsilon=0.001, momentum=0.01)  # Keras 0.99 -> 0.01
    assert run.spec.conv[0].activation == "relu" and run.spec.dense[0].activation == "tanh"
    assert run.spec.dense[0].batch_norm == BatchNormSpec(epsilon=0.01, momentum=0.1, center=False)
    with torch.no_grad():
        ours = run.model.probabilities(run.model(torch.from_numpy(INPUTS))).numpy()
    np.testing.assert_allclose(ours, _bn_reference(INPUTS, weights), rtol=0, atol=1e-5)
    bn = run.model.layer("conv").bn  # the saved run holds the running statistics
    np.testing.assert_array_equal(bn.running_var.numpy(), weights["bn1"][3][1])
    assert run.model.layer("hidden").bn.bias is None
    summary = summary_dict(run.spec)
    assert summary["non_trainable_params"] == 2 * 3 + 2 * 5
    assert (summary["total_params"], summary["trainable_params"]) == (30 + 12 + 140 + 15 + 60, 257 - 16)
    assert any("folded BatchNormalization layer 'bn1' into 'conv'" in note for note in run.metrics["notes"])


def test_a_real_keras_batch_norm_file_imports_once_the_activation_follows_it(tmp_path, data_dir):
    """keras2/batchnorm.h5 (real Keras 2.15) puts its BN after conv's relu; moved before it, it imports exactly."""
    def edit(layers):
        layers[1]["config"]["activation"] = "linear"
        layers.insert(3, {"class_name": "Activation", "config": {"name": "relu", "activation": "relu"}})

    path = _edit_h5(FIXTURES / "keras2" / "batchnorm.h5", tmp_path / "bn.h5", edit)
    rng = np.random.default_rng(1)
    with h5py.File(path, "r+") as fh:
        group = fh["model_weights/bn/bn"]
        stats = {k: rng.uniform(0.5, 1.5, 4).astype(np.float32) for k in ("gamma:0", "beta:0", "moving_mean:0",
                                                                         "moving_variance:0")}
        for key, value in stats.items():
            group[key][...] = value
        kernel, bias = fh["model_weights/conv/conv/kernel:0"][()], fh["model_weights/conv/conv/bias:0"][()]
        dense_k, dense_b = fh["model_weights/out/out/kernel:0"][()], fh["model_weights/out/out/bias:0"][()]
    run = _import(tmp_path, data_dir, path)
    x = INPUTS.transpose(0, 2, 3, 1).astype(np.float64)  # NHWC
    patches = x[:, :27, :27].reshape(len(x), 9, 3, 9, 3, 1).transpose(0, 1, 3, 2, 4, 5)
    y = np.einsum("nijabc,abcf->nijf", patches, kernel) + bias
    y = (y - stats["moving_mean:0"]) / np.sqrt(stats["moving_variance:0"] + 0.001) * stats["gamma:0"] + stats["beta:0"]
    logits = np.maximum(y, 0).reshape(len(x), -1) @ dense_k + dense_b
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    with torch.no_grad():
        ours = run.model.probabilities(run.model(torch.from_numpy(INPUTS))).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("edit,expected", [
    (lambda ls: ls[1]["config"].update(activation="relu"),
     "layer 'bn1' (BatchNormalization): it comes after the activation of 'conv' (relu); cnnscope supports "
     "Conv2D/Dense (no activation) -> BatchNormalization -> activation"),
    (lambda ls: ls[2]["config"].update(axis=[1]), "layer 'bn1' (BatchNormalization): axis=[1] is not supported; "
                                                  "cnnscope normalises the channels axis only (-1)"),
    (lambda ls: ls[7]["config"].update(axis=[2]), "layer 'bn2' (BatchNormalization): axis=[2] is not supported"),
    (lambda ls: ls.insert(4, ls.pop(2)), "layer 'bn1' (BatchNormalization): it follows MaxPooling2D 'pool'"),
    (lambda ls: ls.insert(6, dict(ls[7], config=dict(ls[7]["config"], name="bn0"))),
     "layer 'bn0' (BatchNormalization): it follows Flatten 'flat'"),
    (lambda ls: ls.insert(1, ls.pop(2)), "layer 'bn1' (BatchNormalization): it follows InputLayer 'image'"),
    (lambda ls: (ls[-1]["config"].update(activation="linear"),
                 ls.append({"class_name": "BatchNormalization", "config": {"name": "bn_out"}}),
                 ls.append({"class_name": "Softmax", "config": {"name": "soft"}})),
     "layer 'bn_out' (BatchNormalization): batch norm on the output layer 'out' is not supported"),
    (lambda ls: ls[2]["config"].update(renorm=True), "layer 'bn1' (BatchNormalization): renorm=True is not supported"),
    (lambda ls: ls[2]["config"].update(momentum=1.5), "momentum must be in [0, 1) and epsilon > 0, found "
                                                      "momentum=1.5, epsilon=0.001"),
    (lambda ls: ls[2]["config"].update(epsilon="small"), "found momentum=0.99, epsilon='small'"),
])
def test_batch_norm_cnnscope_cannot_hold_is_one_clear_line(edit, expected):
    layers = _bn_layers()
    edit(layers)
    with pytest.raises(KerasImportError) as err:
        translate({"class_name": "Sequential", "config": {"name": "m", "layers": layers}}, "bn.h5")
    assert "\n" not in str(err.value) and str(err.value).startswith("bn.h5: ")
    assert expected in str(err.value)


def test_real_keras_batch_norm_after_the_activation_is_refused(tmp_path, data_dir, capsys):
    with pytest.raises(KerasImportError, match=r"^batchnorm.keras: layer 'bn' \(BatchNormalization\): it comes "
                                               r"after the activation of 'conv' \(relu\)"):
        _import(tmp_path, data_dir, FIXTURES / "keras3" / "batchnorm.keras")


@pytest.mark.parametrize("damage,expected", [
    (lambda w: w["bn1"][3][1].__setitem__(0, -1.0), "bn.h5: layer 'bn1' moving_variance holds negative values"),
    (lambda w: w.pop("bn2"), "bn.h5: weights for layer 'bn2' are missing or incomplete (none, expected gamma and "
                             "moving_mean and moving_variance)"),
    (lambda w: w.__setitem__("bn1", w["bn1"][:3]), "bn.h5: weights for layer 'bn1' are missing or incomplete"),
    (lambda w: w["bn1"].__setitem__(0, ("gamma", np.ones(4, np.float32))),
     "layer 'bn1' gamma (dataset '/model_weights/bn1/bn1/gamma:0') has shape (4,), expected (3,)"),
])
def test_damaged_batch_norm_weights_are_one_clear_line(damage, expected, tmp_path, data_dir):
    weights = _bn_weights()
    damage(weights)
    path = _write_keras2(tmp_path / "bn.h5", _bn_layers(), weights)
    with pytest.raises(KerasImportError) as err:
        _import(tmp_path, data_dir, path)
    assert "\n" not in str(err.value) and expected in str(err.value)
    assert not (tmp_path / "run").exists()
