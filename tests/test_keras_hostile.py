"""Hostile Keras files: read, never followed; refused in one line (exit 2), no run directory, nothing inflated.

Each test builds its own hostile file from a real fixture (tests/fixtures/keras), so the only thing wrong with
it is the trick under test. The last part fuzzes config translation with Hypothesis.
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnscope.base.errors import CnnscopeError, KerasImportError
from cnnscope.cli import main
from cnnscope.interop.keras.files import KerasImportError as FromKerasFiles
from cnnscope.interop.keras.files import read_keras_file
from cnnscope.interop.keras.importer import import_keras, translate
from conftest import budget

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
H5 = FIXTURES / "keras2" / "logits.h5"  # conv (3,3,1,4) -> pool -> flat -> logits (676, 10)
KERAS = FIXTURES / "keras3" / "logits.keras"
BIAS = "model_weights/logits/logits/bias:0"
KERNEL = "model_weights/logits/logits/kernel:0"
SECRET = b"SECRET-BYTES-FROM-OUTSIDE-THE-MODEL-FILE"


def _refused(path: Path, tmp_path: Path, data_dir: Path, capsys, expected: str) -> None:
    """Exit 2 with one `error:` line containing `expected`, via the CLI and the library; no run directory."""
    out = tmp_path / "run"
    assert main(["import-keras", str(path), "--out", str(out), "--data-dir", str(data_dir)]) == 2
    # (the synthetic data directory's one-time "differ from the official files" warning is not about the file)
    err = "".join(line for line in capsys.readouterr().err.splitlines(True) if "differ from the official" not in line)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert "Traceback" not in err and SECRET.decode() not in err
    with pytest.raises(KerasImportError) as info:
        import_keras(path, out, data_dir=data_dir)
    assert "\n" not in str(info.value) and expected in str(info.value)
    assert not out.exists()


def _h5(tmp_path: Path, edit, name: str = "hostile.h5") -> Path:
    path = tmp_path / name
    shutil.copy(H5, path)
    with h5py.File(path, "r+") as fh:
        edit(fh)
    return path


def _secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    return path


def test_keras_import_error_lives_in_errors():
    assert FromKerasFiles is KerasImportError and issubclass(KerasImportError, CnnscopeError)


# --- .h5: links, storage, dtype, shape ----------------------------------------------------------------------
def test_external_storage_is_refused(tmp_path, data_dir, capsys):
    secret = _secret_file(tmp_path)

    def edit(fh):
        del fh[BIAS]
        fh.create_dataset(BIAS, shape=(10,), dtype="<f4", external=[(str(secret), 0, 40)])
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys,
             f"layer 'logits' bias (dataset '/{BIAS}') uses HDF5 external storage")


def test_external_link_is_refused(tmp_path, data_dir, capsys):
    other = tmp_path / "other.h5"
    shutil.copy(H5, other)

    def edit(fh):
        del fh["model_weights/logits"]
        fh["model_weights/logits"] = h5py.ExternalLink(str(other), "/model_weights/logits")
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys,
             "'/model_weights/logits' is an external link to")


def test_soft_link_leaving_the_weights_group_is_refused(tmp_path, data_dir, capsys):
    def edit(fh):
        fh["outside"] = np.frombuffer(SECRET, np.uint8)[:40].view("<f4")
        del fh[BIAS]
        fh[BIAS] = h5py.SoftLink("/outside")
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys,
             "is a soft link to '/outside', outside the weights group '/model_weights'")


def test_soft_link_inside_the_weights_group_is_read(tmp_path, data_dir):
    def edit(fh):
        fh.move(BIAS, "model_weights/logits/stash")
        fh[BIAS] = h5py.SoftLink("/model_weights/logits/stash")
    original = import_keras(H5, tmp_path / "a", data_dir=data_dir)
    linked = import_keras(_h5(tmp_path, edit), tmp_path / "b", data_dir=data_dir)
    assert np.array_equal(linked.model.layer("logits").bias.detach(), original.model.layer("logits").bias.detach())


def test_virtual_dataset_is_refused(tmp_path, data_dir, capsys):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as fh:
        fh["data"] = np.ones(10, np.float32)

    def edit(fh):
        layout = h5py.VirtualLayout(shape=(10,), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(source), "data", shape=(10,))
        del fh[BIAS]
        fh.create_virtual_dataset(BIAS, layout)
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys, "is a virtual dataset")


@pytest.mark.parametrize("dtype", [np.dtype([("a", "<f4")]), h5py.string_dtype(), np.dtype("<i4")])
def test_non_float_dtype_is_refused(dtype, tmp_path, data_dir, capsys):
    def edit(fh):
        del fh[BIAS]
        fh.create_dataset(BIAS, shape=(10,), dtype=dtype)
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys, f"(dataset '/{BIAS}') has dtype")


def test_oversize_dataset_is_refused_before_reading(tmp_path, data_dir, capsys):
    def edit(fh):  # 10 GB declared, nothing stored: reading it would allocate all of it
        del fh[KERNEL]
        fh.create_dataset(KERNEL, shape=(50_000, 50_000), dtype="<f4", chunks=(1000, 1000))
    _refused(_h5(tmp_path, edit), tmp_path, data_dir, capsys,
             f"layer 'logits' kernel (dataset '/{KERNEL}') has shape (50000, 50000), expected (676, 10)")


def test_huge_chunks_and_compression_are_refused(tmp_path, data_dir, capsys):
    def chunks(fh):
        del fh[BIAS]
        fh.create_dataset(BIAS, shape=(10,), maxshape=(None,), chunks=(4_000_000,), dtype="<f4")
    _refused(_h5(tmp_path, chunks), tmp_path, data_dir, capsys, "has chunks (4000000,), larger than the array")

    def gzip(fh):
        del fh[BIAS]
        fh.create_dataset(BIAS, data=np.ones(10, np.float32), compression="gzip")
    _refused(_h5(tmp_path, gzip, "gzip.h5"), tmp_path, data_dir, capsys, "is compressed (HDF5 filters [1])")


def test_unused_objects_are_never_read(tmp_path, data_dir):
    """A huge sparse dataset, an external link and external storage outside the model's layers change nothing."""
    secret = _secret_file(tmp_path)

    def edit(fh):
        fh.create_dataset("junk/huge", shape=(50_000, 50_000), dtype="<f4", chunks=(1000, 1000))
        fh["model_weights/junk_link"] = h5py.ExternalLink(str(secret), "/x")
        fh.create_dataset("model_weights/pool/stored_outside", shape=(10,), dtype="<f4",
                          external=[(str(secret), 0, 40)])
    run = import_keras(_h5(tmp_path, edit), tmp_path / "run", data_dir=data_dir)
    assert run.model.layer_names == ["conv", "pool", "flat", "logits"]


def test_hostile_model_config_attribute(tmp_path, data_dir, capsys):
    def deep(fh):
        fh.attrs["model_config"] = "[" * 100_000 + "]" * 100_000
    _refused(_h5(tmp_path, deep), tmp_path, data_dir, capsys, "model_config nests JSON deeper than 64 levels")

    def not_utf8(fh):
        fh.attrs["model_config"] = np.bytes_(b'{"class_name": "\xff\xfe"}')
    _refused(_h5(tmp_path, not_utf8, "b.h5"), tmp_path, data_dir, capsys, "is not UTF-8 text")

    def numbers(fh):
        fh.attrs["model_config"] = np.arange(5.0)
    _refused(_h5(tmp_path, numbers, "c.h5"), tmp_path, data_dir, capsys, "attribute 'model_config' of '/' has type")


# --- .keras archives ------------------------------------------------------------------------------------------
def _keras(tmp_path: Path, name: str = "hostile.keras", compression=zipfile.ZIP_STORED, **members) -> Path:
    """The fixture archive with some members replaced (bytes) or removed (None)."""
    path = tmp_path / name
    with zipfile.ZipFile(KERAS) as src, zipfile.ZipFile(path, "w", compression) as dst:
        for info in src.infolist():
            data = members.pop(info.filename.replace(".", "_"), src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
        for key, data in members.items():
            dst.writestr(key.replace("_json", ".json").replace("_h5", ".h5"), data)
    return path


def test_zip_bomb_is_refused_before_inflating(tmp_path, data_dir, capsys):
    zeros = bytes(64 * 2**20)  # 64 MiB of zeros deflate ~1000-fold
    path = _keras(tmp_path, compression=zipfile.ZIP_DEFLATED, model_weights_h5=zeros)
    _refused(path, tmp_path, data_dir, capsys, "model.weights.h5 is 67,108,864 bytes uncompressed, more than")


def test_declared_size_over_the_bound_is_refused(tmp_path, data_dir, capsys):
    """A central directory that declares ~4 GB for the weights: refused from the declaration alone."""
    path = _keras(tmp_path)
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    while raw[entry + 46:entry + 46 + struct.unpack_from("<H", raw, entry + 28)[0]] != b"model.weights.h5":
        entry = raw.index(b"PK\x01\x02", entry + 4)  # the central-directory entry of model.weights.h5
    struct.pack_into("<I", raw, entry + 24, 0xFFFF_FFF0)
    path.write_bytes(bytes(raw))
    _refused(path, tmp_path, data_dir, capsys, "model.weights.h5 is 4,294,967,280 bytes uncompressed")


def test_absurd_ratio_is_refused(tmp_path, data_dir, capsys):
    big_config = json.dumps({"pad": " " * (3 * 2**20)}).encode()  # 3 MiB, under the size bound, ~1000-fold
    path = _keras(tmp_path, compression=zipfile.ZIP_DEFLATED, config_json=big_config)
    _refused(path, tmp_path, data_dir, capsys, "config.json inflates")


def test_weights_member_larger_than_the_model_needs(tmp_path, data_dir, capsys):
    with zipfile.ZipFile(KERAS) as src:
        weights = src.read("model.weights.h5")
    padded = weights + np.random.default_rng(0).bytes(16 * 2**20)  # incompressible padding
    _refused(_keras(tmp_path, model_weights_h5=padded), tmp_path, data_dir, capsys,
             "more than the 4,")  # the bound is a few MB for this 6,800-parameter model


@pytest.mark.parametrize("config,expected", [
    (b"[" * 200_000, "config.json nests JSON deeper than 64 levels"),
    (b'{"class_name": "Sequential", "config": "\xff"}', "config.json is not UTF-8 text"),
    (b" " * (5 * 2**20) + b"{}", "config.json is 5,242,882 bytes uncompressed, more than"),
    (b"[1, 2]", "config.json is list JSON; expected an object"),
    (b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Conv2D", "config": {"name": "c"}}]}}',
     "layer 'c' (Conv2D): filters must be a positive integer, found None"),
    (b'{"class_name": "Functional", "config": {}}', "the model has 0 inputs and 0 outputs"),
    (b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": []}]}}',
     "layer '?' (Dense): a Dense layer before Flatten"),
    (b'{"class_name": 7}', "unsupported model class 7"),
])
def test_hostile_config_json(config, expected, tmp_path, data_dir, capsys):
    _refused(_keras(tmp_path, config_json=config), tmp_path, data_dir, capsys, expected)


def test_external_link_inside_keras_weights(tmp_path, data_dir, capsys):
    other = tmp_path / "other.h5"
    with zipfile.ZipFile(KERAS) as src:
        other.write_bytes(src.read("model.weights.h5"))
    edited = tmp_path / "weights.h5"
    shutil.copy(other, edited)
    with h5py.File(edited, "r+") as fh:
        del fh["layers/dense"]
        fh["layers/dense"] = h5py.ExternalLink(str(other), "/layers/dense")
    _refused(_keras(tmp_path, model_weights_h5=edited.read_bytes()), tmp_path, data_dir, capsys,
             "'/layers/dense' is an external link to")


# --- fuzzing config translation -------------------------------------------------------------------------------
_leaf = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12) | \
    st.sampled_from(["relu", "same", "valid", "Conv2D", "Dense", "Flatten", "softmax", "channels_last"])
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["name", "class_name", "config", "layers", "filters", "kernel_size", "units", "activation",
                     "inbound_nodes", "input_layers", "output_layers", "batch_input_shape", "padding", "strides",
                     "pool_size", "rate", "keras_history"]) | st.text(max_size=6), inner, max_size=5),
    max_leaves=30)
_CLASSES = ["InputLayer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Dense", "Dropout",
            "Activation", "ReLU", "ELU", "Softmax", "SpatialDropout2D", "BatchNormalization"]
_REAL = [read_keras_file(p).config for p in sorted(FIXTURES.glob("keras*/*.h5")) + sorted(FIXTURES.glob("keras*/*.k*"))]


def _translates_or_refuses(config) -> None:
    try:
        translate(config, "fuzz.h5")
    except CnnscopeError as exc:
        assert "\n" not in str(exc)


@given(st.sampled_from(["Sequential", "Functional", "Model", "Other", 3]), _json)
def test_random_configs_raise_only_cnnscope_errors(class_name, inner):
    _translates_or_refuses({"class_name": class_name, "config": inner})


@given(st.lists(st.fixed_dictionaries({"class_name": st.sampled_from(_CLASSES), "config": _json}), max_size=6))
def test_random_layer_lists_raise_only_cnnscope_errors(layers):
    _translates_or_refuses({"class_name": "Sequential", "config": {"layers": layers}})


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@settings(max_examples=budget(60))
@given(st.data())
def test_mutated_real_configs_raise_only_cnnscope_errors(data):
    config = json.loads(json.dumps(data.draw(st.sampled_from(_REAL))))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(config))[1:]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_json)
    _translates_or_refuses(config)
