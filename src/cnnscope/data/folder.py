"""Your own pictures as a data set: PATH/train/<class>/* and PATH/test/<class>/*, or PATH/<class>/* split here.

Decoded once (Pillow; PNG, JPEG, GIF, BMP, WebP; the pixel limit checked from the header), brought to one size and
channel count (notes say what was done) and cached in data.cache_dir()/folders/ keyed by every file's name, size
and mtime plus the settings. Bad data is named, never guessed: unreadable pictures, one class, an empty split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from stat import S_ISREG

import numpy as np

from cnnscope.base.errors import DataError, brief
from cnnscope.base.fileio import atomic_write
from cnnscope.base.progress import progress_bar
from cnnscope.data.download import cache_dir
from cnnscope.data.formats import MAX_IDX_BYTES, check_labels
from cnnscope.data.pictures import MAX_PIXELS, decode_chunk, probe_chunk
from cnnscope.data.raw import MAX_SEED, RawData  # one definition for every source: built-in, npz:, folder:

log = logging.getLogger("cnnscope")

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEFAULT_TEST_SHARE = 0.2  # flat folders: share of each class held out for testing when test_size is 0
LISTED = 5  # names quoted in a note or error before "…"
CACHE_VERSION = 2  # bump when decoding changes what the arrays hold
MAX_AUTO_SIDE = 256  # without --image-size, pictures whose common size is larger are scaled to this longer side
MAX_CACHE_BYTES = 2**30  # the folders' decoded-picture caches together; the least recently used go first
POOL_MIN = 4000  # pictures below which decoding stays in this process
CHUNK = 1000  # pictures per task of the process pool


@dataclass
class FolderListing:
    """The pictures found under a folder, before decoding: layout, class names, files and notes."""

    root: Path
    layout: str  # "split" (train/ and test/) or "flat" (class folders)
    class_names: tuple[str, ...]
    files: list[tuple[str, int, str]] = field(default_factory=list)  # (relative path, class, "train"/"test"/"")
    stamps: list[str] = field(default_factory=list)  # "relative path, size, mtime_ns" of each file
    notes: list[str] = field(default_factory=list)


@dataclass
class Decoded:
    """A folder's decoded pictures before the split (what the cache holds: a new seed or test size reuses it)."""

    pixels: np.ndarray  # uint8 (n, H, W) or (n, H, W, 3)
    labels: np.ndarray  # int64 (n,)
    in_test: np.ndarray  # bool (n,): from PATH/test/ (the train/test layout; all False in a flat folder)
    notes: list[str]


def load_own(source: str, *, image_size: tuple[int, int] | None = None, channels: int | None = None,
             skip_bad: bool = False, test_size: int | None = 0, seed: int = 0, progress: bool | None = None) -> RawData:
    """Load a folder of class folders as uint8 pictures and labels (cached after the first decode)."""
    test_size = 0 if test_size is None else test_size  # None, as DataConfig's default, means 0
    image_size, channels = _check_settings(image_size, channels, test_size, seed)
    listing = scan_folder(source)
    if listing.layout == "split" and test_size:
        raise DataError(f"test_size {test_size} applies to a folder of class folders; {listing.root} has its own "
                        f"test/ folder: drop --test-size or the test/ folder")
    path = cache_path(listing, {"image_size": image_size, "channels": channels, "skip_bad": bool(skip_bad)})
    decoded = read_cache(path, len(listing.class_names))
    if decoded is None:
        decoded = _build(listing, image_size, channels, bool(skip_bad), progress)
        write_cache(path, decoded)
    else:
        log.info("%s: decoded pictures read from the cache %s", listing.root, path)
    return _split(listing, decoded, test_size, seed)


def _check_settings(image_size, channels, test_size, seed) -> tuple[tuple[int, int] | None, int | None]:
    """The settings checked once: DataError saying what was received and what is valid."""
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if image_size is not None and (len(size) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size) or size[0] * size[1] > MAX_PIXELS):
        raise DataError(f"image_size must be two positive integers H W with H × W ≤ {MAX_PIXELS:,}, received "
                        f"{brief(image_size)}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DataError(f"channels must be 1 or 3, received {brief(channels)}")
    if isinstance(test_size, bool) or not isinstance(test_size, int) or test_size < 0:
        raise DataError(f"test_size must be a non-negative integer (0: 20 % of each class), received "
                        f"{brief(test_size)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DataError(f"seed must be an integer in [0, {MAX_SEED}], received {brief(seed)}")
    return (int(size[0]), int(size[1])) if image_size is not None else None, channels


# --- finding the pictures -------------------------------------------------------------------------
def scan_folder(source: str | os.PathLike) -> FolderListing:
    """The class folders and pictures under `source`; DataError for a missing folder, one class, no pictures."""
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(f"folder not found: {root}; give folder:PATH with PATH/<class>/ or PATH/train/<class>/ "
                        f"and PATH/test/<class>/ folders of pictures")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give folder:PATH where PATH holds one folder of pictures per "
                        f"class")
    real = root.resolve()
    links: list[str] = []
    top = _entries(root, real, root, links)
    dirs = {e.name: e for e in top if e.is_dir()}
    if "train" in dirs and "test" in dirs:
        listing = _scan_split(root, real, dirs, links)
    else:
        listing = FolderListing(root, "flat", ())
        _scan_classes(listing, real, [e for e in top if e.is_dir()], "", links)
        _check_classes(listing, root)
    loose = [e.name for e in top if not e.is_dir() and e.name.lower().endswith(EXTENSIONS)]
    if loose:
        listing.notes.append(f"ignored {_count(loose, 'picture')} directly in {root} (pictures go in class "
                             f"folders): {_names(loose)}")
    if links:
        listing.notes.append(f"skipped {_count(links, 'link')} leading outside {root} (never followed): "
                             f"{_names(sorted(links))}")
    return listing


def _scan_split(root: Path, real: Path, dirs: dict, links: list[str]) -> FolderListing:
    """The train/ and test/ layout: classes from train/; a test class missing from train/ is an error."""
    train = [e for e in _entries(Path(dirs["train"].path), real, root, links) if e.is_dir()]
    test = [e for e in _entries(Path(dirs["test"].path), real, root, links) if e.is_dir()]
    names = tuple(e.name for e in train)
    unknown = [e.name for e in test if e.name not in names]
    if unknown:
        raise DataError(f"{root / 'test'} has class folder(s) {_names(unknown)} that {root / 'train'} lacks; the "
                        f"test classes must be training classes ({_names(list(names)) or 'none'})")
    listing = FolderListing(root, "split", ())
    _scan_classes(listing, real, train, "train", links)
    _check_classes(listing, root / "train")
    _scan_classes(listing, real, test, "test", links, names)
    missing = sorted(set(names) - {e.name for e in test})
    if missing:
        listing.notes.append(f"no test folder for class(es) {_names(missing)}")
    others = sorted(set(dirs) - {"train", "test"})
    if others:
        listing.notes.append(f"ignored folder(s) {_names(others)} beside train/ and test/")
    return listing


def _entries(folder: Path, real: Path, root: Path, links: list[str]) -> list[os.DirEntry]:
    """Visible entries of `folder` sorted by name; links leading outside the root folder are left out (listed)."""
    try:
        with os.scandir(folder) as found:
            entries = sorted((e for e in found if not e.name.startswith(".")), key=attrgetter("name"))
    except OSError as exc:
        raise DataError(f"{folder}: cannot be read ({exc.strerror or exc})") from None
    kept = []
    for entry in entries:
        if entry.is_symlink() and not _inside(Path(entry.path), real):
            links.append(str(Path(entry.path).relative_to(root)))
        else:
            kept.append(entry)
    return kept


def _inside(path: Path, real: Path) -> bool:
    """Whether the link `path` leads to a place inside the folder `real` (a loop leads nowhere)."""
    try:
        return path.resolve().is_relative_to(real)
    except (OSError, RuntimeError):
        return False


def _scan_classes(listing: FolderListing, real: Path, class_dirs: list, split: str, links: list[str],
                  names: tuple[str, ...] | None = None) -> None:
    """Add the pictures of each class folder to `listing` (class indices from `names` or the folders)."""
    if names is None:
        listing.class_names = names = tuple(e.name for e in class_dirs)
    other, sub, files, stamps = [], [], listing.files, listing.stamps
    for entry in class_dirs:
        label, prefix = names.index(entry.name), f"{split}/{entry.name}/" if split else f"{entry.name}/"
        for item in _entries(Path(entry.path), real, listing.root, links):  # 60,000 pictures: keep this loop lean
            rel = prefix + item.name
            if not item.name.lower().endswith(EXTENSIONS) or item.is_dir():
                (sub if item.is_dir() else other).append(rel)
                continue
            try:  # a broken link is kept: it is listed as unreadable
                stat = item.stat()
                if not S_ISREG(stat.st_mode):  # a FIFO or a device named x.png would block or never end
                    other.append(f"{rel} (not a regular file)")
                    continue
                stamps.append(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}")
            except OSError:
                stamps.append(f"{rel}\0missing")
            files.append((rel, label, split))
    if other:
        listing.notes.append(f"ignored {_count(other, 'file')} of other types (pictures are {', '.join(EXTENSIONS)}): "
                             f"{_names(other)}")
    if sub:
        listing.notes.append(f"ignored {_count(sub, 'folder')} inside class folders: {_names(sub)}")


def _check_classes(listing: FolderListing, where: Path) -> None:
    """DataError for no pictures, a single class or an empty class folder."""
    if not listing.files:
        raise DataError(f"no pictures found in {where}: expected {where}/<class>/ folders of "
                        f"{'/'.join(e.lstrip('.') for e in EXTENSIONS)} files")
    if len(listing.class_names) < 2:
        raise DataError(f"{where} holds a single class folder ({listing.class_names[0]}); a classifier needs at "
                        f"least two: add one folder of pictures per class")
    counts = Counter(label for _, label, _ in listing.files)
    empty = [name for i, name in enumerate(listing.class_names) if not counts[i]]
    if empty:
        raise DataError(f"class folder(s) {_names(empty)} in {where} hold no pictures; add pictures or remove "
                        f"the folder(s)")


def _count(items, noun: str) -> str:
    n = items if isinstance(items, int) else len(items)
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(items[:LISTED])
    return shown + (f", … ({len(items) - LISTED:,} more)" if len(items) > LISTED else "")


# --- the cache ------------------------------------------------------------------------------------
def cache_path(listing: FolderListing, settings: dict) -> Path:
    """Cache file of a folder: <folder>-<files>-<settings>.npz under data.cache_dir()/folders/."""
    files = hashlib.sha256("\n".join([*listing.stamps, *listing.notes]).encode()).hexdigest()[:20]
    folder = hashlib.sha256(str(listing.root.resolve()).encode()).hexdigest()[:12]
    text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True)
    return cache_dir() / "folders" / f"{folder}-{files}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.npz"


def read_cache(path: Path, n_classes: int) -> Decoded | None:
    """The cached pictures at `path`, or None when there are none or the file is corrupt (logged)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            decoded = Decoded(z["pixels"], z["labels"], z["in_test"], [str(s) for s in z["notes"]])
        x, n = decoded.pixels, len(decoded.pixels)
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3) or not n \
                or decoded.labels.dtype != np.int64 or decoded.in_test.dtype != bool \
                or decoded.labels.shape != (n,) or decoded.in_test.shape != (n,):
            raise DataError(f"unexpected arrays {x.dtype} {x.shape}, {decoded.labels.dtype} {decoded.labels.shape}")
        check_labels(decoded.labels, n_classes, "labels")
        os.utime(path)  # used now: the cache bound drops the least recently used first
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, DataError) as exc:
        log.warning("%s: cached pictures cannot be read (%s); decoding the folder again", path, brief(str(exc)))
        return None
    return decoded


def write_cache(path: Path, decoded: Decoded) -> None:
    """Save decoded pictures atomically; drop this folder's caches of older file lists. Failures are logged."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, pixels=decoded.pixels, labels=decoded.labels, in_test=decoded.in_test,
                     notes=np.array(decoded.notes, dtype=str))

    if decoded.pixels.nbytes > MAX_CACHE_BYTES:
        log.info("%s: %s bytes of pictures are more than the cache keeps; not cached", path, decoded.pixels.nbytes)
        return
    try:
        atomic_write(path, write)
        folder, files, _ = path.stem.split("-")
        for old in path.parent.glob(f"{folder}-*.npz"):
            if old.stem.split("-")[1:2] != [files]:
                old.unlink(missing_ok=True)
        prune_cache(path.parent, keep=path)
    except OSError as exc:
        log.warning("%s: cannot cache the decoded pictures (%s); the next load decodes them again", path,
                    exc.strerror or exc)


def prune_cache(folder: Path, keep: Path, limit: int = MAX_CACHE_BYTES) -> None:
    """Delete the least recently used cache files of `folder` until they hold at most `limit` bytes together."""
    files = []
    for entry in folder.glob("*.npz"):
        try:
            info = entry.lstat()
        except OSError:
            continue
        files.append((info.st_mtime_ns, info.st_size, entry))
    total = sum(size for _, size, _ in files)
    for _, size, entry in sorted(files, key=lambda item: item[0]):  # oldest use first
        if total <= limit:
            break
        if entry != keep:
            entry.unlink(missing_ok=True)
            total -= size


# --- decoding -------------------------------------------------------------------------------------
def _build(listing: FolderListing, image_size, channels, skip_bad: bool, progress: bool | None) -> Decoded:
    """Decode every picture of `listing` to one size and channel count; DataError for unreadable ones."""
    paths = [str(listing.root / rel) for rel, _, _ in listing.files]
    notes = list(listing.notes)
    probes = [probe for chunk in _run(probe_chunk, paths, (), progress, "reading picture headers") for probe in chunk]
    bad = {i: why for i, (_, _, _, why) in enumerate(probes) if why}
    good = [i for i in range(len(paths)) if i not in bad]
    if not good:
        raise DataError(f"none of the {len(paths):,} pictures in {listing.root} can be read: "
                        f"{_bad_names(listing, bad)}")
    size, channels, why = _choose([probes[i] for i in good], image_size, channels, notes)
    need = len(good) * size[0] * size[1] * channels
    if need > MAX_IDX_BYTES:
        raise DataError(f"{len(good):,} pictures of {size[0]}×{size[1]}×{channels} need {need:,} bytes, more than "
                        f"the {MAX_IDX_BYTES:,} accepted; pass a smaller --image-size")
    chunks = _run(decode_chunk, [paths[i] for i in good], (size, channels), progress, "decoding pictures")
    pixels = np.concatenate([chunk[0] for chunk in chunks])
    whys = [why for chunk in chunks for why in chunk[1]]
    counts = sum((Counter(chunk[2]) for chunk in chunks), Counter())
    bad.update({good[j]: why for j, why in enumerate(whys) if why})
    kept = [j for j, why in enumerate(whys) if not why]
    _report_bad(listing, bad, skip_bad, notes)
    _conversion_notes(counts, size, channels, why, notes)
    labels = np.array([listing.files[i][1] for i in good], np.int64)[kept]
    in_test = np.array([listing.files[i][2] == "test" for i in good], bool)[kept]
    return Decoded(pixels[kept], labels, in_test, notes)


def _choose(probes: list, image_size, channels, notes: list[str]) -> tuple[tuple[int, int], int, str]:
    """The pictures' size (H, W) and channel count: as given, else the most common ones (ties: colour; the longer
    side at most MAX_AUTO_SIDE), and where the size came from."""
    if channels is None:
        counts = Counter(c for _, _, c, _ in probes)
        channels = 3 if counts[3] >= counts[1] else 1
        if len(counts) > 1:
            notes.append(f"{counts[channels]:,} pictures are {'colour' if channels == 3 else 'grey'} and "
                         f"{counts[4 - channels]:,} {'grey' if channels == 3 else 'colour'}: using "
                         f"{'3 channels' if channels == 3 else '1 channel'} (force with --channels 1|3)")
    if image_size is not None:
        return image_size, channels, "--image-size"
    h, w = Counter((h, w) for h, w, _, _ in probes).most_common(1)[0][0]
    if max(h, w) <= MAX_AUTO_SIDE:
        return (h, w), channels, "the most common size"
    scale = MAX_AUTO_SIDE / max(h, w)  # a small CNN is not trained on photographs at full size
    return ((max(1, round(h * scale)), max(1, round(w * scale))), channels,
            f"the most common size, {h}×{w}, scaled to a longer side of {MAX_AUTO_SIDE}; --image-size H W to choose")


def _report_bad(listing: FolderListing, bad: dict[int, str], skip_bad: bool, notes: list[str]) -> None:
    """DataError listing unreadable pictures, or a note when they are skipped."""
    if not bad:
        return
    if not skip_bad:
        raise DataError(f"{_count(bad, 'picture')} in {listing.root} cannot be read: {_bad_names(listing, bad)}; "
                        f"fix or remove them, or pass --skip-bad to go on without them")
    notes.append(f"skipped {_count(bad, 'unreadable picture')}: {_bad_names(listing, bad)}")


def _bad_names(listing: FolderListing, bad: dict[int, str]) -> str:
    return _names(f"{listing.files[i][0]} ({why})" for i, why in sorted(bad.items()))


def _conversion_notes(counts: Counter, size, channels: int, why: str, notes: list[str]) -> None:
    """Notes on the pictures resized (to a size chosen by `why`), converted and flattened."""
    if counts["resized"]:
        notes.append(f"{_count(counts['resized'], 'picture')} resized to {size[0]}×{size[1]} ({why})")
    if counts["converted"]:
        kind = "grey picture" if channels == 3 else "colour picture"
        notes.append(f"{_count(counts['converted'], kind)} converted to "
                     f"{'colour (3 channels)' if channels == 3 else 'grey (1 channel)'}")
    if counts["flattened"]:
        notes.append(f"{_count(counts['flattened'], 'picture')} with transparency flattened onto a contrasting "
                     f"background (white behind dark content, black behind light)")


def _split(listing: FolderListing, decoded: Decoded, test_size: int, seed: int) -> RawData:
    """RawData from decoded pictures: train/ and test/ as found, or a stratified, seeded holdout."""
    pixels, labels, is_test, notes = decoded.pixels, decoded.labels, decoded.in_test, list(decoded.notes)
    if listing.layout == "flat":
        is_test = holdout(labels, len(listing.class_names), test_size, seed, listing.class_names)
        share = f"{test_size:,} pictures" if test_size else f"{DEFAULT_TEST_SHARE * 100:.0f} % of each class"
        notes.append(f"held out {share} for testing (stratified, seed {seed}): {int(is_test.sum()):,} test and "
                     f"{int((~is_test).sum()):,} training pictures")
    for name, mask in (("training", ~is_test), ("test", is_test)):
        if not mask.any():
            raise DataError(f"the {name} split of {listing.root} holds no readable pictures; add pictures to it")
    return RawData(pixels[~is_test], labels[~is_test], pixels[is_test], labels[is_test], listing.class_names, notes)


def holdout(labels: np.ndarray, n_classes: int, test_size: int, seed: int,
            class_names: tuple[str, ...]) -> np.ndarray:
    """Boolean mask of the pictures held out for testing: `test_size` in all (0: 20 % of each class), stratified."""
    counts = np.bincount(labels, minlength=n_classes)
    if test_size >= len(labels):
        raise DataError(f"test_size {test_size:,} leaves no training pictures (the folder holds {len(labels):,})")
    if test_size:
        exact = test_size * counts / len(labels)
        want = np.floor(exact).astype(np.int64)
        extra = np.argsort(-(exact - want), kind="stable")[:test_size - int(want.sum())]
        want[extra] += 1
    else:
        want = np.floor(counts * DEFAULT_TEST_SHARE + 0.5).astype(np.int64)
    full = [class_names[c] for c in range(n_classes) if counts[c] and want[c] >= counts[c]]
    if full:
        raise DataError(f"class(es) {_names(full)} have too few pictures to hold out {test_size:,} for testing and "
                        f"keep some for training; pass a smaller --test-size")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), bool)
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        is_test[rng.permutation(members)[:want[c]]] = True
    return is_test


def _run(work, paths: list[str], args: tuple, progress: bool | None, desc: str) -> list:
    """[work(chunk, *args) for each chunk of `paths`] in order (in a process pool for many pictures)."""
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = min(len(chunks), os.cpu_count() or 1) if len(paths) >= POOL_MIN else 1
    with progress_bar(show=progress, total=len(paths), desc=desc, unit="picture", leave=False) as bar:
        if workers <= 1:
            return [(work(chunk, *args), bar.update(len(chunk)))[0] for chunk in chunks]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = pool.map(work, chunks, *([a] * len(chunks) for a in args))
            return [(result, bar.update(len(chunk)))[0] for chunk, result in zip(chunks, results, strict=True)]
