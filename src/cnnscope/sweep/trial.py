"""One trial, where it runs (a worker process or a Ray task): build its configuration, train or resume its run
directory with a callback that reports each epoch and obeys the driver's prune decision, and say how it ended.

A trial's result is a plain dict (it crosses process boundaries): number, status (completed, pruned, failed,
interrupted), value (the study's metric at the last epoch: the validation accuracy or data loss, the weights that
are saved and tested), val_accuracy, val_loss, test_accuracy, test_loss (the test set, evaluated once at the end,
for reporting only), val_source ("validation": held out of the training images, or "test"), best_val_accuracy,
best_val_loss (over the epochs), epochs, seconds, reason.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, StopTraining
from cnnscope.data.dataset import load_dataset
from cnnscope.runs.checkpoint import saved_epoch
from cnnscope.runs.layout import CONFIG, METRICS
from cnnscope.runs.load import load_run, read_run_config
from cnnscope.runs.records import read_history, read_metrics
from cnnscope.sweep.params import apply_params
from cnnscope.trainer.config import RunConfig
from cnnscope.training import api as training
from cnnscope.training.tensorboard import TensorBoardLogger

MAX_SHIPPED_BYTES = 2**30  # a run directory that comes back from a Ray task
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}){0,3}")
# reporter(number, epoch, value, run_dir) -> True when the trial is to be pruned
Reporter = Callable[[int, int, float, Path], bool]


@dataclass(frozen=True)
class TrialTask:
    """What a worker needs to run one trial: its number, values, the base tables, its run directory, the metric."""

    number: int
    values: dict[str, Any]
    config: dict[str, Any]
    run_dir: str
    metric: str
    threads: int = 0
    tensorboard: str | None = None  # a TensorBoard log directory for this trial


class TrialCallback:
    """A training callback: stops a diverged trial (non-finite loss), reports each epoch, stops a pruned one."""

    def __init__(self, task: TrialTask, reporter: Reporter) -> None:
        self.task, self.reporter = task, reporter
        self.pruned, self.reason = False, ""

    def __call__(self, log: Any) -> None:
        """Called by the training loop after each epoch (an EpochLog)."""
        if not (math.isfinite(log.loss) and math.isfinite(log.val_loss)):
            self.reason = f"the loss is not finite at epoch {log.epoch} (diverged; try a lower lr)"
            raise StopTraining
        value = validation_loss(log.val_data_loss, log.val_loss) if self.task.metric == "val_loss" else log.val_accuracy
        if self.reporter(self.task.number, log.epoch, float(value), Path(log.run_dir)):
            self.pruned = True
            raise StopTraining


def one_line(exc: BaseException) -> str:
    """An exception as one short line for results.json."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, CnnscopeError) else f"{type(exc).__name__}: {text}"[:300]


def run_trial(task: TrialTask, reporter: Reporter) -> dict[str, Any]:
    """Train (or resume) the trial's run directory; never raises: failures come back as status "failed"."""
    if task.threads:
        import torch

        torch.set_num_threads(task.threads)
    callback = TrialCallback(task, reporter)
    t0 = time.perf_counter()
    base = {"number": task.number, "value": None, "reason": ""}
    try:
        run = _train(task, callback)
    except KeyboardInterrupt:  # a real Ctrl-C before the first epoch ended
        return {**base, "status": "interrupted", "epochs": 0, "seconds": time.perf_counter() - t0}
    except MemoryError:
        return {**base, "status": "failed", "reason": "out of memory", "seconds": time.perf_counter() - t0}
    except Exception as exc:  # any failure of one trial is recorded; the study goes on
        return {**base, "status": "failed", "reason": one_line(exc), "seconds": time.perf_counter() - t0}
    return {**base, **summary(run.metrics, run.history, task.metric, callback)}


def validation_loss(data_loss: float, objective: float) -> float:
    """The validation data loss (what "loss" means), or the older runs' loss with the penalty when it is missing."""
    return data_loss if math.isfinite(data_loss) else objective


def summary(metrics: dict[str, Any], history: dict[str, Any], metric: str, callback: TrialCallback) -> dict[str, Any]:
    """A trained run's result fields: status, value, validation and test figures side by side, epochs, seconds."""
    val_acc = history.get("val_accuracy") or [math.nan]
    val_loss = history.get("val_data_loss") or history.get("val_loss") or [math.nan]
    status = metrics.get("status", "completed")
    if callback.reason:
        status = "failed"
    elif callback.pruned:
        status = "pruned"
    last = {"val_accuracy": val_acc[-1], "val_loss": val_loss[-1], "test_accuracy": metrics.get("test_accuracy")}
    return {"status": status, "value": _finite(last[metric]), "val_accuracy": _finite(val_acc[-1]),
            "val_loss": _finite(val_loss[-1]), "test_accuracy": _finite(metrics.get("test_accuracy")),
            "test_loss": _finite(metrics.get("test_loss")),
            "val_source": str(history.get("val_source") or metrics.get("val_source") or "test"),
            "best_val_accuracy": _finite(max(val_acc)), "best_val_loss": _finite(min(val_loss)),
            "epochs": int(metrics.get("epochs_completed", len(history.get("epoch", [])))),
            "seconds": float(metrics.get("train_seconds", 0.0)), "reason": callback.reason}


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _train(task: TrialTask, callback: TrialCallback) -> Any:
    """A new training of the trial's configuration, or its interrupted run directory resumed from the last epoch."""
    run_dir = Path(task.run_dir)
    callbacks: list[Any] = [callback]
    if task.tensorboard:
        callbacks.append(TensorBoardLogger(task.tensorboard))
    options = {"callbacks": callbacks, "progress": False, "verbose": False}
    if (run_dir / CONFIG).is_file() and saved_epoch(run_dir) > 0:
        saved = read_run_config(run_dir)
        if saved_epoch(run_dir) >= saved.train.epochs and (run_dir / METRICS).is_file():
            run = load_run(run_dir, allow_nonfinite=True)  # finished before the driver recorded it
            run.metrics, run.history = read_metrics(run_dir), read_history(run_dir)
            return run
        return training.resume(run_dir, **options)
    config = RunConfig.from_dict(apply_params(task.config, task.values), "trial")
    dataset = load_dataset(config=config.data)
    return training.train(config.model, dataset, config.train, run_dir, overwrite=True, **options)


# --- run directories as bytes (the Ray engine: no shared filesystem) -----------------------------------
def read_run_files(run_dir: Path) -> dict[str, bytes]:
    """The regular files of a run directory (and its folders, 3 deep) by relative name; links are skipped."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(run_dir.rglob("*")):
        name = path.relative_to(run_dir).as_posix()
        if path.is_symlink() or not path.is_file() or not SAFE_NAME.fullmatch(name) or ".tmp" in path.name:
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_SHIPPED_BYTES:
            raise CnnscopeError(f"{run_dir} holds more than {MAX_SHIPPED_BYTES:,} bytes; too large to send back")
        files[name] = data
    return files


def write_run_files(target: Path, files: dict[str, bytes]) -> None:
    """Replace the directory `target` by these files at once: written beside it, then renamed over it."""
    import shutil

    incoming, old = target.parent / f".{target.name}.incoming", target.parent / f".{target.name}.old"
    shutil.rmtree(incoming, ignore_errors=True)
    for name, data in files.items():
        if not SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
            continue  # names come from a worker: never outside the run directory
        path = incoming / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    incoming.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(incoming, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_run_dirs(trials_dir: Path) -> None:
    """After a crash between the two renames of write_run_files: put each run directory back."""
    import shutil

    if not trials_dir.is_dir():
        return
    for old in trials_dir.glob(".*.old"):
        target = trials_dir / old.name[1:-4]
        if not target.exists():
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
