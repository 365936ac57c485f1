"""The deletion test's image-only baseline (brightness), its curves and areas, and the verdict: a method passes
on an image only when its deletion AUC is below the brightness ranking's by BEAT_MARGIN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError
from cnnscope.inspect.deletion import (
    BEAT_MARGIN,
    CRITERION,
    FRACTIONS,
    Curves,
    DeletionResult,
    brightness_map,
    curve_area,
    deletion_score,
)


def test_brightness_ranks_by_distance_from_black_on_raw_pixels():
    raw = np.array([[[0, 200, 50], [255, 10, 0]]], np.uint8)  # (1, 2, 3)
    heat = brightness_map(raw)
    assert heat.shape == (1, 2, 3) and heat.dtype == np.float32
    order = np.argsort(-heat.ravel(), kind="stable")
    assert order.tolist() == [3, 1, 2, 4, 0, 5]  # 255, 200, 50, 10, then the two black pixels
    # the distance from another background value: 200 is nearest to 200, both blacks farthest
    assert np.argsort(brightness_map(raw, background=200).ravel(), kind="stable")[0] == 1
    np.testing.assert_allclose(brightness_map(raw, background=255)[0, 0], [255, 55, 205])


def test_brightness_of_colour_pixels_is_their_luminance():
    raw = np.zeros((1, 1, 4, 3), np.uint8)
    raw[0, 0, 0] = (255, 0, 0)  # red
    raw[0, 0, 1] = (0, 255, 0)  # green: the brightest to the eye
    raw[0, 0, 2] = (0, 0, 255)  # blue: the darkest
    raw[0, 0, 3] = (255, 255, 255)  # white
    heat = brightness_map(raw)[0, 0]
    np.testing.assert_allclose(heat, [0.299 * 255, 0.587 * 255, 0.114 * 255, 255], rtol=1e-5)
    assert np.argsort(-heat).tolist() == [3, 1, 0, 2]
    with pytest.raises(ConfigError, match=r"expected raw images \(n, H, W\) or \(n, H, W, C\), received shape "
                                          r"\(28, 28\)"):
        brightness_map(np.zeros((28, 28)))


def test_curve_area_is_the_mean_along_the_curve():
    f = (0, 0.25, 0.5)
    assert curve_area(f, np.array([0.7, 0.7, 0.7])) == pytest.approx(0.7)
    assert curve_area(f, np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert curve_area(f, np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)  # a fast fall: a small area
    # uneven steps are weighted by their width; many curves at once
    np.testing.assert_allclose(curve_area((0, 0.1, 0.5), np.array([[0, 1, 1], [1, 1, 1]])), [0.9, 1.0])
    with pytest.raises(ConfigError, match="need at least 2 increasing fractions and one value per fraction, "
                                          r"received 3 fractions and curves of shape \(2,\)"):
        curve_area(f, np.array([1.0, 0.0]))


def _result(method: list[float], brightness: list[float], random: list[float]) -> DeletionResult:
    """A hand-made result for one image: three deletion curves over 0, 25 %, 50 % (insertion: 1 − deletion)."""
    curves = {name: Curves(np.array([values]), 1 - np.array([values]))
              for name, values in (("method", method), ("brightness", brightness), ("random", random))}
    return DeletionResult(np.array([0, 0.25, 0.5]), np.array([3]), np.array([0.9]), curves)


def test_the_verdict_needs_a_lower_deletion_auc_than_brightness():
    # AUCs: method 0.275, brightness 0.5, random 0.9: passes, and beats random
    won = _result([0.9, 0.1, 0.0], [0.9, 0.5, 0.1], [0.9, 0.9, 0.9])
    assert won.passes.tolist() == [True] and won.beats_random.tolist() == [True]
    one = won.summary(0)
    assert one["verdict"] == "passes" and one["passes"] is True and one["beats_brightness"] is True
    assert one["rankings"]["method"]["deletion_auc"] == pytest.approx(0.275)
    assert one["rankings"]["brightness"]["deletion_auc"] == pytest.approx(0.5)
    assert one["insertion_beats_brightness"] is True and one["brightness_beats_random"] is True
    assert one["criterion"] == CRITERION and one["fractions"] == [0, 0.25, 0.5]
    # beating random is not enough: brightness (no model) does better
    lost = _result([0.9, 0.5, 0.2], [0.9, 0.1, 0.0], [0.9, 0.9, 0.9])
    assert lost.passes.tolist() == [False] and lost.beats_random.tolist() == [True]
    assert lost.summary(0)["verdict"] == "fails"
    # a difference inside the margin is no win
    close = BEAT_MARGIN / 2
    tie = _result([0.9, 0.5 - 2 * close, 0.1], [0.9, 0.5, 0.1], [0.9, 0.9, 0.9])
    assert tie.auc("brightness")[0] - tie.auc("method")[0] == pytest.approx(close)
    assert tie.passes.tolist() == [False]


def test_the_summary_over_many_images_gives_shares():
    curves = {"method": Curves(np.array([[1, 0.2, 0], [1, 0.9, 0.9]]), np.zeros((2, 3))),
              "brightness": Curves(np.array([[1, 0.5, 0.5], [1, 0.5, 0.5]]), np.zeros((2, 3))),
              "random": Curves(np.array([[1, 1, 1], [1, 0.9, 0.9]]), np.zeros((2, 3)))}
    result = DeletionResult(np.array([0, 0.25, 0.5]), np.array([1, 2]), np.array([1.0, 1.0]), curves)
    summary = result.summary()
    assert summary["images"] == 2 and summary["passes"] == 0.5 and summary["beats_random"] == 0.5
    assert summary["rankings"]["method"]["deletion"] == pytest.approx([1, 0.55, 0.45])
    assert "verdict" not in summary


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


def test_the_brightness_curve_blanks_and_inserts_the_brightest_pixels_first(run):
    """A synthetic image: 39 pixels at 255 (5 % of 784), the rest dimmer. At 5 % the brightness ranking has
    blanked exactly those 39 pixels (deletion) or put exactly them into a black image (insertion)."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 200, (1, 28, 28)).astype(np.uint8)
    bright = rng.choice(784, 39, replace=False)
    raw.reshape(-1)[bright] = 255
    x = run.preprocessor(raw)  # (1, 1, 28, 28)
    blank = run.preprocessor(np.zeros((1, 28, 28), np.uint8))[0]
    result = deletion_score(run.model, x, rng.random((1, 28, 28)), raw=raw, blank=blank, target=7,
                            fractions=(0, 0.05, 0.5), random_draws=1)
    hit = np.zeros(784, bool)
    hit[bright] = True
    hit = hit.reshape(1, 1, 28, 28)
    deleted, inserted = np.where(hit, blank, x), np.where(hit, x, blank)
    with torch.no_grad():
        p = run.model.probabilities(run.model(torch.as_tensor(np.concatenate([deleted, inserted]),
                                                              dtype=torch.float32)))[:, 7].numpy()
    curves = result.curves["brightness"]
    np.testing.assert_allclose([curves.deletion[0, 1], curves.insertion[0, 1]], p, rtol=1e-5)
    assert result.fractions.tolist() == [0, 0.05, 0.5] and FRACTIONS[-1] == 0.5 and len(FRACTIONS) == 11
