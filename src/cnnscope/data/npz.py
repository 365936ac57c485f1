"""`--dataset npz:FILE`: x_train, y_train, x_test, y_test (and optional class_names) from a NumPy .npz file,
read without pickles and turned into raw pictures (uint8 (n, H, W) or (n, H, W, 3)) and int64 labels."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from cnnscope.base.errors import DataError, brief
from cnnscope.data.raw import RawData

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MAX_NPZ_CLASSES = 10_000
MAX_NPZ_BYTES = 2 * 2**30  # the arrays of one npz dataset, as declared in their headers (CIFAR-10 float32: 0.7 GiB)
MAX_RATIO, RATIO_FROM = 100, 2**20  # a member over 1 MiB may inflate at most 100× (as the .keras reader allows)
KINDS = {"x": "iuf", "y": "iuf", "c": "US"}  # dtype kinds accepted for pictures, labels, class names
CHUNK = 2**22  # pixels converted to uint8 at a time: a float64 x_train never needs a second full-size copy


def to_raw(x: np.ndarray, where: str) -> np.ndarray:
    """Pictures in any of the accepted layouts -> raw uint8 (n, H, W) or (n, H, W, 3).

    Accepted: (n, H, W), (n, H, W, 1), (n, 1, H, W), (n, H, W, 3), (n, 3, H, W); uint8, or floats in 0..1
    (scaled by 255) or 0..255, or integers in 0..255.
    """
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] in (1, 3):  # NHWC (also when the second axis happens to be 1 or 3)
        x = x[..., 0] if x.shape[-1] == 1 else x
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        x = x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)
    elif x.ndim != 3:
        raise DataError(f"{where} has shape {tuple(x.shape)}; expected pictures (n, H, W), (n, H, W, 1|3) or "
                        f"(n, 1|3, H, W)")
    if x.shape[0] == 0 or 0 in x.shape[1:3]:
        raise DataError(f"{where} is empty (shape {tuple(x.shape)}); every split needs pictures")
    return _to_uint8(x, where)


def _to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 pixels from uint8, integer 0..255 or float (0..1 scaled to 0..255, or already 0..255) arrays."""
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where} has dtype {x.dtype}; expected uint8, integers 0..255 or floats")
    flat = x.reshape(-1)
    if x.dtype.kind == "f" and not all(np.isfinite(flat[i:i + CHUNK]).all() for i in range(0, flat.size, CHUNK)):
        raise DataError(f"{where} holds NaN or infinite values; pixels must be finite")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DataError(f"{where} holds values {low:g}..{high:g}; pixels must lie in 0..1 or 0..255")
    scale = 255.0 if x.dtype.kind == "f" and high <= 1.0 else 1.0
    out = np.empty(x.shape, np.uint8)
    out_flat = out.reshape(-1)
    for i in range(0, flat.size, CHUNK):  # chunk by chunk: no full-size float temporaries
        out_flat[i:i + CHUNK] = np.rint(flat[i:i + CHUNK] * scale)
    return out


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer labels (n,) as int64 (whole floats accepted)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iuf":
        raise DataError(f"{where} has shape {tuple(y.shape)} and dtype {y.dtype}; expected integer labels (n,)")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.rint(y)).all()):
        raise DataError(f"{where} holds labels that are not whole numbers")
    return y.astype(np.int64)


def _class_names(value: np.ndarray | None, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim != 1 or value.dtype.kind not in "US" or len(value) > MAX_NPZ_CLASSES:
        raise DataError(f"{path}: class_names must be a 1-D array of strings, found shape {tuple(value.shape)} "
                        f"dtype {value.dtype}")
    names = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.tolist())
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise DataError(f"{path}: class_names must be distinct and non-empty, found {brief(list(names))}")
    return names


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> int:
    """The bytes member `info` declares (shape × item size), checked against its kind, its zip entry and its
    compression ratio before a byte of its data is inflated."""
    key = info.filename[:-4]
    where = f"{path}: {key}"
    if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DataError(f"{where} inflates {info.compress_size:,} bytes to {info.file_size:,} (more than "
                        f"{MAX_RATIO}×); refused as a decompression bomb")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fh)
        header = fh.tell()
    if dtype.hasobject:
        raise DataError(f"{path} holds an object array (pickled data), which cnnscope never loads; save "
                        f"plain numeric arrays and a string array for class_names")
    if dtype.kind not in KINDS[key[0]]:
        raise DataError(f"{where} has dtype {dtype}; expected "
                        f"{'strings' if key[0] == 'c' else 'uint8, integers or floats'}")
    declared = math.prod(shape) * dtype.itemsize
    if header + declared != info.file_size:
        raise DataError(f"{where} declares shape {brief(tuple(shape), 60)} ({declared:,} bytes) but holds "
                        f"{max(info.file_size - header, 0):,}; the file is corrupt")
    return declared


def check_npz_members(path: Path) -> None:
    """Every array cnnscope reads from the npz: its declared dtype, shape and size, and its compression ratio,
    checked before reading (the total at most MAX_NPZ_BYTES)."""
    with zipfile.ZipFile(path) as zf:
        members = [i for i in zf.infolist() if i.filename[:-4] in (*ARRAYS, "class_names")
                   and i.filename.endswith(".npy")]
        total = sum(_member_header(zf, info, path) for info in members)
    if total > MAX_NPZ_BYTES:
        raise DataError(f"{path}: its arrays declare {total:,} bytes, more than the {MAX_NPZ_BYTES:,} an npz "
                        f"dataset may hold; use a folder: dataset or fewer pictures")


def read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (no pickles: an object array is a DataError), checked before reading."""
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or a device would block or never end
            raise DataError(f"{path} is not a regular file; --dataset npz:FILE needs an .npz file")
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":  # an .npz is a zip archive of .npy files
                raise DataError(f"{path}: not a valid .npz file (no zip header); save it with numpy.savez")
        check_npz_members(path)
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ARRAYS if key not in npz.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; an npz dataset holds {', '.join(ARRAYS)} "
                                f"(and optionally class_names); it holds {', '.join(npz.files) or 'nothing'}")
            return {key: npz[key] for key in (*ARRAYS, "class_names") if key in npz.files}
    except FileNotFoundError:
        raise DataError(f"missing file {path}; --dataset npz:FILE needs an existing .npz file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory; --dataset npz:FILE needs an .npz file") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{path} holds an object array (pickled data), which cnnscope never loads; save "
                            f"plain numeric arrays and a string array for class_names") from None
        raise DataError(f"{path}: not a valid .npz file ({brief(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:  # also encrypted
        raise DataError(f"{path}: not a valid .npz file ({brief(exc)})") from None


def load_npz(path: str | Path):
    """The raw data of an .npz dataset (datasets.RawData), every problem one DataError naming it."""
    path = Path(path)
    arrays = read_npz_arrays(path)
    splits = {}
    for split in ("train", "test"):
        x = to_raw(arrays[f"x_{split}"], f"{path.name}: x_{split}")
        y = _labels(arrays[f"y_{split}"], f"{path.name}: y_{split}")
        if len(x) != len(y):
            raise DataError(f"{path.name}: x_{split} holds {len(x)} pictures but y_{split} {len(y)} labels; "
                            f"they must match")
        splits[split] = (x, y)
    (train_raw, train_y), (test_raw, test_y) = splits["train"], splits["test"]
    if train_raw.shape[1:] != test_raw.shape[1:]:
        raise DataError(f"{path.name}: x_train pictures are {_shape(train_raw)} but x_test ones {_shape(test_raw)}; "
                        f"both splits must have the same size and channels")
    names = _class_names(arrays.get("class_names"), path)
    if names is None:
        top = int(max(train_y.max(), test_y.max()))
        if top >= MAX_NPZ_CLASSES:
            raise DataError(f"{path.name}: label {top} is out of range; labels are 0..K-1 with K at most "
                            f"{MAX_NPZ_CLASSES:,}")
        names = tuple(str(c) for c in range(max(top + 1, 0)))
    return RawData(train_raw, train_y, test_raw, test_y, names, [])


def _shape(raw: np.ndarray) -> str:
    size = f"{raw.shape[1]}×{raw.shape[2]}"
    return size + (f"×{raw.shape[3]}" if raw.ndim == 4 else "")
