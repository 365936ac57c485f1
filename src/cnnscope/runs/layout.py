"""Every file name of a run directory: the one place (runs/checkpoint writes them, runs/load reads them)."""

from __future__ import annotations

CONFIG = "config.toml"
WEIGHTS = "model.safetensors"
INITIAL = "initial.safetensors"
STATE = "state.safetensors"  # optimizer + RNG state, for resuming
STATE_META = "state.json"
PREPROCESS = "preprocess.json"
HISTORY = "history.json"
METRICS = "metrics.json"
CURVES = "curves.png"
PROBE = "probe.safetensors"  # what training.probe records: runs/probe.py
CONFUSION = "confusion.png"
REPORT = "report.html"
# What a training writes; a new run in the same directory (--overwrite) removes them first.
OUTPUTS = (WEIGHTS, STATE, STATE_META, HISTORY, METRICS, CURVES, PROBE, CONFUSION, REPORT)
HISTORY_KEYS = ("epoch", "loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy", "seconds",
                "images_per_second", "lr")  # the two data losses (no smoothing, no penalty) are absent from old runs
