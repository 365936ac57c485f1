"""The local engine: N long-lived worker processes (spawned), one trial at a time each.

Each worker has an inbox (tasks, and the driver's answer to each epoch report) and all share one outbox
(("epoch", number, (epoch, value), None) and ("done", number, result, None)). Workers sit in their own process
group, so Ctrl-C in a terminal reaches the driver only; the driver then sends each busy worker exactly one SIGINT,
which the training loop turns into "interrupted, last completed epoch kept". On Linux a worker is killed when the
driver dies (prctl PR_SET_PDEATHSIG), so a killed sweep leaves no trial training in the background.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
from pathlib import Path
from typing import Any

from cnnscope.sweep.task import TrialTask
from cnnscope.sweep.trial import run_trial

log = logging.getLogger("cnnscope")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent ends (no orphan trial keeps writing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def worker_main(inbox: Any, outbox: Any, wait: bool) -> None:
    """A worker process: run the tasks of its inbox until None; `wait`: each epoch report waits for go/prune."""
    with contextlib.suppress(OSError):
        os.setpgrp()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("cnnscope").setLevel(logging.ERROR)

    def report(number: int, epoch: int, value: float, run_dir: Path) -> bool:
        outbox.put(("epoch", number, (epoch, value), None))
        return bool(wait) and inbox.get() == "prune"

    while True:
        task = inbox.get()
        if task is None:
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            result = run_trial(task, report)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        outbox.put(("done", task.number, result, None))


class LocalEngine:
    """Trials in `workers` spawned processes on this machine, torch threads split between them."""

    name = "local"

    def __init__(self, workers: int, wait: bool) -> None:
        self.workers, self.wait = workers, wait
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self.context = multiprocessing.get_context("spawn")
        self.outbox = self.context.Queue()
        self.procs: list[Any] = []
        self.inboxes: list[Any] = []
        self.busy: dict[int, int] = {}  # trial number -> worker index

    def start(self) -> None:
        """Start the worker processes."""
        for _ in range(self.workers):
            inbox = self.context.Queue()
            proc = self.context.Process(target=worker_main, args=(inbox, self.outbox, self.wait), daemon=True)
            proc.start()
            self.procs.append(proc)
            self.inboxes.append(inbox)

    def free(self) -> int:
        """How many more trials can start now."""
        return self.workers - len(self.busy)

    def running(self) -> int:
        """How many trials are running."""
        return len(self.busy)

    def submit(self, task: TrialTask, files: dict[str, bytes] | None = None) -> None:
        """Start a trial on an idle worker (its run directory is on this machine: `files` is not needed)."""
        idle = next(i for i in range(self.workers) if i not in self.busy.values())
        self.busy[task.number] = idle
        self.inboxes[idle].put(TrialTask(**{**task.__dict__, "threads": self.threads}))

    def poll(self, timeout: float) -> list[tuple]:
        """The messages that arrived within `timeout` seconds: ("epoch"|"done", number, payload, files)."""
        messages = []
        try:
            messages.append(self.outbox.get(timeout=timeout))
            while True:
                messages.append(self.outbox.get_nowait())
        except queue.Empty:
            pass
        for message in messages:
            if message[0] == "done":
                self.busy.pop(message[1], None)
            self._check_alive()
        if not messages:
            self._check_alive()
        return messages

    def _check_alive(self) -> None:
        """A worker that died (killed, out of memory) fails its trial; a new worker takes its place."""
        for number, index in list(self.busy.items()):
            if not self.procs[index].is_alive():
                code = self.procs[index].exitcode
                self.busy.pop(number)
                inbox = self.context.Queue()
                proc = self.context.Process(target=worker_main, args=(inbox, self.outbox, self.wait), daemon=True)
                proc.start()
                self.procs[index], self.inboxes[index] = proc, inbox
                reason = f"the worker process died (exit code {code}; killed, or out of memory)"
                self.outbox.put(("done", number, {"number": number, "status": "failed", "reason": reason}, None))

    def decide(self, number: int, epoch: int, prune: bool) -> None:
        """Answer a trial's epoch report: go on, or prune it."""
        if self.wait and number in self.busy:
            self.inboxes[self.busy[number]].put("prune" if prune else "go")

    def interrupt(self) -> None:
        """Ctrl-C: one SIGINT to each busy worker (its training keeps the completed epochs)."""
        for index in self.busy.values():
            with contextlib.suppress(OSError, TypeError):
                os.kill(self.procs[index].pid, signal.SIGINT)

    def close(self) -> None:
        """Stop the workers (they finish their current message first)."""
        for inbox, proc in zip(self.inboxes, self.procs, strict=True):
            with contextlib.suppress(Exception):
                if proc.is_alive():
                    inbox.put(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
