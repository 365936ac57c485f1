"""Dataset files: the download cache, checked downloads, members taken out of official archives by exact name."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

from cnnscope.base.errors import DataError
from cnnscope.base.fileio import atomic_write, atomic_write_text
from cnnscope.base.progress import progress_bar

log = logging.getLogger("cnnscope")

MAX_MEMBER_BYTES = 2**31  # a member taken out of an archive (EMNIST's largest gzip IDX is ~0.5 GiB)


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

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with progress_bar(show=True, total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
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
