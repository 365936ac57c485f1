"""Hyperparameter sweeps of cnnscope runs: Optuna searches, trials train in local worker processes or on Ray.

The study directory (what `cnnscope runs` and the dashboard read):

    STUDY/study.toml      the definition, written atomically: cnnscope_study = 1, config (the base run tables
                          [config.model], [config.train], [config.data]), params (KEY = "DIST"), sampler, metric,
                          direction, prune, trials, selected_on ("validation" or "test"), select_on_test
    STUDY/study.db        Optuna's storage (SQLite) unless --storage URL names another database
    STUDY/trials/NNNN/    one ordinary run directory per trial (number zero-padded to 4 digits), written by
                          training.train: every cnnscope command opens it
    STUDY/results.json    {"metric", "direction", "best" (trial number or null), "selected_on", "validation" (the
                          images chosen on, in words), "warning" (only when chosen on the test set), "trials": [row,
                          …]}; each row: "number", "params" {KEY: value}, "status" (completed, pruned, failed,
                          running, interrupted), "value" (what Optuna optimises), "val_accuracy", "test_accuracy",
                          "val_loss", "test_loss" (data losses), "val_source", "best_val_accuracy",
                          "best_val_loss", "epochs", "seconds", "run_dir" (relative: "trials/NNNN"), "reason" (""
                          unless failed); unknown numbers are null
    STUDY/results.csv     the same rows, one column per parameter (param.KEY)
    STUDY/sweep-params.png, sweep-history.png, sweep-importance.png   the figures (plots/sweep.py)

How it runs: the driver (this process) is the only one that talks to Optuna (ask-and-tell on the storage). It
hands each trial to an engine: `local` runs N spawned worker processes (torch threads split between them) that
report each epoch's metric back over a queue and wait for the driver's go/prune answer (trial.report and
should_prune run in the driver, so SQLite never sees two writers); `ray` runs each trial as a Ray task on any
node of a cluster: the driver checks every node's cnnscope version first, loads the trial's data itself and ships
it through Ray's object store (parcel.py), and the run directory comes back to the driver as bytes after every
epoch (no shared filesystem, no data or paths on the nodes; rayengine.py). A trial's value is its
validation accuracy (or validation data loss) at its last epoch, the weights that are saved and tested; per-epoch
reports are the same metric (the validation accuracy when the metric is test_accuracy).

Choosing on held-out data: a new study holds out 10 % of each class of the training images (data.val_fraction,
stratified, seeded with the data seed: the same images for every trial); the test set is evaluated once per trial
for reporting only. A study whose choice would be made on the test set (no split, or metric test_accuracy) is
refused unless select_on_test, and then every summary carries a warning.

Robustness: a trial that raises, diverges (non-finite loss) or runs out of memory is told to Optuna as FAIL with
its reason, and the study goes on. Ctrl-C stops every worker (each keeps its completed epochs) and leaves those
trials RUNNING in the storage; running the same command again resumes them from their last epoch
(training.resume), then asks for new trials until the study holds --trials of them (so a larger --trials grows a
finished study). A command that defines another study (config, params, sampler, metric, direction, pruner) on
the same directory is refused with one line saying what differs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cnnscope.base.errors import SweepError
from cnnscope.runs.layout import STUDY_FIGURES
from cnnscope.sweep.definition import (
    IDENTITY,
    SweepSpec,
    difference,
    read_study,
    save_study,
    spec_from_options,
    spec_from_study,
)
from cnnscope.sweep.params import Param, parse_param

__all__ = ["Param", "SweepSpec", "parse_param", "resolve_spec", "run_sweep"]
log = logging.getLogger("cnnscope")
INSTALL = {"optuna": 'cnnscope sweep needs Optuna: pip install "cnnscope[sweep]"',
           "ray": 'cnnscope sweep --engine ray needs Ray: pip install "cnnscope[ray]"'}


def require(module: str) -> None:
    """SweepError (one line saying what to install) when the optional extra `module` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise SweepError(INSTALL[module])


def resolve_spec(study_dir: str | Path, config_file: str | Path | None, params: list[str],
                 options: dict[str, Any], overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The study to run: from --config/--param/flags, or, with neither, the one saved in STUDY/study.toml.

    `overrides` are the run flags ({"model": {"preset": …}, "train": {…}, "data": {…}}) applied to the base
    configuration; a new study holds out 10 % of each class of the training images to choose on."""
    saved = read_study(Path(study_dir))
    options = dict(options)
    if saved is not None and options.get("trials") is None and isinstance(saved.get("trials"), int):
        options["trials"] = saved["trials"]
    if saved is not None and not config_file and not params:
        return spec_from_study(saved, options, overrides)
    return spec_from_options(config_file, params, options, overrides)


def _base_epochs(spec: SweepSpec) -> int:
    """The most epochs a trial trains (for Hyperband's maximum resource)."""
    from cnnscope.trainer.config import RunConfig

    epochs = RunConfig.from_dict({"model": {"preset": "seed-iv"}, **spec.config}).train.epochs
    swept = next((p for p in spec.params if p.key == "train.epochs"), None)
    return int(max(swept.grid() or [swept.high])) if swept else epochs


def run_sweep(study_dir: str | Path, spec: SweepSpec, *, pruner: Any = None) -> dict[str, Any]:
    """Run (or continue) the study in `study_dir` up to spec.trials trials; its results (results.json's content,
    a dict: cnnscope.sweep.results.StudyResults, which a notebook shows as a table).

    `pruner` overrides spec.prune with any Optuna pruner. KeyboardInterrupt propagates after every worker has
    stopped and the results are written.
    """
    require("optuna")
    if spec.engine == "ray":
        require("ray")
    from cnnscope.sweep.driver import Driver, make_pruner, open_study, study_lock
    from cnnscope.sweep.results import StudyResults, write_results

    study_dir = Path(study_dir)
    with study_lock(study_dir):
        saved = read_study(study_dir)
        if saved is not None and (why := difference(saved, spec)):
            raise SweepError(f"{study_dir} holds another study: {why}; use another --out, or the study's own "
                             f"settings (see {study_dir}/study.toml)")
        grid = spec.grid_size()
        if grid is not None and spec.trials > grid:
            import dataclasses

            log.info("the grid has %d points: the study runs %d trials, not %d", grid, grid, spec.trials)
            spec = dataclasses.replace(spec, trials=grid)
        if saved is None or any(saved.get(k) != v for k, v in spec.to_dict().items() if k not in IDENTITY):
            save_study(study_dir, spec)
        pruner = pruner if pruner is not None else make_pruner(spec, _base_epochs(spec))
        study = open_study(study_dir, spec, pruner)
        if finished(study, spec.trials):  # nothing to train: no workers, no data, no figures redrawn
            figures = [str(study_dir / name) for name in STUDY_FIGURES if (study_dir / name).is_file()]
            return StudyResults({**write_results(study_dir, study, spec, running=set()), "nothing_to_do": True,
                                 "figures": figures})
        driver = Driver(study_dir, spec, study, _engine(spec, driver_prunes(pruner)))
        driver.run()
        return StudyResults(driver.results)


def finished(study: Any, trials: int) -> bool:
    """Whether the study already holds `trials` trials and none is to be resumed."""
    from optuna.trial import TrialState

    found = study.get_trials(deepcopy=False)
    return len(found) >= trials and not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in found)


def driver_prunes(pruner: Any) -> bool:
    """Whether workers must wait for the driver's decision after each epoch (not for Optuna's NopPruner)."""
    from optuna.pruners import NopPruner

    return not isinstance(pruner, NopPruner)


def _engine(spec: SweepSpec, wait: bool) -> Any:
    if spec.engine == "ray":
        from cnnscope.sweep.rayengine import RayEngine

        return RayEngine(spec.workers, wait, spec.ray_address)
    from cnnscope.sweep.local import LocalEngine

    return LocalEngine(spec.workers, wait)
