"""Attribution on Captum: the registry, shapes, targets, each method's defining property, Grad-CAM's placement
and 'not seen' pixels, and the deletion test for every method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import ConfigError, SpecError
from cnnscope.inspect import (
    DEFAULT_METHOD,
    METHODS,
    attribute,
    deeplift,
    deletion_score,
    get_method,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    last_conv_layer,
    occlusion,
    saliency,
    seen_pixels,
    smoothgrad,
)

ALL = ["integrated-gradients", "saliency", "input-x-gradient", "smoothgrad", "guided-backprop", "deeplift",
       "occlusion", "gradcam", "guided-gradcam"]


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def test_set(run, data_dir):
    ds = run.dataset(data_dir)
    return ds.test_x[:100], ds.test_y[:100]


@pytest.fixture(scope="module")
def raw(run, data_dir):
    return np.asarray(run.dataset(data_dir).test_raw[:100])  # the same 100 images before preprocessing


@pytest.fixture(scope="module")
def blank(run):
    return run.preprocessor(np.zeros((1, 28, 28), np.uint8))[0]  # (1, 28, 28): a black pixel, preprocessed


@pytest.fixture(scope="module")
def heats(run, test_set, blank):
    """Every method's heat maps for the 100 test images (computed once)."""
    x, _ = test_set
    return {name: attribute(run.model, x, name, baseline=blank) for name in METHODS}


def _logits(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(np.ascontiguousarray(x, np.float32)))


def test_registry():
    assert list(METHODS) == ALL
    assert DEFAULT_METHOD == "integrated-gradients"
    assert [m.name for m in METHODS.values() if m.uses_layer] == ["gradcam", "guided-gradcam"]
    assert [m.name for m in METHODS.values() if m.uses_baseline] == ["integrated-gradients", "deeplift", "occlusion"]
    assert get_method("gradcam").function is grad_cam and get_method("saliency").title.startswith("Saliency")


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_inputs(run, test_set, blank, heats, name):
    x, _ = test_set
    heat = heats[name][:5]
    assert heat.shape == (5, 28, 28) and heat.dtype == np.float32
    seen = seen_pixels(run.model) if METHODS[name].uses_layer else np.ones((28, 28), bool)
    assert np.isfinite(heat[:, seen]).all() and np.isnan(heat[:, ~seen]).all()
    assert np.nanstd(heat.reshape(5, -1), 1).min() > 0  # not a constant map
    if not METHODS[name].signed:
        assert np.nanmin(heat) >= 0
    again = attribute(run.model, x[:5], name, baseline=blank)
    if name != "smoothgrad":  # its noise (scale and draws) depends on the batch
        np.testing.assert_allclose(again, heat, rtol=1e-4, atol=1e-5)
    flat = attribute(run.model, x[:5, 0], name, baseline=blank)  # (n, H, W)
    np.testing.assert_allclose(flat, again, rtol=1e-4, atol=1e-6)
    from_tensor = attribute(run.model, torch.from_numpy(x[:5]), name, baseline=torch.from_numpy(blank))
    np.testing.assert_allclose(from_tensor, again, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_deletion_test_for_every_method(run, test_set, raw, blank, heats, name):
    """Over 100 test images, deleting the pixels each method ranks first (0-50 %) lowers the class probability
    faster than deleting random pixels, on average: a lower mean deletion AUC."""
    x, _ = test_set
    result = deletion_score(run.model, x, heats[name], raw=raw, blank=blank)
    assert result.auc("method").mean() < result.auc("random").mean() - 0.02, result.summary()
    k = len(result.fractions)
    for curves in result.curves.values():
        assert curves.deletion.shape == curves.insertion.shape == (100, k)
        np.testing.assert_allclose(curves.deletion[:, 0], result.probability, rtol=1e-5)  # nothing blanked yet
    summary = result.summary()
    assert summary["images"] == 100 and summary["fractions"][-1] == 0.5
    assert summary["beats_random"] == pytest.approx(float(result.beats_random.mean()))
    assert summary["passes"] == summary["beats_brightness"] == pytest.approx(float(result.passes.mean()))


def test_default_method_beats_random_on_most_images(run, test_set, raw, blank, heats):
    x, _ = test_set
    result = deletion_score(run.model, x, heats[DEFAULT_METHOD], raw=raw, blank=blank)
    assert result.beats_random.mean() >= 0.9, result.summary()


def test_deletion_with_a_useless_heat_map_is_like_random(run, test_set, raw, blank, heats):
    x, _ = test_set
    anti = -heats["saliency"]  # ranks the least important pixels first
    result = deletion_score(run.model, x, anti, raw=raw, blank=blank, random_draws=2)
    assert result.auc("method").mean() > result.auc("random").mean()
    assert result.passes.mean() < 0.1 and result.beats_random.mean() < 0.1


def test_deletion_blanks_exactly_the_fraction_and_ranks_not_seen_last(run, test_set, raw, blank):
    x, _ = test_set
    # A heat map ranking the top-left 10×10 block first: blanking 100 of 784 pixels (fraction 100/784) to
    # black must equal setting that block to black by hand, and inserting them into a black image equal a black
    # image with that block; NaN pixels are never blanked before ranked ones.
    heat = np.full((3, 28, 28), np.nan, np.float32)
    heat[:, :10, :10] = 1
    result = deletion_score(run.model, x[:3], heat, raw=raw[:3], blank=blank, target=[0, 1, 2],
                            fractions=(0, 100 / 784))
    deleted, inserted = x[:3].copy(), np.broadcast_to(blank, x[:3].shape).copy()
    deleted[:, :, :10, :10] = blank[:, :10, :10]
    inserted[:, :, :10, :10] = x[:3, :, :10, :10]
    for manual, curve in ((deleted, result.curves["method"].deletion), (inserted, result.curves["method"].insertion)):
        probs = run.model.probabilities(_logits(run.model, manual)).numpy()
        np.testing.assert_allclose(curve[:, 1], probs[np.arange(3), [0, 1, 2]], rtol=1e-5)
    assert list(result.target) == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"expected one \(28, 28\) heat map per image \(3\)"):
        deletion_score(run.model, x[:3], heat[:2], raw=raw[:3], blank=blank)
    with pytest.raises(ConfigError, match=r"expected the 3 raw images of shape \(28, 28\), received shape "
                                          r"\(2, 28, 28\)"):
        deletion_score(run.model, x[:3], heat, raw=raw[:2], blank=blank)


def test_targets(run, test_set):
    x, _ = test_set
    predicted = _logits(run.model, x[:4]).argmax(1).numpy()
    np.testing.assert_allclose(saliency(run.model, x[:4]), saliency(run.model, x[:4], target=predicted))
    other = (predicted + 1) % 10
    assert not np.allclose(grad_cam(run.model, x[:4]), grad_cam(run.model, x[:4], target=other), equal_nan=True)
    one = saliency(run.model, x[:4], target=3)
    np.testing.assert_allclose(one, saliency(run.model, x[:4], target=[3, 3, 3, 3]))
    with pytest.raises(ConfigError, match=r"target class 10 is not a class of this model \(valid: 0\.\.9\)"):
        saliency(run.model, x[:2], target=10)
    with pytest.raises(ConfigError, match=r"one class or one per image \(2\), received 3 values"):
        saliency(run.model, x[:2], target=[1, 2, 3])


def _hand_ig(model, x, baseline, steps):
    """Integrated gradients by hand (midpoint rule), the pre-Captum implementation."""
    x = torch.from_numpy(x)
    base = torch.as_tensor(baseline).expand_as(x)
    target = model(x).argmax(1)
    total = torch.zeros_like(x)
    for i in range(steps):
        point = (base + (i + 0.5) / steps * (x - base)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(point)[torch.arange(len(x)), target].sum(), point)
        total += grad
    return ((x - base) * total / steps).sum(1).numpy()


def test_integrated_gradients_completeness_and_hand_version(run, test_set, blank):
    """Attributions sum to score(x) − score(baseline) (the method's defining property) and match the hand-written
    midpoint rule."""
    x, _ = test_set
    model = run.model
    heat = integrated_gradients(model, x[:6], steps=64, baseline=blank)
    logits, base = _logits(model, x[:6]), _logits(model, np.broadcast_to(blank, x[:6].shape))
    t = logits.argmax(1)
    expected = (logits[range(6), t] - base[range(6), t]).numpy()
    np.testing.assert_allclose(heat.reshape(6, -1).sum(1), expected, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(integrated_gradients(model, x[:3], steps=8, baseline=blank),
                               _hand_ig(model, x[:3], blank, 8), rtol=1e-4, atol=1e-6)
    zero = integrated_gradients(model, x[:2], steps=8)  # Captum's default baseline: zeros
    assert zero.shape == (2, 28, 28) and not np.allclose(zero, heat[:2])


def test_deeplift_sums_to_the_score_difference(run, test_set, blank):
    """About: Captum's max-pool rule is not exactly conservative (here within 2 %, not to rounding)."""
    x, _ = test_set
    heat = deeplift(run.model, x[:4], baseline=blank)
    logits, base = _logits(run.model, x[:4]), _logits(run.model, np.broadcast_to(blank, x[:4].shape))
    t = logits.argmax(1)
    np.testing.assert_allclose(heat.reshape(4, -1).sum(1), (logits[range(4), t] - base[range(4), t]).numpy(),
                               rtol=0.03, atol=0.05)


def test_occlusion_of_the_whole_image(run, test_set, blank):
    """One window covering the image: every pixel gets score(x) − score(black image)."""
    x, _ = test_set
    heat = occlusion(run.model, x[:3], window=28, stride=28, baseline=blank)
    logits, base = _logits(run.model, x[:3]), _logits(run.model, np.broadcast_to(blank, x[:3].shape))
    t = logits.argmax(1)
    drop = (logits[range(3), t] - base[range(3), t]).numpy()
    np.testing.assert_allclose(heat, np.broadcast_to(drop[:, None, None], heat.shape), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="occlusion needs 1 <= window <= 28 and 1 <= stride <= window"):
        occlusion(run.model, x[:1], window=3, stride=4)


def test_guided_backprop_uses_the_relu_modules(run, test_set):
    """The model's ReLUs are modules, so Captum can guide them: the result differs from the plain gradient and
    guided Grad-CAM is guided backprop × Grad-CAM."""
    x, _ = test_set
    model = run.model
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) >= 4
    guided = guided_backprop(model, x[:4])
    inp = torch.from_numpy(x[:4]).requires_grad_(True)
    logits = model(inp)
    (grad,) = torch.autograd.grad(logits[range(4), logits.argmax(1)].sum(), inp)
    assert not np.allclose(guided, grad.sum(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(guided_grad_cam(model, x[:4]), guided * grad_cam(model, x[:4]), rtol=1e-4,
                               atol=1e-7, equal_nan=True)


def test_smoothgrad_is_seeded_and_leaves_the_random_state(run, test_set):
    x, _ = test_set
    state = torch.random.get_rng_state()
    a = smoothgrad(run.model, x[:3], samples=4, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(a, smoothgrad(run.model, x[:3], samples=4, seed=1))
    assert not np.allclose(a, smoothgrad(run.model, x[:3], samples=4, seed=2))
    with pytest.raises(ConfigError, match="samples must be >= 1 and noise > 0"):
        smoothgrad(run.model, x[:1], samples=0)


def test_grad_cam_layers_placement_and_not_seen(run, test_set):
    x, _ = test_set
    model = run.model
    assert last_conv_layer(model) == "Conv2D_3"
    # Conv2D_3 of this model: 3×3 cells 4 pixels apart, centred from pixel 8.5, each seeing 18 pixels.
    placed = {name: model.spec.geometry(name) for name in ("Conv2D_3", "Max_Pool_1")}  # what Grad-CAM places by
    assert [(g.start, g.jump, g.receptive_field) for g in placed.values()] == [
        ((8.5, 8.5), (4, 4), (18, 18)), ((1.5, 1.5), (2, 2), (4, 4))]
    seen = seen_pixels(model)
    assert seen[:26, :26].all() and not seen[26:, :].any() and not seen[:, 26:].any()  # last 2 rows/cols unseen
    assert seen_pixels(model, "Conv2D_1").all()
    heat = grad_cam(model, x[:5])
    assert np.nanmin(heat) >= 0 and np.isnan(heat[:, 26:, :]).all() and np.isnan(heat[:, :, 26:]).all()
    np.testing.assert_allclose(heat, grad_cam(model, x[:5], layer="Conv2D_3"), equal_nan=True)
    fine = grad_cam(model, x[:5], layer="Conv2D_1")
    assert fine.shape == (5, 28, 28) and not np.isnan(fine).any() and not np.allclose(fine[:, :26, :26],
                                                                                      heat[:, :26, :26])
    with pytest.raises(SpecError, match="Grad-CAM needs a layer with maps; 'Dense_1' has none; valid: Conv2D_1"):
        grad_cam(model, x[:2], layer="Dense_1")
    with pytest.raises(SpecError, match="unknown layer 'nope'; valid:"):
        grad_cam(model, x[:2], layer="nope")


def test_grad_cam_matches_the_hand_formula_at_the_cell_centres(run, test_set):
    """The placed map is ReLU(Σ_k mean(∂score/∂A_k)·A_k), bilinear between the cells' receptive-field centres."""
    from cnnscope.inspect import capture

    x, _ = test_set
    model = run.model
    inp = torch.from_numpy(x[:3])
    outputs, logits = capture(model, ["Conv2D_3"], inp)
    maps = outputs["Conv2D_3"]
    (grad,) = torch.autograd.grad(logits[range(3), logits.argmax(1)].sum(), maps)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * maps).sum(1)).detach().numpy()  # (3, 3, 3)
    heat = grad_cam(model, x[:3])
    # centres at 8.5 + 4i: pixel 12 lies at cell index 0.875, between cells 0 (weight 1/8) and 1 (weight 7/8)
    w = np.array([0.125, 0.875])
    expected = np.einsum("i,j,nij->n", w, w, cam[:, :2, :2])
    np.testing.assert_allclose(heat[:, 12, 12], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(heat[:, 0, 0], cam[:, 0, 0], rtol=1e-4, atol=1e-6)  # before the first centre


def test_model_left_as_found(run, test_set, blank):
    x, _ = test_set
    model = run.model
    before = _logits(model, x[:10])
    for name in METHODS:
        attribute(model, x[:3], name, baseline=blank)
    deletion_score(model, x[:3], np.ones((3, 28, 28)), raw=np.zeros((3, 28, 28), np.uint8), blank=blank)
    assert not model.training
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
               for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(_logits(model, x[:10]), before)


def test_errors(run, test_set, blank):
    x, _ = test_set
    with pytest.raises(ConfigError, match="unknown method 'lime'; valid: integrated-gradients, saliency, "
                                          "input-x-gradient, smoothgrad, guided-backprop, deeplift, occlusion, "
                                          "gradcam, guided-gradcam$"):
        get_method("lime")
    with pytest.raises(ConfigError, match="a layer applies to gradcam, guided-gradcam only, not to saliency"):
        attribute(run.model, x[:2], "saliency", layer="Conv2D_1")
    with pytest.raises(ConfigError, match=r"expected preprocessed images of shape \(n, 1, 28, 28\), "
                                          r"received \(2, 1, 20, 20\)"):
        saliency(run.model, np.zeros((2, 1, 20, 20), np.float32))
    with pytest.raises(ConfigError, match=r"baseline of shape \(3,\) does not fit images of shape \(1, 28, 28\)"):
        integrated_gradients(run.model, x[:2], baseline=np.zeros(3))
    with pytest.raises(ConfigError, match=r"fractions must start at 0, increase and stay below 1 \(at least 2\), "
                                          r"received \[0.0, 1.5\]"):
        deletion_score(run.model, x[:2], np.ones((2, 28, 28)), raw=np.zeros((2, 28, 28)), blank=blank,
                       fractions=(0, 1.5))
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        integrated_gradients(run.model, x[:2], steps=0)
