"""Every file name of a run directory and of a study directory: the one place (runs/checkpoint writes a run's
files, runs/load reads them; sweep/ writes a study's, runs/catalog and the compare view read them)."""

from __future__ import annotations

CONFIG = "config.toml"  # also what marks a folder as a run directory
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

# A study directory (`cnnscope sweep`): its definition marks it; each trial is an ordinary run directory in
# TRIALS/NNNN.
STUDY = "study.toml"
TRIALS = "trials"
STUDY_DB = "study.db"  # Optuna's SQLite storage, unless --storage names another database
STUDY_LOCK = ".lock"  # one sweep at a time on a study
RESULTS = "results.json"
RESULTS_CSV = "results.csv"
STUDY_FIGURES = ("sweep-params.png", "sweep-history.png", "sweep-importance.png")
# What a sweep writes inside its study (none of them may be a link): sweep/driver.refuse_links
STUDY_FILES = (TRIALS, STUDY_DB, STUDY_LOCK, STUDY, RESULTS)
