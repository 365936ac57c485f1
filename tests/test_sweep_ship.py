"""What the Ray engine ships and how it names failures, without a cluster (issue 22): a trial trains and resumes on
the data the driver loaded (built-in, npz:, folder:) with none of the driver's files, paths or variables; a node
of another cnnscope version, a dead node, a crashed worker or a refused token are one line naming the node; a
trial whose node dies is resumed from its last epoch, or left interrupted with the reason for the next run.
The real two-node cluster is tests/test_sweep_cluster.py."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnscope.data.dataset import load_dataset
from cnnscope.runs import load as runs_load
from cnnscope.sweep import trial as trial_module
from cnnscope.sweep.parcel import load_parcel, trial_data_config
from cnnscope.sweep.task import TrialTask
from cnnscope.sweep.trial import run_trial
from conftest import make_data_dir, synthetic_images

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna is not installed")


def _source(kind: str, root: Path) -> dict:
    """The [data] table of a small dataset of each kind, written under `root` (the driver's files)."""
    if kind == "builtin":
        return {"data_dir": str(make_data_dir(root, 300, 100)), "limit_train": 96, "limit_test": 48}
    (xt, yt), (xs, ys) = synthetic_images(120, 1), synthetic_images(48, 2)
    if kind == "npz":
        root.mkdir(parents=True)
        np.savez(root / "digits.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
        return {"dataset": f"npz:{root / 'digits.npz'}"}
    for split, x, y in (("train", xt, yt), ("test", xs, ys)):
        for i, (picture, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(folder / f"{i}.png")
    return {"dataset": f"folder:{root}"}


def _stop(number: int, epoch: int, value: float, path: Path) -> bool:
    raise KeyboardInterrupt  # Ctrl-C after the first epoch: the run keeps it, to be resumed


@pytest.mark.parametrize("kind", ["builtin", "npz", "folder"])
def test_a_trial_trains_and_resumes_on_the_shipped_data_alone(tmp_path, monkeypatch, kind):
    data = {**_source(kind, tmp_path / "driver-data"), "val_fraction": 0.1}
    base = {"model": {"preset": "tiny"}, "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 0.003},
            "data": data}
    parcel = load_parcel(trial_data_config(base, {"train.seed": 1}))  # on the driver
    shipped = copy.deepcopy(parcel)  # a copy that shares nothing with the driver (Ray serialises it in transit)
    here = load_dataset(config=parcel.config)  # what a trial loading its own data would train on
    for split in ("train", "val", "test"):
        assert np.array_equal(here.split(split)[2], getattr(shipped, f"{split}_raw"))
        assert np.array_equal(here.split(split)[1], getattr(shipped, f"{split}_y"))
    shutil.rmtree(tmp_path / "driver-data")  # the node has none of the driver's files, cache or variables
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "node-cache"))

    def refuse(*args, **kwargs):
        raise AssertionError("a trial loaded data from files")

    monkeypatch.setattr(trial_module, "load_dataset", refuse)
    monkeypatch.setattr(runs_load, "load_dataset", refuse)
    task = TrialTask(0, {"train.seed": 1}, base, str(tmp_path / "run"), "val_accuracy", threads=1)
    first = run_trial(task, _stop, shipped)
    assert first["status"] == "interrupted" and first["epochs"] == 1, first
    done = run_trial(task, lambda *args: False, shipped)  # resumed from epoch 1, with the saved statistics
    assert done["status"] == "completed" and done["epochs"] == 2, done
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epoch"] == [1, 2] and history["val_source"] == "validation"
    config = (tmp_path / "run" / "config.toml").read_text()  # the run records the driver's data, to reopen there
    assert str(tmp_path / "driver-data") in config



@needs_ray
def test_failures_name_the_node_and_what_happened():
    from ray import exceptions as errors

    from cnnscope.sweep.nodes import connect_error, failure, mismatch

    node = "64fb913d at 10.0.0.2"
    assert failure(errors.NodeDiedError("gone"), node) == (
        "lost", "node 64fb913d at 10.0.0.2 died (it left the cluster, or its raylet crashed)")
    assert failure(errors.OutOfMemoryError("memory monitor"), node) == (
        "failed", "node 64fb913d at 10.0.0.2 ran out of memory (Ray's memory monitor killed the trial)")
    assert failure(errors.WorkerCrashedError(), node)[1] == (
        "the worker process on node 64fb913d at 10.0.0.2 died (killed, or out of memory)")
    missing = errors.RayTaskError("ray_trial", "traceback", ModuleNotFoundError("No module named 'cnnscope'"),
                                  ip="10.0.0.3")
    assert failure(missing, None) == (
        "failed", "node at 10.0.0.3 could not run the trial (ModuleNotFoundError: No module named 'cnnscope')")
    facts = [{"node": "a at 10.0.0.1", "cnnscope": "1.0"}, {"node": node, "cnnscope": "0.9"}]
    assert mismatch(facts[:1], "1.0") is None
    assert mismatch(facts, "1.0").startswith("node 64fb913d at 10.0.0.2 runs cnnscope 0.9, this driver 1.0: ")
    refused = ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")
    refused.__cause__ = errors.AuthenticationError("Authentication token is missing or incorrect")
    assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH" in connect_error(refused, "10.0.0.1:6379")
    assert connect_error(ConnectionError("refused"), "h:1") == (
        "cannot start or reach the Ray cluster at h:1 (refused); check --ray-address")


class LosingEngine:
    """An engine whose node dies under trial 0 `lose` times (after its first epoch), then lets it complete."""

    name = "ray"

    def __init__(self, lose: int) -> None:
        self.lose, self.queue, self.busy, self.sent = lose, [], set(), []

    def start(self) -> None:
        pass

    def free(self) -> int:
        return 1 - len(self.busy)

    def running(self) -> int:
        return len(self.busy)

    def submit(self, task: TrialTask, files: dict[str, bytes] | None = None) -> None:
        self.sent.append(dict(files or {}))
        self.busy.add(task.number)
        epochs = json.loads(files["history.json"])["epoch"] if files else []
        after = {"history.json": json.dumps({"epoch": [*epochs, len(epochs) + 1]}).encode()}
        self.queue += [("node", task.number, "64fb913d at 10.0.0.2", None),
                       ("epoch", task.number, (len(epochs) + 1, 0.5), after)]
        if self.lose:
            self.lose -= 1
            self.queue.append(("lost", task.number, "node 64fb913d at 10.0.0.2 died", None))
        else:
            self.queue.append(("done", task.number, {"number": task.number, "status": "completed", "value": 0.5},
                               after))

    def poll(self, timeout: float) -> list[tuple]:
        messages, self.queue = self.queue, []
        self.busy -= {m[1] for m in messages if m[0] in ("done", "lost")}
        return messages

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        pass

    def close(self) -> None:
        pass


def _drive(study_dir: Path, engine: LosingEngine) -> list[dict]:
    from cnnscope.sweep.definition import spec_from_options
    from cnnscope.sweep.driver import Driver, make_pruner, open_study

    spec = spec_from_options(None, ["train.seed=range:0:1"], {"trials": 1, "sampler": "grid", "engine": "ray"})
    study_dir.mkdir(exist_ok=True)
    Driver(study_dir, spec, open_study(study_dir, spec, make_pruner(spec, 1)), engine).run()
    return json.loads((study_dir / "results.json").read_text())["trials"]


@needs_optuna
def test_a_trial_whose_node_dies_resumes_from_its_last_epoch(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cnnscope")
    engine = LosingEngine(lose=1)
    rows = _drive(tmp_path, engine)
    assert [r["status"] for r in rows] == ["completed"] and rows[0]["reason"] == ""
    assert engine.sent[0] == {} and json.loads(engine.sent[1]["history.json"])["epoch"] == [1]  # epoch 1 sent out
    assert "trial 0: node 64fb913d at 10.0.0.2 died; resuming it from epoch 1 on another node" in caplog.text
    assert "trial 0 runs on node 64fb913d at 10.0.0.2" in caplog.text


@needs_optuna
def test_a_trial_lost_again_and_again_waits_for_the_next_run(tmp_path):
    engine = LosingEngine(lose=3)  # more than MAX_LOST resumptions in one run
    rows = _drive(tmp_path, engine)
    assert [r["status"] for r in rows] == ["interrupted"] and len(engine.sent) == 3
    assert rows[0]["reason"] == ("node 64fb913d at 10.0.0.2 died at epoch 3, 3 times; run the command again to "
                                 "resume it")
    again = LosingEngine(lose=0)
    rows = _drive(tmp_path, again)  # the next run resumes it from the epochs the driver kept
    assert [r["status"] for r in rows] == ["completed"] and rows[0]["reason"] == ""
    assert json.loads(again.sent[0]["history.json"])["epoch"] == [1, 2, 3]
