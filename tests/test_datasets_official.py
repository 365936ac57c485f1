"""KMNIST, EMNIST and CIFAR-10 read from files the tests write in the official formats, byte for byte: IDX
headers (big-endian), EMNIST's transposed pictures and 1-based letters inside gzip.zip, CIFAR-10 binary records
(label byte, then R, G, B planes) inside cifar-10-binary.tar.gz; downloads checked and archives read safely."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnscope.base.errors import DataError
from cnnscope.data import sources as datasets
from cnnscope.data.dataset import load_dataset
from conftest import one_line_error, run_cli


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: 0x0000, type 0x08 (ubyte), ndim, big-endian 32-bit sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def letter_l(n: int) -> np.ndarray:
    """Asymmetric pictures: a vertical bar on the left and a foot at the bottom (an 'L'), plus the index."""
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 4:24, 5:8] = 255
    x[:, 21:24, 5:20] = 200
    x[:, 0, 0] = np.arange(n)
    return x


def emnist_zip(path: Path, split: str, labels: tuple[np.ndarray, np.ndarray]) -> Path:
    """gzip.zip as published: gzip/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte.gz, pictures
    stored transposed."""
    with zipfile.ZipFile(path, "w") as zf:
        for part, y in zip(("train", "test"), labels, strict=True):
            stored = letter_l(len(y)).transpose(0, 2, 1)
            zf.writestr(f"gzip/emnist-{split}-{part}-images-idx3-ubyte.gz", idx_bytes(stored))
            zf.writestr(f"gzip/emnist-{split}-{part}-labels-idx1-ubyte.gz", idx_bytes(y))
    return path


def cifar_records(labels: np.ndarray, seed: int) -> tuple[bytes, np.ndarray]:
    """CIFAR-10 binary: per record <1 label byte><1024 red><1024 green><1024 blue>, rows of 32; and the
    (n, 32, 32, 3) pictures they hold."""
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 256, (len(labels), 32, 32, 3)).astype(np.uint8)
    out = b"".join(bytes([int(y)]) + p[..., 0].tobytes() + p[..., 1].tobytes() + p[..., 2].tobytes()
                   for y, p in zip(labels, pictures, strict=True))
    return out, pictures


def cifar_tar(path: Path, n: int = 4) -> dict[str, np.ndarray]:
    """cifar-10-binary.tar.gz as published: cifar-10-batches-bin/data_batch_1..5.bin, test_batch.bin,
    batches.meta.txt."""
    pictures = {}
    with tarfile.open(path, "w:gz") as tf:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            data, pictures[name] = cifar_records(np.arange(n) % 10, i)
            add_member(tf, f"cifar-10-batches-bin/{name}.bin", data)
        add_member(tf, "cifar-10-batches-bin/batches.meta.txt", "\n".join(datasets.DATASETS["cifar10"].class_names)
                   .encode())
    return pictures


def add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_kmnist_idx_files(tmp_path):
    folder = tmp_path / "kmnist"
    folder.mkdir()
    y = np.arange(20) % 10
    for key, data in (("train_images", letter_l(20)), ("train_labels", y), ("test_images", letter_l(10)),
                      ("test_labels", y[:10])):
        (folder / datasets.FILES[key]).write_bytes(idx_bytes(data))
    ds = load_dataset("kmnist", data_dir=tmp_path)
    assert ds.class_names[:3] == ("o", "ki", "su") and len(ds.class_names) == 10
    np.testing.assert_array_equal(ds.train_raw, letter_l(20))
    np.testing.assert_array_equal(ds.train_y, y)


def test_emnist_letters_from_the_official_zip_upright_and_zero_based(tmp_path):
    y = (np.arange(30) % 26 + 1).astype(np.uint8)  # stored labels 1..26
    emnist_zip((tmp_path / "emnist-letters").mkdir() or tmp_path / "emnist-letters" / "gzip.zip", "letters",
               (y, y[:13]))
    ds = load_dataset("emnist-letters", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.train_raw, letter_l(30))  # the bar on the left, the foot at the bottom
    np.testing.assert_array_equal(ds.train_y, y - 1)
    assert ds.class_names[0] == "A" and ds.class_names[25] == "Z" and len(ds.class_names) == 26
    assert (tmp_path / "emnist-letters" / "emnist-letters-train-images-idx3-ubyte.gz").is_file()  # taken out once


def test_emnist_balanced_names_follow_the_published_mapping(tmp_path):
    names = datasets.DATASETS["emnist-balanced"].class_names
    assert len(names) == 47 and names[:10] == tuple("0123456789") and names[10] == "A" and names[35] == "Z"
    assert "".join(names[36:]) == "abdefghnqrt"
    y = (np.arange(47) % 47).astype(np.uint8)
    (tmp_path / "emnist-balanced").mkdir()
    emnist_zip(tmp_path / "emnist-balanced" / "gzip.zip", "balanced", (y, y))
    assert load_dataset("emnist-balanced", data_dir=tmp_path).test_y.max() == 46


def test_emnist_label_out_of_range_names_the_stored_value(tmp_path):
    y = np.array([1, 27, 3], np.uint8)
    (tmp_path / "emnist-letters").mkdir()
    emnist_zip(tmp_path / "emnist-letters" / "gzip.zip", "letters", (y, y))
    with pytest.raises(DataError, match=r"label 27 at index 1 is out of range; the dataset has 26 classes \(1–26\)"):
        load_dataset("emnist-letters", data_dir=tmp_path)


def test_cifar10_binary_records_from_the_tar(tmp_path, capsys):
    (tmp_path / "cifar10").mkdir()
    pictures = cifar_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz")
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_raw.shape == (20, 32, 32, 3) and ds.test_raw.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_raw[:4], pictures["data_batch_1"])
    np.testing.assert_array_equal(ds.train_raw[16:], pictures["data_batch_5"])
    np.testing.assert_array_equal(ds.test_raw, pictures["test_batch"])
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck" and ds.input_shape == (3, 32, 32)
    code, out, err = run_cli(capsys, "data", "cifar10", "--data-dir", tmp_path, "--json", "--out",
                             tmp_path / "d.png")
    assert code == 0, err
    info = json.loads(out)
    assert info["channels"] == 3 and info["classes"][1] == "automobile"


def test_cifar10_trains_through_the_cli(tmp_path, capsys):
    (tmp_path / "cifar10").mkdir()
    cifar_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", n=8)
    code, out, err = run_cli(capsys, "train", "--dataset", "cifar10", "--data-dir", tmp_path, "--preset", "tiny",
                             "--epochs", "1", "--out", tmp_path / "run", "--no-report", "--no-plot")
    assert code == 0, err
    from cnnscope.runs.load import load_run
    assert load_run(tmp_path / "run").spec.input_shape == (3, 32, 32)


def test_cifar10_extracted_folder_works_too(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    cifar_tar(tmp_path / "a.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tf:
        tf.extractall(folder, filter="data")
    assert len(load_dataset("cifar10", data_dir=tmp_path).train_y) == 20


def test_cifar_batch_of_a_wrong_length_is_refused(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in datasets.CIFAR_FILES.values():
        (folder / name).write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DataError, match="is not a whole number of CIFAR-10 records"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_archive_links_and_missing_members_are_refused(tmp_path, capsys):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tf:
        link = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    code, _, err = run_cli(capsys, "data", "cifar10", "--data-dir", tmp_path)
    assert code == 2 and "data_batch_1.bin is not a regular file" in one_line_error(err)
    (tmp_path / "emnist-digits").mkdir()
    with zipfile.ZipFile(tmp_path / "emnist-digits" / "gzip.zip", "w") as zf:
        zf.writestr("gzip/../../evil", b"x")
    with pytest.raises(DataError, match="holds no file gzip/emnist-digits-train-images-idx3-ubyte.gz"):
        load_dataset("emnist-digits", data_dir=tmp_path)
    assert not (tmp_path.parent / "evil").exists()


def test_download_of_an_archive_checks_its_md5_and_extracts(tmp_path, monkeypatch, caplog):
    source = tmp_path / "mirror"
    source.mkdir()
    cifar_tar(source / "cifar-10-binary.tar.gz")
    digest = hashlib.md5((source / "cifar-10-binary.tar.gz").read_bytes()).hexdigest()
    info = dataclasses.replace(datasets.DATASETS["cifar10"], mirrors=(source.as_uri() + "/",), archive_md5=digest)
    monkeypatch.setitem(datasets.DATASETS, "cifar10", info)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert len(load_dataset("cifar10").test_y) == 4
    assert (tmp_path / "cache" / "cnnscope" / "cifar10" / "test_batch.bin").is_file()
    bad = dataclasses.replace(info, archive_md5="0" * 32)
    monkeypatch.setitem(datasets.DATASETS, "cifar10", bad)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    with pytest.raises(DataError, match="is corrupt: MD5"):
        load_dataset("cifar10")
    assert not (tmp_path / "cache2" / "cnnscope" / "cifar10" / "cifar-10-binary.tar.gz").exists()


def test_missing_files_say_which_names_are_expected(tmp_path, capsys):
    (tmp_path / "kmnist").mkdir()
    code, _, err = run_cli(capsys, "data", "emnist-digits", "--data-dir", tmp_path)
    line = one_line_error(err)
    assert code == 2 and "emnist-digits/emnist-digits-train-images-idx3-ubyte.gz or the official archive " \
                         "emnist-digits/gzip.zip" in line
