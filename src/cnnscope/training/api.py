"""Train or resume a run: check the inputs, write the run directory, run the loop (cnnscope.training.fit), report.

Feedback from a script: `verbose` shows the per-epoch lines on stderr (default: when stderr is a terminal or in
a notebook, unless logging is already set up); `report=True` writes report.html at the end, as the CLI does
unless --no-report; `plot` rewrites curves.png after every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError, ConfigError, RunError
from cnnscope.base.progress import say
from cnnscope.data.dataset import Dataset, load_dataset
from cnnscope.model.network import build_model
from cnnscope.model.spec import ModelSpec
from cnnscope.runs.checkpoint import check_run_dir, init_run_dir, load_weights, saved_epoch, start_run
from cnnscope.runs.layout import CONFUSION, CURVES, INITIAL, WEIGHTS
from cnnscope.runs.load import Run, load_run
from cnnscope.trainer.config import RunConfig, TrainConfig, build_run_config, fit_model_to_data
from cnnscope.trainer.loop import Callback, evaluate_arrays
from cnnscope.training.fit import fit

__all__ = ["evaluate_run", "resume", "train", "train_from_settings", "write_report"]
log = logging.getLogger("cnnscope")


def train(spec: ModelSpec, dataset: Dataset, config: TrainConfig | None = None, out: str | Path | None = None,
          *, callbacks: Iterable[Callback] = (), initial_weights: str | Path | None = None,
          overwrite: bool = False, progress: bool | None = None, plot: bool = True, report: bool = False,
          verbose: bool | None = None) -> Run:
    """Train a fresh model of `spec` on `dataset` and write a run directory to `out`.

    Args:
        initial_weights: a safetensors file (e.g. another run's initial.safetensors) to start from.
        progress: show a progress bar (a widget in a notebook with ipywidgets, else text); None: on a terminal
            or in a notebook, never into a pipe.
        plot: rewrite curves.png after every epoch.
        report: write report.html when the training completes (a failure is a warning).
        verbose: log one line per epoch to stderr; None: when run interactively and logging is not set up.
    """
    config = config or TrainConfig()
    if tuple(dataset.train_x.shape[1:]) != spec.input_shape:
        raise ConfigError(f"the model expects inputs {spec.input_shape}, the dataset has "
                          f"{tuple(dataset.train_x.shape[1:])}")
    if int(dataset.train_y.max()) >= spec.num_classes:
        raise ConfigError(f"the dataset has labels up to {int(dataset.train_y.max())}, the model only "
                          f"{spec.num_classes} classes")
    callbacks = _callbacks(callbacks, spec, dataset, plot)
    out = Path(out) if out is not None else Path("runs") / time.strftime(f"{dataset.name}-%Y%m%d-%H%M%S")
    run_dir = init_run_dir(out, overwrite=overwrite)
    model = build_model(spec, seed=config.seed)
    if initial_weights is not None:
        load_weights(initial_weights, model)
    start_run(run_dir, RunConfig(spec, config, dataset.config), dataset.preprocessor, model)
    with feedback(verbose):
        run = fit(run_dir, model, dataset, config, {}, callbacks, progress, resume=False)
        return _report(run, report)


def resume(path: str | Path, epochs: int | None = None, dataset: Dataset | None = None, *,
           callbacks: Iterable[Callback] = (), progress: bool | None = None, plot: bool = True,
           report: bool = False, verbose: bool | None = None) -> Run:
    """Continue an interrupted or finished run up to `epochs` in total (default: its configured epochs).

    A run stopped before its first epoch ended starts again from its initial weights. config.toml records the
    new `epochs` only once training actually starts. The other arguments are those of `train`.
    """
    done = saved_epoch(path)
    run = load_run(path, weights=WEIGHTS if done else INITIAL)
    config = run.config if epochs is None else dataclasses.replace(run.config, epochs=epochs)
    if done >= config.epochs:
        raise RunError(f"{run.path} already completed {done} epochs; pass a larger --epochs to continue")
    dataset = dataset or run.dataset()
    callbacks = _callbacks(callbacks, run.spec, dataset, plot)
    new_config = None if config == run.config else RunConfig(run.spec, config, run.data_config)
    with feedback(verbose):
        trained = fit(run.path, run.model, dataset, config, run.history if done else {}, callbacks, progress,
                      resume=bool(done), new_config=new_config)
        return _report(trained, report)


def _callbacks(callbacks: Iterable[Callback], spec: ModelSpec, dataset: Dataset, plot: bool) -> list[Callback]:
    """The user's callbacks, checked before training (e.g. Probe's image index), after the curves.png writer."""
    callbacks = list(callbacks)
    for callback in callbacks:
        check = getattr(callback, "check", None)
        if callable(check):
            check(spec, dataset)
    if plot:
        callbacks.insert(0, _write_curves)
    return callbacks


def _write_curves(entry: Any) -> None:
    """Callback: rewrite curves.png. matplotlib (0.5 s) is imported when the first epoch ends, not before the
    first step (benchmarks/README.md, "Start-up")."""
    from cnnscope.plots.training import CurvesFile  # matplotlib: at the first epoch's end, not at start

    CurvesFile(CURVES)(entry)


def _interactive() -> bool:
    """stderr is a terminal, or this runs in a Jupyter/IPython kernel."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def feedback(verbose: bool | None) -> Iterator[None]:
    """Show the "cnnscope" logger's INFO lines (one per epoch) on stderr for the block.

    verbose=True: always (through the handlers logging already has, else a plain stderr handler);
    None: only when interactive and logging is not set up (the CLI sets up its own); False: leave logging as is.
    """
    logger = logging.getLogger("cnnscope")
    configured = logger.hasHandlers()
    if not (verbose or (verbose is None and not configured and _interactive())):
        yield
        return
    level, handler = logger.level, None
    if not configured:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def write_report(run: Run, data_dir: str | Path | None = None) -> Path | None:
    """Write RUN/report.html (the CLI's default after training); a failure is a warning and returns None."""
    try:
        from cnnscope.report import build_report  # matplotlib and the views: only when a report is asked for

        return build_report(run.path, data_dir=data_dir)
    except CnnscopeError as exc:  # the run is saved whatever happens here
        log.warning("report not written (%s); retry with 'cnnscope report %s'", exc, run.path)
        return None


def _report(run: Run, report: bool) -> Run:
    """train(report=True): the report of a completed training, as the CLI writes it."""
    if report and run.metrics.get("status") == "completed":
        path = write_report(run)
        if path is not None:
            log.info("report: %s", path)
    return run


def train_from_settings(config_file: str | Path | None = None, preset: str | None = None,
                        train_overrides: dict[str, Any] | None = None, data_overrides: dict[str, Any] | None = None,
                        out: str | Path | None = None, *, overwrite: bool = False,
                        resume_from: str | Path | None = None, init_from: str | Path | None = None,
                        plot: bool = True, progress: bool | None = None, callbacks: Iterable[Callback] = (),
                        verbose: bool | None = False) -> Run:
    """Defaults -> TOML file -> overrides, then train (or resume `resume_from`). What the `train` command calls."""
    options = {"callbacks": callbacks, "progress": progress, "plot": plot, "verbose": verbose}
    if resume_from is not None:
        if config_file or preset or init_from or set(train_overrides or {}) - {"epochs"} or data_overrides:
            raise ConfigError("--resume continues a run with its saved settings; only --epochs may be given")
        return resume(resume_from, (train_overrides or {}).get("epochs"), **options)
    config = build_run_config(config_file, preset, train_overrides, data_overrides)
    initial = None
    if init_from is not None:
        initial = Path(init_from) / INITIAL
        if not initial.is_file():
            raise RunError(f"--init-from {init_from}: no {INITIAL} there; pass a run directory")
    if out is not None:  # before the data is read: a refused --out should not cost a load
        check_run_dir(out, overwrite)
    say("loading %s", config.data.dataset)
    dataset = load_dataset(config=config.data)
    config = fit_model_to_data(config, dataset.input_shape, len(dataset.class_names), config_file, preset)
    return train(config.model, dataset, config.train, out, initial_weights=initial, overwrite=overwrite, **options)


def evaluate_run(path: str | Path, data_dir: str | Path | None = None,
                 figure: str | Path | None = None) -> dict[str, Any]:
    """Test loss (the data loss) and objective (with the run's label smoothing and penalty), accuracy, per-class
    accuracy and confusion matrix of a run; saves the matrix as an image."""
    run = load_run(path)
    dataset = run.dataset(data_dir)
    result = evaluate_arrays(run.model, dataset.test_x, dataset.test_y, label_smoothing=run.config.label_smoothing)
    figure = Path(figure) if figure else run.path / CONFUSION
    from cnnscope.plots.figures import save_figure  # matplotlib: only when a figure is asked for
    from cnnscope.plots.training import confusion_figure

    save_figure(confusion_figure(result["confusion"], dataset.class_names), figure)
    return {"run": str(run.path), "dataset": dataset.name, "test_images": len(dataset.test_y),
            "test_loss": result["data_loss"], "test_objective": result["loss"], "test_accuracy": result["accuracy"],
            "class_names": list(dataset.class_names), "per_class_accuracy": result["per_class_accuracy"],
            "confusion": result["confusion"], "confusion_png": str(figure)}
