"""Where a dataset's raw pictures come from: the built-in datasets (official files, downloaded once into the
cache or read from --data-dir DIR/<name>/), `npz:FILE` and `folder:PATH`, and the one place for class names."""

from __future__ import annotations

import logging
import os
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnscope.base.errors import DataError, choice_error
from cnnscope.data.download import download, extract_member, file_key, first_notice, md5_cached, resolve_data_dir
from cnnscope.data.folder import load_own
from cnnscope.data.formats import read_cifar_batches, read_pair
from cnnscope.data.npz import load_npz
from cnnscope.data.raw import RawData, check_raw, shape_text

log = logging.getLogger("cnnscope")

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SOURCES = ("npz", "folder")  # --dataset npz:FILE, folder:PATH
EMNIST_URL = "https://biometrics.nist.gov/cs_links/EMNIST/"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR_DIR = "cifar-10-batches-bin/"
CIFAR_FILES = {**{f"data_batch_{i}": f"data_batch_{i}.bin" for i in range(1, 6)}, "test_batch": "test_batch.bin"}
# emnist-balanced-mapping.txt (published with EMNIST): label -> ASCII code. Digits, A–Z, then the 11 lower-case
# letters that do not look like their capitals.
EMNIST_BALANCED = tuple(chr(c) for c in (*range(48, 58), *range(65, 91), 97, 98, 100, 101, 102, 103, 104, 110,
                                         113, 114, 116))


@dataclass(frozen=True)
class DatasetInfo:
    """Where a built-in dataset comes from, how its files are laid out and checked, and its classes."""

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str | None]  # published checksums by file key (None: none published, the file is unverified)
    class_names: tuple[str, ...]
    files: dict[str, str] = field(default_factory=lambda: dict(FILES))  # file key -> official file name
    layout: str = "idx"  # idx, emnist (IDX stored transposed) or cifar (binary batches)
    archive: str | None = None  # the official archive holding the files (downloaded when they are missing)
    archive_md5: str | None = None
    member_dir: str = ""  # the files' folder inside the archive
    label_offset: int = 0  # stored label of class 0 (EMNIST letters: 1)
    input_shape: tuple[int, int, int] = (1, 28, 28)  # the model input (C, H, W) its pictures make


def _emnist(split: str, class_names: tuple[str, ...], offset: int = 0) -> DatasetInfo:
    files = {key: f"emnist-{split}-{name.replace('t10k', 'test')}" for key, name in FILES.items()}
    return DatasetInfo(f"emnist-{split}", (EMNIST_URL,), dict.fromkeys(files), class_names, files, "emnist",
                       "gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e", "gzip/", offset)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
         "test_images": "9fb629c4189551a2d022fa330f9573f3", "test_labels": "ec29112dd5afa0611ce80d1b7f02629c"},
        tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
         "test_images": "bef4ecab320f06d8554ea6380940ec79", "test_labels": "bb300cfdad3c16e7a12a480ee83cd310"},
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
    ),
    # KMNIST's IDX files; the MD5s are those torchvision (and torch for R) publish for these URLs. Classes:
    # the romanised hiragana of kmnist_classmap.csv (お き す つ な は ま や れ を).
    "kmnist": DatasetInfo(
        "kmnist", ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {"train_images": "bdb82020997e1d708af4cf47b453dcf7", "train_labels": "e144d726b3acfaa3e44228e80efcd344",
         "test_images": "5c965bf0a639b31b8f53240b1b52f4d7", "test_labels": "7320c461ea6c1c855c0b718fb2a4b134"},
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
    # EMNIST: only the archive's checksum is published; its members are read by exact name.
    "emnist-digits": _emnist("digits", tuple(str(d) for d in range(10))),
    # letters merge upper and lower case; stored labels 1..26 become classes 0..25, named by the capital.
    "emnist-letters": _emnist("letters", tuple(chr(c) for c in range(65, 91)), offset=1),
    "emnist-balanced": _emnist("balanced", EMNIST_BALANCED),
    "cifar10": DatasetInfo(
        "cifar10", (CIFAR_URL,), dict.fromkeys(CIFAR_FILES),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        dict(CIFAR_FILES), "cifar", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", CIFAR_DIR,
        input_shape=(3, 32, 32)),
}


def parse_source(dataset: str) -> tuple[str, str]:
    """('builtin', name), ('npz', path) or ('folder', path) of a --dataset value; DataError listing the valid."""
    kind, sep, rest = dataset.partition(":")
    if sep and kind in SOURCES:
        if not rest or "\0" in rest:
            raise DataError(f"--dataset {kind}:PATH needs a path after '{kind}:', received {dataset!r}")
        return kind, rest
    if dataset in DATASETS:
        return "builtin", dataset
    raise choice_error(DataError, "dataset", dataset, [*DATASETS, "npz:FILE", "folder:PATH"])


def short_name(dataset: str) -> str:
    """A name for files and run directories: the built-in name, or the npz file's / folder's name."""
    kind, value = parse_source(dataset)
    if kind == "builtin":
        return value
    stem = Path(value).stem if kind == "npz" else Path(value).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or kind


def ensure_files(info: DatasetInfo, data_dir: str | os.PathLike | None) -> dict[str, Path]:
    """Paths of the dataset's files: in DIR/<name>/ (the files, or the official archive to take them from), else
    downloaded into the cache."""
    root, user_supplied = resolve_data_dir(data_dir)
    folder = root / info.name
    paths = {key: folder / fname for key, fname in info.files.items()}
    for key, path in paths.items():
        if path.is_file():
            continue
        plain = path.with_suffix("")  # an uncompressed copy is fine too
        inside = folder / info.member_dir / info.files[key]  # or the archive's folder, extracted
        if path.suffix == ".gz" and plain.is_file():
            paths[key] = plain
        elif info.member_dir and inside.is_file():
            paths[key] = inside
        elif info.archive:
            _from_archive(info, folder, key, path, user_supplied)
        elif user_supplied:
            raise DataError(f"missing file {path}: the data directory must hold {info.name}/{info.files[key]} "
                            f"(official file names); fix --data-dir / CNNSCOPE_DATA_DIR")
        else:
            _download_any(info, info.files[key], path, info.md5[key])
    if user_supplied:
        _warn_differ(info, folder, paths)
    return paths


def _from_archive(info: DatasetInfo, folder: Path, key: str, path: Path, user_supplied: bool) -> None:
    """Take file `key` out of the official archive in `folder` (downloading the archive first into the cache)."""
    archive = folder / info.archive
    if not archive.is_file():
        if user_supplied:
            raise DataError(f"missing file {path}: the data directory must hold {info.name}/{info.files[key]} or "
                            f"the official archive {info.name}/{info.archive}; fix --data-dir / CNNSCOPE_DATA_DIR")
        _download_any(info, info.archive, archive, info.archive_md5)
    elif user_supplied and info.archive_md5 and md5_cached(archive) != info.archive_md5:
        _warn_once(folder, (archive,))
    extract_member(archive, info.member_dir + info.files[key], path)


def _download_any(info: DatasetInfo, fname: str, path: Path, md5: str | None) -> None:
    """Download `fname` from the first mirror that answers; DataError saying how to work offline."""
    errors = []
    for mirror in info.mirrors:
        url = mirror + fname
        log.info("downloading %s", url)
        try:
            download(url, path, md5)
            return
        except (urllib.error.URLError, OSError, DataError) as exc:
            errors.append(f"{url}: {exc}")
    raise DataError(f"could not download {fname} ({'; '.join(errors)}); without internet, pass --data-dir DIR "
                    f"(or set CNNSCOPE_DATA_DIR=DIR) holding {info.name}/{fname}")


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _differing(info: DatasetInfo, paths: dict[str, Path]) -> list[Path]:
    """The files whose MD5 is not the published one (checked once per file version: md5_cached)."""
    return [p for key, p in paths.items()
            if p.suffix == ".gz" and info.md5.get(key) and md5_cached(p) != info.md5[key]]


def _warn_differ(info: DatasetInfo, folder: Path, paths: dict[str, Path]) -> None:
    differ = _differing(info, paths)
    if differ:
        _warn_once(folder, tuple(differ))


def differ_words(folder: Path, differ: tuple[Path, ...]) -> str:
    """The line saying which of a data directory's files are not the official ones."""
    names = [p.name for p in differ]
    return (f"{folder}: {', '.join(names)} differ{'s' if len(names) == 1 else ''} from the official files (MD5); "
            f"using them as supplied")


def _warn_once(folder: Path, differ: tuple[Path, ...]) -> None:
    """A warning once per data directory and version of its files, in any process (the files' sizes and times
    are remembered: first_notice); later loads log it at debug level. `cnnscope data` always says it."""
    key = (str(folder), tuple(p.name for p in differ))
    if key in _WARNED:
        return
    _WARNED.add(key)
    told = first_notice("differ " + file_key(list(differ)))
    log.log(logging.WARNING if told else logging.DEBUG, "%s", differ_words(folder, differ))


def checksum_note(source: str, data_dir: str | os.PathLike | None) -> str | None:
    """For `cnnscope data`: the line on a built-in dataset's files in a data directory that differ from the official
    ones; None when they match, for downloaded files (checked when downloaded) and for other sources."""
    kind, name = parse_source(source)
    root, user_supplied = resolve_data_dir(data_dir)
    if kind != "builtin" or not user_supplied:
        return None
    info = DATASETS[name]
    differ = _differing(info, ensure_files(info, data_dir))
    return differ_words(root / info.name, tuple(differ)) if differ else None


def load_builtin(name: str, data_dir: str | os.PathLike | None) -> RawData:
    """The raw data of a built-in dataset, every split checked now (not when an epoch reaches a bad label)."""
    info = DATASETS[name]
    paths = ensure_files(info, data_dir)
    classes = len(info.class_names)
    if info.layout == "cifar":
        train = read_cifar_batches([paths[f"data_batch_{i}"] for i in range(1, 6)], classes)
        test = read_cifar_batches([paths["test_batch"]], classes)
    else:
        train, test = (read_pair(paths[f"{s}_images"], paths[f"{s}_labels"], classes, info.label_offset)
                       for s in ("train", "test"))
    if info.layout == "emnist":  # stored transposed: each picture's rows are its columns
        train, test = ((np.ascontiguousarray(x.transpose(0, 2, 1)), y) for x, y in (train, test))
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(f"{name}: training pictures are {shape_text(train[0])} but test ones "
                        f"{shape_text(test[0])}; both splits must have the same size")
    return RawData(*train, *test, info.class_names)


def load_raw(config) -> RawData:
    """The raw data a DataConfig names (built-in, npz: or folder:), checked."""
    kind, value = parse_source(config.dataset)
    if kind == "builtin":
        raw = load_builtin(value, config.data_dir)
    elif kind == "npz":
        raw = load_npz(value)
    else:
        raw = load_own(value, image_size=config.image_size, channels=config.channels, skip_bad=config.skip_bad,
                       test_size=config.test_size, seed=config.seed, progress=None)
    check_raw(raw, config.dataset if kind == "builtin" else value)
    return raw


def class_names_of(config) -> tuple[str, ...]:
    """The class names of the data a DataConfig names: the built-in ones, else those saved with the run."""
    kind, value = parse_source(config.dataset)
    if kind == "builtin":
        return DATASETS[value].class_names
    if config.class_names:
        return tuple(config.class_names)
    return load_raw(config).class_names
