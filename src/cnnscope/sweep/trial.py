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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnscope.base.errors import StopTraining
from cnnscope.data.dataset import load_dataset
from cnnscope.runs.checkpoint import saved_epoch
from cnnscope.runs.layout import CONFIG, METRICS
from cnnscope.runs.load import load_run, read_preprocessor, read_run_config
from cnnscope.runs.records import read_history, read_metrics
from cnnscope.sweep.params import apply_params
from cnnscope.sweep.parcel import DataParcel
from cnnscope.sweep.task import TrialTask, one_line
from cnnscope.trainer.config import RunConfig
from cnnscope.training import api as training
from cnnscope.training.tensorboard import TensorBoardLogger

# reporter(number, epoch, value, run_dir) -> True when the trial is to be pruned
Reporter = Callable[[int, int, float, Path], bool]


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


def run_trial(task: TrialTask, reporter: Reporter, data: DataParcel | None = None) -> dict[str, Any]:
    """Train (or resume) the trial's run directory; never raises: failures come back as status "failed".

    `data`: the trial's data as the driver loaded it (the Ray engine); None: load it here (the local engine)."""
    if task.threads:
        import torch

        torch.set_num_threads(task.threads)
    callback = TrialCallback(task, reporter)
    t0 = time.perf_counter()
    base = {"number": task.number, "value": None, "reason": ""}
    try:
        run = _train(task, callback, data)
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


def _train(task: TrialTask, callback: TrialCallback, data: DataParcel | None) -> Any:
    """A new training of the trial's configuration, or its interrupted run directory resumed from the last epoch
    (with its saved preprocessing statistics); the data from `data` when given, never from this machine's files."""
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
        dataset = None if data is None else data.dataset(read_preprocessor(run_dir, saved.model))
        return training.resume(run_dir, dataset=dataset, **options)
    config = RunConfig.from_dict(apply_params(task.config, task.values), "trial")
    dataset = load_dataset(config=config.data) if data is None else data.dataset()
    return training.train(config.model, dataset, config.train, run_dir, overwrite=True, **options)
