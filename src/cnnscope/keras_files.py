"""Reading Keras files (Keras 2 `.h5`, Keras 3 `.keras` zip and legacy `.h5`) with h5py and the standard library.

Gives the model config (JSON) and the weights by layer name; keras_import turns them into a run.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecError


class KerasImportError(SpecError):
    """The file is not a Keras model, or the model uses a layer or setting cnnscope cannot express."""


@dataclass
class KerasFile:
    """What a Keras file holds: its model config (JSON), weights by layer name, and where it came from."""

    path: Path
    format: str  # "h5" or "keras"
    keras_version: str
    backend: str
    config: dict[str, Any]
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)


# --- reading files ---------------------------------------------------------------------------------
def read_keras_file(path: str | os.PathLike) -> KerasFile:
    """Read a `.h5` or `.keras` file's model config and weights; KerasImportError when it is not a Keras model."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise KerasImportError(f"file not found: {path}")
    if path.is_dir():
        hint = ("a TensorFlow SavedModel directory" if (path / "saved_model.pb").exists() else "a directory")
        raise KerasImportError(f"{path} is {hint}, not a Keras model file; in Keras, save the model with "
                               f"model.save('model.h5') or model.save('model.keras')")
    if zipfile.is_zipfile(path):
        return _read_keras_zip(path)
    if h5py.is_hdf5(path):
        return _read_legacy_h5(path)
    raise KerasImportError(f"{path} is not a Keras model: neither an HDF5 (.h5) file nor a .keras zip archive")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KerasImportError(f"{where} is not valid JSON ({exc})") from None


def _read_legacy_h5(path: Path) -> KerasFile:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise KerasImportError(f"{path}: cannot read the HDF5 file ({exc})") from None
    with fh:
        if "model_config" not in fh.attrs:
            if "layer_names" in fh.attrs:
                raise KerasImportError(f"{path} holds only weights (saved with model.save_weights), no model; "
                                       f"save the whole model with model.save('model.h5')")
            raise KerasImportError(f"{path} is not a Keras model: HDF5 file without a 'model_config' attribute")
        config = _json(_text(fh.attrs["model_config"]), f"{path}: model_config")
        version = _text(fh.attrs.get("keras_version", "unknown"))
        backend = _text(fh.attrs.get("backend", "unknown"))
        group = fh["model_weights"] if "model_weights" in fh else fh
        weights: dict[str, list[np.ndarray]] = {}
        for name in group:
            sub = group[name]
            if isinstance(sub, h5py.Group) and "weight_names" in sub.attrs:
                weights[name] = [np.asarray(sub[_text(w)]) for w in sub.attrs["weight_names"]]
    return KerasFile(path, "h5", version, backend, config, weights)


def _read_keras_zip(path: Path) -> KerasFile:
    import h5py

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "config.json" not in names:
            raise KerasImportError(f"{path} is not a Keras model: a zip archive without config.json (a .keras "
                                   f"file holds config.json, metadata.json and model.weights.h5)")
        config = _json(archive.read("config.json").decode("utf-8"), f"{path}: config.json")
        meta = _json(archive.read("metadata.json").decode("utf-8"), f"{path}: metadata.json") \
            if "metadata.json" in names else {}
        if "model.weights.h5" not in names:
            raise KerasImportError(f"{path}: the .keras archive has no model.weights.h5")
        blob = archive.read("model.weights.h5")
    try:
        fh = h5py.File(io.BytesIO(blob), "r")
    except OSError as exc:
        raise KerasImportError(f"{path}: model.weights.h5 is not a valid HDF5 file ({exc})") from None
    with fh:
        weights = _keras3_weights(fh, config_layers(config))
    backend = str(meta.get("backend") or "unknown")
    return KerasFile(path, "keras", str(meta.get("keras_version", "unknown")), backend, config, weights)


def _snake(name: str) -> str:
    """Keras' to_snake_case: the key a .keras weights file stores a layer under (by class, not by name)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_weights(fh: Any, layers: list[dict[str, Any]]) -> dict[str, list[np.ndarray]]:
    """Weights of a .keras file by layer name: `layers/<class_snake>[_k]/vars/<i>`, numbered per class."""
    root = fh.get("layers")
    if root is None:
        return {}
    by_attr = {_text(root[key]["vars"].attrs["name"]): key for key in root
               if "vars" in root[key] and "name" in root[key]["vars"].attrs}
    counts: dict[str, int] = {}
    out: dict[str, list[np.ndarray]] = {}
    for layer in layers:
        snake = _snake(layer.get("class_name", ""))
        counts[snake] = counts.get(snake, -1) + 1
        key = snake if counts[snake] == 0 else f"{snake}_{counts[snake]}"
        name = layer_name(layer)
        key = by_attr.get(name, key)  # Keras >= 3.x also records the layer's name; prefer it when present
        if key in root and "vars" in root[key]:
            group = root[key]["vars"]
            out[name] = [np.asarray(group[k]) for k in sorted(group, key=int)]
    return out


def layer_name(layer: dict[str, Any]) -> str:
    return str(layer.get("name") or layer.get("config", {}).get("name") or "?")


def config_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer dicts of a Sequential/Functional config."""
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = inner if isinstance(inner, list) else inner.get("layers", [])  # Keras < 2.2.3: a bare list
    return [layer for layer in layers if isinstance(layer, dict)]
