"""Dataset files: the download cache, checked downloads, members taken out of official archives, and the
readers of the official formats (IDX, CIFAR-10 binary) that check headers before allocating."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import struct
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

log = logging.getLogger("cnnscope")

MAX_IDX_BYTES = 2**31  # 2 GiB of pixels: 40× the MNIST training images; larger headers are corrupt or hostile
MAX_MEMBER_BYTES = 2**31  # a member taken out of an archive (EMNIST's largest gzip IDX is ~0.5 GiB)
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes of a 32×32 picture
MAX_CIFAR_RECORDS = 100_000  # per batch file (the official ones hold 10,000)


def cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/cnnscope, else ~/.cache/cnnscope."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnscope"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """(directory, is_user_supplied): explicit argument, then CNNSCOPE_DATA_DIR, then the download cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), True
    env = os.environ.get("CNNSCOPE_DATA_DIR")
    if env:
        return Path(env).expanduser(), True
    return cache_dir(), False


def file_md5(path: Path) -> str:
    """The MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_MD5_CACHE: dict[tuple[str, int, int], str] = {}
CHECKED = "checked.json"  # in cache_dir(): MD5s of local files by path, size and mtime; notices already given
MAX_CHECKED = 256  # entries of each kind kept (the oldest go first)


def _read_checked() -> dict[str, Any]:
    """The remembered checks ({"md5": {path: [size, mtime_ns, md5]}, "told": [key, …]}); empty when the file is
    missing or unreadable (a cache: nothing is lost, the files are checked again)."""
    try:
        data = json.loads((cache_dir() / CHECKED).read_text("utf-8"))
    except (OSError, ValueError):
        return {"md5": {}, "told": []}
    ok = isinstance(data, dict) and isinstance(data.get("md5"), dict) and isinstance(data.get("told"), list)
    return data if ok else {"md5": {}, "told": []}


def _write_checked(data: dict[str, Any]) -> None:
    """Keep the newest MAX_CHECKED entries of each kind; a failed write only costs a check or a notice again."""
    from .fileio import atomic_write_text

    data = {"md5": dict(list(data["md5"].items())[-MAX_CHECKED:]), "told": data["told"][-MAX_CHECKED:]}
    try:
        atomic_write_text(cache_dir() / CHECKED, json.dumps(data))
    except OSError as exc:
        log.debug("could not remember the file checks in %s: %s", cache_dir(), exc)


def md5_cached(path: Path) -> str:
    """MD5 of a local file, computed once per (path, size, mtime): remembered in this process and across
    processes (cache_dir()/checked.json), so a command does not read a data set's files again to check them."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_CACHE:
        checked = _read_checked()
        stored = checked["md5"].get(key[0])
        if isinstance(stored, list) and stored[:2] == [key[1], key[2]] and isinstance(stored[-1], str):
            _MD5_CACHE[key] = stored[-1]
        else:
            _MD5_CACHE[key] = file_md5(path)
            checked["md5"].pop(key[0], None)
            checked["md5"][key[0]] = [key[1], key[2], _MD5_CACHE[key]]
            _write_checked(checked)
    return _MD5_CACHE[key]


def file_key(paths: list[Path]) -> str:
    """Words naming files as they are now (path, size, modification time): a changed file is a new key."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return json.dumps(sorted(stats))


def first_notice(key: str) -> bool:
    """True the first time `key` is asked about, in any process (remembered in cache_dir()/checked.json)."""
    checked = _read_checked()
    if key in checked["told"]:
        return False
    checked["told"].append(key)
    _write_checked(checked)
    return True


def download(url: str, dest: Path, md5: str | None) -> None:
    """Download `url` to `dest` with a progress bar, verify its MD5 (a warning when none is published), then
    rename into place."""
    from tqdm.auto import tqdm

    from .fileio import atomic_write

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = file_md5(tmp)
        if md5 is None:
            log.warning("%s: no published checksum is known; the file is unverified (MD5 %s)", url, got)
        elif got != md5:
            raise DataError(f"download of {url} is corrupt: MD5 {got}, expected {md5}; try again")

    atomic_write(dest, fetch)


def extract_member(archive: Path, member: str, dest: Path, max_bytes: int = MAX_MEMBER_BYTES) -> None:
    """Copy the regular file called exactly `member` out of a zip or tar archive to `dest` (atomically).

    Only that name is read: no other member, no link, nothing larger than `max_bytes`; `dest` is chosen by the
    caller, so a member's path can never lead outside it.
    """
    from .fileio import atomic_write

    def copy(src, tmp: Path) -> None:
        with open(tmp, "wb") as out:
            copied = 0
            for chunk in iter(lambda: src.read(1 << 20), b""):
                copied += len(chunk)
                if copied > max_bytes:
                    raise DataError(f"{archive}: member {member} is larger than {max_bytes:,} bytes; the "
                                    f"archive is corrupt")
                out.write(chunk)

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                info = _zip_member(zf, archive, member, max_bytes)
                with zf.open(info) as src:
                    atomic_write(dest, lambda tmp: copy(src, tmp))
            return
        with tarfile.open(archive, "r:*") as tf:
            info = _tar_member(tf, archive, member, max_bytes)
            src = tf.extractfile(info)
            with src:
                atomic_write(dest, lambda tmp: copy(src, tmp))
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: not a readable zip or tar archive ({exc}); delete it and download it "
                        f"again") from None


def _zip_member(zf: zipfile.ZipFile, archive: Path, member: str, max_bytes: int) -> zipfile.ZipInfo:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise DataError(f"{archive} holds no file {member}; is it the official archive?") from None
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    if info.is_dir() or is_link or info.file_size > max_bytes:
        raise DataError(f"{archive}: {member} is not a regular file of at most {max_bytes:,} bytes")
    return info


def _tar_member(tf: tarfile.TarFile, archive: Path, member: str, max_bytes: int) -> tarfile.TarInfo:
    try:
        info = tf.getmember(member)
    except KeyError:
        raise DataError(f"{archive} holds no file {member}; is it the official archive?") from None
    if not info.isfile() or info.size > max_bytes:
        raise DataError(f"{archive}: {member} is not a regular file of at most {max_bytes:,} bytes")
    return info


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or plain) of unsigned bytes into an array of its declared shape.

    The header is checked before the payload is read: sizes that overflow, exceed MAX_IDX_BYTES or disagree
    with the file's length are DataErrors, so a corrupt or hostile file never causes a large allocation.
    """
    path = Path(path)
    try:
        with _open(path) as fh:
            shape = _idx_shape(path, fh)
            expected = math.prod(shape)  # Python ints: no overflow
            if math.prod(max(d, 1) for d in shape) > MAX_IDX_BYTES:  # (0, 3e9, 3e9) is absurd too
                size = f"{expected:,} bytes" if expected else "absurd dimensions"
                raise DataError(f"{path}: header declares shape {shape} ({size}), more than the "
                                f"{MAX_IDX_BYTES:,} accepted; the file is corrupt")
            raw = fh.read(expected + 1)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, expected an IDX file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or not a valid gzip file ({exc}); delete it and download again") \
            from None
    if len(raw) != expected:
        amount = f"{len(raw)}" if len(raw) < expected else "more"
        raise DataError(f"{path}: holds {amount} data bytes, header says {expected} for shape {shape}; the "
                        f"file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, fh) -> tuple[int, ...]:
    """Read and check the magic number and the dimensions at the start of an open IDX file."""
    magic = fh.read(4)
    if not magic:
        raise DataError(f"{path}: the file is empty; expected an IDX file (delete it and download it again)")
    if len(magic) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(magic)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: wrong IDX magic number 0x{magic.hex()}; expected 0x00000801 (labels) "
                        f"or 0x00000803 (images)")
    dims = fh.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    return struct.unpack(f">{ndim}I", dims)


def read_pair(images_path: Path, labels_path: Path, num_classes: int | None = None,
              label_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) uint8 and labels (n,) int64 of one split (minus `label_offset`, e.g. 1 for EMNIST
    letters); labels checked against `num_classes`."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected an image file (3-D IDX), found {images.ndim}-D")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a label file (1-D IDX), found {labels.ndim}-D")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
                        f"labels; they must match")
    if images.size == 0:
        raise DataError(f"{images_path} holds no pixels (shape {images.shape}); the file is corrupt or incomplete")
    labels = labels.astype(np.int64) - label_offset
    if num_classes is not None:
        check_labels(labels, num_classes, str(labels_path), label_offset)
    return images, labels


def check_labels(labels: np.ndarray, num_classes: int, where: str, offset: int = 0) -> None:
    """DataError naming the first label outside 0..num_classes-1 (as stored: + `offset`), if any."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"{where}: label {int(labels[bad[0]]) + offset} at index {int(bad[0])} is out of range; "
                        f"the dataset has {num_classes} classes ({offset}–{num_classes - 1 + offset}); the file "
                        f"is corrupt")


def read_cifar_batches(paths: list[Path], num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batches -> pictures (n, 32, 32, 3) uint8 and labels (n,) int64.

    Each record is one label byte then 1024 red, 1024 green and 1024 blue bytes (rows of 32); a file's length
    is checked to be a whole number of records before it is read.
    """
    images, labels = [], []
    for path in paths:
        try:
            size = path.stat().st_size
            if size == 0 or size % CIFAR_RECORD or size // CIFAR_RECORD > MAX_CIFAR_RECORDS:
                raise DataError(f"{path}: {size:,} bytes is not a whole number of CIFAR-10 records "
                                f"({CIFAR_RECORD} bytes each, at most {MAX_CIFAR_RECORDS:,}); the file is corrupt")
            records = np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
        except FileNotFoundError:
            raise DataError(f"missing file {path}") from None
        except IsADirectoryError:
            raise DataError(f"{path} is a directory, expected a CIFAR-10 batch file") from None
        y = records[:, 0].astype(np.int64)
        check_labels(y, num_classes, str(path))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
