"""Issue 23's projector goal for the classification and training figures at their hardest sizes: Fashion-MNIST's
long class names, 20 classes, 64-map layers, many classes. Every text at least MIN_PT, no text over another text
or over a panel it does not belong to, nothing outside the figure; confusion matrices keep their counts up to 20
classes and say so when they drop them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.text import Text

from cnnscope.inspect.classify import LayerClassification, PatternClassification, Readout
from cnnscope.inspect.profile import Misclassified, TopImages
from cnnscope.plots.figures import MIN_PT
from cnnscope.plots.profile import classify_figure, errors_figure, profile_figure, top_images_figure
from cnnscope.plots.training import confusion_figure, curves_figure
from figure_checks import smallest_text_pt

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TWENTY = FASHION + [f"{name} (v2)" for name in FASHION]


def drawn_texts(fig) -> list:
    """The (text, window box) of every non-empty text the figure's draw really puts on the canvas (tick labels
    outside an axis's range are not drawn, so they are not counted)."""
    boxes = []
    draw = Text.draw

    def record(self, renderer):
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            boxes.append((self, self.get_window_extent(renderer)))

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = draw
    return boxes


def _crossing(a, b) -> bool:
    """Two boxes share more than a pixel each way."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1


def layout_faults(fig) -> list[str]:
    """Texts over other texts, over a panel they do not belong to, or past the figure's edge."""
    texts = drawn_texts(fig)
    width, height = fig.canvas.get_width_height()
    faults = [f"{t.get_text()!r} past the edge" for t, box in texts
              if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]
    faults += [f"{a.get_text()!r} over {b.get_text()!r}" for i, (a, box_a) in enumerate(texts)
               for b, box_b in texts[i + 1:] if _crossing(box_a, box_b)]
    faults += [f"{t.get_text()!r} over a panel" for t, box in texts for ax in fig.axes
               if t.axes is not ax and _crossing(box, ax.get_window_extent())]
    return faults


def _confusion(k: int, diagonal: int = 1000, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).integers(0, 30, (k, k))
    matrix[np.diag_indices(k)] = diagonal
    return matrix


def _errors(k: int, shown: int = 36) -> Misclassified:
    rng = np.random.default_rng(1)
    return Misclassified(np.arange(shown) * 1237, rng.integers(0, k, shown), rng.integers(0, k, shown),
                         np.sort(rng.uniform(0.4, 1, shown))[::-1], rng.uniform(0, 0.3, shown), 10_000, _confusion(k))


def _pictures(n: int) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (n, 28, 28)).astype(np.uint8)


def _counts(ax) -> set[str]:
    return {t.get_text() for t in ax.texts}


@pytest.mark.parametrize("names", [FASHION, TWENTY], ids=["fashion", "20-classes"])
def test_confusion_keeps_four_digit_counts_at_min_pt(names):
    matrix = _confusion(len(names), diagonal=9999)
    fig = confusion_figure(matrix, names)
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []
    assert {"9999"} | {str(v) for v in matrix[matrix > 0]} == _counts(fig.axes[0])
    assert all(t.get_fontsize() >= MIN_PT for t in fig.axes[0].texts)


def test_confusion_of_many_classes_drops_its_counts_and_says_so():
    names = [f"class {i}" for i in range(47)]
    fig = confusion_figure(_confusion(47, diagonal=500), names)
    assert smallest_text_pt(fig) >= MIN_PT and layout_faults(fig) == []
    assert len(fig.axes[0].texts) == 0 and fig.axes[1].get_ylabel() == "count"  # the colour bar gives the counts
    assert any("left out" in t.get_text() for t in fig.texts)
    assert max(fig.get_size_inches()) < 12  # it grew to a sensible size, not 47 cells of 0.44 in


@pytest.mark.parametrize("names", [FASHION, TWENTY], ids=["fashion", "20-classes"])
def test_errors_figure_with_long_names(names):
    errors = _errors(len(names))
    fig = errors_figure(_pictures(36), errors, names)
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []
    matrix = fig.axes[0]  # drawn, not pasted as a picture: its counts are text at MIN_PT
    assert _counts(matrix) == {str(v) for v in errors.confusion[errors.confusion > 0]}
    assert len(fig.axes) == 1 + 36


@pytest.mark.parametrize("names", [[str(i) for i in range(10)], FASHION, TWENTY], ids=["digits", "fashion", "20"])
def test_classify_figure_with_long_names(names):
    k = len(names)
    layers = tuple(LayerClassification(layer, (16, 7, 7), (7, 7), 784, {kind: dict.fromkeys(
        ("nearest_cosine", "nearest_euclidean", "linear"), 0.8) for kind in ("pattern", "profile")},
        {"pattern": _confusion(k, 900), "profile": _confusion(k, 900)})
        for layer in ("input", "Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3"))
    found = PatternClassification(layers, 0.99, 1 / k, 0.11, 10_000, 10_000, (1000,) * k, Readout())
    fig = classify_figure(found, names, layer="Conv2D_2")
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []


@pytest.mark.parametrize("maps, names, order", [(16, [str(i) for i in range(10)], "index"), (64, FASHION, "index"),
                                                (128, TWENTY, "class")])
def test_profile_figure_of_wide_layers(maps, names, order):
    profile = np.random.default_rng(3).uniform(0, 1, (len(names), maps))
    profile[:, -2:] = 0  # two silent maps: the note under the figure
    fig = profile_figure(profile, names, layer="Conv2D_2", order=order, images=10_000, dead=[maps - 2, maps - 1])
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []


@pytest.mark.parametrize("n", [3, 16])
def test_top_images_with_long_names(n):
    rng = np.random.default_rng(4)
    top = TopImages("Conv2D_2", 5, np.arange(n) * 1001, np.sort(rng.uniform(0, 9, n))[::-1], np.zeros((n, 2), int),
                    np.tile([3, 4, 15, 16], (n, 1)), (12, 12))
    fig = top_images_figure(_pictures(n), top, labels=np.arange(n) % 10, class_names=FASHION, searched=10_000)
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []


def test_curves_legends_stay_off_the_curves_and_each_other():
    epochs = 12
    history = {"epoch": list(range(1, epochs + 1)), "loss": list(np.linspace(1, 0.1, epochs)),
               "data_loss": list(np.linspace(0.9, 0.1, epochs)), "val_data_loss": list(np.linspace(0.9, 0.2, epochs)),
               "accuracy": list(np.linspace(0.8, 0.99, epochs)), "val_accuracy": list(np.linspace(0.8, 0.98, epochs)),
               "val_source": "validation", "lr": list(np.geomspace(1e-2, 1e-5, 600))}
    fig = curves_figure(history)
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []
    for ax in fig.axes[:2]:  # each legend below its panel
        assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0
