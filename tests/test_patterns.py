"""Input patterns that maximise a map: the maximisation test, reproducibility, bounds, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cnnscope
from cnnscope.base.errors import ConfigError, RunError, SpecError
from cnnscope.inspect import activations
from cnnscope.inspect.patterns import (
    input_bounds,
    map_statistics,
    maximize_activation,
    maximize_activation_result,
    parse_maps,
)

CONV_LAYERS = ("Conv2D_1", "Conv2D_2", "Conv2D_3")


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def dataset(run, data_dir):
    return run.dataset(data_dir)


@pytest.fixture(scope="module")
def bounds(dataset):
    return input_bounds(dataset.train_x)


@pytest.fixture(scope="module")
def results(run, bounds):
    """All maps of every conv layer (fewer steps than the defaults, to stay fast; the benchmark uses the defaults)."""
    lo, hi = bounds
    return {layer: maximize_activation_result(run.model, layer, None, steps=24, restarts=2, seed=0, lo=lo, hi=hi)
            for layer in CONV_LAYERS}


# --- --maps syntax ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("0:4", [0, 1, 2, 3]), ("5", [5]), ("1,4,9", [1, 4, 9]), ("0:2,9", [0, 1, 9]), (":3", [0, 1, 2]),
    ("14:", [14, 15]), (" 2 , 3 ", [2, 3]), ("3,3,1", [3, 1]), (None, list(range(16))), ([2, 7], [2, 7]),
])
def test_parse_maps(text, expected):
    assert parse_maps(text, 16, "Conv2D_3") == expected


@pytest.mark.parametrize("text", ["a", "1-4", "", "0:4:2", "1,,2", "x,1", "-1"])
def test_parse_maps_bad_syntax(text):
    with pytest.raises(ConfigError, match=r"--maps expects 'START:END', 'N' or 'N,M,…'"):
        parse_maps(text, 16)


def test_parse_maps_empty_range():
    with pytest.raises(ConfigError, match="range '4:2' is empty"):
        parse_maps("4:2", 16)


@pytest.mark.parametrize("text", ["0:32", "16", "1,20"])
def test_parse_maps_outside_the_layer_states_the_count(text):
    with pytest.raises(RunError, match=r"Conv2D_3, which has 16 maps \(valid: 0\.\.15\)"):
        parse_maps(text, 16, "Conv2D_3")


# --- the maximisation test -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", CONV_LAYERS)
def test_patterns_beat_every_test_image(run, dataset, results, layer):
    """For >= 90 % of the maps, the pattern's mean activation of its map is above the largest mean activation
    that map reaches on any test image (the "value" is the spatial mean per image, the quantity optimised)."""
    result = results[layer]
    stats = map_statistics(run.model, layer, dataset.test_x)
    above = result.activation > stats["max"]
    assert above.mean() >= 0.9, (layer, result.activation, stats["max"])
    assert np.all(stats["p99"] <= stats["max"]) and np.all(stats["max"] <= stats["max_element"] + 1e-6)


def test_reported_activation_is_the_maps_mean(run, results):
    for layer, result in results.items():
        maps = activations(run.model, layer, result.patterns[:, None])  # (k, maps, h, w)
        own = maps[np.arange(len(result.maps)), list(result.maps)].mean((1, 2))
        np.testing.assert_allclose(own, result.activation, rtol=1e-5, atol=1e-5)


def test_pixels_stay_inside_the_training_range(results, bounds):
    lo, hi = bounds  # (1, 28, 28) per pixel
    for result in results.values():
        assert result.patterns.shape == (len(result.maps), 28, 28)
        assert np.all(result.patterns >= lo[0] - 1e-5) and np.all(result.patterns <= hi[0] + 1e-5)
        assert np.mean((result.patterns <= lo[0] + 1e-3) | (result.patterns >= hi[0] - 1e-3)) > 0.2  # bounds bite


def test_pixels_that_never_varied_stay_put(run, bounds):
    lo, hi = (b.copy() for b in bounds)
    lo[:, :3], hi[:, :3] = 0.5, 0.5  # as for MNIST's always-black border under standardisation
    patterns = maximize_activation(run.model, "Conv2D_1", "0:3", steps=6, restarts=2, lo=lo, hi=hi)
    np.testing.assert_allclose(patterns[:, :3], 0.5)
    assert np.abs(patterns[:, 3:]).max() > 0.5


def test_scalar_bounds(run):
    patterns = maximize_activation(run.model, "Conv2D_2", "0:3", steps=8, restarts=2, lo=-0.25, hi=0.5)
    assert patterns.shape == (3, 28, 28)
    assert patterns.min() >= -0.25 - 1e-6 and patterns.max() <= 0.5 + 1e-6
    assert patterns.max() > 0.4  # the ascent pushes pixels to the bound


def test_reproducible_with_a_seed(run, bounds):
    lo, hi = bounds
    a = maximize_activation(run.model, "Conv2D_3", "0:4", steps=10, seed=3, restarts=2, lo=lo, hi=hi)
    b = maximize_activation(run.model, "Conv2D_3", "0:4", steps=10, seed=3, restarts=2, lo=lo, hi=hi)
    c = maximize_activation(run.model, "Conv2D_3", "0:4", steps=10, seed=4, restarts=2, lo=lo, hi=hi)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_maps_in_the_order_asked_and_restarts_recorded(run):
    result = maximize_activation_result(run.model, "Conv2D_3", [7, 2, 11], steps=6, restarts=3)
    assert result.maps == (7, 2, 11)
    assert result.patterns.shape == (3, 28, 28) and result.activation.shape == (3,)
    assert result.restart_activation.shape == (3, 3)
    # The refined best restart does at least as well as the best restart did at the end of exploration.
    assert np.all(result.activation >= result.restart_activation.max(1) - 1e-4)


def test_all_maps_in_one_batch(run):
    """maps × restarts images per step while exploring, then one per map; never one map at a time."""
    sizes: list[int] = []
    handle = run.model.layer("Conv2D_1").register_forward_hook(lambda m, i, o: sizes.append(len(o)))
    try:
        maximize_activation(run.model, "Conv2D_2", "0:5", steps=8, restarts=3)
    finally:
        handle.remove()
    assert set(sizes) == {15, 5}
    assert sizes.count(15) == 2 + 1  # 2 exploration steps (a quarter of 8) + the scoring of the restarts


def test_model_left_as_found(run, dataset):
    model = run.model
    x = torch.from_numpy(dataset.test_x[:20])
    with torch.no_grad():
        before = model(x)
    model.train()
    try:
        maximize_activation(model, "Conv2D_1", "0:2", steps=3)
        assert model.training
    finally:
        model.eval()
    assert all(not m._forward_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(p.grad is None for p in model.parameters())


def test_dense_units_have_patterns_too(run):
    result = maximize_activation_result(run.model, "Dense_2", "0:3", steps=12, restarts=2, lo=-1, hi=3)
    assert result.patterns.shape == (3, 28, 28)
    logits = run.model(torch.from_numpy(result.patterns[:, None])).detach().numpy()
    assert list(logits.argmax(1)) == [0, 1, 2]  # each class's pattern is classified as that class


def test_errors(run):
    with pytest.raises(SpecError, match="unknown layer 'Conv2D_9'; valid: Conv2D_1, Max_Pool_1"):
        maximize_activation(run.model, "Conv2D_9", "0")
    with pytest.raises(ConfigError, match="steps and restarts must be >= 1"):
        maximize_activation(run.model, "Conv2D_1", "0", steps=0)
    with pytest.raises(ConfigError, match=r"do not fit the input shape \(1, 28, 28\)"):
        maximize_activation(run.model, "Conv2D_1", "0", lo=np.zeros((5, 5)), hi=1.0)
    with pytest.raises(ConfigError, match="lo is above hi"):
        maximize_activation(run.model, "Conv2D_1", "0", lo=1.0, hi=0.0)
    with pytest.raises(RunError, match="which has 6 maps"):
        maximize_activation(run.model, "Conv2D_1", "6")


# --- fuzzing --maps ----------------------------------------------------------------------------------------

_MAPS_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.integers(-5, 80).map(str),
                       st.tuples(st.one_of(st.none(), st.integers(-5, 80)), st.one_of(st.none(), st.integers(-5, 80)))
                       .map(lambda p: f"{'' if p[0] is None else p[0]}:{'' if p[1] is None else p[1]}")),
             min_size=1, max_size=6).map(",".join))


@given(text=_MAPS_TEXT, count=st.integers(1, 64))
def test_parse_maps_property(text, count):
    """Any --maps text gives map numbers inside the layer, or one CnnscopeError line; nothing else."""
    from cnnscope.base.errors import CnnscopeError
    from cnnscope.inspect.patterns import parse_maps

    try:
        maps = parse_maps(text, count, "Conv2D_1")
    except CnnscopeError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert maps and all(isinstance(m, int) and 0 <= m < count for m in maps)
