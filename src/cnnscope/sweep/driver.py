"""The driver: the only process that talks to Optuna. It asks for trials, hands them to an engine, reports each
epoch (trial.report / should_prune) and tells Optuna how each trial ended; results are rewritten as trials end.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, SweepError
from cnnscope.runs.layout import STUDY_DB, STUDY_FILES, STUDY_LOCK, TRIALS
from cnnscope.runs.records import read_history
from cnnscope.sweep.definition import SweepSpec
from cnnscope.sweep.results import RESULT_ATTRS, write_results
from cnnscope.sweep.task import TrialTask, one_line, read_run_files, recover_run_dirs, write_run_files

log = logging.getLogger("cnnscope")
STUDY_NAME = "cnnscope"
INTERRUPT_WAIT = 120.0  # seconds to wait for interrupted workers to save and report
MAX_LOST = 2  # times a trial is resumed elsewhere in one run when its node dies under it


def trial_dir(study_dir: Path, number: int) -> Path:
    """STUDY/trials/NNNN."""
    return study_dir / TRIALS / f"{number:04d}"


def refuse_links(study_dir: Path) -> None:
    """SweepError when a file or folder the sweep writes inside the study is a symbolic link (even a dangling
    one): trial folders, the database or the lock would be written wherever it points."""
    inside = [study_dir / name for name in STUDY_FILES]
    if (study_dir / TRIALS).is_dir() and not (study_dir / TRIALS).is_symlink():
        inside += sorted((study_dir / TRIALS).iterdir())
    links = [str(p.relative_to(study_dir)) for p in inside if p.is_symlink()]
    if links:
        raise SweepError(f"{study_dir} holds symbolic links ({', '.join(links[:5])}); a sweep writes only real "
                         f"files and folders inside its study: remove the links or use another --out")


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """One sweep at a time on a study directory (two would resume the same interrupted trials)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    refuse_links(study_dir)
    lock = os.open(study_dir / STUDY_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)  # no link, even if raced
    with os.fdopen(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SweepError(f"another sweep is running on {study_dir}; wait for it or stop it first") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_sampler(spec: SweepSpec) -> Any:
    """Optuna's sampler for `spec.sampler` (seeded: the same study asks the same first trials)."""
    import optuna

    if spec.sampler == "grid":
        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args: Any) -> None:  # GridSampler's study.stop() works only in study.optimize
                pass  # the driver asks for at most the grid's size (run_sweep caps --trials)

        return Grid({p.key: p.grid() for p in spec.params}, seed=0)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=0)
    return optuna.samplers.TPESampler(seed=0, n_startup_trials=min(10, max(2, spec.trials // 3)))


def make_pruner(spec: SweepSpec, epochs: int) -> Any:
    """Optuna's pruner for `spec.prune`: median (after 2 finished trials), hyperband (1 to `epochs`), none."""
    import optuna

    if spec.prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if spec.prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(study_dir: Path, spec: SweepSpec, pruner: Any) -> Any:
    """The Optuna study in `spec.storage` (default: SQLite in STUDY/study.db), created or loaded."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = spec.storage or f"sqlite:///{(study_dir / STUDY_DB).resolve()}"
    try:
        return optuna.create_study(storage=storage, sampler=make_sampler(spec), pruner=pruner,
                                   study_name=STUDY_NAME, direction=spec.direction, load_if_exists=True)
    except Exception as exc:  # a bad URL, an unreachable database, a missing driver
        raise SweepError(f"cannot open the study storage {storage!r} ({' '.join(str(exc).split())[:200]})") from None


class Driver:
    """Runs a study to `spec.trials` trials on an engine; resumes its interrupted trials first."""

    def __init__(self, study_dir: Path, spec: SweepSpec, study: Any, engine: Any) -> None:
        self.study_dir, self.spec, self.study, self.engine = study_dir, spec, study, engine
        self.live: dict[int, Any] = {}  # trial number -> optuna Trial
        self.pending: list[Any] = []  # trials to start before asking for new ones (interrupted, or lost)
        self.lost: dict[int, int] = {}  # trial number -> how often its node died under it in this run
        self.results: dict[str, Any] = {}
        self.pruning = not isinstance(study.pruner, _nop())

    def run(self) -> str:
        """Run until every trial has ended: "completed", or "interrupted" after Ctrl-C (then re-raised)."""
        import optuna

        recover_run_dirs(self.study_dir / TRIALS)
        self.pending = [optuna.trial.Trial(self.study, t._trial_id) for t in self.study.get_trials(deepcopy=False)
                        if t.state == optuna.trial.TrialState.RUNNING]
        to_ask = max(0, self.spec.trials - len(self.study.get_trials(deepcopy=False)))
        if self.pending:
            log.info("resuming %d interrupted trial(s): %s", len(self.pending),
                     ", ".join(str(t.number) for t in self.pending))
        self.engine.start()
        try:
            while self.pending or to_ask or self.engine.running():
                while self.engine.free() > 0 and (self.pending or to_ask):
                    if not self.pending:
                        to_ask -= 1
                    self._start(self.pending.pop(0) if self.pending else self._ask())
                for message in self.engine.poll(0.2):
                    self._handle(message)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            self.engine.close()
            self.results = write_results(self.study_dir, self.study, self.spec, running=set(), figures=True)
        return "completed"

    def _ask(self) -> Any:
        return self.study.ask({p.key: p.distribution() for p in self.spec.params})

    def _start(self, trial: Any) -> None:
        """Hand a trial to the engine (its run directory's files too when it resumes on Ray); a trial whose data
        cannot be loaded (the Ray engine loads it here) fails with that reason."""
        run_dir = trial_dir(self.study_dir, trial.number)
        files = read_run_files(run_dir) if self.engine.name == "ray" and run_dir.is_dir() else None
        values = dict(trial.params)
        board = str(Path(self.spec.tensorboard) / f"{trial.number:04d}") if self.spec.tensorboard else None
        task = TrialTask(trial.number, values, self.spec.config, str(run_dir), self.spec.metric, tensorboard=board)
        self.live[trial.number] = trial
        try:
            self.engine.submit(task, files)
        except CnnscopeError as exc:
            self._finish(trial, {"number": trial.number, "status": "failed", "reason": one_line(exc)})
            return
        log.info("trial %d started: %s", trial.number, _values(values))
        write_results(self.study_dir, self.study, self.spec, running=set(self.live))

    def _handle(self, message: tuple) -> None:
        kind, number, payload, files = message
        trial = self.live.get(number)
        if trial is None:
            return
        if files is not None and kind in ("epoch", "done") and files:
            write_run_files(trial_dir(self.study_dir, number), files)
        if kind == "node":
            log.info("trial %d runs on node %s", number, payload)
        elif kind == "epoch":
            epoch, value = payload
            log.debug("trial %d epoch %d: %s %.4f", number, epoch, self.spec.metric, value)
            trial.report(value, epoch)
            self.engine.decide(number, epoch, self.pruning and trial.should_prune())
        elif kind == "lost":
            self._lost(trial, payload)
        else:
            self._finish(trial, payload)

    def _lost(self, trial: Any, reason: str) -> None:
        """The trial's node died under it: resume it from its last epoch on another node (MAX_LOST times in a
        run), else leave it interrupted with the reason; running the command again resumes it."""
        self.lost[trial.number] = self.lost.get(trial.number, 0) + 1
        epoch = epochs_saved(trial_dir(self.study_dir, trial.number))
        if self.lost[trial.number] <= MAX_LOST:
            log.warning("trial %d: %s; resuming it from epoch %d on another node", trial.number, reason, epoch)
            self.pending.insert(0, trial)
            return
        self.live.pop(trial.number, None)
        trial.set_user_attr("reason", f"{reason} at epoch {epoch}, {MAX_LOST + 1} times; run the command again to "
                                      f"resume it")
        log.warning("trial %d interrupted: %s (%d times); run the command again to resume it", trial.number,
                    reason, self.lost[trial.number])
        write_results(self.study_dir, self.study, self.spec, running=set(self.live))

    def _finish(self, trial: Any, result: dict[str, Any]) -> None:
        """Tell Optuna how the trial ended (an interrupted one stays RUNNING, to be resumed next time)."""
        from optuna.trial import TrialState

        status = result.get("status")
        if status == "interrupted":
            return
        self.live.pop(trial.number, None)
        for key in RESULT_ATTRS:
            trial.set_user_attr(key, result.get(key))
        value = result.get("value")
        if status == "completed" and value is not None:
            self.study.tell(trial, value)
        elif status == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            if status == "completed":
                trial.set_user_attr("reason", f"no finite {self.spec.metric}")
            self.study.tell(trial, state=TrialState.FAIL)
        shown = f"{self.spec.metric} {value:.4f}" if value is not None else result.get("reason") or ""
        log.info("trial %d %s: %s", trial.number, "completed" if status == "completed" and value is not None
                 else status if status != "completed" else "failed", shown)
        write_results(self.study_dir, self.study, self.spec, running=set(self.live))

    def _interrupt(self) -> None:
        """Ctrl-C: stop every worker, write what their completed epochs left; trials stay RUNNING (resumable)."""
        log.warning("interrupted: stopping %d running trial(s); their completed epochs are kept",
                    self.engine.running())
        self.engine.interrupt()
        deadline = time.monotonic() + INTERRUPT_WAIT
        with contextlib.suppress(KeyboardInterrupt):
            while self.engine.running() and time.monotonic() < deadline:
                for message in self.engine.poll(0.2):
                    if message[0] == "done":
                        self._handle(message)
            for message in getattr(self.engine, "drain_reports", list)():
                if message[3]:
                    write_run_files(trial_dir(self.study_dir, message[1]), message[3])


def epochs_saved(run_dir: Path) -> int:
    """How many epochs the driver holds of a trial's run directory (0 when none, or unreadable)."""
    try:
        return len(read_history(run_dir).get("epoch", []))
    except CnnscopeError:
        return 0


def _nop() -> type:
    from optuna.pruners import NopPruner

    return NopPruner


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

