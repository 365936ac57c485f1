"""Activation arrays and grids, display norms, user pictures, conv filters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError, DataError, SpecError
from cnnscope.data.picture_input import dataset_image, load_picture, mnist_format
from cnnscope.inspect import (
    activation_grid,
    activations,
    capture,
    conv_filters,
    display_maps,
    map_layers,
    standardize_maps,
)


def _maps(n: int, h: int = 5, w: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, h, w)).astype(np.float32)


# --- activation_grid ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [32, 64, 128])
def test_grid_shape_for_the_series_layers(n):
    maps = _maps(n, 3, 3)
    grid = activation_grid(maps)
    assert grid.shape == (n // 8 * 3, 8 * 3)
    assert not np.isnan(grid).any()


@pytest.mark.parametrize("n", [1, 5, 13, 100])
@pytest.mark.parametrize("cols", [8, 3])
def test_grid_keeps_every_map_in_its_place_and_pads_with_nan(n, cols):
    h, w = 4, 6
    maps = _maps(n, h, w, seed=n)
    grid = activation_grid(maps, cols=cols)
    rows = math.ceil(n / cols)
    assert grid.shape == (rows * h, cols * w)
    for k in range(n):
        r, c = divmod(k, cols)
        np.testing.assert_array_equal(grid[r * h:(r + 1) * h, c * w:(c + 1) * w], maps[k])
    empty = rows * cols - n
    assert np.isnan(grid).sum() == empty * h * w
    for k in range(n, rows * cols):
        r, c = divmod(k, cols)
        assert np.isnan(grid[r * h:(r + 1) * h, c * w:(c + 1) * w]).all()


def test_grid_with_more_cols_than_maps_is_one_padded_row():
    grid = activation_grid(_maps(5, 2, 2), cols=8)
    assert grid.shape == (2, 16)
    assert np.isnan(grid[:, 10:]).all() and not np.isnan(grid[:, :10]).any()


@pytest.mark.parametrize("cols", [0, -1, 2.5, True])
def test_grid_rejects_bad_cols(cols):
    with pytest.raises(ConfigError, match="cols must be a positive integer"):
        activation_grid(_maps(4), cols=cols)


def test_grid_rejects_batched_input():
    with pytest.raises(ConfigError, match=r"\(maps, h, w\)"):
        activation_grid(np.zeros((2, 3, 4, 4)))


def test_scale_is_the_series_standardisation_clipped_to_0_255():
    maps = _maps(13, 6, 6) * 50 + 3
    maps[4] = 7.5  # zero std
    maps[6, 0, 0] = 1e4  # an outlier that must be clipped
    grid = activation_grid(maps, cols=3, scale=True)
    values = grid[~np.isnan(grid)]
    assert values.min() >= 0 and values.max() <= 255
    assert values.max() == 255  # the outlier hits the clip
    scaled = standardize_maps(maps)
    np.testing.assert_array_equal(scaled[4], np.full((6, 6), 128.0, np.float32))  # constant, not NaN
    k = 2
    expected = np.clip((maps[k] - maps[k].mean()) / maps[k].std() * 64 + 128, 0, 255)
    np.testing.assert_allclose(scaled[k], expected, rtol=1e-5, atol=1e-3)
    r, c = divmod(4, 3)
    assert (grid[r * 6:(r + 1) * 6, c * 6:(c + 1) * 6] == 128).all()


# --- display_maps ------------------------------------------------------------------------------------------------
def test_layer_norm_is_one_range_for_all_maps():
    maps = np.abs(_maps(6))
    d = display_maps(maps, "layer")
    assert (d.vmin, d.vmax) == (pytest.approx(maps.min()), pytest.approx(maps.max()))
    np.testing.assert_array_equal(d.values, maps)
    assert not d.signed


def test_signed_maps_get_a_range_centred_on_zero():
    maps = _maps(6) + 0.5
    d = display_maps(maps, "layer")
    assert d.signed and d.vmin == -d.vmax == pytest.approx(-np.abs(maps).max())
    m = display_maps(maps, "map")
    assert (m.vmin, m.vmax) == (-1.0, 1.0)
    np.testing.assert_allclose(np.abs(m.values).max(axis=(1, 2)), 1.0)


def test_map_norm_gives_each_map_its_own_range():
    maps = np.abs(_maps(5)) * np.arange(1, 6)[:, None, None]
    maps[2] = 3.0
    d = display_maps(maps, "map")
    assert (d.vmin, d.vmax) == (0.0, 1.0)
    for k in (0, 1, 3, 4):
        assert d.values[k].min() == 0 and d.values[k].max() == pytest.approx(1.0)
    assert (d.values[2] == 0).all()


def test_fixed_norm_clips_and_says_so():
    maps = np.linspace(-2, 5, 60, dtype=np.float32).reshape(3, 4, 5)
    d = display_maps(maps, "fixed", (0.0, 3.0))
    assert (d.vmin, d.vmax, d.extend) == (0.0, 3.0, "both")
    assert d.values.min() == 0 and d.values.max() == 3
    assert display_maps(maps, "fixed", (-5, 10)).extend == "neither"
    with pytest.raises(ConfigError, match="LO < HI"):
        display_maps(maps, "fixed", (3, 1))
    with pytest.raises(ConfigError, match="needs a range"):
        display_maps(maps, "fixed")


def test_norm_errors_list_valid_choices():
    with pytest.raises(ConfigError, match="unknown norm 'nope'; valid: map, layer, fixed"):
        display_maps(_maps(2), "nope")
    with pytest.raises(ConfigError, match="cannot be combined"):
        display_maps(_maps(2), "layer", scale=True)
    d = display_maps(_maps(2), "map", scale=True)
    assert (d.vmin, d.vmax) == (0.0, 255.0) and d.values.min() >= 0 and d.values.max() <= 255


# --- activations and hooks ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def test_x(run, data_dir):
    return run.dataset(data_dir).test_x[:40]


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_activations_shapes_follow_the_spec(run, test_x):
    for info in run.spec.layers():
        out = activations(run.model, info.name, test_x[:3])
        assert out.shape == (3, *info.output_shape), info.name
        assert out.dtype == np.float32


def test_activations_match_a_manual_forward_pass(run, test_x):
    model = run.model
    x = torch.from_numpy(test_x[:5])
    block = model.layers["Conv2D_1"]
    with torch.no_grad():
        pre = block.conv(block.pad(x)).numpy()
    np.testing.assert_allclose(activations(model, "Conv2D_1", test_x[:5]), np.maximum(pre, 0), atol=1e-5)
    signed = activations(model, "Conv2D_1", test_x[:5], pre_activation=True)
    np.testing.assert_allclose(signed, pre, atol=1e-5)
    assert signed.min() < 0  # a ReLU layer's input is signed


def test_batches_give_the_same_result(run, test_x):
    whole = activations(run.model, "Conv2D_2", test_x)
    np.testing.assert_allclose(activations(run.model, "Conv2D_2", test_x, batch_size=7), whole, atol=1e-6)


def test_hooks_leave_predictions_unchanged_and_are_removed(run, test_x):
    model = run.model
    before_hooks = _hook_count(model)
    with torch.no_grad():
        before = model(torch.from_numpy(test_x)).numpy()
    for layer in map_layers(model) + ["Dense_1"]:
        activations(model, layer, test_x)
        activations(model, layer, test_x, pre_activation=layer.startswith(("Conv", "Dense")))
    with torch.no_grad():
        outputs, logits = capture(model, ["Conv2D_1", "Conv2D_3"], torch.from_numpy(test_x))
        after = model(torch.from_numpy(test_x)).numpy()
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(logits.numpy(), before, atol=1e-6)
    assert set(outputs) == {"Conv2D_1", "Conv2D_3"}
    assert _hook_count(model) == before_hooks == 0
    assert not model.training


def test_hooks_are_removed_after_an_exception(run):
    model = run.model
    bad = np.zeros((2, 3, 28, 28), np.float32)  # three channels: the first conv raises
    with pytest.raises(RuntimeError):
        activations(model, "Conv2D_2", bad)
    with pytest.raises(RuntimeError):
        capture(model, ["Conv2D_1", "Dense_1"], torch.from_numpy(bad))
    assert _hook_count(model) == 0
    assert not model.training


def test_stop_early_skips_the_rest_of_the_model(run, test_x):
    outputs, logits = capture(run.model, ["Conv2D_1"], torch.from_numpy(test_x[:2]), stop_early=True)
    assert logits is None and outputs["Conv2D_1"].shape[0] == 2


def test_wrong_layer_name_lists_the_valid_names(run, test_x):
    with pytest.raises(SpecError, match=r"unknown layer 'Conv2D_9'; valid: Conv2D_1, Max_Pool_1, Conv2D_2"):
        activations(run.model, "Conv2D_9", test_x[:1])
    with pytest.raises(SpecError, match="has no activation function.*Conv2D_1"):
        activations(run.model, "Max_Pool_1", test_x[:1], pre_activation=True)


def test_index_outside_the_set_says_its_size(run, data_dir):
    ds = run.dataset(data_dir)
    with pytest.raises(DataError, match=r"index 300 is outside the test set, which holds 300 images \(valid: 0 "
                                        r"to 299\)"):
        dataset_image(ds, 300)
    with pytest.raises(DataError, match="outside the train set, which holds 1,200 images"):
        dataset_image(ds, -1, "train")
    picked = dataset_image(ds, 7)
    assert picked.raw.shape == (28, 28) and picked.label == int(ds.test_y[7])


# --- conv filters ------------------------------------------------------------------------------------------------
def test_filters_of_first_and_deeper_layers(run):
    model = run.model
    first = conv_filters(model, "Conv2D_1")
    w1 = model.layers["Conv2D_1"].conv.weight.detach().numpy()
    np.testing.assert_array_equal(first.kernels, w1[:, 0])
    np.testing.assert_array_equal(first.biases, model.layers["Conv2D_1"].conv.bias.detach().numpy())
    w2 = model.layers["Conv2D_2"].conv.weight.detach().numpy()
    mean = conv_filters(model, "Conv2D_2")
    np.testing.assert_allclose(mean.kernels, w2.mean(axis=1), atol=1e-7)
    assert "mean over 6 input channels" in mean.view
    np.testing.assert_array_equal(conv_filters(model, "Conv2D_2", channel=5).kernels, w2[:, 5])
    with pytest.raises(SpecError, match=r"input channel 6 is outside Conv2D_2's 6 input channels \(valid: 0 to 5\)"):
        conv_filters(model, "Conv2D_2", channel=6)
    with pytest.raises(SpecError, match="'Max_Pool_1' is not a conv layer.*conv layers: Conv2D_1, Conv2D_2, Conv2D_3"):
        conv_filters(model, "Max_Pool_1")
    with pytest.raises(SpecError, match="unknown layer 'conv1'"):
        conv_filters(model, "conv1")


# --- a user's own picture ----------------------------------------------------------------------------------------
def draw_seven(path, size=(240, 320), ink=(20, 20, 30), paper=(235, 230, 220), mode="RGB", offset=(0, 0)):
    """A thick dark '7' on light paper, off-centre, as a phone photo of a digit might be."""
    from PIL import Image, ImageDraw

    img = Image.new(mode, size, paper)
    d = ImageDraw.Draw(img)
    ox, oy = offset
    d.line([(40 + ox, 60 + oy), (150 + ox, 60 + oy), (80 + ox, 250 + oy)], fill=ink, width=18)
    img.save(path)
    return path


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.indices(img.shape)
    total = img.sum(dtype=np.float64)
    return (yy * img).sum() / total, (xx * img).sum() / total


def test_dark_on_light_picture_becomes_a_centred_mnist_digit(tmp_path):
    picked = load_picture(draw_seven(tmp_path / "seven.png"))
    img = picked.raw
    assert img.shape == (28, 28) and img.dtype == np.uint8
    assert img.max() == 255
    # light on dark now: the border is background, the ink bright
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert border.max() == 0
    rows, cols = np.nonzero(img > 30)
    assert max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) in (19, 20, 21)
    cy, cx = _centre_of_mass(img.astype(np.float64))
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0
    text = " ".join(picked.notes)
    assert "inverted" in text and "greyscale" in text and "centre of mass" in text and "320" in text


def test_light_on_dark_picture_is_not_inverted(tmp_path):
    path = draw_seven(tmp_path / "seven.jpg", size=(100, 300), ink=250, paper=10, mode="L", offset=(-30, 10))
    picked = load_picture(path)
    assert not any("inverted" in note for note in picked.notes)
    assert picked.raw[0].max() == 0 and picked.raw.max() > 200


def test_transparent_picture_is_flattened(tmp_path):
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle([20, 10, 30, 50], fill=(0, 0, 0, 255))
    img.save(tmp_path / "bar.png")
    picked = load_picture(tmp_path / "bar.png")
    assert any("transparency" in note for note in picked.notes)
    assert picked.raw.max() == 255 and picked.raw[0].max() == 0


def test_mnist_digit_survives_conversion(run, data_dir):
    raw = run.dataset(data_dir).test_raw[0]
    img, notes = mnist_format(raw.astype(np.float32))
    assert img.shape == (28, 28) and not any("inverted" in n for n in notes)


def test_bad_pictures_give_one_clear_line(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="not an image Pillow can read; give a PNG or JPEG"):
        load_picture(tmp_path / "notes.png")
    with pytest.raises(DataError, match="image file not found"):
        load_picture(tmp_path / "missing.png")
    from PIL import Image

    Image.new("L", (50, 50), 200).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match="blank.png: no digit found"):
        load_picture(tmp_path / "blank.png")
    good = draw_seven(tmp_path / "cut.png")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        load_picture(tmp_path / "cut.png")
