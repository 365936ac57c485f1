"""cnnscope sweep, training for real on tiny synthetic data: local workers, a failing trial, growing --trials,
pruning, Ctrl-C and kill then resume, Ray. Trials are 1-3 epochs of the tiny model on 192 images."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnscope
from cnnscope.data.dataset import FILES
from cnnscope.sweep import run_sweep
from cnnscope.sweep.definition import spec_from_options
from conftest import run_cli, synthetic_images, write_idx

ROW_KEYS = {"number", "params", "status", "value", "val_accuracy", "test_accuracy", "val_loss", "test_loss",
            "val_source", "best_val_accuracy", "epochs", "seconds", "run_dir", "reason"}


def _toml(tmp_path: Path, data_dir: Path, epochs: int = 1) -> Path:
    path = tmp_path / "base.toml"
    path.write_text(f'[model]\npreset = "tiny"\n[train]\nepochs = {epochs}\nbatch_size = 64\noptimizer = "adam"\n'
                    f'lr = 0.003\n[data]\ndata_dir = "{data_dir}"\nlimit_train = 192\nlimit_test = 96\n')
    return path


def _results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text())


def test_local_workers_a_failing_trial_and_growing_trials(capsys, tmp_path, data_dir):
    study, toml = tmp_path / "study", _toml(tmp_path, data_dir)
    argv = ["sweep", "--config", toml, "--out", study, "--param", "model.preset=choice:tiny,nosuch", "--param",
            "train.seed=range:0:2", "--sampler", "grid", "--workers", "2"]
    code, out, _ = run_cli(capsys, *argv, "--trials", "2")
    assert code == 0 and "results: " in out
    assert len(_results(study)["trials"]) == 2
    code, out, _ = run_cli(capsys, *argv, "--trials", "4", "--tensorboard", tmp_path / "tb")  # grows to the grid
    assert code == 0, out
    rows = _results(study)["trials"]
    assert [r["number"] for r in rows] == [0, 1, 2, 3] and all(ROW_KEYS <= set(r) for r in rows)
    assert sorted((r["params"]["model.preset"], r["params"]["train.seed"]) for r in rows) == [
        ("nosuch", 0), ("nosuch", 1), ("tiny", 0), ("tiny", 1)]  # every grid point once: no trial ran twice
    for r in rows:
        if r["params"]["model.preset"] == "nosuch":
            assert r["status"] == "failed" and r["reason"].startswith("unknown preset 'nosuch'; valid:")
        else:
            assert r["status"] == "completed" and r["epochs"] == 1 and r["reason"] == ""
            run = cnnscope.load_run(study / r["run_dir"])  # an ordinary run directory
            assert run.metrics["test_accuracy"] == r["test_accuracy"] and run.config.seed == r["params"]["train.seed"]
            assert (r["number"] < 2) != any((tmp_path / "tb" / f"{r['number']:04d}").glob("events.out.tfevents.*"))
    assert "2 completed, 2 failed" in out and (study / "sweep-params.png").is_file()
    assert (study / "results.csv").read_text().splitlines()[0].startswith("number,param.model.preset,param.train.seed")


def _sweep(capsys, study: Path, data: Path, *extra: str) -> tuple[int, str]:
    """Three 1-epoch trials of the tiny model, its recipe given by train's own flags."""
    code, out, err = run_cli(capsys, "sweep", "--out", study, "--data-dir", data, "--preset", "tiny", "--epochs", "1",
                             "--batch-size", "64", "--optimizer", "adam", "--limit-train", "192", "--limit-test",
                             "96", "--param", "train.lr=loguniform:1e-3:3e-2", "--sampler", "random", *extra)
    assert code == 0, err
    return code, out


def test_a_sweep_never_reads_test_labels_while_choosing(capsys, tmp_path, data_dir):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(data_dir / "mnist", shuffled / "mnist")
    test_y = synthetic_images(300, 2)[1]  # conftest's test labels, permuted
    write_idx(shuffled / "mnist" / FILES["test_labels"], np.random.default_rng(0).permutation(test_y))
    _, out = _sweep(capsys, tmp_path / "a", data_dir, "--trials", "3")
    _sweep(capsys, tmp_path / "b", shuffled, "--trials", "3")
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    chosen = ("number", "params", "status", "value", "val_accuracy", "val_loss", "best_val_accuracy", "epochs")
    assert [{k: r[k] for k in chosen} for r in a["trials"]] == [{k: r[k] for k in chosen} for r in b["trials"]]
    assert a["best"] == b["best"] and a["selected_on"] == "validation" and "warning" not in a
    assert [r["test_accuracy"] for r in a["trials"]] != [r["test_accuracy"] for r in b["trials"]]  # labels differ
    assert all(r["val_source"] == "validation" and r["value"] == r["val_accuracy"] for r in a["trials"])
    best = a["trials"][a["best"]]
    assert f"validation accuracy {best['val_accuracy']:.4f}" in out and f"test accuracy       " \
        f"{best['test_accuracy']:.4f}" in out and "reported only, not used to choose" in out
    # the same check catches a leak: choosing on the test set, the values follow the test labels
    _, out = _sweep(capsys, tmp_path / "c", data_dir, "--trials", "2", "--val-size", "0", "--select-on-test")
    _sweep(capsys, tmp_path / "d", shuffled, "--trials", "2", "--val-size", "0", "--select-on-test")
    c, d = _results(tmp_path / "c"), _results(tmp_path / "d")
    assert [r["value"] for r in c["trials"]] != [r["value"] for r in d["trials"]]
    assert c["selected_on"] == "test" and out.rstrip().endswith(f"warning: {c['warning']}")


def test_a_finished_study_has_nothing_to_do_and_loads_no_torch(capsys, tmp_path, data_dir):
    study = tmp_path / "study"
    _sweep(capsys, study, data_dir, "--trials", "1")
    before = (study / "results.json").read_text()
    argv = ["sweep", "--out", str(study), "--data-dir", str(data_dir), "--preset", "tiny", "--epochs", "1",
            "--batch-size", "64", "--optimizer", "adam", "--limit-train", "192", "--limit-test", "96", "--param",
            "train.lr=loguniform:1e-3:3e-2", "--sampler", "random", "--trials", "1"]
    code = f"import sys; from cnnscope.cli import main; c = main({argv!r}); print('torch', 'torch' in sys.modules, c)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(cnnscope.__file__).parents[1])})
    assert "nothing to do: 1 of 1 trials completed" in done.stdout, done.stderr
    assert done.stdout.rstrip().endswith("torch False 0") and (study / "results.json").read_text() == before


def test_pruning_stops_a_trial_after_its_epoch(tmp_path, data_dir):
    import optuna

    spec = spec_from_options(_toml(tmp_path, data_dir, epochs=3), ["train.lr=loguniform:1e-3:1e-2"],
                             {"trials": 2, "sampler": "random"})
    results = run_sweep(tmp_path / "study", spec, pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes all
    rows = results["trials"]
    assert [r["status"] for r in rows] == ["pruned", "pruned"] and [r["epochs"] for r in rows] == [1, 1]
    history = json.loads((tmp_path / "study" / "trials" / "0000" / "history.json").read_text())
    assert history["epoch"] == [1]  # the pruned trial keeps its completed epoch
    assert results["best"] is None


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux's /proc; empty elsewhere)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_gone(pids: list[int], timeout: float = 600) -> None:
    """Until every process in `pids` has exited (the event the next step needs, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            assert time.monotonic() < deadline, f"process {pid} outlived its driver"
            time.sleep(0.05)


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/status").read_text().lower()
    return "zombie"


@pytest.mark.skipif(os.name != "posix", reason="signals to a process")
@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_stopped_mid_trial_then_resumed(tmp_path, data_dir, how):
    study, toml = tmp_path / "study", _toml(tmp_path, data_dir, epochs=3)
    argv = [sys.executable, "-m", "cnnscope", "sweep", "--config", str(toml), "--out", str(study), "--param",
            "train.lr=loguniform:1e-3:1e-2", "--trials", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(study / "trials" / "0000" / "history.json", proc)  # its first epoch is saved
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == "interrupt" else -9), err
    before = json.loads((study / "trials" / "0000" / "history.json").read_text())
    assert 1 <= len(before["epoch"]) < 3
    if how == "interrupt":
        assert _results(study)["trials"][0]["status"] == "interrupted" and "interrupted" in err
    _wait_gone(workers)  # the workers die with their driver; the re-run starts when they have
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resuming 1 interrupted trial(s): 0" in done.stderr
    after = json.loads((study / "trials" / "0000" / "history.json").read_text())
    assert after["epoch"] == [1, 2, 3] and after["seconds"][:len(before["epoch"])] == before["seconds"]
    rows = _results(study)["trials"]
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs"] == 3


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install cnnscope[ray])")
def test_ray_engine_sends_the_run_directories_back(capsys, tmp_path, data_dir):
    study, toml = tmp_path / "study", _toml(tmp_path, data_dir, epochs=2)
    code, out, err = run_cli(capsys, "sweep", "--config", toml, "--out", study, "--param",
                             "train.seed=range:0:2", "--sampler", "grid", "--engine", "ray", "--workers", "2",
                             "--prune", "median")
    assert code == 0, err
    rows = _results(study)["trials"]
    assert [r["status"] for r in rows] == ["completed", "completed"] and [r["epochs"] for r in rows] == [2, 2]
    for r in rows:
        run = cnnscope.load_run(study / r["run_dir"])
        assert run.metrics["status"] == "completed" and run.history["epoch"] == [1, 2]
    assert not list((study / "trials").glob(".*"))  # no temporary directories left
