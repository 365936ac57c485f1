import gzip
import hashlib
import logging
import shutil
import struct

import numpy as np
import pytest

from cnnscope import data as data_mod
from cnnscope.data import FILES, DataConfig, Preprocessor, load_dataset, read_idx, read_pair
from cnnscope.errors import DataError


def test_loads_synthetic_dataset(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir)
    assert ds.train_x.shape == (1200, 1, 28, 28) and ds.train_x.dtype == np.float32
    assert ds.test_x.shape == (300, 1, 28, 28) and ds.test_y.dtype == np.int64
    assert ds.class_names[3] == "3"
    assert load_dataset("fashion-mnist", data_dir=data_dir).class_names[9] == "Ankle boot"


def test_standard_preprocessing_is_per_pixel_standard_scaler(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir)
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


def test_limits(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, limit_train=50, limit_test=20)
    assert len(ds.train_x) == 50 and len(ds.test_x) == 20


def test_bad_data_settings():
    with pytest.raises(DataError, match="unknown dataset 'emnist'; valid: mnist, fashion-mnist"):
        DataConfig(dataset="emnist")
    with pytest.raises(DataError, match="unknown preprocess 'minmax'; valid: standard, global, unit"):
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


def test_checksum_mismatch_warns_once(data_dir, caplog, monkeypatch):
    monkeypatch.setattr(data_mod, "_WARNED", set())  # other tests may have loaded this directory already
    with caplog.at_level(logging.WARNING, logger="cnnscope"):
        load_dataset("mnist", data_dir=data_dir)
        load_dataset("mnist", data_dir=data_dir)  # a reload in the same process (report, probe) stays quiet
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "differ from the official files (MD5); using them as supplied" in warnings[0].message


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
