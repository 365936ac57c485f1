"""A study's results: one row per trial from Optuna's storage, written as results.json and results.csv, and its
figures (the metric against each parameter, the optimisation history, parameter importances)."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from cnnscope.base.fileio import atomic_write_text, write_json
from cnnscope.plots.figures import save_figure_as
from cnnscope.plots.sweep import history_figure, importance_figure, params_figure
from cnnscope.runs.layout import RESULTS, RESULTS_CSV, STUDY_FIGURES, TRIALS
from cnnscope.sweep.definition import TEST_WARNING, SweepSpec

log = logging.getLogger("cnnscope")
ROW_KEYS = ("number", "params", "status", "value", "val_accuracy", "test_accuracy", "val_loss", "test_loss",
            "val_source", "best_val_accuracy", "best_val_loss", "epochs", "seconds", "run_dir", "reason")
# what a trial's result leaves in Optuna's storage (user attributes), besides its value
RESULT_ATTRS = ("val_accuracy", "test_accuracy", "val_loss", "test_loss", "val_source", "best_val_accuracy",
                "best_val_loss", "epochs", "seconds", "reason")
CSV_NUMBERS = ("value", "val_accuracy", "test_accuracy", "val_loss", "test_loss", "best_val_accuracy", "epochs",
               "seconds")


class StudyResults(dict):
    """A study's results (results.json's content, a plain dict to code and JSON); a notebook shows its goal, best
    trial and one row per trial (cnnscope.views.display), repr() says it in one line."""

    def __repr__(self) -> str:
        trials = self.get("trials") or []
        done = sum(1 for r in trials if isinstance(r, dict) and r.get("status") == "completed")
        best = self.get("best")
        return (f"StudyResults({self.get('metric')} {self.get('direction')}, {len(trials)} trials, {done} completed, "
                f"best: {'trial ' + str(best) if best is not None else 'none yet'})")

    def _repr_html_(self) -> str:
        # views/ loads runs and torch, which the sweep's driver never needs: imported when a notebook shows it
        from cnnscope.views.display import study_html

        return study_html(self)


def trial_rows(study: Any, running: set[int]) -> list[dict[str, Any]]:
    """One row per trial (ROW_KEYS): value (the study's metric), validation and test figures side by side, where
    the validation figures came from, epochs, seconds, run_dir, reason. A RUNNING trial not in `running` was
    interrupted (resumed next time); a study written before a figure was recorded has null there."""
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.WAITING: "waiting"}
    rows = []
    for t in study.get_trials(deepcopy=False):
        status = names.get(t.state) or ("running" if t.number in running else "interrupted")
        attrs = t.user_attrs
        row = {"number": t.number, "params": dict(t.params), "status": status,
               "value": t.value if t.state == TrialState.COMPLETE else _last(t),
               **{key: attrs.get(key) for key in RESULT_ATTRS}}
        row.update(run_dir=f"{TRIALS}/{t.number:04d}", reason=attrs.get("reason") or "")
        rows.append({key: row[key] for key in ROW_KEYS})
    return rows


def _last(trial: Any) -> float | None:
    """A pruned or running trial's last reported value."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def best_row(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The completed trial with the best value."""
    done = [r for r in rows if r["status"] == "completed" and isinstance(r.get("value"), (int, float))]
    if not done:
        return None
    return (max if direction == "maximize" else min)(done, key=lambda r: r["value"])


def csv_text(rows: list[dict[str, Any]], keys: list[str]) -> str:
    """The rows as CSV, one column per parameter (param.KEY), validation and test figures side by side."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", *(f"param.{k}" for k in keys), "status", *CSV_NUMBERS, "val_source", "run_dir",
                     "reason"])
    for r in rows:
        writer.writerow([r["number"], *(r["params"].get(k, "") for k in keys), r["status"],
                         *(_cell(r[k]) for k in CSV_NUMBERS), r["val_source"] or "", r["run_dir"], r["reason"]])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def write_results(study_dir: Path, study: Any, spec: SweepSpec, running: set[int],
                  figures: bool = False) -> StudyResults:
    """Rewrite results.json and results.csv (atomically); with `figures`, the study's figures too."""
    rows = trial_rows(study, running)
    best = best_row(rows, spec.direction)
    data = StudyResults({"metric": spec.metric, "direction": spec.direction, "best": best["number"] if best else None,
            "selected_on": spec.selected_on, "validation": spec.selection_text(), "trials": rows})
    if spec.selected_on == "test":
        data["warning"] = TEST_WARNING
    write_json(study_dir / RESULTS, _json_safe(data))
    atomic_write_text(study_dir / RESULTS_CSV, csv_text(rows, [p.key for p in spec.params]))
    if figures:
        data["figures"], data["notes"] = write_figures(study_dir, study, spec, rows)
    return data


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def importances(study: Any, spec: SweepSpec, rows: list[dict[str, Any]]) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances, or ({}, why not) with fewer than 2 completed trials or one parameter."""
    completed = [r for r in rows if r["status"] == "completed"]
    if len(spec.params) < 2 or len(completed) < 2:
        return {}, (f"parameter importances need at least 2 completed trials and 2 parameters (this study has "
                    f"{len(completed)} and {len(spec.params)})")
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study)), ""
    except (RuntimeError, ValueError) as exc:  # e.g. every completed trial has the same value of a parameter
        return {}, f"parameter importances not computed ({' '.join(str(exc).split())[:160]})"


def write_figures(study_dir: Path, study: Any, spec: SweepSpec, rows: list[dict[str, Any]]
                  ) -> tuple[list[str], list[str]]:
    """The study's figures in STUDY/: metric against each parameter, history, importances (or a note why not)."""
    keys = [p.key for p in spec.params]
    done = [r for r in rows if isinstance(r.get("value"), (int, float)) and r["status"] in ("completed", "pruned")]
    if not done:
        return [], ["no completed trial yet: no figures"]
    statuses = [r["status"] for r in done]
    values = [float(r["value"]) for r in done]
    tests = [r.get("test_loss" if spec.metric == "val_loss" else "test_accuracy") for r in done]
    tests = None if spec.selected_on == "test" else tests  # chosen on the test set: the value is the test figure
    columns = {k: [r["params"].get(k) for r in done] for k in keys}
    log_keys = [p.key for p in spec.params if p.kind == "loguniform"]
    paths = save_figure_as(params_figure(columns, values, statuses, spec.metric, log_keys, tests),
                           study_dir / STUDY_FIGURES[0])
    numbers = [r["number"] for r in done]
    paths += save_figure_as(history_figure(numbers, values, statuses, spec.metric, spec.direction, tests),
                            study_dir / STUDY_FIGURES[1])
    found, note = importances(study, spec, rows)
    notes = [note] if note else []
    if found:
        paths += save_figure_as(importance_figure(found, spec.metric), study_dir / STUDY_FIGURES[2])
    else:
        (study_dir / STUDY_FIGURES[2]).unlink(missing_ok=True)
    return [str(p) for p in paths], notes
