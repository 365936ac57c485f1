"""cnnscope sweep --engine ray on a real two-node Ray cluster (issue 22): a head and a worker node started with
`ray start` as separate processes on this machine, each with its own HOME, cache and temporary directories, token
authentication on, and no CNNSCOPE_DATA_DIR on the nodes (only the driver has the data). Trials must get their data
from the driver, train in node-local folders, come back whole, survive the worker node's death (resumed on the
head from their last epoch) and refuse a driver whose cnnscope is another version.

Slow by nature (two Ray nodes start, ~1 minute on 2 busy cores): marked `cluster`. Every wait is for an event (a
line in a log, a file), with a deadline only for failing; the nodes' process groups are killed at the end, even
when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cnnscope
from raycluster import DEADLINE, RAY, Cluster, running_cluster, wait_for

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not RAY.is_file(), reason="ray is not installed (pip install cnnscope[ray])")]
EPOCHS = 5  # the second sweep's trials: the worker dies in the middle of one (see below)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as nodes:
        yield nodes


def sweep_argv(cluster: Cluster, study: Path, epochs: int, seeds: int) -> list[str]:
    return ["sweep", "--out", str(study), "--preset", "tiny", "--epochs", str(epochs), "--batch-size", "64",
            "--lr", "0.003", "--limit-train", "192", "--limit-test", "96", "--param", f"train.seed=range:0:{seeds}",
            "--sampler", "grid", "--engine", "ray", "--ray-address", f"127.0.0.1:{cluster.port}", "--workers", "2"]


def driver(cluster: Cluster, data_dir: Path, argv: list[str], log: Path, version: str | None = None
           ) -> subprocess.Popen:
    """`cnnscope ARGV` as the driver: the data in its CNNSCOPE_DATA_DIR, the cluster's token (and, given
    `version`, pretending to be that cnnscope version)."""
    env = cluster.driver_env(data_dir)
    patch = f"import cnnscope.base.version as v; v.__version__ = {version!r}; " if version else ""
    code = f"import sys; {patch}from cnnscope.cli import main; sys.exit(main({argv!r}))"
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode is not None
    return text


def rows(study: Path) -> list[dict]:
    return json.loads((study / "results.json").read_text())["trials"]


def trial_nodes(text: str) -> dict[int, str]:
    return {int(n): node for n, node in re.findall(r"trial (\d+) runs on node (\S+ at \S+)", text)}


def test_a_sweep_on_two_nodes_ships_its_data_and_survives_a_dead_node(cluster, tmp_path, data_dir):
    # 1. four trials on two nodes that have no data, no data variable, no download: every run directory comes back
    first, log = tmp_path / "first", tmp_path / "first.log"
    proc = driver(cluster, data_dir, sweep_argv(cluster, first, epochs=1, seeds=4), log)
    text = finish(proc, log)
    assert proc.returncode == 0, text
    assert "Ray: 2 node(s) with cnnscope" in text and text.count("shipped through Ray's object store") == 1, text
    assert len(set(trial_nodes(text).values())) == 2, text  # both nodes trained
    assert "MB of data put once in the object store (each node fetches a copy)" in text, text
    assert [r["status"] for r in rows(first)] == ["completed"] * 4, text
    for r in rows(first):
        run = cnnscope.load_run(first / r["run_dir"])
        assert run.history["epoch"] == [1] and run.metrics["test_accuracy"] == r["test_accuracy"]
    for name in ("head", "worker"):  # no data downloaded or cached on a node; the trials' folders are gone
        node = cluster.root / name
        assert not (node / "cache" / "cnnscope").exists() and not (node / "home" / ".cache").exists()
        assert not list((node / "tmp").glob("cnnscope-trial-*"))

    # 2. the worker node dies in the middle of a trial: the trial resumes on the head from its last epoch
    second, log = tmp_path / "second", tmp_path / "second.log"
    # --prune median (it prunes nothing before 2 trials have completed): after each epoch a trial waits for the
    # driver's answer, so with the driver stopped the trial on the worker cannot finish before the worker dies
    argv = [*sweep_argv(cluster, second, epochs=EPOCHS, seeds=2), "--prune", "median"]
    proc = driver(cluster, data_dir, argv, log)
    logs = [log, cluster.root / "worker.log"]
    try:
        folder = wait_for(lambda: next((cluster.root / "worker" / "tmp").glob("cnnscope-trial-*"), None),
                          "trial on the worker node", logs)
        number = int(folder.name.split("-")[2])
        history = second / "trials" / f"{number:04d}" / "history.json"
        wait_for(history.is_file, f"first epoch of trial {number} back on the driver", logs)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            cluster.kill("worker")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        text = finish(proc, log)
    assert proc.returncode == 0, text
    lost = re.search(rf"trial {number}: node \S+ at \S+ died .*; resuming it from epoch (\d) on another node", text)
    assert lost and 1 <= int(lost.group(1)) < EPOCHS, text
    assert [r["status"] for r in rows(second)] == ["completed"] * 2, text
    run = cnnscope.load_run(second / "trials" / f"{number:04d}")
    assert run.history["epoch"] == list(range(1, EPOCHS + 1)) and run.metrics["status"] == "completed"
    log = tmp_path / "again.log"
    proc = driver(cluster, data_dir, argv, log)  # a re-run has nothing left to do
    text = finish(proc, log)
    assert proc.returncode == 0 and "nothing to do" in text, text

    # 3. a driver of another cnnscope version is refused before its first trial, naming the node
    third, log = tmp_path / "third", tmp_path / "third.log"
    proc = driver(cluster, data_dir, sweep_argv(cluster, third, epochs=1, seeds=2), log, version="0.0.0+other")
    text = finish(proc, log)
    assert proc.returncode == 2, text
    assert re.search(r"error: node \S+ at \S+ runs cnnscope \S+, this driver 0\.0\.0\+other", text), text
    assert not (third / "trials").exists()
