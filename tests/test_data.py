import gzip
import hashlib
import logging
import shutil
import struct

import numpy as np
import pytest

from cnnscope.base.errors import DataError
from cnnscope.data import dataset as data_mod
from cnnscope.data import download
from cnnscope.data import sources as datasets_mod
from cnnscope.data.dataset import (
    FILES,
    PREPROCESS,
    DataConfig,
    Preprocessor,
    load_dataset,
    read_idx,
    read_pair,
    to_nchw,
)


def test_loads_synthetic_dataset(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir)
    assert ds.train_x.shape == (1200, 1, 28, 28) and ds.train_x.dtype == np.float32
    assert ds.test_x.shape == (300, 1, 28, 28) and ds.test_y.dtype == np.int64
    assert ds.class_names[3] == "3"
    assert load_dataset("fashion-mnist", data_dir=data_dir).class_names[9] == "Ankle boot"


def test_each_split_is_preprocessed_on_first_use(data_dir):
    """A command on the test images never preprocesses the training ones; each split is made once, as eager
    preprocessing made it."""
    ds = load_dataset("mnist", data_dir=data_dir, preprocess="standard")
    x, _, raw = ds.split("test")
    assert "train_x" not in ds.__dict__ and ds.input_shape == (1, 28, 28)
    assert ds.split("test")[0] is x and ds.test_x is x
    np.testing.assert_array_equal(ds.train_x, ds.preprocessor(ds.train_raw))
    np.testing.assert_array_equal(x, ds.preprocessor(raw))


def test_standard_preprocessing_is_per_pixel_standard_scaler(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, preprocess="standard")
    raw = ds.train_raw.reshape(len(ds.train_raw), -1).astype(np.float64)
    mean, std = raw.mean(0), raw.std(0)
    expected = (raw - mean) / np.where(std == 0, 1, std)
    assert np.allclose(ds.train_x.reshape(len(raw), -1), expected, atol=1e-5)
    # test data use the training statistics, not their own
    test_raw = ds.test_raw.reshape(len(ds.test_raw), -1)
    assert np.allclose(ds.test_x.reshape(len(test_raw), -1), (test_raw - mean) / np.where(std == 0, 1, std), atol=1e-5)


def test_zero_std_pixels_stay_zero():
    images = np.zeros((4, 2, 2), np.uint8)
    images[:, 0, 0] = [0, 10, 20, 30]
    images[:, 1, 1] = 7  # constant pixel
    out = Preprocessor.fit("standard", images)(images)
    assert np.all(out[:, 0, 1, 1] == 0) and np.all(out[:, 0, 0, 1] == 0)
    assert np.isclose(out[:, 0, 0, 0].std(), 1)


def test_global_and_unit_preprocessing(data_dir):
    unit = load_dataset("mnist", data_dir=data_dir, preprocess="unit")
    assert unit.train_x.max() <= 1 and unit.train_x.min() >= 0
    glob = load_dataset("mnist", data_dir=data_dir, preprocess="global")
    assert abs(glob.train_x.mean()) < 1e-4 and abs(glob.train_x.std() - 1) < 1e-4


def test_preprocessor_roundtrips_through_json():
    images = np.random.default_rng(0).integers(0, 255, (10, 28, 28)).astype(np.uint8)
    pre = Preprocessor.fit("standard", images)
    again = Preprocessor.from_dict(pre.to_dict())
    assert np.array_equal(pre(images), again(images))


def test_reshuffle_split_and_validation_holdout(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, split="reshuffle", seed=5, val_size=100)
    assert len(ds.train_y) == 1100 and len(ds.val_y) == 100 and len(ds.test_y) == 300
    official = load_dataset("mnist", data_dir=data_dir)
    all_raw = np.concatenate([official.train_raw, official.test_raw])
    merged = np.concatenate([ds.train_raw, ds.val_raw, ds.test_raw])
    assert sorted(map(bytes, merged)) == sorted(map(bytes, all_raw))  # a permutation of all 1,500 images
    again = load_dataset("mnist", data_dir=data_dir, split="reshuffle", seed=5, val_size=100)
    assert np.array_equal(ds.test_y, again.test_y)
    assert ds.validation()[2] == "validation" and official.validation()[2] == "test"


def test_a_validation_share_is_stratified_seeded_and_independent_of_the_limit(data_dir):
    config = DataConfig(data_dir=str(data_dir), val_fraction=0.1)
    ds = load_dataset(config=config)
    full = load_dataset("mnist", data_dir=data_dir)
    counts, held = np.bincount(full.train_y, minlength=10), np.bincount(ds.val_y, minlength=10)
    assert np.array_equal(held, np.round(0.1 * counts).astype(int))  # every class in its own proportion
    assert len(ds.train_y) + len(ds.val_y) == 1200 and ds.validation()[2] == "validation"
    assert not {bytes(v) for v in ds.val_raw} & {bytes(t) for t in ds.train_raw}  # disjoint
    limited = load_dataset(config=DataConfig(data_dir=str(data_dir), val_fraction=0.1, limit_train=100))
    assert np.array_equal(limited.val_raw, ds.val_raw) and len(limited.train_y) == 100  # the same images validate
    other = load_dataset(config=DataConfig(data_dir=str(data_dir), val_fraction=0.1, seed=1))
    assert not np.array_equal(other.val_raw, ds.val_raw)
    with pytest.raises(DataError, match=r"give one of val_size \(5 images\) or val_fraction \(0.1\), not both"):
        DataConfig(val_size=5, val_fraction=0.1)
    with pytest.raises(DataError, match=r"val_fraction must be a share in \[0, 1\), e.g. 0.1, received 1.5"):
        DataConfig(val_fraction=1.5)
    with pytest.raises(DataError, match="leaves 0 for validation and 1200 for training"):
        load_dataset(config=DataConfig(data_dir=str(data_dir), val_fraction=0.001))


def test_limits(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, limit_train=50, limit_test=20)
    assert len(ds.train_x) == 50 and len(ds.test_x) == 20


def test_bad_data_settings():
    with pytest.raises(DataError, match="unknown dataset 'emnist'; valid: mnist, fashion-mnist"):
        DataConfig(dataset="emnist")
    with pytest.raises(DataError, match="unknown preprocess 'minmax'; valid: standard, standard-floor, "
                                        "standard-clip, global, channel, unit"):
        DataConfig(preprocess="minmax")
    with pytest.raises(DataError, match="limit_train must be at least 1, received 0"):
        DataConfig(limit_train=0)


def _copy(data_dir, tmp_path):
    return shutil.copytree(data_dir, tmp_path / "d")


def test_missing_file_names_it(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path)
    (root / "mnist" / FILES["test_labels"]).unlink()
    with pytest.raises(DataError, match=r"missing file .*mnist/t10k-labels-idx1-ubyte.gz: the data directory must "
                                        r"hold mnist/t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=root)


def test_truncated_gzip(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path)
    path = root / "mnist" / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated or not a valid gzip file"):
        load_dataset("mnist", data_dir=root)


def test_not_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"hello world, not gzip")
    with pytest.raises(DataError, match="truncated or not a valid gzip file"):
        read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">I", 0x0000_0C03) + b"\0" * 16)
    with pytest.raises(DataError, match=r"bad.gz: wrong IDX magic number 0x00000c03; expected 0x00000801"):
        read_idx(path)


def test_length_mismatch(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">IIII", 0x803, 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match=r"holds 100 data bytes, header says 7840 for shape \(10, 28, 28\)"):
        read_idx(path)


def test_count_mismatch(data_dir, tmp_path):
    from conftest import write_idx

    images = tmp_path / "i.gz"
    labels = tmp_path / "l.gz"
    write_idx(images, np.zeros((5, 28, 28), np.uint8))
    write_idx(labels, np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"i.gz holds 5 images but .*l.gz holds 4 labels; they must match"):
        read_pair(images, labels)


def test_uncompressed_files_are_accepted(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path)
    path = root / "mnist" / FILES["test_images"]
    path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    assert load_dataset("mnist", data_dir=root).test_x.shape == (300, 1, 28, 28)


def test_checksum_mismatch_warns_once(data_dir, caplog, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets_mod, "_WARNED", set())  # other tests may have loaded this directory already
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nor has any other process
    with caplog.at_level(logging.WARNING, logger="cnnscope"):
        load_dataset("mnist", data_dir=data_dir)
        load_dataset("mnist", data_dir=data_dir)  # a reload in the same process (report, probe) stays quiet
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "differ from the official files (MD5); using them as supplied" in warnings[0].message


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_checksum_warning_is_given_once_across_processes(data_dir, caplog, monkeypatch, tmp_path):
    """A later command (a new process: _WARNED empty) stays quiet while the files are those it was told about
    (same size and time); a changed file, or another data directory, is told again."""
    import os


    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _copy(data_dir, tmp_path)
    with caplog.at_level(logging.WARNING, logger="cnnscope"):
        for _ in range(2):
            monkeypatch.setattr(datasets_mod, "_WARNED", set())
            monkeypatch.setattr(download, "_MD5_CACHE", {})  # a new process: MD5s come from checked.json
            load_dataset("mnist", data_dir=root)
        assert len(_warnings(caplog)) == 1
        calls = []
        monkeypatch.setattr(download, "file_md5", lambda path: calls.append(path) or "x")
        monkeypatch.setattr(datasets_mod, "_WARNED", set())
        monkeypatch.setattr(download, "_MD5_CACHE", {})
        load_dataset("mnist", data_dir=root)
        assert calls == []  # the remembered sums were used, no file read again
        monkeypatch.undo()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setattr(datasets_mod, "_WARNED", set())
        path = root / "mnist" / FILES["test_labels"]
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changed
        load_dataset("mnist", data_dir=root)
        assert len(_warnings(caplog)) == 2
        assert "t10k-labels-idx1-ubyte.gz" in _warnings(caplog)[-1]


def test_data_command_always_says_the_files_differ(data_dir, capsys, monkeypatch, tmp_path):
    from conftest import run_cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for _ in range(2):
        monkeypatch.setattr(datasets_mod, "_WARNED", set())
        code, out, _ = run_cli(capsys, "data", "mnist", "--data-dir", data_dir, "--out", tmp_path / "d.png")
        assert code == 0
        assert "note: " in out and "differ from the official files (MD5); using them as supplied" in out


def test_env_var_selects_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("CNNSCOPE_DATA_DIR", str(data_dir))
    assert len(load_dataset("mnist").train_y) == 1200


def test_download_into_cache_verifies_checksums(data_dir, tmp_path, monkeypatch):
    md5 = {key: hashlib.md5((data_dir / "mnist" / name).read_bytes()).hexdigest() for key, name in FILES.items()}
    info = data_mod.DatasetInfo("mnist", ((data_dir / "mnist").as_uri() + "/",), md5,
                                data_mod.DATASETS["mnist"].class_names)
    monkeypatch.setitem(data_mod.DATASETS, "mnist", info)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = load_dataset("mnist")
    assert len(ds.train_y) == 1200
    assert (tmp_path / "cache" / "cnnscope" / "mnist" / FILES["train_images"]).is_file()
    # a corrupt download is rejected and leaves nothing half-written
    bad = dict(md5, test_labels="0" * 32)
    monkeypatch.setitem(data_mod.DATASETS, "mnist", data_mod.DatasetInfo("mnist", info.mirrors, bad, info.class_names))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    with pytest.raises(DataError, match="could not download t10k-labels-idx1-ubyte.gz .*is corrupt: MD5"):
        load_dataset("mnist")
    assert not list((tmp_path / "cache2" / "cnnscope" / "mnist").glob("t10k-labels*"))


def test_real_mnist_shapes(real_data_dir):
    ds = load_dataset("mnist", data_dir=real_data_dir, limit_train=1000)
    assert ds.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.test_y).tolist()[:3] == [980, 1135, 1032]


# --- hostile and corrupt IDX files, labels of every split (issue 8, point 5) -------------------------------------
def _raw_idx(path, header: bytes, payload: bytes = b"", gz: bool = True):
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(header + payload)
    else:
        path.write_bytes(header + payload)
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_empty_idx_file(tmp_path, gz):
    path = _raw_idx(tmp_path / ("e.gz" if gz else "e"), b"", gz=gz)
    with pytest.raises(DataError, match=r"e(.gz)?: the file is empty; expected an IDX file"):
        read_idx(path)


def test_header_sizes_that_overflow_are_refused_before_reading(tmp_path, monkeypatch):
    path = _raw_idx(tmp_path / "o.gz", struct.pack(">IIII", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1), b"\0" * 64)
    with pytest.raises(DataError, match=r"o.gz: header declares shape \(4294967295, 4294967295, 4294967295\) "
                                        r"\(79,228,162,458,924,105,385,300,197,375 bytes\), more than the "
                                        r"2,147,483,648 accepted; the file is corrupt"):
        read_idx(path)
    # an int64 product would wrap around to 0 and 'match' an empty payload: the check uses exact integers
    path = _raw_idx(tmp_path / "w.gz", struct.pack(">IIII", 0x803, 2**32 - 1, 2**16, 2**16 + 1))
    with pytest.raises(DataError, match="more than the 2,147,483,648 accepted"):
        read_idx(path)
    # no pixels at all, but dimensions numpy cannot even describe (found by test_fuzz_core)
    path = _raw_idx(tmp_path / "z", struct.pack(">IIII", 0x803, 0, 3_036_988_439, 3_037_012_561), gz=False)
    with pytest.raises(DataError, match=r"z: header declares shape \(0, 3036988439, 3037012561\) \(absurd "
                                        r"dimensions\), more than the 2,147,483,648 accepted"):
        read_idx(path)


def test_payload_longer_than_the_header_says(tmp_path):
    path = _raw_idx(tmp_path / "l", struct.pack(">II", 0x801, 3), b"\1\2\3\4", gz=False)
    with pytest.raises(DataError, match=r"l: holds more data bytes, header says 3 for shape \(3,\)"):
        read_idx(path)


def test_idx_directory_is_one_line(tmp_path):
    (tmp_path / "d.gz").mkdir()
    with pytest.raises(DataError, match=r"d.gz is a directory, expected an IDX file"):
        read_idx(tmp_path / "d.gz")


def test_split_without_images_is_refused(tmp_path):
    from conftest import write_idx

    write_idx(tmp_path / "i.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "l.gz", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=r"i.gz holds no pixels \(shape \(0, 28, 28\)\); the file is corrupt"):
        read_pair(tmp_path / "i.gz", tmp_path / "l.gz")


def _with_bad_test_label(data_dir, tmp_path, value=200, index=7):
    from conftest import write_idx

    root = _copy(data_dir, tmp_path)
    path = root / "mnist" / FILES["test_labels"]
    labels = read_idx(path).copy()
    labels[index] = value
    write_idx(path, labels)
    return root


def test_test_labels_are_checked_at_load(data_dir, tmp_path):
    root = _with_bad_test_label(data_dir, tmp_path)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 200 at index 7 is out of range; the "
                                        r"dataset has 10 classes \(0–9\); the file is corrupt"):
        load_dataset("mnist", data_dir=root, limit_test=5)  # index 7 is past the limit: checked all the same


def test_dataset_checks_labels_of_every_split():
    images = np.zeros((3, 28, 28), np.uint8)
    pre = Preprocessor.fit("unit", images)
    with pytest.raises(DataError, match=r"val labels: label -1 at index 2 is out of range; the dataset has 2 classes"):
        data_mod.Dataset(DataConfig(), ("a", "b"), pre, images, np.array([0, 1, 1]), images, np.array([1, 0, 0]),
                         images, np.array([0, 0, -1]))
    with pytest.raises(DataError, match="the test split needs as many labels as images"):
        data_mod.Dataset(DataConfig(), ("a", "b"), pre, images, np.array([0, 1, 1]), images, np.array([1, 0]))


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "preprocessing data is malformed"),
    ({"kind": "unit", "shape": [1, 2, 3, 4], "mean": [0] * 24, "scale": [1] * 24}, r"shape \[1, 2, 3, 4\] is none of"),
    ({"kind": "zscore", "shape": [], "mean": 0, "scale": 1}, "unknown preprocess 'zscore'"),
    ({"kind": "unit", "shape": [], "mean": 0, "scale": 0}, "scale must be finite, scale > 0"),
    ({"kind": "unit", "shape": [], "mean": 10**400, "scale": 1}, "preprocessing data is malformed"),
    ({"kind": "unit", "shape": [], "mean": 1e300, "scale": 1}, "mean and scale must be finite"),
])
def test_malformed_preprocessing_data(data, message):
    with pytest.raises(DataError, match=message):
        Preprocessor.from_dict(data)


def test_data_config_paths_and_seeds():
    from pathlib import Path

    assert DataConfig(data_dir=Path("/x")).data_dir == "/x"
    with pytest.raises(DataError, match=r"data_dir must be a directory path, received 'a\\x00b'"):
        DataConfig(data_dir="a\0b")
    with pytest.raises(DataError, match=r"seed must be an integer in \[0, 4294967295\], received 4294967296"):
        DataConfig(seed=2**32)


def _cli_error(args, capsys) -> str:
    from cnnscope.cli import main

    code = main(args)
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
    return lines[0]


@pytest.mark.parametrize("case", ["empty", "overflow", "test-label"])
def test_cli_reports_bad_data_files_in_one_line(case, data_dir, tmp_path, capsys):
    if case == "test-label":
        root = _with_bad_test_label(data_dir, tmp_path)
        expected = "label 200 at index 7 is out of range"
    else:
        root = _copy(data_dir, tmp_path)
        header = b"" if case == "empty" else struct.pack(">IIII", 0x803, 2**31, 2**31, 2**31)
        _raw_idx(root / "mnist" / FILES["train_images"], header)
        expected = "the file is empty" if case == "empty" else "more than the 2,147,483,648 accepted"
    out = tmp_path / "run"
    line = _cli_error(["train", "--preset", "tiny", "--epochs", "1", "--data-dir", str(root), "--out", str(out)],
                      capsys)
    assert expected in line
    assert not (out / "history.json").exists()  # refused before any training


# --- preprocessing kinds against the border artefact (issue 13) ---------------------------------------------------
def _border_images() -> np.ndarray:
    """100 4×4 images: the centre is inked in every one, pixel (0, 0) faintly in one only (a rarely inked border
    pixel, as MNIST's), pixel (3, 3) never."""
    images = np.zeros((100, 4, 4), np.uint8)
    images[:, 1:3, 1:3] = (np.arange(100) * 5 % 256)[:, None, None]
    images[0, 0, 0] = 30
    return images


def test_standard_floor_floors_the_deviation_at_the_global_one():
    images = _border_images()
    pre = Preprocessor.fit("standard-floor", images)
    per_pixel, overall = images.std(axis=0, dtype=np.float64), images.std(dtype=np.float64)
    assert np.allclose(pre.scale, np.maximum(per_pixel, overall))
    assert np.allclose(pre.mean, images.mean(axis=0))
    stray = np.zeros((1, 4, 4), np.uint8)
    stray[0, 0, 0] = 255
    # standard divides the rare pixel by its own small deviation; the floor keeps it in proportion
    assert Preprocessor.fit("standard", images)(stray)[0, 0, 0, 0] > 2 * pre(stray)[0, 0, 0, 0]
    assert np.isclose(pre(stray)[0, 0, 0, 0], (255 - images[:, 0, 0].mean()) / overall, rtol=1e-5)
    # a never-inked pixel: deviation 0 is floored too, so stray ink there is finite and moderate
    assert np.isclose(pre.scale[3, 3], overall)


def test_standard_clip_clips_to_the_training_range_before_standardising():
    images = _border_images()
    pre = Preprocessor.fit("standard-clip", images)
    assert np.array_equal(pre.low, images.min(axis=0)) and np.array_equal(pre.high, images.max(axis=0))
    standard = Preprocessor.fit("standard", images)
    assert np.allclose(pre(images), standard(images))  # training images lie inside their own range
    stray = np.full((1, 4, 4), 255, np.uint8)
    out = pre(stray)[0, 0]
    assert out[3, 3] == 0  # never inked in training: clipped to 0, the mean
    assert np.allclose(out[1, 1], (images[:, 1, 1].max() - images[:, 1, 1].mean()) / images[:, 1, 1].std(), rtol=1e-5)
    assert np.all(out <= standard(images[None, 0] * 0 + images.max(axis=0))[0, 0] + 1e-5)


@pytest.mark.parametrize("kind", ["standard", "standard-floor", "standard-clip", "global", "unit"])
def test_every_kind_roundtrips_through_json(kind):
    import json

    images = _border_images()
    pre = Preprocessor.fit(kind, images)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.kind == kind
    probe = np.random.default_rng(1).integers(0, 256, (3, 4, 4)).astype(np.uint8)
    assert np.array_equal(pre(probe), again(probe))
    assert ("low" in pre.to_dict()) == (kind == "standard-clip")


def test_an_old_runs_preprocess_json_loads_exactly_as_before():
    # what cnnscope wrote before the new kinds: no low/high keys
    saved = {"kind": "standard", "shape": [2, 2], "mean": [0.5, 10.0, 0.0, 3.0], "scale": [0.25, 2.0, 1.0, 4.0]}
    pre = Preprocessor.from_dict(saved)
    assert pre.low is None and pre.high is None and pre.to_dict() == saved
    out = pre(np.array([[[1, 12], [255, 3]]], np.uint8))[0, 0]
    assert np.array_equal(out, np.array([[2.0, 1.0], [255.0, 0.0]], np.float32))


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "standard-clip", "shape": [1, 1], "mean": [0], "scale": [1]}, r"malformed \(missing key 'low'\)"),
    ({"kind": "standard-clip", "shape": [], "mean": 0, "scale": 1, "low": 0, "high": 1}, "needs per-pixel"),
    ({"kind": "standard-clip", "shape": [1, 1], "mean": [0], "scale": [1], "low": [5], "high": [1]},
     "low and high must be finite, low ≤ high"),
    ({"kind": "standard-clip", "shape": [1, 1], "mean": [0], "scale": [1], "low": [0], "high": [1e300]},
     "low and high must be finite"),
])
def test_malformed_clip_preprocessing_data(data, message):
    with pytest.raises(DataError, match=message):
        Preprocessor.from_dict(data)


def test_series_recipe_keeps_standard_and_new_runs_do_not():
    from pathlib import Path

    from cnnscope.trainer.config import build_run_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert 'preprocess = "standard"\n' in (configs / "seed-iv-series.toml").read_text()
    assert build_run_config(configs / "seed-iv-series.toml").data.preprocess == "standard"
    assert build_run_config(configs / "seed-iv-fast.toml").data.preprocess == DataConfig().preprocess
    assert DataConfig().preprocess != "standard"


@pytest.mark.parametrize("kind", PREPROCESS)
def test_colour_pictures_become_nchw_with_statistics_per_channel(kind):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)  # (n, H, W, C) as pictures are drawn
    raw[..., 2] //= 4  # the blue channel is darker, so per-channel statistics differ
    pre = Preprocessor.fit(kind, raw)
    x = pre(raw)
    assert x.shape == (6, 3, 5, 4) and x.dtype == np.float32
    assert pre.fits((3, 5, 4)) and not pre.fits((1, 5, 4)) or pre.channels is None
    np.testing.assert_array_equal(to_nchw(raw)[:, 2], raw[..., 2])
    if kind == "channel":
        assert pre.mean.shape == (3, 1, 1) and pre.mean[2, 0, 0] < pre.mean[0, 0, 0] / 2
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again(raw), x)


def test_colour_pictures_of_the_wrong_channel_count_are_refused():
    pre = Preprocessor.fit("standard", np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"images are 4×4 with 1 channel\(s\), the run's preprocessing expects "
                                        r"4×4 with 3 channel\(s\)"):
        pre(np.zeros((1, 4, 4), np.uint8))
