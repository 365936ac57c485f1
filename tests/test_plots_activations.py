"""Activation, overview and filter figures: one honest colour scale, every map drawn, files written."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import TwoSlopeNorm

import cnnscope
from cnnscope.base.errors import ConfigError, OutputError
from cnnscope.inspect import activation_grid, conv_filters, display_maps
from cnnscope.inspect.display import clip_display, is_vector, layer_display, overview_displays
from cnnscope.plots import activations_figure, filters_figure, overview_figure, save_figure_as, vector_figure
from cnnscope.plots.activations import Prediction
from cnnscope.plots.figures import get_cmap
from figure_checks import smallest_text_pt

PNG = b"\x89PNG\r\n\x1a\n"


def _image() -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255
    return img


def _maps(n: int, h: int = 6, w: int = 6, signed: bool = False) -> np.ndarray:
    x = np.random.default_rng(n).normal(size=(n, h, w)).astype(np.float32)
    return x if signed else np.maximum(x, 0)


def _grid_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.images[0].get_array().shape != (28, 28)]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "colorbar"]


@pytest.mark.parametrize("n", [13, 64])
def test_activations_figure_draws_every_map_with_one_colour_scale(n):
    maps = _maps(n) * 3
    fig = activations_figure(_image(), layer_display(maps), layer="Conv2D_2", source="test image 4",
                             prediction=Prediction("4", 0.97, "4"), cols=8)
    grid_axes = _grid_axes(fig)
    assert len(grid_axes) == 1 and len(_colorbars(fig)) == 1
    drawn = np.ma.filled(grid_axes[0].images[0].get_array(), np.nan)
    np.testing.assert_array_equal(drawn, activation_grid(maps, 8))  # layer norm: values as they are
    image = grid_axes[0].images[0]
    # default: one range for the layer, ending at its 99th percentile; the brighter values share the end colour
    top = np.percentile(maps, 99)
    assert top < maps.max()
    assert (image.norm.vmin, image.norm.vmax) == (pytest.approx(maps.min()), pytest.approx(top))
    bar = _colorbars(fig)[0]
    assert bar.get_ylim() == pytest.approx((image.norm.vmin, image.norm.vmax))  # the bar spans the grid's range
    assert bar.collections or bar.patches  # the extension triangle for the clipped values
    numbers = {t.get_text() for t in grid_axes[0].texts}
    assert {str(k) for k in range(n)} <= numbers
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "Conv2D_2" in texts and f"{n} of {n} maps shown" in texts and f"({n}, 6, 6)" in texts
    assert "predicted: 4 (97.0%)" in fig.axes[0].get_xlabel()
    assert "its 99th percentile" in texts and f"max {maps.max():.3g}" in texts


def test_clip_puts_the_colour_range_at_a_percentile_and_100_keeps_the_full_range():
    maps = _maps(16) * 3
    maps[5, 0, 0] = 100.0  # one very bright node
    full = activations_figure(_image(), layer_display(maps, clip=100), layer="L")
    assert _grid_axes(full)[0].images[0].norm.vmax == pytest.approx(100.0)
    assert "its full range" in " ".join(t.get_text() for t in full.texts)
    clipped = activations_figure(_image(), layer_display(maps, clip=95), layer="L")
    assert _grid_axes(clipped)[0].images[0].norm.vmax == pytest.approx(np.percentile(maps, 95))
    display = clip_display(display_maps(maps, "layer"), 95)
    assert display.extend == "max" and "of values share the end colour" in display.words
    np.testing.assert_array_equal(display.values, maps)  # the numbers are unchanged, only the range moves
    signed = _maps(16, signed=True)
    display = clip_display(display_maps(signed, "layer"), 90)
    top = np.percentile(np.abs(signed), 90)
    assert (display.vmin, display.vmax) == (pytest.approx(-top), pytest.approx(top)) and display.extend == "both"
    flat = clip_display(display_maps(np.zeros((3, 4, 4), np.float32), "layer"), 99)
    assert flat.words == "" and flat.extend == "neither"  # nothing to clip


def test_scaled_figure_uses_the_0_255_scale_and_marks_flat_maps():
    maps = _maps(10)
    maps[3] = 0.0  # a dead map
    fig = activations_figure(_image(), layer_display(maps, scale=True), layer="L")
    image = _grid_axes(fig)[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (0, 255)
    assert "hatched: 1 flat map" in " ".join(t.get_text() for t in fig.texts)
    hatched = [c for c in _grid_axes(fig)[0].collections if c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == 1


def test_signed_maps_get_a_diverging_map_centred_on_zero():
    maps = _maps(8, signed=True) + 0.3
    fig = activations_figure(_image(), layer_display(maps), layer="Conv2D_1", stage="before its ReLU")
    image = _grid_axes(fig)[0].images[0]
    assert image.cmap.name.startswith("RdBu_r")
    assert image.norm.vmin == -image.norm.vmax
    fixed = activations_figure(_image(), layer_display(maps, "fixed", (-1.0, 3.0)), layer="Conv2D_1")
    norm = _grid_axes(fixed)[0].images[0].norm
    assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0 and (norm.vmin, norm.vmax) == (-1, 3)


def test_colour_maps_are_validated_by_name():
    assert get_cmap("viridis", False).name.startswith("viridis")
    assert get_cmap(None, False).name.startswith("magma")
    with pytest.raises(ConfigError, match=r"unknown colour map 'magmaa'; valid: .*magma.*viridis"):
        activations_figure(_image(), layer_display(_maps(4)), layer="L", cmap="magmaa")


def test_overview_has_a_panel_per_layer_and_one_colour_bar():
    outputs = {"Conv2D_1": _maps(32, 26, 26) * 2, "Max_Pool_1": _maps(32, 13, 13), "Conv2D_3": _maps(128, 3, 3) * 9}
    fig = overview_figure(_image(), outputs, *overview_displays(outputs), source="test image 0",
                          prediction=Prediction("1", 0.5))
    assert len(_grid_axes(fig)) == 3 and len(_colorbars(fig)) == 1
    titles = [ax.get_title() for ax in _grid_axes(fig)]
    assert titles == ["Conv2D_1  (32, 26, 26)", "Max_Pool_1  (32, 13, 13)", "Conv2D_3  (128, 3, 3)"]
    for ax, maps in zip(_grid_axes(fig), outputs.values(), strict=True):
        drawn = ax.images[0].get_array()
        assert np.ma.count(drawn) == maps.size  # every value of every map is drawn
        assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.0, 1.0)
    fixed = overview_figure(_image(), outputs, *overview_displays(outputs, "fixed", (0.0, 2.0)))
    assert all(ax.images[0].norm.vmax == 2.0 for ax in _grid_axes(fixed))


def test_filters_figure(trained_run):
    model = cnnscope.load_run(trained_run).model
    filters = conv_filters(model, "Conv2D_2")
    fig = filters_figure(filters, cols=4, norm="layer")
    kernel_axes = [ax for ax in fig.axes if ax.images]
    assert len(kernel_axes) == 12 and len(_colorbars(fig)) == 1
    norms = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in kernel_axes}
    assert len(norms) == 1
    lo, hi = norms.pop()
    assert lo == -hi == pytest.approx(-np.abs(filters.kernels).max())
    assert kernel_axes[3].get_xlabel() == f"b {filters.biases[3]:+.2f}"
    assert "mean over 6 input channels" in " ".join(t.get_text() for t in fig.texts)
    assert "one scale for all filters" in " ".join(" ".join(t.get_text() for t in fig.texts).split())


def test_filters_figure_scales_each_filter_by_default(trained_run):
    """--norm filter (the default): every kernel reaches ±1 of its own range, so a weak filter is not pale; its
    largest |weight| is written under it, and the subtitle says so."""
    model = cnnscope.load_run(trained_run).model
    filters = conv_filters(model, "Conv2D_2", channels="strongest")
    fig = filters_figure(filters, cols=4)
    kernel_axes = [ax for ax in fig.axes if ax.images]
    peaks = [float(np.abs(ax.images[0].get_array()).max()) for ax in kernel_axes]
    assert peaks == pytest.approx([1.0] * 12)
    raw = np.abs(filters.kernels).reshape(12, -1).max(axis=1)
    assert kernel_axes[5].get_xlabel() == f"±{raw[5]:.2f}\nb {filters.biases[5]:+.2f}"
    assert kernel_axes[5].get_title() == f"5 ch {filters.sources[5]}"
    weights = model.layer("Conv2D_2").conv.weight.detach().numpy()
    norms = np.sqrt((weights ** 2).sum(axis=(2, 3)))  # (filters, in_channels)
    assert list(filters.sources) == list(norms.argmax(axis=1))
    np.testing.assert_array_equal(filters.kernels[2], weights[2, filters.sources[2]])
    words = " ".join(" ".join(t.get_text() for t in fig.texts).split())  # wrapped lines joined
    assert "--norm layer: one scale for all" in words  # the whole subtitle fits
    assert "strongest of 6 input channels" in words and "each filter scaled to its own max |weight|" in words
    with pytest.raises(ConfigError, match="unknown norm 'map'; valid: filter, layer"):
        filters_figure(filters, norm="map")


def test_filter_figures_are_readable(trained_run):
    """Projector check: no text under 9 pt, whatever the view."""
    model = cnnscope.load_run(trained_run).model
    for channels in ("strongest", "split", "mean"):
        fig = filters_figure(conv_filters(model, "Conv2D_2", channels=channels))
        assert smallest_text_pt(fig) >= 9, channels


def test_save_figure_as_png_and_svg(tmp_path):
    fig = activations_figure(_image(), layer_display(_maps(5)), layer="L")
    paths = save_figure_as(fig, tmp_path / "a.png", svg=True)
    assert paths == [tmp_path / "a.png", tmp_path / "a.svg"]
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    assert b"<svg" in (tmp_path / "a.svg").read_bytes()[:500]
    save_figure_as(activations_figure(_image(), layer_display(_maps(5)), layer="L"), tmp_path / "b.svg")
    assert (tmp_path / "b.svg").is_file() and not (tmp_path / "b.png").exists()
    with pytest.raises(OutputError, match=r"cannot write a figure as '.jpg' \(.*c.jpg\); use .png, .svg, .pdf"):
        save_figure_as(activations_figure(_image(), layer_display(_maps(5)), layer="L"), tmp_path / "c.jpg")
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("shape", [(100,), (100, 1, 1)])
def test_a_vector_is_drawn_as_bars_with_its_own_shape(shape):
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert is_vector(values)  # the views draw it as bars, not as 1×1 maps
    fig = vector_figure(_image(), values, layer="Dense_1", stage="before its ReLU")
    assert not _grid_axes(fig) and not _colorbars(fig)  # no 1×1 maps and no colour scale: heights are the values
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 1 and len(bars[0].patches) == 100
    heights = [p.get_height() for p in bars[0].patches]
    np.testing.assert_allclose(heights, values.reshape(-1), rtol=1e-6)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "Dense_1: 100 units (before its ReLU)" in texts
    assert f"output shape ({', '.join(map(str, shape))})" in texts and "100 of 100 units shown" in texts
    assert "maps" not in texts


def test_write_errors_name_the_path(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(OutputError, match=r"cannot write .*a.png: No space left on device"):
        save_figure_as(activations_figure(_image(), layer_display(_maps(5)), layer="L"), tmp_path / "a.png")
    assert not list(tmp_path.iterdir())  # no half-written file or temp file left
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.undo()
    with pytest.raises(OutputError, match=r"cannot write .*file/b.png"):
        save_figure_as(activations_figure(_image(), layer_display(_maps(5)), layer="L"), blocker / "b.png")


def test_training_save_figure_checks_the_format(tmp_path):
    from cnnscope.plots import confusion_figure, save_figure

    with pytest.raises(OutputError, match=r"cannot write a figure as '.txt'.*use .png, .svg, .pdf"):
        save_figure(confusion_figure([[1, 0], [0, 1]], ["a", "b"]), tmp_path / "c.txt")
    assert save_figure(confusion_figure([[1, 0], [0, 1]], ["a", "b"]), tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"


def test_cli_figure_formats_match_the_library():
    from cnnscope.cli.maps import DEFAULT_CLIP
    from cnnscope.cli.train import FIGURE_FORMATS
    from cnnscope.inspect.display import DEFAULT_CLIP as LIBRARY_CLIP
    from cnnscope.plots.figures import FORMATS

    assert FIGURE_FORMATS == FORMATS and DEFAULT_CLIP == LIBRARY_CLIP


@pytest.mark.parametrize("n", [8, 32, 128])
def test_activation_figures_are_readable_from_the_back_row(n):
    """Projector check (issue 23): no text under 9 pt in the maps' figure, however many maps (small cells get
    row and column numbers instead of tags), in the overview and in a dense layer's bars."""
    from cnnscope.plots.activations import vector_figure

    fig = activations_figure(_image(), layer_display(_maps(n)), layer="L", source="test image 0",
                             prediction=Prediction("1", 0.5))
    assert smallest_text_pt(fig) >= 9
    labels = [t.get_text() for t in _grid_axes(fig)[0].get_yticklabels()]
    assert labels == [] or labels[:2] == ["0", "8"]  # 8 columns: row labels count maps
    outputs = {"Conv2D_1": _maps(32, 26, 26), "MaxPool2D_1": _maps(32, 13, 13), "Conv2D_3": _maps(128, 3, 3)}
    displays, shared = overview_displays(outputs)
    assert smallest_text_pt(overview_figure(_image(), outputs, displays, shared, source="test image 0")) >= 9
    assert smallest_text_pt(vector_figure(_image(), np.linspace(-1, 1, 100), layer="Dense_1")) >= 9


def test_a_narrow_grid_keeps_every_word_of_its_subtitle():
    """One column of maps makes a narrow figure: the subtitle wraps onto as many lines as it needs (nothing cut to
    '…'), above the panels' own titles."""
    from matplotlib.text import Text

    display = layer_display(_maps(5))
    fig = activations_figure(_image(), display, layer="L", cols=1, source="test image 0")
    fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if t.get_text().strip()]
    words = " ".join(t.get_text() for t in texts)
    assert "…" not in words and all(word in words for word in display.words.split())
    renderer = fig.canvas.get_renderer()
    lines = [t for t in texts if len(t.get_text()) > 20 and t.get_text() in display.words]  # its wrapped lines
    lowest_line = min(t.get_window_extent(renderer).y0 for t in lines)
    panel_title = [t for t in texts if t.get_text() == "test image 0"][0].get_window_extent(renderer).y1
    assert lowest_line > panel_title
