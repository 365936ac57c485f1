"""The Ray engine: each trial is a Ray task (1 CPU, 1 torch thread) on a local Ray or a cluster (--ray-address).

Workers need no shared filesystem: a task trains into a temporary directory and, after every epoch, sends the
epoch's metric and the run directory's files (bytes) to a small Coordinator actor; the driver drains the actor,
writes trials/NNNN atomically (so every completed epoch is on the driver's disk) and answers go/prune, which the
task reads back from the actor. A resumed trial's files travel to its task the same way. Ctrl-C cancels the
tasks at once (ray.cancel(force=True)): their completed epochs are already written.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnscope.base.errors import SweepError
from cnnscope.sweep.trial import TrialTask, read_run_files, run_trial, write_run_files

log = logging.getLogger("cnnscope")
POLL_SECONDS = 0.05


class Coordinator:
    """A Ray actor: the tasks' epoch reports (with their run files) and the driver's prune decisions."""

    def __init__(self) -> None:
        self.messages: list[tuple] = []
        self.decisions: dict[tuple[int, int], bool] = {}

    def report(self, number: int, epoch: int, value: float, files: dict[str, bytes]) -> None:
        """A task finished an epoch: its metric and its run directory's files."""
        self.messages.append(("epoch", number, epoch, value, files))

    def drain(self) -> list[tuple]:
        """Every report since the last drain."""
        messages, self.messages = self.messages, []
        return messages

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        """The driver's answer to a report."""
        self.decisions[(number, epoch)] = prune

    def decision(self, number: int, epoch: int) -> bool | None:
        """The answer to a report, once given (and forgotten then)."""
        return self.decisions.pop((number, epoch), None)


def ray_trial(task: TrialTask, files: dict[str, bytes], coordinator: Any, wait: bool) -> dict[str, Any]:
    """The body of a Ray task: restore the run directory (resume), train, return the result and the files."""
    import ray

    logging.getLogger("cnnscope").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="cnnscope-trial-") as tmp:
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
        result = run_trial(local, report)
        return {"result": result, "files": read_run_files(run_dir) if run_dir.is_dir() else {}}


class RayEngine:
    """Trials as Ray tasks, at most `workers` at a time."""

    name = "ray"

    def __init__(self, workers: int, wait: bool, address: str | None) -> None:
        self.workers, self.wait, self.address = workers, wait, address
        self.refs: dict[Any, int] = {}  # task ref -> trial number
        self.coordinator: Any = None
        self.remote: Any = None

    def start(self) -> None:
        """Connect to the cluster (or start a local Ray with `workers` CPUs) and create the coordinator."""
        import ray

        options = {"address": self.address} if self.address else {"num_cpus": self.workers}
        try:
            ray.init(**options, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                     ignore_reinit_error=True)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SweepError(f"cannot start or reach Ray ({' '.join(str(exc).split())[:200]}); check "
                             f"--ray-address") from None
        self.coordinator = ray.remote(num_cpus=0)(Coordinator).remote()
        self.remote = ray.remote(num_cpus=1, max_retries=0)(ray_trial)

    def free(self) -> int:
        """How many more trials can start now."""
        return self.workers - len(self.refs)

    def running(self) -> int:
        """How many trials are running."""
        return len(self.refs)

    def submit(self, task: TrialTask, files: dict[str, bytes] | None = None) -> None:
        """Start a trial as a Ray task (with its run directory's files when it is resumed)."""
        ref = self.remote.remote(task, files or {}, self.coordinator, self.wait)
        self.refs[ref] = task.number

    def poll(self, timeout: float) -> list[tuple]:
        """Epoch reports and finished trials: ("epoch"|"done", number, payload, files)."""
        import ray

        done, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout) if self.refs else ([], [])
        messages = [(m[0], m[1], (m[2], m[3]), m[4]) for m in ray.get(self.coordinator.drain.remote())]
        ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0) if self.refs else ([], [])
        for ref in set(done) | set(ready):
            number = self.refs.pop(ref)
            try:
                out = ray.get(ref)
                messages.append(("done", number, out["result"], out["files"]))
            except Exception as exc:  # the task's process died, or Ray lost it
                reason = f"the Ray task failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                messages.append(("done", number, {"number": number, "status": "failed", "reason": reason}, None))
        return messages

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        """Answer a trial's epoch report: go on, or prune it."""
        if self.wait:
            self.coordinator.decide.remote(number, epoch, prune)

    def interrupt(self) -> None:
        """Ctrl-C: cancel every running task now (each completed epoch is already on the driver's disk)."""
        import ray

        for ref in list(self.refs):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self.refs.clear()

    def drain_reports(self) -> list[tuple]:
        """The last epoch reports (after interrupt)."""
        import ray

        with contextlib.suppress(Exception):
            return [(m[0], m[1], (m[2], m[3]), m[4]) for m in ray.get(self.coordinator.drain.remote(), timeout=10)]
        return []

    def close(self) -> None:
        """Shut down the local Ray (or disconnect from the cluster)."""
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
