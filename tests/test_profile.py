"""Class profiles, top images with receptive-field boxes, misclassified images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import RunError, SpecError
from cnnscope.inspect import activations, class_profile, field_geometry, misclassified, top_images
from cnnscope.model.network import build_model
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec
from cnnscope.model.zoo import presets
from conftest import finite_readout


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def data(run, data_dir):
    ds = run.dataset(data_dir)
    return ds.test_x[:240], ds.test_y[:240]


# --- class profile -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["Conv2D_1", "Max_Pool_2", "Conv2D_3", "Dense_1"])
def test_profile_equals_direct_per_class_mean(run, data, layer):
    x, y = data
    profile = class_profile(run.model, layer, x, y, batch_size=64)  # several batches
    acts = activations(run.model, layer, x)
    per_image = acts.mean(axis=(2, 3)) if acts.ndim == 4 else acts
    maps = run.spec.layer(layer).output_shape[0]
    assert profile.shape == (10, maps)
    for k in range(10):
        assert (y == k).any()
        np.testing.assert_allclose(profile[k], per_image[y == k].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_profile_separates_classes_and_marks_missing_ones(run, data):
    x, y = data
    keep = y < 4
    profile = class_profile(run.model, "Dense_1", x[keep], y[keep])
    assert np.isfinite(profile[:4]).all() and np.isnan(profile[4:]).all()
    # the trained model's hidden units respond differently to different classes
    assert np.abs(profile[0] - profile[1]).max() > 0.1


def test_profile_rejects_bad_labels(run, data):
    x, y = data
    with pytest.raises(RunError, match="240 images but 239 labels"):
        class_profile(run.model, "Conv2D_1", x, y[:-1])
    with pytest.raises(RunError, match=r"labels must be in 0\.\.9, received 0\.\.12"):
        class_profile(run.model, "Conv2D_1", x[:3], np.array([0, 12, 3]))
    with pytest.raises(SpecError, match="unknown layer 'Conv9'; valid: Conv2D_1"):
        class_profile(run.model, "Conv9", x, y)


# --- receptive fields ----------------------------------------------------------------------------------------
def test_seed_iv_receptive_fields_by_hand():
    spec = presets["seed-iv"]
    # (size, jump) per layer, as the series states: 3/4/8/10/18 pixels square
    expected = {"Conv2D_1": (3, 1), "Max_Pool_1": (4, 2), "Conv2D_2": (8, 2), "Max_Pool_2": (10, 4),
                "Conv2D_3": (18, 4)}
    for name, (size, jump) in expected.items():
        g = field_geometry(spec, name)
        assert g.size == (size, size) and g.jump == (jump, jump) and g.start == (0, 0)
        assert (spec.layer(name).receptive_field, spec.layer(name).jump) == ((size, size), (jump, jump))
    c1 = field_geometry(spec, "Conv2D_1")
    for r, c in [(0, 0), (5, 7), (25, 25)]:  # node (r, c) sees rows r..r+2, cols c..c+2
        assert c1.box(r, c) == (r, c, r + 3, c + 3)
    c3 = field_geometry(spec, "Conv2D_3")  # 3×3 map; node (r, c) sees rows 4r..4r+17
    assert c3.box(0, 0) == (0, 0, 18, 18)
    assert c3.box(1, 2) == (4, 8, 22, 26)
    assert c3.box(2, 2) == (8, 8, 26, 26)
    p2 = field_geometry(spec, "Max_Pool_2")  # 5×5 map; node 4 sees rows 16..25
    assert p2.box(4, 0) == (16, 0, 26, 10)


def test_same_padding_offsets_and_clipping():
    spec = ModelSpec(conv=(ConvSpec(4, padding="same", pool=PoolSpec()), ConvSpec(4, padding="same"),
                           ConvSpec(4, stride=2, padding="same")), dense=(DenseSpec(8),))
    c1 = field_geometry(spec, "Conv2D_1")  # one zero pixel before the image: node i sees i-1..i+1
    assert c1.start == (-1, -1)
    assert c1.box(0, 0) == (0, 0, 2, 2)
    assert c1.box(0, 0, clip=False) == (-1, -1, 2, 2)
    assert c1.box(27, 27) == (26, 26, 28, 28)
    c2 = field_geometry(spec, "Conv2D_2")  # after the pool: start -1 - 1·2 = -3, size 4 + 2·2 = 8, jump 2
    assert (c2.start, c2.size, c2.jump) == ((-3, -3), (8, 8), (2, 2))
    assert c2.box(0, 0) == (0, 0, 5, 5)
    assert c2.box(13, 13) == (23, 23, 28, 28)
    # stride 2 on 14: TensorFlow pads 1 pixel, all of it after the image, so the start does not move
    c3 = field_geometry(spec, "Conv2D_3")
    assert (c3.start, c3.size, c3.jump) == ((-3, -3), (12, 12), (4, 4))
    with pytest.raises(SpecError, match="'Flatten_1' \\(Flatten\\) has no receptive field"):
        field_geometry(spec, "Flatten_1")


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_boxes_are_exactly_where_the_gradient_reaches(padding):
    """With linear activations and average pools every input pixel inside a node's field has a non-zero
    gradient and every pixel outside has none: the box must be exactly that support."""
    spec = ModelSpec(conv=(ConvSpec(3, padding=padding, activation="linear", pool=PoolSpec("average")),
                           ConvSpec(3, kernel=(3, 5), padding=padding, activation="linear",
                                    pool=PoolSpec("average", 2)),
                           ConvSpec(2, stride=2, padding=padding, activation="linear")), dense=(DenseSpec(4),))
    model = build_model(spec, seed=0).double()
    for layer in ["Conv2D_1", "Avg_Pool_1", "Conv2D_2", "Avg_Pool_2", "Conv2D_3"]:
        geometry = field_geometry(spec, layer)
        _, h, w = spec.layer(layer).output_shape
        for r, c in {(0, 0), (h // 2, w - 1), (h - 1, w - 1), (h - 1, 0)}:
            x = torch.zeros(1, 1, 28, 28, dtype=torch.float64, requires_grad=True)
            outputs, _ = cnnscope.inspect.capture(model, [layer], x)
            outputs[layer][0, 0, r, c].backward()
            support = x.grad[0, 0].abs() > 0
            top, left, bottom, right = geometry.box(r, c)
            expected = torch.zeros_like(support)
            expected[top:bottom, left:right] = True
            assert torch.equal(support, expected), (layer, r, c, geometry.box(r, c))


# --- top images ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,map_index", [("Conv2D_2", 3), ("Conv2D_3", 0), ("Dense_1", 5)])
def test_top_images_are_the_top_by_value(run, data, layer, map_index):
    x, _ = data
    top = top_images(run.model, layer, map_index, x, k=10, batch_size=50)
    acts = activations(run.model, layer, x)[:, map_index]
    peaks = acts.reshape(len(x), -1).max(axis=1)
    assert len(top.indices) == 10 and len(set(top.indices.tolist())) == 10
    np.testing.assert_allclose(top.values, peaks[top.indices])
    assert (np.diff(top.values) <= 0).all()
    assert top.values[-1] >= np.delete(peaks, top.indices).max()
    if acts.ndim == 3:
        geometry = field_geometry(run.spec, layer)
        for i, (r, c), box in zip(top.indices, top.locations, top.boxes, strict=True):
            assert acts[i, r, c] == peaks[i]
            assert tuple(box) == geometry.box(int(r), int(c))
        assert top.receptive_field == geometry.size
    else:
        assert top.receptive_field is None and (top.boxes == [0, 0, 28, 28]).all()


def test_top_images_ties_go_to_the_lower_index(run, data):
    x, _ = data
    same = np.repeat(x[:1], 5, axis=0)
    top = top_images(run.model, "Conv2D_1", 0, same, k=3)
    assert top.indices.tolist() == [0, 1, 2]
    top = top_images(run.model, "Conv2D_1", 0, x[:4], k=99)
    assert len(top.indices) == 4


def test_top_images_rejects_bad_map(run, data):
    x, _ = data
    with pytest.raises(RunError, match=r"map 6 is out of range: Conv2D_1 has 6 maps \(0\.\.5\)"):
        top_images(run.model, "Conv2D_1", 6, x)
    with pytest.raises(RunError, match=r"map -1 is out of range: Dense_1 has 24 units \(0\.\.23\)"):
        top_images(run.model, "Dense_1", -1, x)
    with pytest.raises(RunError, match="k must be a positive integer"):
        top_images(run.model, "Conv2D_1", 0, x, k=0)


# --- misclassified -------------------------------------------------------------------------------------------
def test_misclassified_sorted_by_confidence(run, data):
    x, y = data
    y = y.copy()
    y[:20] = (y[:20] + 1) % 10  # make sure there are mistakes
    errors = misclassified(run.model, x, y, batch_size=64)
    probs = run.model.probabilities(run.model(torch.from_numpy(x))).detach().numpy()
    pred = probs.argmax(axis=1)
    assert set(errors.indices.tolist()) == set(np.flatnonzero(pred != y).tolist())
    assert len(errors.indices) >= 18
    assert (np.diff(errors.confidence) <= 0).all()
    np.testing.assert_allclose(errors.confidence, probs[errors.indices].max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(errors.true_probability, probs[errors.indices, y[errors.indices]], rtol=1e-5)
    assert (errors.predicted == pred[errors.indices]).all() and (errors.true == y[errors.indices]).all()
    assert errors.confusion.sum() == len(y) and np.trace(errors.confusion) == len(y) - len(errors.indices)
    assert errors.accuracy == pytest.approx(1 - len(errors.indices) / len(y))
    d = errors.to_dict([f"c{i}" for i in range(10)])
    assert d["errors"] == len(errors.indices) and d["misclassified"][0]["true"].startswith("c")


# --- one pass, one confusion matrix, the viewer's tables ------------------------------------------------------
def test_one_pass_gives_the_class_profiles_and_the_mistakes(run, data):
    from cnnscope.inspect.profile import class_means, confusion_matrix, layer_means, mistakes

    x, y = data
    probs, means = layer_means(run.model, ["Conv2D_1", "Conv2D_3"], x, batch_size=64)
    assert probs.shape == (len(x), 10) and means["Conv2D_3"].shape == (len(x), 16)
    for layer in ("Conv2D_1", "Conv2D_3"):
        np.testing.assert_allclose(class_means(means[layer], y, 10), class_profile(run.model, layer, x, y),
                                   rtol=1e-5, atol=1e-6)
    found, direct = mistakes(probs, y), misclassified(run.model, x, y)
    assert found.indices.tolist() == direct.indices.tolist()
    assert (found.confusion == direct.confusion).all()
    assert (found.confusion == confusion_matrix(y, probs.argmax(1), 10)).all()
    assert confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_map_peak_table_gives_the_same_top_images(run, data):
    from cnnscope.inspect.profile import map_peaks, rank_images

    x, _ = data
    table = map_peaks(run.model, ["Conv2D_2", "Max_Pool_2"], x, batch_size=50)
    for layer, index in (("Conv2D_2", 3), ("Max_Pool_2", 7)):
        values, positions, sizes = table[layer]
        assert (sizes >= np.abs(values) - 1e-6).all()
        top = top_images(run.model, layer, index, x, k=6)
        order = rank_images(values[:, index], 6)
        assert order.tolist() == top.indices.tolist()
        width = run.spec.layer(layer).output_shape[2]
        rows_cols = np.stack(np.divmod(positions[order, index], width), axis=1)
        assert rows_cols.tolist() == top.locations.tolist()
    assert rank_images(np.array([1.0, 3.0, 3.0, 2.0]), 3).tolist() == [1, 2, 3]  # ties to the lower index


def test_class_readout_matches_a_finite_difference(run, data):
    from cnnscope.inspect.profile import class_readout

    x, _ = data
    x = x[:64]
    layer, m = "Conv2D_3", 2
    readout = class_readout(run.model, layer, x, batch_size=20)
    np.testing.assert_allclose(readout[:, m], finite_readout(run.model, layer, x, m), atol=2e-3)
