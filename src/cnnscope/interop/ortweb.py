"""onnxruntime-web for the static site: the pinned npm package, fetched once into cnnscope's cache and verified.

The runtime is never part of cnnscope's own files. Like the datasets, it is downloaded from the npm registry the
first time a site is exported (the package tarball, checked against the registry's published `dist.integrity`,
an SHA-512 pinned below), and the three files a page needs are kept in the cache, each checked against its
SHA-256 at every use. An offline machine points `--ort-dir` at a local copy: a folder holding the tarball
(`npm pack onnxruntime-web@VERSION` writes it) or the unpacked package (`npm install` puts it in
node_modules/onnxruntime-web).

The page runs the plain wasm build single-threaded (no SharedArrayBuffer, so no cross-origin isolation headers):
`ort.wasm.min.mjs` (the API, an ES module), `ort-wasm-simd-threaded.mjs` (Emscripten's loader) and
`ort-wasm-simd-threaded.wasm`. They are copied with a `.js` extension on the two modules, so any static host
(one that does not know `.mjs`) serves them as JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cnnscope.base.errors import SiteError
from cnnscope.base.fileio import atomic_write
from cnnscope.data.download import cache_dir, extract_member

log = logging.getLogger("cnnscope")

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
# `npm view onnxruntime-web@1.30.0 dist.integrity`: the registry's hash of the tarball it serves.
INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
REGISTRY = "https://registry.npmjs.org"  # CNNSCOPE_NPM_REGISTRY names a mirror (the hashes still decide)
MAX_TARBALL_BYTES = 200 * 2**20  # the 1.30.0 tarball is 33 MB
# file in the package -> (name in the site's ort/ folder, SHA-256 of the file in the verified tarball)
FILES = {
    "dist/ort.wasm.min.mjs": ("ort.wasm.min.js",
                              "219e6a1fc8a9938268d18efca3c91d310bd2f4a59bbd13744df5b2b7fc6cee3b"),
    "dist/ort-wasm-simd-threaded.mjs": ("ort-wasm-simd-threaded.js",
                                        "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b"),
    "dist/ort-wasm-simd-threaded.wasm": ("ort-wasm-simd-threaded.wasm",
                                         "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2"),
}


def runtime_cache() -> Path:
    """Where the verified runtime files are kept: <cache>/onnxruntime-web/<version>/."""
    return cache_dir() / PACKAGE / VERSION


def tarball_url() -> str:
    """The pinned tarball's address on the npm registry (or the mirror CNNSCOPE_NPM_REGISTRY names)."""
    registry = os.environ.get("CNNSCOPE_NPM_REGISTRY", REGISTRY).rstrip("/")
    return f"{registry}/{PACKAGE}/-/{TARBALL}"


def _digest(path: Path, algorithm: str) -> bytes:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def integrity_of(path: Path) -> str:
    """A file's hash in npm's Subresource Integrity form: 'sha512-' + base64 of its SHA-512."""
    return "sha512-" + base64.b64encode(_digest(path, "sha512")).decode("ascii")


def _check_file(path: Path, sha256: str) -> bool:
    return path.is_file() and not path.is_symlink() and _digest(path, "sha256").hex() == sha256


def _cached() -> dict[str, Path] | None:
    """The cached files when every one is there and matches its hash, else None."""
    folder = runtime_cache()
    files = {name: folder / name for name, _ in FILES.values()}
    return files if all(_check_file(files[name], sha) for name, sha in FILES.values()) else None


def _from_tarball(tarball: Path, source: str) -> dict[str, Path]:
    """Verify the tarball against INTEGRITY, then take the three files out of it into the cache."""
    got = integrity_of(tarball)
    if got != INTEGRITY:
        raise SiteError(f"{source} is not {PACKAGE} {VERSION} as the npm registry publishes it: its integrity is "
                        f"{got}, expected {INTEGRITY}")
    folder = runtime_cache()
    folder.mkdir(parents=True, exist_ok=True)
    for member, (name, sha256) in FILES.items():
        extract_member(tarball, f"package/{member}", folder / name, MAX_TARBALL_BYTES)
        if not _check_file(folder / name, sha256):  # cannot happen for the verified tarball; never trust it
            raise SiteError(f"{source}: {member} does not match its pinned SHA-256")
    return {name: folder / name for name, _ in FILES.values()}


def _download(url: str, dest: Path) -> None:
    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            copied = 0
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                copied += len(chunk)
                if copied > MAX_TARBALL_BYTES:
                    raise SiteError(f"{url} is larger than {MAX_TARBALL_BYTES:,} bytes; not the pinned package")
                out.write(chunk)

    atomic_write(dest, fetch)


def fetch_runtime() -> dict[str, Path]:
    """The runtime files (site name -> path) from the cache, downloading and verifying the tarball the first time.

    SiteError (one line) when the registry cannot be reached or serves something else."""
    cached = _cached()
    if cached:
        return cached
    url = tarball_url()
    log.info("downloading %s %s from %s (once; kept in %s)", PACKAGE, VERSION, url, runtime_cache())
    with tempfile.TemporaryDirectory(prefix="cnnscope-ort-") as tmp:
        tarball = Path(tmp) / TARBALL
        try:
            _download(url, tarball)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SiteError(f"could not download {PACKAGE} {VERSION} from {url} ({reason}); on a machine without "
                            f"network, give --ort-dir DIR with {TARBALL} (npm pack {PACKAGE}@{VERSION})") from None
        return _from_tarball(tarball, url)


def _from_package(folder: Path) -> dict[str, Path]:
    """An unpacked package (node_modules/onnxruntime-web): each file checked against its pinned SHA-256."""
    try:
        version = json.loads((folder / "package.json").read_text("utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        version = None
    if version != VERSION:
        raise SiteError(f"{folder} holds {PACKAGE} {version or '(unreadable package.json)'}, not {VERSION}; "
                        f"install {PACKAGE}@{VERSION} or give the folder holding {TARBALL}")
    out = {}
    for member, (name, sha256) in FILES.items():
        path = folder / member
        if not _check_file(path, sha256):
            raise SiteError(f"{path} is missing or differs from {PACKAGE} {VERSION} as the npm registry "
                            f"publishes it")
        out[name] = path
    return out


def local_runtime(ort_dir: str | os.PathLike) -> dict[str, Path]:
    """The runtime files from a local copy: a folder with the tarball, or the unpacked package (also the
    node_modules folder above it). SiteError naming what the folder should hold otherwise."""
    folder = Path(ort_dir).expanduser()
    wanted = f"it should hold {TARBALL} (npm pack {PACKAGE}@{VERSION}) or the unpacked package"
    if not folder.is_dir():
        raise SiteError(f"--ort-dir {folder}: no such folder; {wanted}")
    if (folder / TARBALL).is_file():
        return _from_tarball(folder / TARBALL, str(folder / TARBALL))
    for candidate in (folder, folder / PACKAGE, folder / "node_modules" / PACKAGE):
        if (candidate / "package.json").is_file():
            return _from_package(candidate)
    raise SiteError(f"--ort-dir {folder} holds neither {TARBALL} nor an unpacked {PACKAGE} package; {wanted}")


def runtime_files(ort_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The verified runtime files by their name in the site: from `ort_dir` when given, else the cache (fetched
    from the npm registry the first time)."""
    return local_runtime(ort_dir) if ort_dir is not None else fetch_runtime()


def copy_runtime(files: dict[str, Path], folder: Path) -> int:
    """Copy the runtime files into `folder` (the site's ort/); returns the bytes copied."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, path in files.items():
        shutil.copyfile(path, folder / name)
        total += (folder / name).stat().st_size
    return total


__all__ = ["INTEGRITY", "VERSION", "copy_runtime", "fetch_runtime", "local_runtime", "runtime_files"]
