"""What a notebook shows for cnnscope's objects (their `_repr_html_`, through cnnscope.base.display): a run (model,
data, test accuracy, epochs, its curves), a model spec (its summary table), a data set (sizes, classes with their
counts, a strip of pictures per class), a view's result (its figures and notes) and a study (its best trial and
the results table).

Every text that comes from a run, a data set or a file is escaped; every picture is a data URI, so a saved
notebook shows them without the files.
"""

from __future__ import annotations

import base64
from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.imaging import data_uri
from cnnscope.data.dataset import Dataset
from cnnscope.data.sources import short_name
from cnnscope.model.spec import ModelSpec, describe_model
from cnnscope.model.summary import summary_rows, summary_totals
from cnnscope.plots.training import curves_figure
from cnnscope.runs.load import Run
from cnnscope.views.common import ViewResult
from cnnscope.views.report_html import esc, figure_uri, img, table
from cnnscope.views.tiles import pictures_png

STRIP = 12  # pictures per class in a data set's strip
STRIP_CLASSES = 40  # a data set with more classes shows the counts of all, the strips of the first 40
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}  # figure files a browser shows inline
BOX = 'style="font-family: sans-serif; max-width: 100%; overflow-x: auto"'


@singledispatch
def html_of(obj: Any) -> str:
    """The notebook HTML of a cnnscope object (its repr, escaped, for a class without a richer picture)."""
    return f"<pre>{esc(repr(obj))}</pre>"


def frame(title: str, body: str) -> str:
    """One object's HTML: a bold title (escaped here) over its body."""
    return f'<div class="cnnscope" {BOX}><p style="margin: 0 0 4px"><b>{esc(title)}</b></p>{body}</div>'


def percent(value: Any) -> str:
    """0.9876 -> '98.76 %'; anything else (missing, null) -> '—'."""
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) and np.isfinite(value) else "—"


# --- a run ---------------------------------------------------------------------------------------------------------
@html_of.register(Run)
def run_html(run: Run) -> str:
    """The run's model line, data, test accuracy, epochs and training curves."""
    metrics, history = run.metrics, run.history
    rows = [("model", model_line(run.spec)), ("data", run_data_line(run)),
            ("test accuracy", percent(metrics.get("test_accuracy"))
             + (f" on {metrics['test_images']:,} images" if isinstance(metrics.get("test_images"), int) else "")),
            ("epochs", epochs_line(run))]
    if history.get("val_accuracy"):
        rows.append((f"best {history.get('val_source') or 'validation'} accuracy",
                     percent(max(history["val_accuracy"]))))
    curves = (img(figure_uri(curves_figure(history), dpi=72), "training curves: loss, accuracy, learning rate")
              if history.get("epoch") else "<p>no epoch trained yet: no curves</p>")
    return frame(f"Run {run.path}", table(rows) + curves)


def model_line(spec: ModelSpec) -> str:
    """'conv 8-16 · dense 32 → 10 classes, 14,410 parameters'."""
    return f"{describe_model(spec.to_dict())} → {spec.num_classes} classes, {spec.total_params:,} parameters"


def run_data_line(run: Run) -> str:
    """The run's data set, preprocessing and how many images it trained on."""
    config, metrics = run.data_config, run.metrics
    trained = metrics.get("train_images")
    size = f", {trained:,} training images" if isinstance(trained, int) else ""
    return f"{short_name(config.dataset)} ({config.preprocess} preprocessing, {config.split} split{size})"


def epochs_line(run: Run) -> str:
    """'3 of 5 (interrupted), 41.2 s'."""
    done = len(run.history.get("epoch", []))
    status = run.metrics.get("status")
    seconds = run.metrics.get("train_seconds")
    return (f"{done} of {run.config.epochs}" + (f" ({status})" if status else "")
            + (f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""))


# --- a model spec --------------------------------------------------------------------------------------------------
@html_of.register(ModelSpec)
def spec_html(spec: ModelSpec) -> str:
    """The Keras-like summary table (cnnscope.model.summary's rows) and its totals."""
    header, *rows = summary_rows(spec)
    right = ' style="text-align: right"'
    head = "".join(f"<th{right if i > 1 else ''}>{esc(cell)}</th>" for i, cell in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{right if i > 1 else ''}>{esc(cell)}</td>" for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    totals = "<br>".join(esc(line) for line in summary_totals(spec))
    c, h, w = spec.input_shape
    return frame(f"ModelSpec: {describe_model(spec.to_dict())}, input {c}×{h}×{w}",
                 f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>{totals}</p>")


# --- a data set ----------------------------------------------------------------------------------------------------
@html_of.register(Dataset)
def dataset_html(dataset: Dataset) -> str:
    """Sizes, input shape, preprocessing, notes, and per class its counts and a strip of training pictures."""
    splits = dataset.split_labels()
    c, h, w = dataset.input_shape
    sizes = " · ".join(f"{split} {len(labels):,}" for split, labels in splits.items())
    head = (f"<p>{esc(sizes)} images of {c}×{h}×{w} ({'colour' if c == 3 else 'grey'}), "
            f"{esc(dataset.config.preprocess)} preprocessing, {len(dataset.class_names)} classes</p>")
    notes = "".join(f"<li>{esc(note)}</li>" for note in dataset.notes)
    return frame(f"Dataset {dataset.name}", head + (f"<ul>{notes}</ul>" if notes else "")
                 + class_table(dataset, splits))


def class_table(dataset: Dataset, splits: dict[str, np.ndarray]) -> str:
    """One row per class: its name, its count in each split and (for the first classes) a strip of pictures."""
    k = len(dataset.class_names)
    counts = {split: np.bincount(np.asarray(labels, np.int64), minlength=k) for split, labels in splits.items()}
    head = "<th>class</th>" + "".join(f"<th>{esc(split)}</th>" for split in counts) + "<th>training pictures</th>"
    rows = []
    for label, name in enumerate(dataset.class_names):
        cells = "".join(f'<td style="text-align: right">{int(n[label]):,}</td>' for n in counts.values())
        strip = class_strip(dataset.train_raw, dataset.train_y, label, name) if label < STRIP_CLASSES else ""
        shown = esc(name) if name == str(label) else f"{label}: {esc(name)}"
        rows.append(f"<tr><td>{shown}</td>{cells}<td>{strip}</td></tr>")
    more = f"<p>strips for the first {STRIP_CLASSES} of {k} classes</p>" if k > STRIP_CLASSES else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def class_strip(raw: np.ndarray, labels: np.ndarray, label: int, name: str) -> str:
    """The first STRIP training pictures of one class, side by side (an <img>), or '' when it has none."""
    members = np.flatnonzero(np.asarray(labels) == label)[:STRIP]
    if not len(members):
        return ""
    png = pictures_png(np.asarray(raw)[members], cols=len(members), min_cell=28, gap=1)
    return img(data_uri(png), f"{len(members)} training pictures of class {name}")


# --- a view's result -----------------------------------------------------------------------------------------------
@html_of.register(ViewResult)
def result_html(result: ViewResult) -> str:
    """The view's figures inline (PNG and SVG; an SVG written beside its PNG is listed, not shown twice), its
    notes, and the files it wrote."""
    shown = {p.with_suffix("") for p in result.paths if p.suffix.lower() == ".png"}
    pictures = [figure_html(p) for p in result.paths
                if p.suffix.lower() == ".png" or (p.suffix.lower() == ".svg" and p.with_suffix("") not in shown)]
    notes = "".join(f"<li>{esc(note)}</li>" for note in result.notes)
    files = ", ".join(f"<code>{esc(p)}</code>" for p in result.paths) or "none"
    return frame("ViewResult", "".join(pictures) + (f"<ul>{notes}</ul>" if notes else "")
                 + f"<p>files: {files}</p>")


def figure_html(path: Path) -> str:
    """A figure file inline as a data URI (its bytes read now), or a line saying it is missing."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"<p>{esc(path)}: cannot be read ({esc(exc.strerror or exc)})</p>"
    uri = f"data:{FIGURE_TYPES[path.suffix.lower()]};base64," + base64.b64encode(data).decode("ascii")
    return f'<div><img src="{uri}" alt="{esc(path.name)}" style="max-width: 100%"></div>'


# --- a study -------------------------------------------------------------------------------------------------------
STUDY_COLUMNS = ("value", "val_accuracy", "test_accuracy", "epochs", "seconds")


def study_html(results: dict[str, Any]) -> str:
    """A study's results (results.json's content): its goal, best trial, warning, and one row per trial."""
    rows = [r for r in results.get("trials", []) if isinstance(r, dict)]
    keys = sorted({k for r in rows for k in (r.get("params") or {})})
    best = results.get("best")
    statuses = {}
    for r in rows:
        statuses[r.get("status")] = statuses.get(r.get("status"), 0) + 1
    head = (f"<p>{esc(results.get('metric'))} ({esc(results.get('direction'))}), {len(rows)} trials: "
            + esc(", ".join(f"{n} {s}" for s, n in statuses.items())) + "; "
            + (f"best: trial {esc(best)}" if best is not None else "no completed trial yet") + "</p>")
    warning = f"<p><b>{esc(results['warning'])}</b></p>" if results.get("warning") else ""
    columns = ["trial", "status", *STUDY_COLUMNS, *keys]
    cells = "".join(study_row(r, keys, r.get("number") == best) for r in rows)
    table_html = ("<table><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead>"
                  f"<tbody>{cells}</tbody></table>")
    return frame("Study", head + warning + table_html)


def study_row(row: dict[str, Any], keys: list[str], best: bool) -> str:
    """One trial's row; the best in bold."""
    def cell(value: Any) -> str:
        shown = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
        return f"<td>{'<b>' if best else ''}{esc(shown)}{'</b>' if best else ''}</td>"

    params = row.get("params") or {}
    return ("<tr>" + cell(row.get("number")) + cell(row.get("status"))
            + "".join(cell(row.get(c)) for c in STUDY_COLUMNS) + "".join(cell(params.get(k)) for k in keys) + "</tr>")


__all__ = ["html_of", "study_html"]
