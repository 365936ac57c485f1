"""Reading Keras files (Keras 2 `.h5`, Keras 3 `.keras` zip and legacy `.h5`) with h5py and the standard library.

Files are untrusted: they are read, never followed. The config is read with bounded size and JSON depth; weights
are read later (read_weights), only the datasets the model's layers need, each checked (link kind, storage,
dtype, shape, filters) before a byte of it is read. `.keras` members are size- and ratio-checked before inflating.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.errors import KerasImportError, brief

__all__ = ["KerasFile", "KerasImportError", "config_layers", "layer_name", "read_keras_file", "read_weights"]

MIB = 2 ** 20
MAX_CONFIG_BYTES = 4 * MIB  # config.json / model_config; real configs of small CNNs are a few KB
MAX_JSON_DEPTH = 64
MAX_MEMBER_BYTES = 512 * MIB  # any .keras member, before the model's own bound applies
MAX_RATIO = 100  # uncompressed / compressed size of a .keras member over 1 MiB
MAX_MEMBERS = 10_000
MAX_GROUP_LINKS = 10_000  # children of the .keras `layers` group scanned for layer names
MAX_TEXT = 4096  # version strings, layer and weight names
# The few HDF5 filters that never expand data: shuffle (2) and fletcher32 (3). Compression is refused.
_SAFE_FILTERS = {2, 3}
_WEIGHT_DTYPES = (2, 4, 8)  # float16/32/64 itemsizes


@dataclass
class KerasFile:
    """What a Keras file holds: its model config (JSON) and metadata; the weights are read by read_weights."""

    path: Path
    format: str  # "h5" or "keras"
    keras_version: str
    backend: str
    config: dict[str, Any]


# --- opening -----------------------------------------------------------------------------------------
def read_keras_file(path: str | os.PathLike) -> KerasFile:
    """Read a `.h5` or `.keras` file's model config; KerasImportError when it is not a (safe) Keras model."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise KerasImportError(f"file not found: {path}")
    if path.is_dir():
        hint = ("a TensorFlow SavedModel directory" if (path / "saved_model.pb").exists() else "a directory")
        raise KerasImportError(f"{path} is {hint}, not a Keras model file; in Keras, save the model with "
                               f"model.save('model.h5') or model.save('model.keras')")
    try:
        if zipfile.is_zipfile(path):
            return _read_keras_zip(path)
        if h5py.is_hdf5(path):
            return _read_legacy_h5(path)
    except OSError as exc:
        raise KerasImportError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    raise KerasImportError(f"{path} is not a Keras model: neither an HDF5 (.h5) file nor a .keras zip archive")


def _depth_ok(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _json(raw: bytes | str, where: str) -> Any:
    """Parse bounded, UTF-8, not too deeply nested JSON; KerasImportError otherwise."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise KerasImportError(f"{where} is {len(raw):,} bytes, more than the {MAX_CONFIG_BYTES:,} a Keras "
                               f"model config may take")
    deep = KerasImportError(f"{where} nests JSON deeper than {MAX_JSON_DEPTH} levels; not a Keras model config")
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as exc:
        raise KerasImportError(f"{where} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise deep from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise KerasImportError(f"{where} is not valid JSON ({brief(str(exc), 120)})") from None
    if not _depth_ok(value):
        raise deep
    return value


def _text(raw: Any, where: str) -> str:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        raise KerasImportError(f"{where} is not UTF-8 text") from None
    return text


def _attr(obj: Any, name: str, where: str, limit: int = MAX_TEXT) -> Any:
    """A string (or 1-D array of strings) attribute, its size checked before reading; None when absent."""
    import h5py

    if name not in obj.attrs:
        return None
    label = f"{where}: attribute {name!r} of {obj.name!r}"
    aid = obj.attrs.get_id(name)
    dtype, shape = aid.dtype, aid.shape
    if dtype.kind == "f" and shape == (0,):
        return []  # Keras writes an empty name list as a float array
    text_type = dtype.kind in "SU" or (dtype.kind == "O" and h5py.check_string_dtype(dtype) is not None)
    if not text_type or len(shape) > 1 or (shape and shape[0] > 64) or dtype.itemsize > limit:
        raise KerasImportError(f"{label} has type {dtype} and shape {shape}; expected text")
    value = obj.attrs[name]
    if not shape:
        text = _text(value, label)
        if len(text) > limit:
            raise KerasImportError(f"{label} is {len(text):,} characters, more than {limit:,}")
        return text
    return [_attr_item(v, label) for v in np.asarray(value).ravel()]


def _attr_item(value: Any, label: str) -> str:
    text = _text(value, label)
    if len(text) > MAX_TEXT:
        raise KerasImportError(f"{label} holds a name of {len(text):,} characters")
    return text


def _read_legacy_h5(path: Path) -> KerasFile:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise KerasImportError(f"{path}: cannot read the HDF5 file ({exc})") from None
    with fh:
        raw = _attr(fh, "model_config", str(path), MAX_CONFIG_BYTES)
        if raw is None:
            if "layer_names" in fh.attrs:
                raise KerasImportError(f"{path} holds only weights (saved with model.save_weights), no model; "
                                       f"save the whole model with model.save('model.h5')")
            raise KerasImportError(f"{path} is not a Keras model: HDF5 file without a 'model_config' attribute")
        if not isinstance(raw, str):
            raise KerasImportError(f"{path}: attribute 'model_config' is a list; expected one JSON text")
        config = _json(raw, f"{path}: model_config")
        version = _attr(fh, "keras_version", str(path)) or "unknown"
        backend = _attr(fh, "backend", str(path)) or "unknown"
    return KerasFile(path, "h5", str(version), str(backend), _config_dict(config, f"{path}: model_config"))


def _config_dict(config: Any, where: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise KerasImportError(f"{where} is {type(config).__name__} JSON; expected an object with 'class_name'")
    return config


# --- .keras archives ---------------------------------------------------------------------------------
def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, OverflowError) as exc:
        raise KerasImportError(f"{path}: not a readable zip archive ({exc})") from None
    if len(archive.infolist()) > MAX_MEMBERS:
        archive.close()
        raise KerasImportError(f"{path}: the archive has {len(archive.infolist()):,} members; a .keras file has 3")
    return archive


def _member(archive: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes | None:
    """One member's bytes, its declared size and compression ratio checked before inflating; None if absent."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    size, packed = info.file_size, info.compress_size
    if size > limit:
        raise KerasImportError(f"{where}: {name} is {size:,} bytes uncompressed, more than the {limit:,} this "
                               f"model can need; refusing to inflate it")
    if size > MIB and size > MAX_RATIO * max(packed, 1):
        raise KerasImportError(f"{where}: {name} inflates {size / max(packed, 1):,.0f}-fold ({packed:,} -> "
                               f"{size:,} bytes); refusing a zip bomb")
    try:
        with archive.open(info) as fh:
            data = fh.read(limit + 1)  # zipfile stops at the declared size and checks the CRC
    except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
        raise KerasImportError(f"{where}: cannot read {name} from the archive ({brief(str(exc), 120)})") from None
    if len(data) > limit:
        raise KerasImportError(f"{where}: {name} is larger than {limit:,} bytes")
    return data


def _read_keras_zip(path: Path) -> KerasFile:
    with _open_zip(path) as archive:
        raw = _member(archive, "config.json", MAX_CONFIG_BYTES, str(path))
        if raw is None:
            raise KerasImportError(f"{path} is not a Keras model: a zip archive without config.json (a .keras "
                                   f"file holds config.json, metadata.json and model.weights.h5)")
        config = _config_dict(_json(raw, f"{path}: config.json"), f"{path}: config.json")
        meta_raw = _member(archive, "metadata.json", MIB, str(path))
        meta = _json(meta_raw, f"{path}: metadata.json") if meta_raw is not None else {}
        if "model.weights.h5" not in archive.namelist():
            raise KerasImportError(f"{path}: the .keras archive has no model.weights.h5")
    meta = meta if isinstance(meta, dict) else {}
    version, backend = (brief(meta.get(key) or "unknown", 80).strip("'") for key in ("keras_version", "backend"))
    return KerasFile(path, "keras", version, backend, config)


# --- weights -----------------------------------------------------------------------------------------
Wanted = dict[str, list[tuple[str, tuple[int, ...]]]]  # layer name -> [("kernel", shape), ("bias", shape)]


def read_weights(source: KerasFile, wanted: Wanted, where: str) -> dict[str, list[np.ndarray]]:
    """The arrays `wanted` names, by layer (Keras layout), each checked before it is read; nothing else."""
    import h5py

    if source.format == "h5":
        try:
            fh = h5py.File(source.path, "r")
        except OSError as exc:
            raise KerasImportError(f"{where}: cannot read the HDF5 file ({exc})") from None
        with fh:
            return _guard(lambda: _legacy_weights(fh, wanted, where), where)
    needed = sum(8 * int(np.prod(shape)) for arrays in wanted.values() for _, shape in arrays)
    limit = min(MAX_MEMBER_BYTES, 4 * needed + 4 * MIB + 64 * 1024 * len(config_layers(source.config)))
    with _open_zip(source.path) as archive:
        blob = _member(archive, "model.weights.h5", limit, where)
    if blob is None:
        raise KerasImportError(f"{where}: the .keras archive has no model.weights.h5")
    try:
        fh = h5py.File(io.BytesIO(blob), "r")
    except OSError as exc:
        raise KerasImportError(f"{where}: model.weights.h5 is not a valid HDF5 file ({exc})") from None
    with fh:
        return _guard(lambda: _keras3_weights(fh, source.config, wanted, where), where)


def _guard(read, where: str):
    """h5py's own errors on a damaged file (OSError, KeyError, ValueError...) as one KerasImportError line."""
    try:
        return read()
    except KerasImportError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise KerasImportError(f"{where}: the weights cannot be read ({brief(str(exc), 160)})") from None


def _child(group: Any, name: str, root: str, where: str, hops: int = 8) -> Any:
    """group/name for one path component, never following a link out of the file or out of `root`."""
    from h5py import h5l

    key = name.encode("utf-8")
    if name in ("", ".", "..") or not group.id.links.exists(key):
        return None
    kind = group.id.links.get_info(key).type
    if kind == h5l.TYPE_HARD:
        return group[name]
    label = f"{where}: {posixpath.join(group.name, name)!r}"
    if kind == h5l.TYPE_SOFT:
        target = posixpath.normpath(posixpath.join(group.name, _text(group.id.links.get_val(key), label)))
        if hops <= 0 or not (target + "/").startswith(root.rstrip("/") + "/"):
            raise KerasImportError(f"{label} is a soft link to {target!r}, outside the weights group {root!r}; "
                                   f"refusing to follow it")
        return _walk(group.file, target, root, where, hops - 1)
    if kind == h5l.TYPE_EXTERNAL:
        filename, obj = (_text(v, label) for v in group.id.links.get_val(key))
        raise KerasImportError(f"{label} is an external link to {filename}:{obj}; cnnscope reads only data stored "
                               f"inside the file it is given")
    raise KerasImportError(f"{label} is a user-defined HDF5 link; refusing to follow it")


def _walk(start: Any, path: str, root: str, where: str, hops: int = 8) -> Any:
    import h5py

    node = start
    for part in path.strip("/").split("/"):
        if not isinstance(node, h5py.Group):
            return None
        node = _child(node, part, root, where, hops)
        if node is None:
            return None
    return node


def _read_dataset(obj: Any, layer: str, what: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """One weight array, refused unless it is plain float data of exactly `shape` stored inside the file."""
    import h5py

    label = f"{where}: layer {layer!r} {what}"
    if not isinstance(obj, h5py.Dataset):
        raise KerasImportError(f"{label}: {obj.name!r} is not a dataset")
    label += f" (dataset {obj.name!r})"
    if obj.is_virtual:
        raise KerasImportError(f"{label} is a virtual dataset (its data comes from other files); cnnscope reads "
                               f"only data stored inside the file it is given")
    if obj.external:
        files = ", ".join(sorted({_text(e[0], label) for e in obj.external}))
        raise KerasImportError(f"{label} uses HDF5 external storage ({brief(files, 80)}); cnnscope reads only "
                               f"data stored inside the file it is given")
    if obj.dtype.kind != "f" or obj.dtype.itemsize not in _WEIGHT_DTYPES:
        raise KerasImportError(f"{label} has dtype {str(obj.dtype)[:60]}; weights must be float16, float32 "
                               f"or float64 arrays")
    if tuple(obj.shape) != tuple(shape):
        raise KerasImportError(f"{label} has shape {tuple(obj.shape)}, expected {tuple(shape)}")
    dcpl = obj.id.get_create_plist()
    filters = {dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())}
    if filters - _SAFE_FILTERS:
        raise KerasImportError(f"{label} is compressed (HDF5 filters {sorted(filters - _SAFE_FILTERS)}); cnnscope "
                               f"reads uncompressed weights, as Keras saves them")
    if obj.chunks and int(np.prod(obj.chunks)) > max(int(np.prod(shape)), 2 ** 18):
        raise KerasImportError(f"{label} has chunks {obj.chunks}, larger than the array; refusing to read it")
    return np.asarray(obj[()])


def _check_count(layer: str, found: int | None, wanted: list[tuple[str, tuple[int, ...]]], where: str) -> None:
    if found != len(wanted):
        text = "none" if found is None else f"{found} arrays"
        raise KerasImportError(f"{where}: weights for layer {layer!r} are missing or incomplete ({text}, expected "
                               f"{' and '.join(what for what, _ in wanted)})")


def _legacy_weights(fh: Any, wanted: Wanted, where: str) -> dict[str, list[np.ndarray]]:
    """Keras 2 / legacy `.h5`: `model_weights/<layer>` with a `weight_names` attribute."""
    import h5py

    root = _child(fh, "model_weights", "/model_weights", where)
    root, root_path = (fh, "/") if not isinstance(root, h5py.Group) else (root, "/model_weights")
    out: dict[str, list[np.ndarray]] = {}
    for layer, arrays in wanted.items():
        group = _child(root, layer, root_path, where)
        names = _attr(group, "weight_names", where) if isinstance(group, h5py.Group) else None
        names = [names] if isinstance(names, str) else names
        _check_count(layer, None if names is None else len(names), arrays, where)
        out[layer] = []
        for name, (what, shape) in zip(names, arrays, strict=True):  # counts checked just above
            obj = _walk(group, name, root_path, where)
            if obj is None:
                raise KerasImportError(f"{where}: layer {layer!r} lists weight {name!r}, which is not in the file")
            out[layer].append(_read_dataset(obj, layer, what, shape, where))
    return out


def _snake(name: str) -> str:
    """Keras' to_snake_case: the key a .keras weights file stores a layer under (by class, not by name)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_keys(root: Any, config: dict[str, Any], where: str) -> dict[str, str]:
    """Layer name -> key under `layers/`: `<class_snake>[_k]` numbered per class, or the recorded name."""
    if len(root) > MAX_GROUP_LINKS:
        raise KerasImportError(f"{where}: model.weights.h5 has {len(root):,} layer groups; refusing to scan them")
    import h5py

    by_attr = {}
    for key in root:
        group = root[key] if root.id.links.get_info(key.encode()).type == 0 else None  # hard links only
        vars_group = _child(group, "vars", "/layers", where) if isinstance(group, h5py.Group) else None
        name = _attr(vars_group, "name", where) if isinstance(vars_group, h5py.Group) else None
        if isinstance(name, str):
            by_attr[name] = key
    counts: dict[str, int] = {}
    keys = {}
    for layer in config_layers(config):
        snake = _snake(str(layer.get("class_name", "")))
        counts[snake] = counts.get(snake, -1) + 1
        name = layer_name(layer)
        keys[name] = by_attr.get(name, snake if counts[snake] == 0 else f"{snake}_{counts[snake]}")
    return keys


def _keras3_weights(fh: Any, config: dict[str, Any], wanted: Wanted, where: str) -> dict[str, list[np.ndarray]]:
    """Keras 3 `.keras`: `layers/<key>/vars/<i>` (Keras >= 3.x also records the layer's name on `vars`)."""
    import h5py

    root = _child(fh, "layers", "/layers", where)
    root = root if isinstance(root, h5py.Group) else None
    keys = _keras3_keys(root, config, where) if root is not None else {}
    out: dict[str, list[np.ndarray]] = {}
    for layer, arrays in wanted.items():
        key = keys.get(layer)
        group = _walk(root, f"{key}/vars", "/layers", where) if root is not None and key else None
        _check_count(layer, len(group) if isinstance(group, h5py.Group) else None, arrays, where)
        out[layer] = []
        for i, (what, shape) in enumerate(arrays):
            obj = _child(group, str(i), "/layers", where)
            if obj is None:
                raise KerasImportError(f"{where}: layer {layer!r} has no weight {i} in {group.name!r}")
            out[layer].append(_read_dataset(obj, layer, what, shape, where))
    return out


# --- config helpers ----------------------------------------------------------------------------------
def layer_name(layer: dict[str, Any]) -> str:
    """A layer dict's name (top level in Keras 3, in its config in Keras 2), '?' when it has none."""
    cfg = layer.get("config")
    name = layer.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None) or "?"
    return name if isinstance(name, str) else brief(name, 60)


def config_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer dicts of a Sequential/Functional config."""
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = inner if isinstance(inner, list) else inner.get("layers", []) if isinstance(inner, dict) else []
    return [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []
