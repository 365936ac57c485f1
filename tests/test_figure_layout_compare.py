"""Issue 23 for the compare and patterns figures at their large cases: every text at MIN_PT or more, no two texts
overlapping, nothing cut off at the figure's edge; the runs' matrix keeps its per-cell numbers for a study of
12 runs and says so when it has to leave them out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.text import Text

from cnnscope.plots.compare import compare_figure, found_figure, matrix_figure
from cnnscope.plots.figures import MIN_PT
from cnnscope.plots.patterns import patterns_figure
from figure_checks import smallest_text_pt


def _texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def layout_faults(fig) -> list[str]:
    """Pairs of upright texts whose boxes overlap, and texts reaching past the figure's edge."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer), t.get_rotation()) for t in _texts(fig)]
    faults = [f"overlap: {a!r} / {b!r}" for (a, box_a, rot_a), (b, box_b, rot_b) in itertools.combinations(boxes, 2)
              if rot_a == rot_b == 0 and box_a.overlaps(box_b)]  # tilted names' upright boxes overlap by design
    return faults + [f"cut off: {text!r}" for text, box, _ in boxes
                     if box.x0 < 0 or box.y0 < 0 or box.x1 > fig.bbox.width or box.y1 > fig.bbox.height]


def _readable(fig) -> None:
    assert smallest_text_pt(fig) >= MIN_PT
    assert layout_faults(fig) == []


def _matrix(n: int, rng) -> tuple:
    matrix = rng.uniform(0, 1, (n, n))
    np.fill_diagonal(matrix, 1.0)
    names = [f"trials/{i:04d}" for i in range(n)]
    return matrix, names, rng.integers(0, 32, (n, n)), rng.uniform(0, 0.5, (n, n)), rng.integers(0, 5, (n, n))


@pytest.mark.parametrize("n", [2, 3, 8, 12])
def test_matrix_keeps_every_number_up_to_a_study_of_twelve(n):
    matrix, names, above, base, base_above = _matrix(n, np.random.default_rng(n))
    fig = matrix_figure(matrix, names, "Conv2D_1", images=1000, above=above, baseline=base,
                        baseline_above=base_above)
    _readable(fig)
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert len(cells) == n * n and sum("> 0.9" in c for c in cells) == n * n - n  # the diagonal has no count
    assert max(fig.get_size_inches()) < 13


@pytest.mark.parametrize(("n", "words"), [(20, "left out"), (40, "no numbers")])
def test_matrix_of_many_runs_drops_numbers_and_says_so(n, words):
    matrix, names, above, base, base_above = _matrix(n, np.random.default_rng(n))
    fig = matrix_figure(matrix, names, "Conv2D_1", above=above, baseline=base, baseline_above=base_above)
    _readable(fig)
    assert not any("> 0.9" in t.get_text() for t in fig.axes[0].texts)
    assert any(words in t.get_text() for t in fig.texts)
    assert max(fig.get_size_inches()) < 13


@pytest.mark.parametrize("maps", [8, 64])
def test_compare_figure_is_readable(maps):
    rng = np.random.default_rng(maps)
    corr = rng.uniform(-0.3, 1, (maps, maps))
    matching = [(i, (i * 7) % maps, float(corr[i, (i * 7) % maps])) for i in range(maps)]
    result = {"layer": "Conv2D_2", "images": 1000, "matching": matching, "mean_correlation": 0.55, "pairs": maps,
              "matched_above_0.9": 1, "constant_map_indices_a": [1], "constant_map_indices_b": [7 % maps],
              "constant_pairs": 1, "baseline": {"mean_correlation": 0.2, "matched_above_0.9": 0}}
    fig = compare_figure(rng.integers(0, 255, (28, 28)), rng.random((maps, 11, 11)), rng.random((maps, 11, 11)),
                         result, source="test image 0 (class Ankle boot)", correlation=corr,
                         baseline_r=rng.uniform(-0.2, 0.6, maps))
    _readable(fig)


@pytest.mark.parametrize(("maps", "kernels"), [(8, True), (64, False)])
def test_found_figure_is_readable(maps, kernels):
    rng = np.random.default_rng(maps)
    others = 11
    fig = found_figure(rng.random((maps, 12, 12)), rng.integers(0, others + 1, maps).tolist(),
                       rng.uniform(0, 1, (maps, others)).tolist(), others=others, layer="Conv2D_1",
                       name="trials/0000", kernels=rng.normal(size=(maps, 5, 5)) if kernels else None,
                       constant=[i == 3 for i in range(maps)], source="test image 0 (class T-shirt/top)",
                       initial_found=1)
    _readable(fig)


@pytest.mark.parametrize(("maps", "cols", "shape"), [(6, 8, (28, 28)), (64, 16, (28, 28)), (8, 8, (32, 32, 3))])
def test_patterns_figure_is_readable(maps, cols, shape):
    rng = np.random.default_rng(maps)
    subtitle = ("under each: map number, mean activation reached; grey: the map's 99th percentile over 10,000 test "
                "images (\"dead\": 0 on every one).\n75% of 6 live maps beat every test image. Raw pixels 0..255.")
    fig = patterns_figure(rng.uniform(0, 255, (maps, *shape)), list(range(maps)), rng.uniform(0, 30, maps),
                          layer="Conv2D_2", reference=rng.uniform(0, 0.01, maps), cols=cols,
                          dead=[i % 5 == 2 for i in range(maps)], subtitle=subtitle,
                          title="Conv2D_2: input patterns that maximise each map  (fashion-mnist-run)")
    _readable(fig)
