"""The Ray engine: each trial is a Ray task (1 CPU, 1 torch thread) on a local Ray or a cluster (--ray-address).

Nodes need no shared filesystem, no data files and none of the driver's paths or environment variables:
- before the first trial every node answers with its cnnscope version (nodes.check_nodes: another version, or a
  node that cannot import cnnscope, refuses the sweep with one line naming the node);
- the driver loads and checks each trial's data itself (built-in, npz:, folder:) and puts it once in Ray's object
  store (one object per data configuration: one per study unless a data.* parameter is swept); each node fetches
  it once and its trials share it (parcel.py);
- a task trains in a node-local temporary directory and, after every epoch, sends the epoch's metric and the run
  directory's files (bytes) to a small Coordinator actor on the driver's node; the driver drains the actor, writes
  trials/NNNN atomically (so every completed epoch is on the driver's disk) and answers go/prune, which the task
  reads back from the actor. A resumed trial's files (its weights, initial weights and history) travel out the
  same way, as the task's argument.
A task whose node dies is "lost": the driver resumes the trial from its last epoch on another node. Any other
failure is the trial's, with a reason naming the node (nodes.failure). Ctrl-C cancels the tasks at once
(ray.cancel(force=True)): their completed epochs are already written.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnscope.base import version
from cnnscope.base.errors import SweepError
from cnnscope.data.dataset import DataConfig
from cnnscope.sweep.nodes import check_nodes, connect_error, failure, here
from cnnscope.sweep.parcel import DataParcel, load_parcel, trial_data_config
from cnnscope.sweep.task import TrialTask, read_run_files, write_run_files
from cnnscope.sweep.trial import run_trial

log = logging.getLogger("cnnscope")
POLL_SECONDS = 0.05


class Coordinator:
    """A Ray actor: the tasks' reports (their node, each epoch with its run files) and the driver's decisions.

    Messages are in the engine's format: ("node", number, label, None), ("epoch", number, (epoch, value), files).
    """

    def __init__(self) -> None:
        self.messages: list[tuple] = []
        self.seen = 0  # the number of messages[0]
        self.decisions: dict[tuple[int, int], bool] = {}

    def started(self, number: int, node: str) -> None:
        """A task started on a node."""
        self.messages.append(("node", number, node, None))

    def report(self, number: int, epoch: int, value: float, files: dict[str, bytes]) -> None:
        """A task finished an epoch: its metric and its run directory's files."""
        self.messages.append(("epoch", number, (epoch, value), files))

    def drain(self, seen: int) -> list[tuple]:
        """The messages from number `seen` on; those before it reached the driver and are forgotten (a drain whose
        answer was lost is answered again)."""
        del self.messages[:seen - self.seen]
        self.seen = seen
        return list(self.messages)

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        """The driver's answer to a report."""
        self.decisions[(number, epoch)] = prune

    def decision(self, number: int, epoch: int) -> bool | None:
        """The answer to a report, once given (and forgotten then)."""
        return self.decisions.pop((number, epoch), None)


def ray_trial(task: TrialTask, files: dict[str, bytes], data: DataParcel, coordinator: Any, wait: bool,
              wanted: str) -> dict[str, Any]:
    """The body of a Ray task: say where it runs, restore the run directory (resume), train on the shipped data,
    return the result and the files. `wanted`: the driver's cnnscope version (a node may join after the check)."""
    import ray  # optional dependency

    logging.getLogger("cnnscope").setLevel(logging.ERROR)
    node = here()
    coordinator.started.remote(task.number, node)
    if version.__version__ != wanted:
        reason = f"node {node} runs cnnscope {version.__version__}, the driver {wanted}"
        return {"result": {"number": task.number, "status": "failed", "reason": reason}, "files": {}}
    with tempfile.TemporaryDirectory(prefix=f"cnnscope-trial-{task.number:04d}-") as tmp:
        run_dir = Path(tmp) / "run"
        if files:
            write_run_files(run_dir, files)

        def report(number: int, epoch: int, value: float, path: Path) -> bool:
            ray.get(coordinator.report.remote(number, epoch, value, read_run_files(path)))
            while wait:
                decision = ray.get(coordinator.decision.remote(number, epoch))
                if decision is not None:
                    return decision
                time.sleep(POLL_SECONDS)
            return False

        local = TrialTask(**{**task.__dict__, "run_dir": str(run_dir), "threads": 1})
        result = run_trial(local, report, data)
        if result.get("status") == "failed":
            result["reason"] = f"{result.get('reason')} (on node {node})"
        return {"result": result, "files": read_run_files(run_dir) if run_dir.is_dir() else {}}


class RayEngine:
    """Trials as Ray tasks, at most `workers` at a time."""

    name = "ray"

    def __init__(self, workers: int, wait: bool, address: str | None) -> None:
        self.workers, self.wait, self.address = workers, wait, address
        self.refs: dict[Any, int] = {}  # task ref -> trial number
        self.nodes: dict[int, str] = {}  # trial number -> the node its task runs on
        self.data: dict[DataConfig, Any] = {}  # a trial's data configuration -> its object in the store
        self.coordinator: Any = None
        self.seen = 0  # the coordinator's messages received
        self.shipped = {"data": 0, "out": 0, "back": 0}  # bytes: data put once, run files sent out and back
        self.remote: Any = None

    def start(self) -> None:
        """Connect to the cluster (or start a local Ray with `workers` CPUs), check every node's cnnscope, and
        create the coordinator on this driver's node."""
        import ray  # optional dependency
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = {"address": self.address} if self.address else {"num_cpus": self.workers}
        try:
            ray.init(**options, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                     ignore_reinit_error=True)
        except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, ValueError
            raise SweepError(connect_error(exc, self.address)) from None
        try:
            check_nodes()
        except SweepError:
            self.close()
            raise
        here_options: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # pinned here (not soft: Ray would place it on any node, which may die);
            # Ray Client has no local node: then Ray places it
            node_id = ray.get_runtime_context().get_node_id()
            here_options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        self.coordinator = ray.remote(num_cpus=0)(Coordinator).options(**here_options).remote()
        self.remote = ray.remote(num_cpus=1, max_retries=0)(ray_trial)

    def free(self) -> int:
        """How many more trials can start now."""
        return self.workers - len(self.refs)

    def running(self) -> int:
        """How many trials are running."""
        return len(self.refs)

    def submit(self, task: TrialTask, files: dict[str, bytes] | None = None) -> None:
        """Start a trial as a Ray task with its data (loaded here, shipped once) and, when it resumes, its run
        directory's files. CnnscopeError when the trial's data cannot be loaded (the trial fails, named)."""
        data = self._data(trial_data_config(task.config, task.values))
        self.shipped["out"] += sum(len(b) for b in (files or {}).values())
        ref = self.remote.remote(task, files or {}, data, self.coordinator, self.wait, version.__version__)
        self.refs[ref] = task.number

    def _data(self, config: DataConfig) -> Any:
        """The object holding the data of `config`: loaded and put in Ray's object store the first time."""
        import ray  # optional dependency

        if config not in self.data:
            parcel = load_parcel(config)
            self.data[config] = ray.put(parcel)
            self.shipped["data"] += parcel.nbytes
            log.info("data loaded here and shipped through Ray's object store: %s, %d training, %d validation, "
                     "%d test images, %.1f MB", parcel.config.dataset, len(parcel.train_y),
                     0 if parcel.val_y is None else len(parcel.val_y), len(parcel.test_y), parcel.nbytes / 1e6)
        return self.data[config]

    def poll(self, timeout: float) -> list[tuple]:
        """Messages: ("node"|"epoch"|"done"|"lost", number, payload, files). The finished tasks are found before
        the coordinator is drained, so every epoch report of a finished task comes before its end."""
        import ray  # optional dependency

        done, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout) if self.refs else ([], [])
        ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0) if self.refs else ([], [])
        messages = self._drain()
        self.nodes.update({m[1]: m[2] for m in messages if m[0] == "node"})
        self.shipped["back"] += sum(len(b) for m in messages if m[0] == "epoch" for b in m[3].values())
        for ref in set(done) | set(ready):
            number = self.refs.pop(ref)
            try:
                out = ray.get(ref)
                messages.append(("done", number, out["result"], out["files"]))
                self.shipped["back"] += sum(len(b) for b in out["files"].values())
            except Exception as exc:  # the task's node or process died, or it could not run there
                kind, reason = failure(exc, self.nodes.get(number))
                result = {"number": number, "status": "failed", "reason": reason}
                messages.append((kind, number, reason if kind == "lost" else result, None))
        return messages

    def _drain(self, timeout: float | None = None) -> list[tuple]:
        """The coordinator's new messages ([] when it is briefly unreachable: they come with the next drain)."""
        import ray  # optional dependency

        try:
            messages = ray.get(self.coordinator.drain.remote(self.seen), timeout=timeout)
        except ray.exceptions.ActorUnavailableError:
            return []
        except ray.exceptions.RayError as exc:
            raise SweepError(f"the sweep's coordinator (a Ray actor on this driver's node) is gone "
                             f"({' '.join(str(exc).split())[:200]})") from None
        self.seen += len(messages)
        return messages

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        """Answer a trial's epoch report: go on, or prune it."""
        if self.wait:
            self.coordinator.decide.remote(number, epoch, prune)

    def interrupt(self) -> None:
        """Ctrl-C: cancel every running task now (each completed epoch is already on the driver's disk)."""
        import ray  # optional dependency

        for ref in list(self.refs):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self.refs.clear()

    def drain_reports(self) -> list[tuple]:
        """The last messages (after interrupt)."""
        with contextlib.suppress(Exception):
            return self._drain(timeout=10)
        return []

    def close(self) -> None:
        """Say what travelled; shut down the local Ray (or disconnect from the cluster)."""
        import ray  # optional dependency

        if self.coordinator is not None:
            mb = {key: value / 1e6 for key, value in self.shipped.items()}
            log.info("Ray: %.2f MB of data put once in the object store (each node fetches a copy), run "
                     "directories %.2f MB back and %.2f MB out", mb["data"], mb["back"], mb["out"])
        with contextlib.suppress(Exception):
            ray.shutdown()
