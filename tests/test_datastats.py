"""inspect.datastats: per-pixel statistics, what preprocessing makes of a white pixel, far-out inputs, edge share;
plots.data: the preprocessing figure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib.text import Text

from cnnscope.base.errors import DataError, RunError
from cnnscope.data.dataset import PREPROCESS, Preprocessor, mean_std
from cnnscope.inspect.datastats import (
    class_examples,
    edge_share,
    outside_training_range,
    pixel_stats,
    preprocessing_arrays,
    white_pixel_value,
)
from cnnscope.model.zoo import get_preset


def _train() -> np.ndarray:
    images = np.zeros((50, 6, 6), np.uint8)
    images[:, 2:4, 2:4] = (np.arange(50) * 5)[:, None, None]
    images[0, 0, 0] = 20  # a rarely, faintly inked border pixel
    return images


def test_pixel_stats_per_pixel():
    images = _train()
    stats = pixel_stats(images[:, None])  # (n, 1, H, W) too
    assert np.allclose(stats.mean, images.mean(axis=0)) and np.allclose(stats.std, images.std(axis=0))
    assert stats.low[2, 2] == 0 and stats.high[2, 2] == 245 and stats.high[5, 5] == 0
    summary = stats.to_dict()
    assert summary["images"] == 50 and summary["never_inked_pixels"] == 36 - 4 - 1
    with pytest.raises(DataError, match=r"shape \(n, H, W\) or \(n, H, W, C\) with n ≥ 1, received \(0, 6, 6\)"):
        pixel_stats(np.zeros((0, 6, 6), np.uint8))


@given(st.integers(1, 40), st.integers(1, 9), st.sampled_from([1, 3]), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_chunked_mean_and_deviation_are_numpy_s(n, chunk, channels, seed):
    """mean_std works `chunk` images at a time (no float64 copy of the whole set): numpy's figures, any chunking."""
    x = np.random.default_rng(seed).integers(0, 256, (n, channels, 5, 4), dtype=np.uint8)
    mean, std = mean_std(x, chunk=chunk)
    np.testing.assert_allclose(mean, x.mean(axis=0, dtype=np.float64), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, x.std(axis=0, dtype=np.float64), rtol=0, atol=1e-9)


def test_white_pixel_shows_the_border_blow_up():
    images = _train()
    white = white_pixel_value(Preprocessor.fit("standard", images), (6, 6))
    floored = white_pixel_value(Preprocessor.fit("standard-floor", images), (6, 6))
    assert white[0, 0] > 50 and white[2, 2] < 3  # rare border ink: ~90 σ; the inked centre: under 3
    assert white[5, 5] == 255  # never inked: deviation 0 -> scale 1, so white stays 255
    assert floored.max() < 20 and np.isclose(white_pixel_value(Preprocessor.fit("unit", images), (6, 6)), 1).all()


def test_preprocessing_arrays_and_input_untouched():
    images = _train()
    before = images.copy()
    pre = Preprocessor.fit("global", images)
    arrays_ = preprocessing_arrays(pre, images)
    assert np.array_equal(images, before)
    assert set(arrays_) == {"mean", "std", "scale", "white", "train_max"}
    assert arrays_["scale"].shape == (6, 6) and np.allclose(arrays_["scale"], images.std())
    assert np.isclose(arrays_["train_max"].max(), pre(images).max())


def test_outside_training_range_flags_stray_border_ink():
    images = _train()
    pre = Preprocessor.fit("standard", images)
    stray = np.zeros((2, 6, 6), np.uint8)
    stray[1, 0, 5] = 255  # a pixel never inked in training
    result = outside_training_range(pre, stray, pixel_stats(images))
    assert result.far.tolist() == [False, True]
    assert result.max_value[1] == 255 and result.excess[1] == 255 and result.excess[0] == 0
    assert np.isclose(result.outside_fraction[1], 1 / 36)
    assert result.to_dict()["images"][1]["far"] is True
    no_stats = outside_training_range(pre, stray)
    assert no_stats.excess is None and no_stats.far.tolist() == [False, True]
    clip = outside_training_range(Preprocessor.fit("standard-clip", images), stray)  # the range travels with it
    assert clip.excess[1] == 255 and clip.max_value[1] == clip.max_value[0]  # clipped away: seen as blank
    with pytest.raises(RunError, match="limit must be a positive number, received 0"):
        outside_training_range(pre, stray, limit=0)


@settings(max_examples=25)
@given(arrays(np.uint8, (3, 6, 6)), st.sampled_from(PREPROCESS))
def test_training_images_are_never_outside_their_range(extra, kind):
    images = np.concatenate([_train(), extra])
    result = outside_training_range(Preprocessor.fit(kind, images), images, pixel_stats(images))
    assert (result.excess <= 1e-3).all() and (result.outside_fraction == 0).all()


def test_edge_share_uses_receptive_field_centres():
    spec = get_preset("seed-iv")  # Conv2D_1: 3×3 valid, centres 1..26 on a 28×28 image
    locations = np.array([[0, 13], [2, 13], [3, 13], [13, 13], [25, 25], [13, 22]])
    # centres (1, 14), (3, 14), (4, 14), (14, 14), (26, 26), (14, 23): within 3 px of the edge: rows 0, 1, 4
    assert edge_share(spec, "Conv2D_1", locations, margin=3) == pytest.approx(3 / 6)
    assert edge_share(spec, "Conv2D_1", locations, margin=1) == pytest.approx(2 / 6)
    assert edge_share(spec, "Conv2D_1", np.zeros((0, 2), int)) == 0.0


def test_class_examples():
    labels = np.array([2, 0, 2, 1, 0, 2])
    assert class_examples(labels, 4, per_class=2).tolist() == [1, 4, 3, 0, 2]


def test_preprocessing_figure(tmp_path):
    from cnnscope.plots.data import preprocessing_figure
    from cnnscope.plots.figures import save_figure_as

    images = _train()
    pre = Preprocessor.fit("standard-floor", images)
    picks = np.array([0, 10])
    fig = preprocessing_figure(preprocessing_arrays(pre, images), pre.kind, images[picks], pre(images[picks])[:, 0],
                               np.array([0, 1]), ("zero", "one"))
    texts = [t.get_text() for ax in fig.axes for t in [ax.title]]
    assert "zero" in texts and "one" in texts and any("a white pixel becomes" in t for t in texts)
    assert fig._suptitle.get_text() == "preprocessing: standard-floor"
    path = save_figure_as(fig, tmp_path / "pre.png")[0]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="preprocessing_figure needs arrays white"):
        preprocessing_figure({"mean": images[0], "scale": images[0]}, "standard")


@pytest.mark.parametrize("kind", ["unit", "standard"])
def test_preprocessing_figure_reads_at_a_glance(kind):
    """Projector check (issue 23): no text under 9 pt, no flat colour square (a constant is written instead),
    labelled rows, and 'after' pictures that look like the 'before' ones when nothing is negative."""
    from cnnscope.plots.data import preprocessing_section_figure
    from figure_checks import flat_panel_share, smallest_text_pt

    images = np.clip(_train().astype(np.int64) * 8, 0, 255).astype(np.uint8)  # every picture visibly inked
    labels = np.arange(len(images)) % 2
    pre = Preprocessor.fit(kind, images)
    fig = preprocessing_section_figure(pre, images, images, labels, ("zero", "one"), per_class=3)
    assert smallest_text_pt(fig) >= 9
    assert flat_panel_share(fig) == 0
    words = " ".join(t.get_text() for t in fig.findobj(Text))
    assert "before\n0 … 255" in words and "after\n" in words
    assert ("at every pixel" in words) == (kind == "unit")
    after = [ax.images[0] for ax in fig.axes if ax.get_ylabel().startswith("after")]
    assert after and all(image.get_cmap().name == ("gray" if kind == "unit" else "RdBu_r") for image in after)


def test_top_edge_share_matches_top_images(trained_run, data_dir):
    import cnnscope
    from cnnscope.inspect.datastats import top_edge_share
    from cnnscope.inspect.profile import top_images

    run = cnnscope.load_run(trained_run)
    x = run.dataset(data_dir).test_x[:120]
    layer = "Conv2D_1"
    result = top_edge_share(run.model, layer, x, k=5, margin=3, batch_size=50)
    tops = [top_images(run.model, layer, m, x, k=5) for m in range(result["maps"])]
    locations = np.concatenate([t.locations for t in tops])
    assert result["edge_share"] == edge_share(run.spec, layer, locations, 3)
    assert result["positions"] == 5 * result["maps"]
    assert np.isclose(result["max_peak"], max(t.values.max() for t in tops))


def test_preprocessing_section_figure_in_one_call():
    from cnnscope.plots.data import preprocessing_section_figure

    images = _train()
    labels = np.arange(50) % 3
    fig = preprocessing_section_figure(Preprocessor.fit("standard", images), images, images, labels, ("a", "b", "c"),
                                       per_class=2)
    titles = [ax.title.get_text() for ax in fig.axes]
    assert titles.count("a") == 2 and titles.count("c") == 2 and fig._suptitle.get_text() == "preprocessing: standard"


def _specks_at_the_border(n: int = 200) -> np.ndarray:
    """Training images inked in the middle, with one speck at (0, 0) in a single image: a tiny deviation there."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 8:20, 10:18] = rng.integers(150, 256, (n, 12, 8))
    images[0, 0, 0] = 40
    return images


def test_range_warnings_name_a_picture_far_outside_training():
    from cnnscope.inspect.datastats import range_warnings

    picture = np.zeros((28, 28), np.uint8)
    picture[0, 0] = 255  # ink where training almost never had any
    standard = Preprocessor.fit("standard", _specks_at_the_border())
    warnings = range_warnings(standard, picture)
    assert len(warnings) == 1 and warnings[0].startswith("warning: after the run's standard preprocessing")
    assert "the prediction says little" in warnings[0]
    assert range_warnings(Preprocessor.fit("unit", _specks_at_the_border()), picture) == []
    inside = np.zeros((28, 28), np.uint8)
    inside[8:20, 10:18] = 200
    assert range_warnings(standard, inside) == []


