"""history.json and metrics.json of a run, read with bounds and checked key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnscope.base.errors import RunError
from cnnscope.base.fileio import read_json
from cnnscope.runs.layout import HISTORY, HISTORY_KEYS, METRICS


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_history(run_dir: Path) -> dict[str, Any]:
    """history.json (empty when absent); RunError when it is not per-epoch lists of numbers."""
    path = run_dir / HISTORY
    if not path.is_file():
        return {}
    history = read_json(path, RunError)
    if not isinstance(history, dict):
        raise RunError(f"{path}: expected a JSON object of per-epoch lists, received {type(history).__name__}")
    for key in HISTORY_KEYS:
        values = history.get(key, [])
        if not isinstance(values, list) or not all(_number(v) for v in values):
            raise RunError(f"{path}: {key!r} must be a list of numbers")
    epochs = history.get("epoch", [])
    if epochs != list(range(1, len(epochs) + 1)):
        raise RunError(f"{path}: 'epoch' must count 1, 2, … up to the last completed epoch")
    for key in HISTORY_KEYS[1:-1]:
        if key in history and len(history[key]) != len(epochs):
            raise RunError(f"{path}: {key!r} has {len(history[key])} values for {len(epochs)} epochs")
    if not isinstance(history.get("val_source", ""), str):
        raise RunError(f"{path}: 'val_source' must be a string")
    return history


_IMPORT_TEXT = ("source", "format", "keras_version", "keras_backend", "keras_model", "keras_output", "dataset",
                "preprocess", "imported_at")  # the text entries of an imported run's metrics.json (keras_import)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json (empty when absent); RunError when a known entry has the wrong type."""
    path = run_dir / METRICS
    if not path.is_file():
        return {}
    metrics = read_json(path, RunError)
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: expected a JSON object, received {type(metrics).__name__}")
    for key, value in metrics.items():
        if key in ("status", "val_source", "device", "torch", "python") + _IMPORT_TEXT:
            ok = isinstance(value, str)
        elif key == "notes":  # a Keras import's notes
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif key == "per_class_accuracy":
            ok = isinstance(value, list) and all(_number(v) or v is None for v in value)
        else:
            ok = _number(value) or value is None
        if not ok:
            raise RunError(f"{path}: {key[:80]!r} has the wrong type ({type(value).__name__})")
    return metrics
