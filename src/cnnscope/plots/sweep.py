"""Figures of a sweep, from the values given: the metric against each parameter, the optimisation history and the
parameter importances. Completed trials are filled dots, pruned ones hollow (their last reported value); the test
figure of each trial, when given, is an orange cross beside its validation value (reported, never chosen on)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from cnnscope.plots.backend import new_figure
from cnnscope.plots.figures import MIN_PT

MAX_PANELS = 12


def _positions(column: Sequence, log: bool | None = None) -> tuple[np.ndarray, list[str] | None, bool]:
    """x positions of a parameter's values: numbers as they are (a log axis when `log`, e.g. drawn log-uniformly;
    None: when they span 2 decades or more), names as categories (with their labels)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column):
        x = np.asarray(column, dtype=float)
        positive = x[x > 0]
        if log is None:
            log = len(positive) > 1 and positive.max() / positive.min() >= 100
        return x, None, bool(log) and len(positive) == len(x)
    labels = sorted({str(v) for v in column})
    return np.asarray([labels.index(str(v)) for v in column], dtype=float), labels, False


def _log_axis(ax, x: np.ndarray) -> None:
    """A log x axis labelled plainly (matplotlib's minor labels overlap): at 1, 2 and 5 of each decade over a
    narrow span, at 1 and 3 over a few decades, at each decade over more."""
    decades = float(np.log10(x.max() / x.min())) if len(x) and x.min() > 0 else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 1.5 else (1.0, 3.0) if decades < 3.5 else (1.0,)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _points(ax, x: np.ndarray, y: np.ndarray, done: np.ndarray, tests: np.ndarray | None, metric: str) -> None:
    """Completed trials filled, pruned hollow, and each trial's test figure as an orange cross."""
    ax.scatter(x[done], y[done], s=22, color="tab:blue", label=f"{metric} (chosen on)", zorder=3)
    if (~done).any():
        ax.scatter(x[~done], y[~done], s=22, facecolors="none", edgecolors="tab:gray", label="pruned", zorder=3)
    if tests is not None and np.isfinite(tests).any():
        ax.scatter(x, tests, s=26, marker="x", color="tab:orange", label="test (reported only)", zorder=2)


def params_figure(columns: dict[str, Sequence], values: Sequence[float], statuses: Sequence[str],
                  metric: str, log_keys: Sequence[str] | None = None,
                  tests: Sequence[float | None] | None = None) -> Figure:
    """One panel per parameter (at most 12): the trial's metric against that parameter's value; `log_keys` (the
    parameters drawn log-uniformly) on log axes (None: guessed from the values' span), `tests` beside them."""
    keys = list(columns)[:MAX_PANELS]
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig = new_figure(figsize=(4.2 * cols, 3.3 * rows + 0.45))
    axes = fig.subplots(rows, cols, squeeze=False)
    y = np.asarray(values, dtype=float)
    done = np.asarray([s == "completed" for s in statuses])
    shown = None if tests is None else np.asarray([np.nan if t is None else t for t in tests], dtype=float)
    for ax, key in zip(axes.flat, keys, strict=False):
        x, labels, log = _positions(columns[key], None if log_keys is None else key in log_keys)
        _points(ax, x, y, done, shown, metric)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0, fontsize=MIN_PT)
        elif all(isinstance(v, int) for v in columns[key]) and not log:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            _log_axis(ax, x)
        ax.set_xlabel(key + (" (log scale)" if log else ""))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} against each parameter ({len(y)} trials)", fontsize=10)
    _legend_below(fig, axes.flat[0], 0.45 / fig.get_figheight())
    return fig


def _legend_below(fig: Figure, ax, share: float) -> None:
    """The markers' legend in one row under the panels (`share` of the figure's height kept for it), where it
    hides no point."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=MIN_PT, frameon=False)
    fig.tight_layout(rect=(0, share, 1, 1))


def history_figure(numbers: Sequence[int], values: Sequence[float], statuses: Sequence[str], metric: str,
                   direction: str, tests: Sequence[float | None] | None = None) -> Figure:
    """Each trial's metric by trial number (whole numbers on the axis), the best so far (a step line) and, given,
    each trial's test figure."""
    fig = new_figure(figsize=(7.0, 4.0))
    ax = fig.subplots()
    x, y = np.asarray(numbers), np.asarray(values, dtype=float)
    done = np.asarray([s == "completed" for s in statuses])
    shown = None if tests is None else np.asarray([np.nan if t is None else t for t in tests], dtype=float)
    _points(ax, x, y, done, shown, metric)
    if done.any():
        order = np.argsort(x[done])
        best = (np.maximum if direction == "maximize" else np.minimum).accumulate(y[done][order])
        ax.step(x[done][order], best, where="post", color="tab:red", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"Optimisation history ({direction} {metric})", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, 0.45 / fig.get_figheight())
    return fig


def importance_figure(importances: dict[str, float], metric: str) -> Figure:
    """Horizontal bars: each parameter's importance for the metric (Optuna's fANOVA estimate, summing to 1)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = new_figure(figsize=(6.4, 0.5 * len(items) + 1.4))
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=MIN_PT)
    ax.set_xlim(0, max([v for _, v in items] + [1e-9]) * 1.2)
    ax.set_xlabel(f"importance for {metric}")
    ax.set_title("Parameter importances", fontsize=10)
    fig.tight_layout()
    return fig
