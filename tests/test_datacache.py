import os

import numpy as np
import pytest

import cnnscope.data.dataset
from cnnscope.data import cache as datacache


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNSCOPE_DATA_CACHE", "1")
    return tmp_path / "cache" / "cnnscope" / "decoded"


def _same(a, b):
    for key in ("train_raw", "train_y", "test_raw", "test_y"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert np.array_equal(a.train_x, b.train_x)


def test_the_second_load_reads_the_cache_and_gives_the_same_arrays(data_dir, cache_home, monkeypatch):
    first = cnnscope.load_dataset("mnist", data_dir=data_dir, preprocess="standard")
    files = list(cache_home.glob("mnist-*.safetensors"))
    assert len(files) == 1 and not list(cache_home.glob("*.tmp"))
    calls = []
    monkeypatch.setattr(cnnscope.data.dataset, "_source", lambda config: calls.append(config) or 1 / 0)
    second = cnnscope.load_dataset("mnist", data_dir=data_dir, preprocess="standard")
    assert calls == []  # nothing decoded again
    _same(first, second)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "stale", "labels"])
def test_a_damaged_or_stale_cache_is_a_miss_and_is_rewritten(data_dir, cache_home, damage, tmp_path):
    first = cnnscope.load_dataset("mnist", data_dir=data_dir)
    (path,) = cache_home.glob("mnist-*.safetensors")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff" * 100)
    elif damage == "stale":  # a source file changed since: its mtime is part of the key
        source = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
        os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    else:  # a label out of range, written with a valid key
        raw = datacache.read_cache(path, datacache.source_key(
            datacache.ensure_files(datacache.DATASETS["mnist"], str(data_dir))), first.class_names)
        raw.train_y[0] = 99
        datacache.write_cache(path, datacache.source_key(
            datacache.ensure_files(datacache.DATASETS["mnist"], str(data_dir))), raw)
    second = cnnscope.load_dataset("mnist", data_dir=data_dir)
    _same(first, second)
    assert path.stat().st_size == len(data) and path.read_bytes() != b"\xff" * 100


def test_the_cache_can_be_turned_off(data_dir, cache_home, monkeypatch):
    monkeypatch.setenv("CNNSCOPE_DATA_CACHE", "0")
    cnnscope.load_dataset("mnist", data_dir=data_dir)
    assert not cache_home.exists()
