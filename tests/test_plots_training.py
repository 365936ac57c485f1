"""Training figures: curves, confusion matrix, and the live-plot callback for notebooks."""

from __future__ import annotations

import types

import numpy as np

import cnnscope
from cnnscope.plots import LivePlot, confusion_figure, curves_figure, plot_curves

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = {"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.3], "accuracy": [0.6, 0.8, 0.9], "val_loss": [0.8, 0.6, 0.5],
           "val_accuracy": [0.7, 0.85, 0.88], "lr": list(np.geomspace(1e-2, 1e-5, 30))}


def test_curves_compare_the_data_losses_and_dash_the_objective():
    history = {**HISTORY, "data_loss": [0.9, 0.4, 0.2], "val_data_loss": [0.7, 0.5, 0.4], "val_source": "test"}
    ax = curves_figure(history).axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines) == ["train: data loss, during the epoch",
                           "test set (no validation split): data loss, end of epoch",
                           "train objective: + label smoothing, L2 (if set)"]
    assert [list(line.get_ydata()) for line in lines.values()] == [[0.9, 0.4, 0.2], [0.7, 0.5, 0.4], [1.0, 0.5, 0.3]]
    assert [line.get_linestyle() for line in lines.values()] == ["-", "-", "--"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)


def test_curves_of_an_older_run_say_what_their_two_losses_hold():
    ax = curves_figure(HISTORY).axes[0]  # no data_loss: a run trained before it was recorded
    assert [line.get_label() for line in ax.lines] == ["train objective: data loss + label smoothing, L2 (if set)",
                                                       "validation (source not recorded): data loss + L2 (if set)"]
    assert ax.lines[0].get_linestyle() == "--"


def test_curves_name_their_validation_data_and_show_one_epoch_as_points():
    one = {"epoch": [1], "loss": [0.5], "accuracy": [0.8], "val_loss": [0.4], "val_accuracy": [0.85],
           "data_loss": [0.45], "val_data_loss": [0.4], "lr": [1e-3] * 10, "val_source": "validation"}
    fig = curves_figure(one)
    accuracy = {line.get_label(): line for line in fig.axes[1].lines}
    assert "validation (held out of training)" in accuracy
    assert all(line.get_marker() == "o" and line.get_markersize() >= 6 for line in accuracy.values())
    ticks = curves_figure(HISTORY).axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)  # whole epochs only


def test_curves_file_callback_warns_when_curves_png_cannot_be_written(tmp_path, caplog):
    from cnnscope.plots.training import CurvesFile

    (tmp_path / "curves.png").mkdir()  # a directory where the file goes: the write fails
    CurvesFile("curves.png")(types.SimpleNamespace(history=HISTORY, run_dir=tmp_path))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage().startswith(f"{tmp_path / 'curves.png'} not updated (")


def test_live_plot_outside_a_notebook_says_once_what_it_does_instead(tmp_path, caplog):
    LivePlot(display=lambda png, first: None)
    assert caplog.records == []  # a display hook: it shows the pictures, nothing to say
    live = LivePlot(path=tmp_path / "live.png")
    assert [r.getMessage() for r in caplog.records] == [
        "LivePlot: not in a notebook, so nothing is shown; the latest curves are kept as PNG bytes in its .png and "
        f"written to {tmp_path / 'live.png'} after every epoch"]
    for epoch in (1, 2):
        live(types.SimpleNamespace(history={k: v[:epoch] for k, v in HISTORY.items()}))
    assert len(caplog.records) == 1 and live.frames == 2


def test_curves_figure_has_loss_accuracy_and_a_log_lr_axis(tmp_path):
    fig = curves_figure(HISTORY)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Loss", "Accuracy", "Learning rate"]
    assert fig.axes[2].get_yscale() == "log"  # the LR spans 3 decades
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    path = plot_curves(HISTORY, tmp_path / "c.png")
    assert path.read_bytes()[:8] == PNG


def test_confusion_figure_shows_every_count():
    matrix = [[5, 1], [0, 7]]
    fig = confusion_figure(matrix, ["cat", "dog"])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"5", "1", "7"} <= texts


def test_live_plot_redraws_each_epoch_through_the_display_hook(tmp_path):
    shown = []
    live = LivePlot(path=tmp_path / "live.png", display=lambda png, first: shown.append((png[:8], first)))
    for epoch in (1, 2):
        log = types.SimpleNamespace(history={k: v[:epoch] for k, v in HISTORY.items()})
        live(log)
    assert shown == [(PNG, True), (PNG, False)] and live.frames == 2
    assert (tmp_path / "live.png").read_bytes() == live.png


def test_live_plot_as_a_training_callback_outside_a_notebook(data_dir, tiny_spec, tmp_path):
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir, limit_train=200, limit_test=50)
    live = cnnscope.LivePlot()
    cnnscope.train(tiny_spec, ds, cnnscope.TrainConfig(epochs=2, batch_size=50), out=tmp_path / "r",
                   callbacks=[live], progress=False, plot=False)
    assert live.frames == 2 and live.png[:8] == PNG
