"""A cache of decoded built-in datasets: one safetensors file per dataset in the cache directory.

Decompressing and decoding the IDX files costs ~0.3 s at every `cnnscope train` start (MNIST, 2 cores); reading
the decoded pixels back costs ~0.1 s. The file is keyed by the source files' names, sizes and modification
times and by this module's format version (a changed source file is a new key), checked on read (header, key,
names, dtypes, shapes, a SHA-256 checksum of the arrays stored beside the key, then the labels as every load
checks them), and written atomically. Anything wrong with
it is a miss: the dataset is decoded again and the file rewritten; a failed write only costs the next start.
CNNSCOPE_DATA_CACHE=0 turns the cache off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.errors import CnnscopeError, DataError
from cnnscope.base.fileio import atomic_write, read_safetensors_header
from cnnscope.data.download import cache_dir
from cnnscope.data.raw import RawData, check_raw
from cnnscope.data.sources import DATASETS, ensure_files, parse_source

log = logging.getLogger("cnnscope")
VERSION = "1"
ARRAYS = {"train_raw": "U8", "train_y": "I64", "test_raw": "U8", "test_y": "I64"}
Loader = Callable[[Any], tuple[Any, RawData]]


def enabled() -> bool:
    """Whether the cache is used (CNNSCOPE_DATA_CACHE=0 turns it off)."""
    return os.environ.get("CNNSCOPE_DATA_CACHE", "1").strip() not in ("0", "false", "no", "off")


KEEP = 8  # cache files kept (one per dataset and source folder); the least recently written go first


def cache_file(name: str, folder: Path) -> Path:
    """Where the decoded arrays of built-in dataset `name` read from `folder` are kept."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "decoded" / f"{name}-{digest}.safetensors"


def source_key(paths: dict[str, Path]) -> str:
    """A digest of the source files' names, sizes and modification times, and the cache format's version."""
    stats = []
    for key in sorted(paths):
        st = paths[key].stat()
        stats.append([key, str(paths[key].resolve()), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps([VERSION, stats]).encode()).hexdigest()


def cached_source(config: Any, load: Loader) -> tuple[Any, RawData]:
    """`load(config)` (a DataConfig -> (config, RawData)), through the cache for built-in datasets."""
    kind, name = parse_source(config.dataset)
    if kind != "builtin" or not enabled():
        return load(config)
    paths = ensure_files(DATASETS[name], config.data_dir)  # downloads what is missing, as load does
    key = source_key(paths)
    path = cache_file(name, next(iter(paths.values())).parent)
    raw = read_cache(path, key, DATASETS[name].class_names)
    if raw is not None:
        return config, raw
    config, raw = load(config)
    write_cache(path, key, raw)
    return config, raw


def read_cache(path: Path, key: str, class_names: tuple[str, ...]) -> RawData | None:
    """The RawData saved at `path` under `key`; None when absent, stale or malformed (said at debug level)."""
    if not path.is_file():
        return None
    try:
        header, meta = read_safetensors_header(path, DataError)
        if meta.get("key") != key or {n: header[n][0] for n in header} != ARRAYS:
            log.debug("%s: stale (another source or version); decoding again", path)
            return None
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        if "checksum" not in meta:  # written before caches carried one: rewritten with it, nothing to warn about
            log.debug("%s: no checksum (an older cache); decoding again", path)
            return None
        if meta["checksum"] != checksum(arrays):  # changed after it was written: labels or pixels edited
            log.warning("%s: its arrays do not match their checksum; decoding the data set again", path)
            return None
        raw = RawData(*(arrays[n] for n in ARRAYS), tuple(class_names))
        check_raw(raw, str(path))
        return raw
    except (CnnscopeError, OSError, ValueError, KeyError) as exc:
        log.debug("%s: unreadable (%s); decoding again", path, exc)
        return None


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, shapes and bytes: 0.09 s for MNIST's 55 MB here (SHA-NI; BLAKE2b took 0.18 s,
    benchmarks/README.md)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def write_cache(path: Path, key: str, raw: RawData) -> None:
    """Save `raw`'s arrays under `key` (temp file then rename); a failure is logged and ignored."""
    from safetensors.numpy import save_file

    arrays = {f.name: np.ascontiguousarray(getattr(raw, f.name)) for f in dataclasses.fields(raw) if f.name in ARRAYS}
    try:
        metadata = {"key": key, "checksum": checksum(arrays)}
        atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
        files = sorted(path.parent.glob("*.safetensors"), key=lambda f: f.stat().st_mtime_ns, reverse=True)
        for old in files[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("%s: not written (%s)", path, exc)
