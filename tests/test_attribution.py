"""Saliency, Grad-CAM, integrated gradients: shapes, targets, completeness, and the deletion test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.errors import ConfigError, SpecError
from cnnscope.inspect.attribution import (
    METHODS,
    _input_grid,
    deletion_score,
    get_method,
    grad_cam,
    integrated_gradients,
    last_conv_layer,
    saliency,
)


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def test_set(run, data_dir):
    ds = run.dataset(data_dir)
    return ds.test_x[:100], ds.test_y[:100]


@pytest.fixture(scope="module")
def blank(run):
    return run.preprocessor(np.zeros((1, 28, 28), np.uint8))[0]  # (1, 28, 28): a black pixel, preprocessed


def _heat(name, model, x, blank, **kw):
    if name == "integrated-gradients":
        kw.setdefault("baseline", blank)
    return get_method(name)(model, x, **kw)


@pytest.mark.parametrize("name", list(METHODS))
def test_shapes_and_inputs(run, test_set, blank, name):
    x, _ = test_set
    heat = _heat(name, run.model, x[:5], blank)
    assert heat.shape == (5, 28, 28) and heat.dtype == np.float32 and np.isfinite(heat).all()
    assert heat.reshape(5, -1).std(1).min() > 0  # not a constant map
    np.testing.assert_allclose(_heat(name, run.model, x[:5, 0], blank), heat, rtol=1e-5, atol=1e-7)  # (n, H, W)
    np.testing.assert_allclose(_heat(name, run.model, torch.from_numpy(x[:5]), blank), heat, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(METHODS))
def test_deletion_test(run, test_set, blank, name):
    """Over 100 test images, blanking the 20 % of pixels the method ranks highest lowers the class probability
    more than blanking a random 20 %, on average."""
    x, _ = test_set
    heat = _heat(name, run.model, x, blank)
    result = deletion_score(run.model, x, heat, 0.2, blank=blank)
    assert result.drop_top.mean() > result.drop_random.mean() + 0.05, result.summary()
    assert result.probability.shape == result.after_top.shape == result.after_random.shape == (100,)
    summary = result.summary()
    assert summary["images"] == 100 and summary["fraction"] == 0.2
    assert summary["drop_top"] == pytest.approx(float(result.drop_top.mean()))


def test_deletion_with_a_useless_heat_map_is_like_random(run, test_set, blank):
    x, _ = test_set
    anti = -saliency(run.model, x)  # ranks the least important pixels first
    result = deletion_score(run.model, x, anti, 0.2, blank=blank, random_draws=2)
    assert result.drop_top.mean() < result.drop_random.mean()


def test_deletion_blanks_exactly_the_fraction(run, test_set, blank):
    x, _ = test_set
    # A heat map ranking the top-left 10×10 block first: blanking 100 of 784 pixels (fraction 100/784) to
    # black must equal setting that block to black by hand.
    heat = np.zeros((3, 28, 28), np.float32)
    heat[:, :10, :10] = 1
    result = deletion_score(run.model, x[:3], heat, 100 / 784, blank=blank, target=[0, 1, 2])
    manual = x[:3].copy()
    manual[:, :, :10, :10] = blank[:, :10, :10]
    probs = run.model.probabilities(run.model(torch.from_numpy(manual))).detach().numpy()
    np.testing.assert_allclose(result.after_top, probs[np.arange(3), [0, 1, 2]], rtol=1e-5)
    assert list(result.target) == [0, 1, 2]


def test_targets(run, test_set):
    x, y = test_set
    predicted = run.model(torch.from_numpy(x[:4])).argmax(1).numpy()
    np.testing.assert_allclose(saliency(run.model, x[:4]), saliency(run.model, x[:4], target=predicted))
    other = (predicted + 1) % 10
    assert not np.allclose(grad_cam(run.model, x[:4]), grad_cam(run.model, x[:4], target=other))
    one = saliency(run.model, x[:4], target=3)
    np.testing.assert_allclose(one, saliency(run.model, x[:4], target=[3, 3, 3, 3]))
    with pytest.raises(ConfigError, match=r"target class 10 is not a class of this model \(valid: 0\.\.9\)"):
        saliency(run.model, x[:2], target=10)
    with pytest.raises(ConfigError, match=r"one class or one per image \(2\)"):
        saliency(run.model, x[:2], target=[1, 2, 3])


def test_integrated_gradients_completeness(run, test_set, blank):
    """Attributions sum to score(x) − score(baseline) (the method's defining property)."""
    x, _ = test_set
    model = run.model
    heat = integrated_gradients(model, x[:6], steps=64, baseline=blank)
    with torch.no_grad():
        logits = model(torch.from_numpy(x[:6]))
        base = model(torch.from_numpy(np.broadcast_to(blank, x[:6].shape).copy()))
    t = logits.argmax(1)
    expected = (logits[range(6), t] - base[range(6), t]).numpy()
    np.testing.assert_allclose(heat.reshape(6, -1).sum(1), expected, rtol=0.05, atol=0.05)
    zero = integrated_gradients(model, x[:2], steps=8)  # Captum's default baseline: zeros
    assert zero.shape == (2, 28, 28) and not np.allclose(zero, heat[:2])


def test_grad_cam_layers_and_placement(run, test_set):
    x, _ = test_set
    model = run.model
    assert last_conv_layer(model) == "Conv2D_3"
    # Conv2D_3 of this model: 3×3 cells 4 pixels apart, centred from pixel 8.5, each seeing 18 pixels.
    assert _input_grid(model, "Conv2D_3") == ((8.5, 4.0, 18.0), (8.5, 4.0, 18.0))
    assert _input_grid(model, "Max_Pool_1") == ((1.5, 2.0, 4.0), (1.5, 2.0, 4.0))
    heat = grad_cam(model, x[:5])
    assert heat.min() >= 0
    assert np.all(heat[:, 26:, :] == 0) and np.all(heat[:, :, 26:] == 0)  # pixels no Conv2D_3 cell sees
    np.testing.assert_allclose(heat, grad_cam(model, x[:5], layer="Conv2D_3"))
    fine = grad_cam(model, x[:5], layer="Conv2D_1")
    assert fine.shape == (5, 28, 28) and not np.allclose(fine, heat)
    with pytest.raises(SpecError, match="Grad-CAM needs a layer with maps; 'Dense_1' has none; valid: Conv2D_1"):
        grad_cam(model, x[:2], layer="Dense_1")
    with pytest.raises(SpecError, match="unknown layer 'nope'; valid:"):
        grad_cam(model, x[:2], layer="nope")


def test_model_left_as_found(run, test_set, blank):
    x, _ = test_set
    model = run.model
    with torch.no_grad():
        before = model(torch.from_numpy(x[:10]))
    for name in METHODS:
        _heat(name, model, x[:3], blank)
    deletion_score(model, x[:3], np.ones((3, 28, 28)), blank=blank)
    assert not model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(torch.from_numpy(x[:10])), before)


def test_errors(run, test_set, blank):
    x, _ = test_set
    with pytest.raises(ConfigError, match="unknown method 'lime'; valid: gradcam, saliency, integrated-gradients"):
        get_method("lime")
    with pytest.raises(ConfigError, match=r"expected preprocessed images of shape \(n, 1, 28, 28\)"):
        saliency(run.model, np.zeros((2, 1, 20, 20), np.float32))
    with pytest.raises(ConfigError, match="fraction must be between 0 and 1"):
        deletion_score(run.model, x[:2], np.ones((2, 28, 28)), 1.5, blank=blank)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        integrated_gradients(run.model, x[:2], steps=0)
