"""One self-contained HTML report per run: configuration, curves, test results, and a look inside the network.

Every image is embedded as a data URI and the styling is inline, so the file opens anywhere without a network.
The test set is read once: one forward pass captures the logits and every conv layer's spatial means, which
give the per-class accuracy, the confusion matrix, the worst mistakes and the class profiles (the same numbers
as cnnscope.inspect.profile's misclassified/class_profile, which would each run their own pass).
"""

from __future__ import annotations

import dataclasses
import html
import io
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, RunError
from .fileio import atomic_write_text
from .layers import CONV
from .runs import HISTORY, METRICS, Run, load_run
from .serve import render

log = logging.getLogger("cnnscope")

REPORT = "report.html"
PATTERN_MAPS = 32  # maximising patterns of the first 32 maps of each conv layer
WORST = 24  # misclassified images shown
PROBE_ROWS = 12  # epochs shown in the probe strip (evenly spaced, first and last always)


# --- small rendering helpers --------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value))


def _figure_uri(fig, dpi: int = 100) -> str:
    """A matplotlib figure as a PNG data URI (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return render.data_uri(buffer.getvalue())


def _img(uri: str, alt: str, cls: str = "") -> str:
    return f'<img src="{uri}" alt="{_esc(alt)}"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>'


def tiles_png(maps: np.ndarray, cols: int | None = None, scale: bool = False, cmap: str = "magma",
              symmetric: bool = False, vmax: float | None = None, min_cell: int = 24, gap: int = 2) -> bytes:
    """Maps (n, h, w) as a PNG grid with `gap`-pixel gutters; small maps are enlarged (nearest) to `min_cell`.

    The values come from cnnscope's activation_grid (its `scale` is the series' standardise-and-clip)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    cols = cols or max(1, math.ceil(math.sqrt(n * h / w)))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    values = render.activation_grid(maps, cols, scale)  # (rows*h, cols*w), NaN in empty cells
    lo = hi = None
    if scale:
        lo, hi = 0.0, 255.0
    elif vmax is not None:
        lo, hi = (-vmax if symmetric else 0.0), vmax
    rgb, _, _ = render.colorize(values, cmap, lo, hi, symmetric=symmetric)
    factor = max(1, math.ceil(min_cell / max(h, w)))
    cells = rgb.reshape(rows, h, cols, w, 3).repeat(factor, axis=1).repeat(factor, axis=3)
    H, W = h * factor, w * factor
    canvas = np.full((rows * (H + gap) - gap, cols * (W + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W] = cells[r, :, c, :]
    return render.png_bytes(canvas)


def _grey_uri(raw: np.ndarray) -> str:
    return render.data_uri(render.grey_png(raw))


# --- the one pass over the test set -------------------------------------------------------------------------
@dataclasses.dataclass
class TestPass:
    """What one forward pass over the test set gives."""

    probabilities: np.ndarray  # (n, classes)
    means: dict[str, np.ndarray]  # conv layer -> (n, maps) spatial means

    def profile(self, layer: str, labels: np.ndarray, classes: int) -> np.ndarray:
        """Mean activation of each map per class (classes, maps), as inspect.profile.class_profile."""
        sums = np.zeros((classes, self.means[layer].shape[1]), np.float64)
        np.add.at(sums, labels, self.means[layer].astype(np.float64))
        counts = np.bincount(labels, minlength=classes).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / counts[:, None]
        out[counts == 0] = np.nan
        return out.astype(np.float32)


@torch.no_grad()
def test_pass(run: Run, x: np.ndarray, layers: list[str], batch_size: int = 500) -> TestPass:
    from .inspect.activations import capture

    model = run.model.eval()
    probs, means = [], {name: [] for name in layers}
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(x[start:start + batch_size]).contiguous(memory_format=torch.channels_last)
        outputs, logits = capture(model, layers, batch)
        probs.append(model.probabilities(logits).float().numpy())
        for name in layers:
            means[name].append(outputs[name].float().mean(dim=(2, 3)).numpy())
    classes = run.spec.num_classes
    return TestPass(np.concatenate(probs) if probs else np.zeros((0, classes), np.float32),
                    {name: np.concatenate(parts) for name, parts in means.items() if parts})


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


# --- sections -----------------------------------------------------------------------------------------------
def _section(ident: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{ident}"><h2>{_esc(title)}</h2>{note_html}{body}</section>'


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def _config_section(run: Run) -> str:
    from .spec import summary_table

    train = [(k, v) for k, v in dataclasses.asdict(run.config).items()]
    data = [(k, v) for k, v in dataclasses.asdict(run.data_config).items() if v is not None]
    return _section("config", "Configuration and model", (
        '<div class="cols"><div><h3>Training</h3>' + _table(train) + '</div><div><h3>Data</h3>' + _table(data)
        + '</div></div><h3>Model summary</h3><pre class="summary">' + _esc(summary_table(run.spec)) + "</pre>"))


def _probe_html(run: Run) -> str:
    from .probe import read_probe

    probe = read_probe(run.path)
    if probe is None or not probe.epochs:
        return ""
    epochs = probe.epochs
    if len(epochs) > PROBE_ROWS:
        picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, PROBE_ROWS)).astype(int))
        epochs = [epochs[i] for i in picks]
    peak = max(float(np.abs(probe.filters[e]).max()) for e in epochs) or 1.0
    head = "".join(f"<th>{_esc(name)}</th>" for name in probe.layers)
    rows = []
    for epoch in epochs:
        filters = probe.filters[epoch][:, 0] if probe.filters[epoch].shape[1] == 1 \
            else probe.filters[epoch].mean(axis=1)  # (maps, kh, kw): with several input channels, their mean
        tiles = tiles_png(filters, cmap="RdBu_r", symmetric=True, vmax=peak)
        cells = [f"<td>{_img(render.data_uri(tiles), 'filters', 'px')}</td>"]
        for name in probe.layers:
            cells.append(f"<td>{_img(render.data_uri(tiles_png(probe.maps[epoch][name])), name, 'px')}</td>")
        rows.append(f"<tr><th>{'initial' if epoch == 0 else f'epoch {epoch}'}</th>{''.join(cells)}</tr>")
    label = run_class_name(run, probe.label)
    return (f'<div class="probe"><h3>Watching it learn: {probe.split} image {probe.index} (class {_esc(label)})</h3>'
            f'<p class="note">{_img(_grey_uri(probe.image), "probe image", "px thumb")} Each row is one epoch: '
            f'the {_esc(probe.filters_layer)} filters (one colour scale for all epochs, blue negative, red '
            f'positive) and the maps of every conv and pool layer for this image.</p>'
            f'<div class="scroll"><table class="strip"><tr><th></th><th>{_esc(probe.filters_layer)} filters</th>'
            f'{head}</tr>{"".join(rows)}</table></div></div>')


def run_class_name(run: Run, label: int) -> str:
    from .data import DATASETS

    names = DATASETS[run.data_config.dataset].class_names
    return names[label] if 0 <= label < len(names) else str(label)


def _training_section(run: Run) -> str:
    from .plots import curves_figure

    history = run.history
    if not history.get("epoch"):
        body = "<p>No completed epoch was recorded.</p>"
    else:
        body = _img(_figure_uri(curves_figure(history), dpi=90), "training curves", "wide")
    return _section("training", "Training curves and learning rate", body + _probe_html(run))


def _results_section(run: Run, class_names: list[str], labels: np.ndarray, raw: np.ndarray,
                     probs: np.ndarray) -> str:
    from .plots import confusion_figure

    k = len(class_names)
    pred = probs.argmax(axis=1)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    accuracy = float((pred == labels).mean()) if len(labels) else 0.0
    bars = "".join(
        f'<tr><th>{_esc(name)}</th><td class="bar"><span style="width:{100 * acc:.1f}%"></span></td>'
        f'<td class="num">{100 * acc:.2f} %</td><td class="num muted">{int(confusion[i].sum()):,}</td></tr>'
        for i, (name, acc) in enumerate(zip(class_names, per_class, strict=True)))
    wrong = np.flatnonzero(pred != labels)
    confidence = probs[wrong, pred[wrong]]
    worst = wrong[np.lexsort((wrong, -confidence))][:WORST]  # most confident mistakes first, as misclassified()
    gallery = "".join(
        f'<figure>{_img(_grey_uri(raw[i]), f"test image {i}", "px")}<figcaption>#{i}<br>'
        f'<b>{_esc(class_names[labels[i]])}</b> → <span class="bad">{_esc(class_names[pred[i]])}</span> '
        f'{100 * probs[i, pred[i]]:.0f}%</figcaption></figure>' for i in worst)
    body = (f'<p class="big">Test accuracy <b>{100 * accuracy:.2f} %</b> on {len(labels):,} images '
            f'({len(wrong):,} mistakes).</p><div class="cols"><div><h3>Per-class accuracy</h3>'
            f'<table class="acc"><tr><th>class</th><th></th><th>accuracy</th><th>images</th></tr>{bars}</table>'
            f'</div><div><h3>Confusion matrix</h3>'
            f'{_img(_figure_uri(confusion_figure(confusion.tolist(), class_names), dpi=90), "confusion matrix")}'
            f'</div></div><h3>{f"The {len(worst)} most confident mistakes" if len(worst) else "Mistakes"}</h3>'
            f'<p class="note">true class → predicted class, with the model\'s confidence.</p>'
            f'<div class="gallery">{gallery or "<p>None: every test image is classified correctly.</p>"}</div>')
    return _section("results", "Test results", body)


def _activations_section(run: Run, class_names: list[str], labels: np.ndarray, raw: np.ndarray,
                         x: np.ndarray, probs: np.ndarray, layers: list[str]) -> str:
    from .inspect.activations import capture

    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(class_names)) if (labels == c).any()]
    with torch.no_grad():
        outputs, _ = capture(run.model, layers, torch.as_tensor(x[picks]))
    shapes = {name: tuple(outputs[name].shape[1:]) for name in layers}
    head = "".join(f"<th>{_esc(name)}<br><span class=muted>{'×'.join(map(str, shapes[name]))}</span></th>"
                   for name in layers)
    rows = []
    for row, i in enumerate(picks):
        pred = int(probs[i].argmax())
        cells = "".join(f"<td>{_img(render.data_uri(tiles_png(outputs[name][row].numpy())), name, 'px')}</td>"
                        for name in layers)
        mark = "" if pred == labels[i] else f' <span class="bad">→ {_esc(class_names[pred])}</span>'
        rows.append(f'<tr><th>{_img(_grey_uri(raw[i]), f"test image {i}", "px thumb")}<br>#{i} '
                    f'{_esc(class_names[labels[i]])}{mark}</th>{cells}</tr>')
    body = f'<div class="scroll"><table class="strip"><tr><th>input</th>{head}</tr>{"".join(rows)}</table></div>'
    note = ("The first test image of each class and the maps of every conv and pooling layer (magma colour map, "
            "one range per grid: black is the grid's smallest value, yellow its largest).")
    return _section("activations", "Inside the network: one test image per class", body, note)


def _filters_section(run: Run, first_conv: str) -> str:
    from .inspect.filters import conv_filters
    from .plots.activations import filters_figure

    fig = filters_figure(conv_filters(run.model, first_conv))
    return _section("filters", f"Filters of {first_conv}", _img(_figure_uri(fig, dpi=90), "filters"),
                    "Each filter's kernel on one diverging colour scale centred on zero, with its bias.")


def _patterns_section(run: Run, convs: list[str], train_x: np.ndarray) -> str:
    from .inspect.patterns import input_bounds, maximize_activation
    from .plots.patterns import pattern_pixels

    lo, hi = input_bounds(train_x)
    parts = []
    for layer in convs:
        maps = list(range(min(PATTERN_MAPS, run.spec.layer(layer).output_shape[0])))
        patterns = maximize_activation(run.model, layer, maps, lo=lo, hi=hi)  # (k, H, W) preprocessed
        pixels = pattern_pixels(patterns, run.preprocessor)  # back to 0..255
        uri = render.data_uri(tiles_png(pixels, cols=8, cmap="gray", vmax=255.0, min_cell=28 * 2))
        parts.append(f"<h3>{_esc(layer)} — maps 0 to {maps[-1]}</h3>{_img(uri, layer + ' patterns', 'px')}")
    note = ("Inputs found by gradient ascent (cnnscope.inspect.maximize_activation) that make each map's mean "
            "as large as possible, kept inside the training images' pixel range; shown as pixels, 0 black to "
            "255 white.")
    return _section("patterns", "Maximising patterns", "".join(parts), note)


def _profiles_section(passed: TestPass, convs: list[str], labels: np.ndarray, class_names: list[str]) -> str:
    from .plots.profile import profile_figure

    parts = []
    for layer in convs:
        profile = passed.profile(layer, labels, len(class_names))
        fig = profile_figure(profile, class_names, layer=layer, images=len(labels))
        parts.append(_img(_figure_uri(fig, dpi=80), f"class profile of {layer}", "wide"))
    note = ("Mean activation of each map over the test images of each class, each map divided by its largest "
            "class mean: which class each map prefers.")
    return _section("profiles", "Class profiles", "".join(parts), note)


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
.scroll{overflow-x:auto}.strip th,.strip td{padding:4px 8px;vertical-align:middle;text-align:center;font-size:.8rem}
.strip tr+tr{border-top:1px solid #eceef2}.strip td img{max-height:170px}
.probe{margin-top:14px}footer{color:#6b7385;font-size:.8rem;text-align:center;padding:10px 0 24px}
"""


def build_report(run_path: str | os.PathLike, out: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> Path:
    """Write one self-contained HTML report of a run (default RUN/report.html, atomically); returns its path."""
    from . import __version__

    started = time.perf_counter()
    run = load_run(run_path)
    check_history(run)  # before the work: a corrupt file is one line, not a traceback at the end
    check_metrics(run)
    path = Path(out) if out is not None else run.path / REPORT
    if path.is_dir():  # refused before the work, not after it
        raise ConfigError(f"cannot write the report to {path}: it is a directory; give a file name such as "
                          f"{path / REPORT}")
    # This copy of the model is only looked at: no weight gradients (gradient ascent needs input gradients only),
    # and channels_last, which roughly halves the time of convolutions on CPU.
    run.model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    dataset = run.dataset(data_dir)
    class_names = list(dataset.class_names)
    map_layers = run.spec.map_layer_names()
    convs = run.spec.layer_names(CONV)
    labels = np.asarray(dataset.test_y).astype(np.int64)
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args) -> str:
        t = time.perf_counter()
        result = fn(*args)
        timings[name] = time.perf_counter() - t
        return result

    passed = timed("test pass", test_pass, run, dataset.test_x, convs)
    sections = [
        timed("config", _config_section, run),
        timed("training", _training_section, run),
        timed("results", _results_section, run, class_names, labels, dataset.test_raw, passed.probabilities),
        timed("activations", _activations_section, run, class_names, labels, dataset.test_raw, dataset.test_x,
              passed.probabilities, map_layers),
    ]
    if convs:
        sections.append(timed("filters", _filters_section, run, convs[0]))
        sections.append(timed("patterns", _patterns_section, run, convs, dataset.train_x))
        sections.append(timed("profiles", _profiles_section, passed, convs, labels, class_names))
    metrics = run.metrics
    accuracy = float((passed.probabilities.argmax(1) == labels).mean()) if len(labels) else float("nan")
    cards = [("test accuracy", f"{100 * accuracy:.2f} %"),
             ("test loss", f"{metrics['test_loss']:.4f}" if "test_loss" in metrics else "–"),
             ("epochs", metrics.get("epochs_completed", len(run.history.get("epoch", [])))),
             ("training time", f"{metrics['train_seconds']:.0f} s" if "train_seconds" in metrics else "–"),
             ("images / s", f"{metrics['images_per_second']:,.0f}" if "images_per_second" in metrics else "–"),
             ("parameters", f"{run.spec.total_params:,}")]
    card_html = "".join(f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for k, v in cards)
    nav = "".join(f'<a href="#{ident}">{label}</a>' for ident, label in (
        ("config", "configuration"), ("training", "training"), ("results", "test results"),
        ("activations", "activations"), ("filters", "filters"), ("patterns", "patterns"), ("profiles", "profiles")))
    title = f"cnnscope report — {run.path.name}"
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{_esc(title)}</title><style>{CSS}</style>'
            f'</head><body><header><h1>{_esc(title)}</h1><p>{_esc(dataset.name)} · '
            f'{_esc(metrics.get("status", "no metrics"))} · written {time.strftime("%Y-%m-%d %H:%M")} by cnnscope '
            f'{_esc(__version__)}</p><nav>{nav}</nav></header><main><section id="summary"><div class="cards">'
            f'{card_html}</div></section>{"".join(sections)}</main>'
            f'<footer>built in {time.perf_counter() - started:.1f} s</footer></body></html>')
    try:
        atomic_write_text(path, page)
    except OSError as exc:
        raise RunError(f"cannot write the report to {path} ({exc.strerror or exc})") from None
    log.info("report %s written in %.1f s (%s)", path, time.perf_counter() - started,
             ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return path
