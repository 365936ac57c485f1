"""Views of the report's sections about the run: configuration, training (curves and the probe strip), test
results and the explanation of predictions. Each returns a ViewResult whose data holds the section's id, title and
HTML plus the numbers it shows; cnnscope.report puts them on one page.

The test set is read once: one pass (cnnscope.inspect.profile.layer_summary) gives the probabilities and every conv
layer's spatial means (TestSet); results, class profiles and the explanation all read from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from cnnscope.base.metrics import per_class_accuracy
from cnnscope.inspect.profile import dead_maps, layer_summary, mistakes
from cnnscope.model.summary import summary_table
from cnnscope.plots.training import confusion_figure, curves_figure
from cnnscope.runs.probe import read_probe
from cnnscope.trainer.loop import pick_device
from cnnscope.views.data import preprocessing_figure, summarize
from cnnscope.views.report_html import esc, figure_uri, img, picture_uri, png_img, section, table
from cnnscope.views.tiles import pictures_png, tiles_png

WORST = 24  # misclassified images shown
PROBE_ROWS = 12  # epochs shown in the probe strip (evenly spaced, first and last always)
EXPLAINED = 10  # test images explained (the first of each class)
# Training settings that only some optimizers read (the others ignore them, so the report does not list them).
OPTIMIZER_SETTINGS = {"momentum": ("rmsprop", "sgd"), "nesterov": ("sgd",)}


@dataclass
class TestSet:
    """The run's test images and what one forward pass over them gave."""

    class_names: list[str]
    labels: np.ndarray  # (n,) int
    raw: np.ndarray  # (n, H, W) 0..255
    x: np.ndarray  # (n, C, H, W) preprocessed
    probs: np.ndarray  # (n, classes)
    means: dict[str, np.ndarray]  # layer -> (n, maps) spatial means
    dead: dict[str, list[int]] = field(default_factory=dict)  # layer -> maps that are 0 on every test image

    @classmethod
    def of(cls, run, dataset, layers: list[str]) -> TestSet:
        """One pass over the test set capturing the probabilities, the spatial means and the dead maps of
        `layers`."""
        probs, means, peaks = layer_summary(run.model, layers, dataset.test_x)
        return cls(list(dataset.class_names), np.asarray(dataset.test_y).astype(np.int64), dataset.test_raw,
                   dataset.test_x, probs, means, {name: dead_maps(peak) for name, peak in peaks.items()})

    def firsts(self) -> list[int]:
        """The index of the first test image of each class (classes without images skipped)."""
        return [int(np.flatnonzero(self.labels == c)[0]) for c in range(len(self.class_names))
                if (self.labels == c).any()]


def device_used(run) -> str:
    """The device the run trained on: metrics.json's record, else what its 'device' setting picks here."""
    recorded = run.metrics.get("device") if isinstance(run.metrics, dict) else None
    if isinstance(recorded, str) and recorded:
        return recorded
    return str(pick_device(run.config.device))


def training_settings(run) -> list[tuple[str, object]]:
    """The training configuration as (key, value) rows: only the settings the chosen optimizer and schedule
    use, and the device actually used instead of 'auto'."""
    config = run.config
    rows = []
    for key, value in dataclasses.asdict(config).items():
        if key in OPTIMIZER_SETTINGS and config.optimizer not in OPTIMIZER_SETTINGS[key]:
            continue
        if key == "schedule_args" and config.schedule == "none":
            continue
        rows.append((key, device_used(run) if key == "device" else value))
    return rows


def config_section(run):
    """Training settings, data settings and the Keras-like model summary."""
    data = [(k, v) for k, v in dataclasses.asdict(run.data_config).items() if v is not None]
    settings = training_settings(run)
    return section("config", "Configuration and model", (
        '<div class="cols"><div><h3>Training</h3>' + table(settings) + '</div><div><h3>Data</h3>' + table(data)
        + '</div></div><h3>Model summary</h3><pre class="summary">' + esc(summary_table(run.spec)) + "</pre>"),
        settings=dict(settings))


def preprocessing_section(run, dataset):
    """What the run's preprocessing does to its data: the per-pixel mean and deviation, what a white pixel
    becomes, one test picture per class before and after, and how many test images lie far outside the
    training range."""
    info = summarize(dataset)
    far = info["test_far"]
    lo, hi = info["splits"]["test"]["preprocessed_range"]
    note = (f"preprocess {esc(info['preprocess'])}: test inputs range {lo:.3g}…{hi:.3g}; "
            f"{far['images']:,} test images hold a value beyond ±{far['limit']:g} or that far outside their "
            f"pixels' training range")
    body = img(figure_uri(preprocessing_figure(dataset)), "per-pixel mean and deviation, and what preprocessing "
               "does to one test picture per class", "wide")
    return section("preprocessing", "Preprocessing", body, note, preprocess=info["preprocess"], test_far=far)


def class_name(class_names: list[str], label: int) -> str:
    """The name of class `label`, or the number itself when it is out of range."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def _probe_epochs(epochs: list[int]) -> list[int]:
    if len(epochs) <= PROBE_ROWS:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, PROBE_ROWS)).astype(int))
    return [epochs[i] for i in picks]


def _probe_filters_png(weights: np.ndarray, peak: float) -> bytes:
    """One epoch's first-layer filters (maps, in, kh, kw) on the strip's one scale: one channel (or their mean) in
    blue/red; three colour channels as RGB pictures (mid-grey zero)."""
    if weights.shape[1] == 3:
        rgb = (0.5 + 0.5 * np.clip(weights / peak, -1, 1)).transpose(0, 2, 3, 1) * 255.0
        return pictures_png(rgb, min_cell=24)
    filters = weights[:, 0] if weights.shape[1] == 1 else weights.mean(axis=1)  # (maps, kh, kw)
    return tiles_png(filters, cmap="RdBu_r", symmetric=True, vmax=peak)


def probe_html(run, class_names: list[str]) -> str:
    """The 'watching it learn' strip of a run recorded with --probe (empty without one)."""
    probe = read_probe(run.path)
    if probe is None or not probe.epochs:
        return ""
    epochs = _probe_epochs(probe.epochs)
    peak = max(float(np.abs(probe.filters[e]).max()) for e in epochs) or 1.0
    head = "".join(f"<th>{esc(name)}</th>" for name in probe.layers)
    rows = []
    for epoch in epochs:
        cells = [f"<td>{png_img(_probe_filters_png(probe.filters[epoch], peak), 'filters')}</td>"]
        cells += [f"<td>{png_img(tiles_png(probe.maps[epoch][name]), name)}</td>" for name in probe.layers]
        rows.append(f"<tr><th>{'initial' if epoch == 0 else f'epoch {epoch}'}</th>{''.join(cells)}</tr>")
    label = class_name(class_names, probe.label)
    colour = probe.filters[epochs[0]].shape[1] == 3
    words = "RGB pictures, mid-grey zero" if colour else "blue negative, red positive"
    return (f'<div class="probe"><h3>Watching it learn: {probe.split} image {probe.index} (class {esc(label)})</h3>'
            f'<p class="note">{img(picture_uri(probe.image), "probe image", "px thumb")} Each row is one epoch: '
            f'the {esc(probe.filters_layer)} filters (one scale for all epochs; {words}) and the maps of every '
            f'conv and pool layer for this image.</p>'
            f'<div class="scroll"><table class="strip"><tr><th></th><th>{esc(probe.filters_layer)} filters</th>'
            f'{head}</tr>{"".join(rows)}</table></div></div>')


def loss_card(run) -> tuple[str, str]:
    """(label, value) of the headline loss: the test data loss, as the epoch lines and curves show it. A
    metrics.json written before the objective was kept apart (no "test_objective") holds data loss + penalty under
    "test_loss": labelled so when the model has a penalty."""
    metrics = run.metrics
    value = metrics.get("test_loss")
    if not isinstance(value, (int, float)):
        return "test loss", "–"
    reg = run.spec.regularizer
    if "test_objective" not in metrics and reg.kind != "none" and reg.coefficient:
        return f"test loss + {reg.kind.upper()} penalty", f"{value:.4f}"
    return "test loss", f"{value:.4f}"


def validation_note(run) -> str:
    """Which images the curves' validation figures (val_*) came from, in words."""
    source, data = run.history.get("val_source") or run.metrics.get("val_source"), run.data_config
    if source == "test":
        return ("The validation curves are measured on the test set: this run held out no validation images "
                "(--val-size), so they are test figures, not an estimate independent of the test set.")
    if source != "validation":
        return "This run did not record which images its validation curves were measured on."
    held = (f"{100 * data.val_fraction:g} % of each class" if data.val_fraction
            else f"{data.val_size:,} images" if data.val_size else "images")
    return f"The validation curves are measured on {held} held out of the training set (seed {data.seed})."


def training_section(run, class_names: list[str]):
    """Loss, accuracy and learning-rate curves (with the images their validation figures came from), and the
    probe strip when the run has one."""
    history = run.history
    if not history.get("epoch"):
        body = "<p>No completed epoch was recorded.</p>"
    else:
        body = (img(figure_uri(curves_figure(history), dpi=90), "training curves", "wide")
                + f'<p class="muted">{esc(validation_note(run))}</p>')
    return section("training", "Training curves and learning rate", body + probe_html(run, class_names))


def _accuracy_rows(class_names: list[str], confusion: np.ndarray) -> tuple[str, np.ndarray]:
    per_class = per_class_accuracy(confusion)
    rows = "".join(
        f'<tr><th>{esc(name)}</th><td class="bar"><span style="width:{100 * acc:.1f}%"></span></td>'
        f'<td class="num">{100 * acc:.2f} %</td><td class="num muted">{int(confusion[i].sum()):,}</td></tr>'
        for i, (name, acc) in enumerate(zip(class_names, per_class, strict=True)))
    return rows, per_class


def _gallery(tested: TestSet, found) -> str:
    names = tested.class_names
    return "".join(
        f'<figure>{img(picture_uri(tested.raw[i]), f"test image {i}", "px")}<figcaption>#{i}<br>'
        f'<b>{esc(names[t])}</b> → <span class="bad">{esc(names[p])}</span> {100 * c:.0f}%</figcaption></figure>'
        for i, t, p, c in zip(found.indices[:WORST], found.true, found.predicted, found.confidence, strict=False))


def results_section(tested: TestSet):
    """Test accuracy, per-class accuracy, the confusion matrix and the most confident mistakes
    (cnnscope.inspect.profile.mistakes, on the one pass's probabilities)."""
    found = mistakes(tested.probs, tested.labels)
    bars, per_class = _accuracy_rows(tested.class_names, found.confusion)
    shown = min(WORST, len(found.indices))
    matrix = figure_uri(confusion_figure(found.confusion.tolist(), tested.class_names), dpi=90)
    gallery = _gallery(tested, found) or "<p>None: every test image is classified correctly.</p>"
    body = (f'<p class="big">Test accuracy <b>{100 * found.accuracy:.2f} %</b> on {found.total:,} images '
            f'({len(found.indices):,} mistakes).</p><div class="cols"><div><h3>Per-class accuracy</h3>'
            f'<table class="acc"><tr><th>class</th><th></th><th>accuracy</th><th>images</th></tr>{bars}</table>'
            f'</div><div><h3>Confusion matrix</h3>{img(matrix, "confusion matrix")}</div></div>'
            f'<h3>{f"The {shown} most confident mistakes" if shown else "Mistakes"}</h3>'
            f'<p class="note">true class → predicted class, with the model\'s confidence.</p>'
            f'<div class="gallery">{gallery}</div>')
    return section("results", "Test results", body, accuracy=found.accuracy, per_class=per_class.tolist(),
                   confusion=found.confusion.tolist(), mistakes=int(len(found.indices)))
