"""One self-contained HTML report per run: configuration, curves, test results, and a look inside the network.

Every image is embedded as a data URI and the styling is inline, so the file opens anywhere without a network.
The sections are views (cnnscope.views.report_sections and report_inside: they compute through cnnscope.inspect
and draw through cnnscope.plots and cnnscope.base.imaging); this module checks the run's files, puts the sections on
one page and writes it atomically. It imports no web framework.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnscope.base.errors import ConfigError, RunError
from cnnscope.base.fileio import atomic_write_text
from cnnscope.base.progress import say
from cnnscope.base.version import __version__
from cnnscope.inspect.methods import get_method
from cnnscope.model.layers import CONV
from cnnscope.runs.layout import HISTORY, METRICS
from cnnscope.runs.load import Run, load_run
from cnnscope.views import report_inside as inside
from cnnscope.views import report_sections as sections
from cnnscope.views.report_html import esc
from cnnscope.views.report_sections import PROBE_ROWS, WORST, TestSet
from cnnscope.views.tiles import tiles_png

log = logging.getLogger("cnnscope")

REPORT = "report.html"
PATTERN_MAPS = inside.PATTERN_MAPS
NAV = (("config", "configuration"), ("preprocessing", "preprocessing"), ("training", "training"),
       ("results", "test results"), ("activations", "activations"), ("output", "output layer"),
       ("filters", "filters"),
       ("patterns", "patterns"), ("profiles", "profiles"), ("explanation", "explanation"))

__all__ = ["PROBE_ROWS", "REPORT", "WORST", "build_report", "check_history", "check_metrics", "tiles_png"]


# --- what a run's history.json and metrics.json must hold for the report ------------------------------------
CURVE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")  # one value per epoch, plotted against "epoch"
METRIC_NUMBERS = ("test_loss", "test_accuracy", "epochs_completed", "train_seconds", "images_per_second")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def check_history(run: Run) -> None:
    """RunError naming RUN/history.json when it is not an object of per-epoch lists of numbers."""
    where, history = run.path / HISTORY, run.history
    fix = "the file is corrupt; delete it (the report then has no curves) or train the run again"
    if not isinstance(history, dict):
        raise RunError(f"{where}: expected a JSON object of per-epoch lists, found {_json_kind(history)}; {fix}")
    for key in ("epoch", *CURVE_KEYS, "lr"):
        values = history.get(key, [])
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise RunError(f"{where}: {key!r} must be a list of numbers, found {_json_kind(values)}; {fix}")
    epochs = len(history.get("epoch", []))
    for key in CURVE_KEYS:
        if len(history.get(key, [])) != epochs:
            raise RunError(f"{where}: {key!r} holds {len(history.get(key, []))} values for {epochs} epochs; {fix}")
    if not isinstance(history.get("val_source", ""), str):
        raise RunError(f"{where}: 'val_source' must be a string, found {_json_kind(history['val_source'])}; {fix}")


def check_metrics(run: Run) -> None:
    """RunError naming RUN/metrics.json when it is not an object whose figures are numbers."""
    where, metrics = run.path / METRICS, run.metrics
    fix = "the file is corrupt; delete it (the report then shows no training figures) or train the run again"
    if not isinstance(metrics, dict):
        raise RunError(f"{where}: expected a JSON object, found {_json_kind(metrics)}; {fix}")
    for key in METRIC_NUMBERS:
        if key in metrics and not _is_number(metrics[key]):
            raise RunError(f"{where}: {key!r} must be a number, found {_json_kind(metrics[key])}; {fix}")
    if not isinstance(metrics.get("status", ""), str):
        raise RunError(f"{where}: 'status' must be a string, found {_json_kind(metrics['status'])}; {fix}")


# --- the page -----------------------------------------------------------------------------------------------
CSS = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d2330;background:#f4f5f8}
header{background:#1d1b2e;color:#fff;padding:18px 28px}header h1{margin:0;font-size:1.5rem}
header p{margin:4px 0 0;color:#c9c6de}nav{margin-top:10px}nav a{color:#b7a6ff;margin-right:14px;font-size:.9rem}
main{max-width:1200px;margin:0 auto;padding:18px}
section{background:#fff;border:1px solid #e2e5ec;border-radius:10px;padding:16px 20px;margin-bottom:18px}
h2{margin:0 0 10px;font-size:1.2rem}h3{font-size:.95rem;margin:16px 0 8px;color:#444}
.note{color:#6b7385;font-size:.88rem;margin:4px 0 10px}.muted{color:#6b7385}.bad{color:#d2453b}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#f4f2fe;border-radius:8px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:1.35rem}.card span{font-size:.8rem;color:#6b7385}
.cols{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
table{border-collapse:collapse;font-size:.86rem}
.kv th{text-align:left;color:#6b7385;font-weight:500;padding:2px 14px 2px 0}
.kv td{padding:2px 0;font-family:ui-monospace,Menlo,Consolas,monospace}
pre.summary{background:#f7f7fa;border-radius:8px;padding:12px;overflow-x:auto;font-size:.8rem}
img{max-width:100%}img.px{image-rendering:pixelated;image-rendering:crisp-edges}img.thumb{width:56px;height:56px}
img.wide{width:100%;max-width:1100px}
.acc td,.acc th{padding:2px 8px}.acc .bar{width:200px}
.acc .bar span{display:block;height:10px;border-radius:5px;background:#5b3fd6}
.num{text-align:right;font-variant-numeric:tabular-nums}.big{font-size:1.1rem}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.gallery figure{margin:0;text-align:center;font-size:.75rem}
.gallery img{width:70px;height:70px;display:block;margin:0 auto 3px}
.explain figure img{display:inline-block;margin:0 1px 3px}
.scroll{overflow-x:auto}.strip th,.strip td{padding:4px 8px;vertical-align:middle;text-align:center;font-size:.8rem}
.strip tr+tr{border-top:1px solid #eceef2}.strip td img{max-height:170px}
.output td{font-size:.9rem;min-width:4.2em}.output .logit{font-size:.75rem;opacity:.8}
.probe{margin-top:14px}footer{color:#6b7385;font-size:.8rem;text-align:center;padding:10px 0 24px}
"""


def _check_out(path: Path) -> None:
    if path.is_dir():  # refused before the work, not after it
        raise ConfigError(f"cannot write the report to {path}: it is a directory; give a file name such as "
                          f"{path / REPORT}")


def _sections(run: Run, dataset, timed: Callable[..., Any], method: str | None) -> tuple[list, TestSet]:
    """Every section's view, in page order (a view returning None has nothing to show)."""
    convs = run.spec.layer_names(CONV)
    tested = timed("test pass", TestSet.of, run, dataset, convs)
    views = [timed("config", sections.config_section, run),
             timed("preprocessing", sections.preprocessing_section, run, dataset),
             timed("training", sections.training_section, run, tested.class_names),
             timed("results", sections.results_section, tested),
             timed("activations", inside.activations_section, run, tested, run.spec.map_layer_names()),
             timed("output", inside.output_section, run, tested)]
    if convs:
        views += [timed("filters", inside.filters_section, run, convs[0]),
                  timed("patterns", inside.patterns_section, run, convs, dataset.train_x, tested),
                  timed("profiles", inside.profiles_section, run, (dataset.train_x, dataset.train_y), tested, convs),
                  timed("explanation", inside.explanation_section, run, tested, method)]
    return [v for v in views if v is not None], tested


def _cards(run: Run, accuracy: float) -> str:
    metrics = run.metrics
    cards = [("test accuracy", f"{100 * accuracy:.2f} %"),
             sections.loss_card(run),
             ("epochs", metrics.get("epochs_completed", len(run.history.get("epoch", [])))),
             ("training time", f"{metrics['train_seconds']:.0f} s" if "train_seconds" in metrics else "–"),
             ("images / s", f"{metrics['images_per_second']:,.0f}" if "images_per_second" in metrics else "–"),
             ("parameters", f"{run.spec.total_params:,}")]
    return "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in cards)


def _page(run: Run, dataset_name: str, views: list, accuracy: float, started: float) -> str:
    shown = {view.data["id"] for view in views}
    nav = "".join(f'<a href="#{ident}">{label}</a>' for ident, label in NAV if ident in shown)
    title = f"cnnscope report — {run.path.name}"
    body = "".join(view.data["html"] for view in views)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{esc(title)}</title><style>{CSS}</style>'
            f'</head><body><header><h1>{esc(title)}</h1><p>{esc(dataset_name)} · '
            f'{esc(run.metrics.get("status", "no metrics"))} · written {time.strftime("%Y-%m-%d %H:%M")} by '
            f'cnnscope {esc(__version__)}</p><nav>{nav}</nav></header><main><section id="summary"><div '
            f'class="cards">{_cards(run, accuracy)}</div></section>{body}</main>'
            f'<footer>built in {time.perf_counter() - started:.1f} s</footer></body></html>')


def build_report(run_path: str | os.PathLike, out: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, method: str | None = None) -> Path:
    """Write one self-contained HTML report of a run (default RUN/report.html, atomically); returns its path.

    `method` names the attribution method of the explanation section (cnnscope.inspect.METHODS; default
    integrated gradients)."""
    started = time.perf_counter()
    if method is not None:
        get_method(method)  # a wrong name is one line before any work
    say("loading the run %s", run_path)
    run = load_run(run_path)
    check_history(run)  # before the work: a corrupt file is one line, not a traceback at the end
    check_metrics(run)
    path = Path(out) if out is not None else run.path / REPORT
    _check_out(path)
    # This copy of the model is only looked at: no weight gradients (gradient ascent and attributions need input
    # gradients only), and channels_last, which roughly halves the time of convolutions on CPU.
    run.model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    say("loading its data")
    dataset = run.dataset(data_dir)
    timings: dict[str, float] = {}
    steps = 7 + 4 * bool(run.spec.layer_names(CONV))  # the test pass and the sections _sections computes

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        say("report: %s (%d of %d)", name, len(timings) + 1, steps)
        t = time.perf_counter()
        result = fn(*args)
        timings[name] = time.perf_counter() - t
        return result

    views, tested = _sections(run, dataset, timed, method)
    accuracy = next(v.data["accuracy"] for v in views if v.data["id"] == "results") if len(tested.labels) \
        else float("nan")
    page = _page(run, dataset.name, views, accuracy, started)
    try:
        atomic_write_text(path, page)
    except OSError as exc:
        raise RunError(f"cannot write the report to {path} ({exc.strerror or exc})") from None
    log.info("report %s written in %.1f s (%s)", path, time.perf_counter() - started,
             ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return path
