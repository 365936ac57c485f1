"""Every run and study under a directory, summarised in one line each (what `cnnscope runs` and the dashboard list).

Nothing here imports torch: a run is summarised from its small files (config.toml, metrics.json, history.json),
each read once and cached by its (mtime_ns, size), so listing 200 unchanged runs again reads no file.

The walk goes at most `max_depth` folders down, never follows a symbolic link (a linked folder or file is
skipped), skips hidden folders, and notes the folders it cannot read. A folder with a config.toml is a run (the
walk does not go inside it); one with a study.toml is a study (listed as one line, and its trials/NNNN run
directories as runs).

Status of a run (the training loop writes metrics.json, with "status" completed or interrupted, only when it ends):
- metrics.json counting as many epochs (epochs_completed) as history.json: its status; "failed" when its test
  loss or the last training loss is not finite (a diverged training). (Counting epochs, not comparing times,
  keeps a copied run directory right; a resumed run shows its old status until its first new epoch is saved.)
- otherwise (no metrics.json yet, or a resumed run whose history.json has more epochs): "running" when history.json
  (or, before the first epoch ends, config.toml / initial.safetensors) changed within the live window:
  max(`live_seconds`, 3 × the longest epoch so far + 10 s); else "failed" (the process ended without writing
  metrics.json: an error, or it was killed).
- a sweep trial whose results.json row says "failed" or "pruned" takes that status and the row's reason.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, RunError, choice_error
from cnnscope.base.fileio import read_json, read_toml
from cnnscope.model.spec import describe_model
from cnnscope.runs.layout import CONFIG, HISTORY, INITIAL, METRICS, RESULTS, STUDY

log = logging.getLogger("cnnscope")

LIVE_SECONDS = 120.0
MAX_DEPTH = 6
MAX_ENTRIES = 5000
MAX_FILE_BYTES = 64 * 2**20  # a history of many epochs with the lr of every step stays far below this
MAX_SETTING_COLUMNS = 24  # differing settings shown as columns; the rest are counted in a note
IGNORED_SETTINGS = ("data.data_dir",)  # where the data was read from: a location, not a setting
_INTERNAL = ("longest_epoch", "final_status", "final_epochs", "diverged")  # facts used for the status only
SORT_KEYS = ("name", "kind", "status", "dataset", "model", "val_accuracy", "test_accuracy", "best_val_accuracy",
             "epochs", "seconds", "updated")


@dataclass
class Listing:
    """A scan's result: one entry per run or study (dicts, JSON-ready), the settings that differ, and notes."""

    entries: list[dict[str, Any]]
    differing: list[str]
    notes: list[str] = field(default_factory=list)

    def runs(self) -> list[dict[str, Any]]:
        """The entries that are runs (a study's trials included)."""
        return [e for e in self.entries if e["kind"] == "run"]

    def find(self, name: str) -> dict[str, Any] | None:
        """The entry called `name`, or None."""
        return next((e for e in self.entries if e["name"] == name), None)


def _file_key(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a regular file that is not a link; None when absent or anything else."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size) if stat.S_ISREG(info.st_mode) else None


class FileCache:
    """Parsed small files, each read again only when its (mtime_ns, size) changes; thread-safe."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[Path, str], tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()
        self.reads = 0  # how many files were actually read (the cache's tests and the benchmark count them)

    def get(self, path: Path, kind: str) -> tuple[tuple[int, int] | None, Any]:
        """(key, parsed JSON/TOML) of `path`; (None, None) when absent; RunError when unreadable or invalid."""
        key = _file_key(path)
        if key is None:
            return None, None
        with self._lock:
            cached = self._parsed.get((path, kind))
        if cached is not None and cached[0] == key:
            return key, cached[1]
        reader = read_toml if kind == "toml" else read_json
        value = reader(path, RunError, MAX_FILE_BYTES)
        with self._lock:
            self.reads += 1
            self._parsed[(path, kind)] = (key, value)
        return key, value

    def forget(self, keep: Iterable[Path]) -> None:
        """Drop the files of folders no longer listed (`keep`: the folders still there)."""
        folders = set(keep)
        with self._lock:
            self._parsed = {k: v for k, v in self._parsed.items() if k[0].parent in folders}


# --- the walk ---------------------------------------------------------------------------------
def walk(root: Path, max_depth: int = MAX_DEPTH) -> tuple[list[tuple[str, Path]], list[str]]:
    """([(kind, folder)], notes): every run ("run") and study ("study") folder under `root`, breadth first."""
    found: list[tuple[str, Path]] = []
    notes: list[str] = []
    level = [root]
    for depth in range(max_depth + 1):
        following: list[Path] = []
        for folder in level:
            kind = "study" if _file_key(folder / STUDY) else "run" if _file_key(folder / CONFIG) else None
            if kind is not None:
                found.append((kind, folder))
                if kind == "run":
                    continue  # runs do not hold runs
            if depth < max_depth:
                following.extend(_subfolders(folder, notes))
        if len(found) >= MAX_ENTRIES:
            notes.append(f"stopped after {MAX_ENTRIES} runs; pass a folder further down")
            break
        level = sorted(following)
        if not level:  # nothing further down: a huge max_depth must not spin through empty levels
            break
    return found[:MAX_ENTRIES], notes


def _subfolders(folder: Path, notes: list[str]) -> list[Path]:
    """The folders inside `folder`: no links, no hidden ones; an unreadable folder is a note."""
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries
                    if not e.name.startswith(".") and e.name != "__pycache__" and e.is_dir(follow_symlinks=False)]
    except OSError as exc:
        notes.append(f"skipped {folder}: {exc.strerror or exc}")
        return []


# --- one run ----------------------------------------------------------------------------------
def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {"train.lr": 0.001, "model.conv[0].filters": 8, …}; lists of numbers stay one value."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def _list(table: dict[str, Any], key: str) -> list:
    value = table.get(key)
    return value if isinstance(value, list) else []


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def summarise_files(config: Any, metrics: Any, history: Any) -> dict[str, Any]:
    """What a run's parsed files say (no status: that depends on the clock); bad shapes give None fields."""
    config = config if isinstance(config, dict) else {}
    metrics = metrics if isinstance(metrics, dict) else {}
    history = history if isinstance(history, dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seconds = [s for s in _list(history, "seconds") if _finite(s)]
    epochs, losses = _list(history, "epoch"), _list(history, "loss")
    val = [v for v in _list(history, "val_accuracy") if _finite(v)]
    source = str(history.get("val_source") or metrics.get("val_source") or "")
    diverged = (bool(losses) and not _finite(losses[-1])) or ("test_loss" in metrics
                                                              and not _finite(metrics["test_loss"]))
    return {
        "dataset": str(data.get("dataset", "?")), "model": describe_model(model),
        "test_accuracy": _number(metrics.get("test_accuracy")),
        "val_accuracy": val[-1] if val and source == "validation" else None,  # last epoch's; none from the test set
        "val_source": source or None,
        "best_val_accuracy": _number(metrics.get("best_val_accuracy")) or (max(val) if val else None),
        "epochs": len(epochs), "epochs_planned": train.get("epochs") if _finite(train.get("epochs")) else None,
        "seconds": _number(metrics.get("train_seconds")) or (sum(seconds) if seconds else None),
        "longest_epoch": max(seconds) if seconds else 0.0, "final_status": metrics.get("status"),
        "final_epochs": metrics["epochs_completed"] if _finite(metrics.get("epochs_completed")) else len(epochs),
        "diverged": diverged, "flat": {k: v for k, v in flatten(config).items() if k not in IGNORED_SETTINGS},
    }


def run_status(folder: Path, facts: dict[str, Any], keys: dict[str, Any], now: float, live_seconds: float
               ) -> tuple[str, str]:
    """(status, reason) by the rule in this module's docstring."""
    history_key = keys["history"]
    if keys["metrics"] is not None and facts["final_epochs"] >= facts["epochs"]:
        if facts["diverged"]:
            return "failed", "the training diverged: its loss is not finite (try a lower lr)"
        status = facts["final_status"]
        return (status, "") if status in ("completed", "interrupted") else ("failed", "metrics.json has no status")
    stamps = [k[0] for k in (history_key, _file_key(folder / INITIAL), keys["config"]) if k]
    window = max(live_seconds, 3 * facts["longest_epoch"] + 10)
    if stamps and now - max(stamps) / 1e9 <= window:
        return "running", ""
    return "failed", (f"stopped without writing metrics.json (an error, or the process was killed); "
                      f"'cnnscope train --resume {folder}' continues it")


def _trial_rows(study: Path, cache: FileCache) -> list[dict[str, Any]]:
    """results.json's rows of a study (a list, or {"trials": [...]}); [] when absent or unreadable."""
    try:
        _, rows = cache.get(study / RESULTS, "json")
    except CnnscopeError as exc:
        log.warning("%s", exc)
        return []
    rows = rows.get("trials", []) if isinstance(rows, dict) else rows
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _study_goal(definition: Any) -> tuple[str, str]:
    """(metric, direction) of a study.toml (top level or its [sweep]/[study] table); val_accuracy, maximize."""
    tables = [definition] if isinstance(definition, dict) else []
    tables += [definition[k] for k in ("sweep", "study") if tables and isinstance(definition.get(k), dict)]
    metric = next((t["metric"] for t in tables if isinstance(t.get("metric"), str)), "val_accuracy")
    direction = next((t["direction"] for t in tables if isinstance(t.get("direction"), str)), "maximize")
    return metric, direction


def _study_selection(definition: Any, metric: str) -> dict[str, Any]:
    """What a study.toml says its trials are chosen on ("validation" or "test": older studies, with no split, chose
    on the test set), and its parameters drawn log-uniformly (plotted on log axes)."""
    definition = definition if isinstance(definition, dict) else {}
    config, params = definition.get("config"), definition.get("params")
    data = config.get("data") if isinstance(config, dict) and isinstance(config.get("data"), dict) else {}
    held_out = bool(data.get("val_size")) or bool(data.get("val_fraction"))
    selected = definition.get("selected_on")
    if selected not in ("validation", "test"):
        selected = "validation" if held_out and metric != "test_accuracy" else "test"
    logs = sorted(str(k) for k, v in params.items() if str(v).startswith("loguniform:")) if isinstance(
        params, dict) else []
    out: dict[str, Any] = {"selected_on": selected, "log_params": logs}
    if selected == "test":
        out["warning"] = ("chosen on the TEST set: the best trial's test accuracy is biased upwards, not an "
                          "estimate for new data")
    return out


def _row_metric(row: dict[str, Any], metric: str) -> float | None:
    """A trial's value of the study's metric from its run's files, for studies written before results.json kept the
    value chosen on (val_accuracy is its best_val_accuracy)."""
    value = row.get(f"best_{metric}", row.get(metric))
    return _number(value)


# --- the catalog ------------------------------------------------------------------------------
class Catalog:
    """Every run and study under `root`, rescanned on each `scan()` but each file read only when it changed."""

    def __init__(self, root: str | os.PathLike, max_depth: int = MAX_DEPTH, live_seconds: float = LIVE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RunError(f"folder not found: {self.root}; pass a folder that holds run directories or studies")
        self.max_depth, self.live_seconds, self.clock = max_depth, live_seconds, clock
        self.files = FileCache()
        self._facts: dict[Path, tuple[tuple, dict[str, Any]]] = {}
        self.last: Listing | None = None

    def scan(self) -> Listing:
        """List every run and study now (statuses as of now); cached files are not read again."""
        found, notes = walk(self.root, self.max_depth)
        now = self.clock()
        entries = [self._run(folder, now) if kind == "run" else self._study(folder) for kind, folder in found]
        runs = [e for e in entries if e["kind"] == "run"]
        flats = [e.pop("flat") for e in runs]
        read = [flat for flat in flats if flat]  # an unreadable run has no settings to differ by
        stats = _key_stats(read)
        differing = set(differing_keys(read, stats))
        for entry, flat in zip(runs, flats, strict=True):  # each run only its own values: O(its keys)
            entry["settings"] = {k: v for k, v in flat.items() if k in differing}
        columns = setting_columns(differing, stats)
        if len(columns) < len(differing):
            notes.append(f"{len(differing):,} settings differ between runs; the table shows the {len(columns)} "
                         f"that most runs have, and each run's entry lists its own (runs --json)")
        self._finish_studies(entries)
        self.files.forget(folder for _, folder in found)
        self.last = Listing(entries, columns, notes)
        return self.last

    def name_of(self, folder: Path) -> str:
        """A folder's name in the listing: its path relative to the root ('.' for the root itself)."""
        return folder.relative_to(self.root).as_posix() if folder != self.root else "."

    def _run(self, folder: Path, now: float) -> dict[str, Any]:
        """One run's entry (with its flattened config under "flat", removed by scan)."""
        entry: dict[str, Any] = {"name": self.name_of(folder), "kind": "run"}
        try:
            keys, parsed = {}, {}
            for label, file, kind in (("config", CONFIG, "toml"), ("metrics", METRICS, "json"),
                                      ("history", HISTORY, "json")):
                keys[label], parsed[label] = self.files.get(folder / file, kind)
        except CnnscopeError as exc:
            return {**entry, "status": "unreadable", "reason": str(exc), "flat": {}}
        stamp = tuple(keys.values())
        cached = self._facts.get(folder)
        if cached is None or cached[0] != stamp:
            cached = (stamp, summarise_files(parsed["config"], parsed["metrics"], parsed["history"]))
            self._facts[folder] = cached
        facts = cached[1]
        status, reason = run_status(folder, facts, keys, now, self.live_seconds)
        updated = max((k[0] for k in keys.values() if k), default=0) / 1e9
        shown = {k: v for k, v in facts.items() if k not in _INTERNAL}
        return {**entry, "status": status, "reason": reason, **shown, "updated": updated}

    def _study(self, folder: Path) -> dict[str, Any]:
        """A study's entry (its trials are listed as runs; _finish_studies adds their counts and the best)."""
        entry: dict[str, Any] = {"name": self.name_of(folder), "kind": "study", "status": "completed", "reason": ""}
        try:
            _, definition = self.files.get(folder / STUDY, "toml")
        except CnnscopeError as exc:
            return {**entry, "status": "unreadable", "reason": str(exc), "rows": []}
        metric, direction = _study_goal(definition)
        return {**entry, "metric": metric, "direction": direction, **_study_selection(definition, metric),
                "rows": _trial_rows(folder, self.files)}

    def _finish_studies(self, entries: list[dict[str, Any]]) -> None:
        """Each study's trials (the runs inside it): row statuses, counts, best trial, live status."""
        for study in (e for e in entries if e["kind"] == "study"):
            prefix = "" if study["name"] == "." else study["name"] + "/"
            trials = [e for e in entries if e["kind"] == "run" and e["name"].startswith(prefix)]
            rows = study.pop("rows")
            by_dir = {Path(str(r.get("run_dir", ""))).name: r for r in rows}
            for trial in trials:
                row = by_dir.get(trial["name"].rsplit("/", 1)[-1], {})
                trial["study"], trial["number"] = study["name"], row.get("number")
                if "value" in row:  # the value the sweep chose on (a study written before it: the run's files)
                    trial["value"] = _number(row.get("value"))
                if row.get("status") in ("failed", "pruned"):  # the sweep's own verdict
                    trial["status"], trial["reason"] = row["status"], str(row.get("reason") or "")
            study.update(study_summary(study, trials, rows))


def study_summary(study: dict[str, Any], trials: list[dict[str, Any]], rows: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """Counts, the best trial by the study's metric and direction, and a live status of one study."""
    metric, sign = study.get("metric", "val_accuracy"), -1 if study.get("direction") == "minimize" else 1
    counted = [t for t in trials if t["status"] in ("completed", "interrupted", "running")]  # not failed/pruned
    scored = [(v, t) for t in counted
              if (v := t["value"] if "value" in t else _row_metric(t, metric)) is not None]
    best = max(scored, key=lambda pair: sign * pair[0], default=None)
    running = any(t["status"] == "running" for t in trials)
    first = trials[0] if trials else {}
    return {"status": "running" if running else study["status"] if trials else "empty",
            "trials": max(len(trials), len(rows)), "completed": sum(t["status"] == "completed" for t in trials),
            "best": None if best is None else {"name": best[1]["name"], "value": best[0], "metric": metric},
            "dataset": first.get("dataset", "?"), "model": first.get("model", "?"),
            "test_accuracy": None if best is None else best[1].get("test_accuracy"),
            "val_accuracy": None if best is None or best[1].get("val_source") != "validation"
            else best[1].get("val_accuracy"),
            "best_val_accuracy": None if best is None else best[1].get("best_val_accuracy"),
            "epochs": None, "seconds": sum(t.get("seconds") or 0 for t in trials) or None,
            "updated": max((t.get("updated", 0) for t in trials), default=0)}


def _key_stats(flats: list[dict[str, Any]]) -> dict[str, list]:
    """key -> [its first value, how many runs have it, whether its values differ], in one pass over every value."""
    stats: dict[str, list] = {}
    for flat in flats:
        for key, value in flat.items():
            slot = stats.get(key)
            if slot is None:
                stats[key] = [value, 1, False]
            else:
                slot[1] += 1
                slot[2] = slot[2] or not _same(value, slot[0])
    return stats


def differing_keys(flats: list[dict[str, Any]], stats: dict[str, list] | None = None) -> list[str]:
    """The flattened config keys whose values are not the same in every run (a missing key counts as a value);
    linear in the number of values (200 runs × 100 keys of their own: 20,000 steps, not 4 million)."""
    if len(flats) < 2:
        return []
    stats = _key_stats(flats) if stats is None else stats
    return sorted(k for k, (_, count, differs) in stats.items() if differs or count < len(flats))


def setting_columns(differing: Iterable[str], stats: dict[str, list]) -> list[str]:
    """At most MAX_SETTING_COLUMNS of the differing keys, those most runs have first, listed in name order."""
    ranked = sorted(differing, key=lambda k: (-stats[k][1], k))
    return sorted(ranked[:MAX_SETTING_COLUMNS])


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (1 and 1.0 and True differ as settings; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def sort_entries(entries: list[dict[str, Any]], key: str, differing: Iterable[str] = (),
                 reverse: bool = False) -> list[dict[str, Any]]:
    """Entries sorted by `key` (a column or a differing setting); missing values last; CnnscopeError otherwise."""
    settings = list(differing)
    if key not in SORT_KEYS and key not in settings:
        raise choice_error(RunError, "sort key", key, [*SORT_KEYS, *settings])

    def value(entry: dict[str, Any]) -> Any:
        found = entry.get("settings", {}).get(key) if key in settings else entry.get(key)
        return found if isinstance(found, (int, float)) and not isinstance(found, bool) else str(found)

    present = [e for e in entries if value(e) not in (None, "None")]
    kinds = {isinstance(value(e), str) for e in present}
    ordered = sorted(present, key=(lambda e: str(value(e))) if len(kinds) > 1 else value, reverse=reverse)
    return ordered + [e for e in entries if value(e) in (None, "None")]


def entry_text(entry: dict[str, Any]) -> str:
    """The words of one entry a filter looks in: name, kind, status, dataset, model and settings."""
    settings = " ".join(f"{k}={v}" for k, v in entry.get("settings", {}).items())
    return " ".join(str(entry.get(k, "")) for k in ("name", "kind", "status", "dataset", "model")) + " " + settings


def filter_entries(entries: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The entries whose text (entry_text) holds every word of `text`, ignoring case."""
    words = text.lower().split()
    return [e for e in entries if all(w in entry_text(e).lower() for w in words)]
