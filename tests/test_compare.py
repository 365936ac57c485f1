"""Comparing two runs: the Hungarian solver, correlations, self-comparison, a second seed, errors."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.errors import RunError, SpecError
from cnnscope.inspect import activations
from cnnscope.inspect.compare import (
    activation_correlation,
    compare_runs,
    kernel_correlation,
    linear_assignment,
    match_maps,
)
from cnnscope.model import build_model
from cnnscope.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec, presets

LAYERS = ("Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3", "Dense_1")
CONV = ("Conv2D_1", "Conv2D_2", "Conv2D_3")


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def other_run(tmp_path_factory, data_dir, tiny_spec):
    """The same tiny model trained from another seed (as tests/conftest.py's trained_run, seed 1, 2 epochs)."""
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    out = tmp_path_factory.mktemp("runs") / "tiny-seed1"
    config = cnnscope.TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=0.003, seed=1)
    trained = cnnscope.train(tiny_spec, ds, config, out=out, progress=False)
    assert trained.metrics["test_accuracy"] > 0.9, trained.metrics
    return cnnscope.load_run(out)


@pytest.fixture(scope="module")
def images(run, data_dir):
    return run.dataset(data_dir).test_x[:200]


# --- the assignment problem ----------------------------------------------------------------------------------
def _brute_force(cost: np.ndarray) -> float:
    """The smallest total cost of a one-to-one assignment of min(n, m) rows to columns, by enumeration."""
    n, m = cost.shape
    if n <= m:
        return min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n))
    return _brute_force(cost.T)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (5, 5), (6, 6), (3, 6), (6, 3), (1, 5), (5, 2)])
def test_assignment_equals_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(15):
        cost = rng.normal(size=shape)
        if trial % 3 == 1:
            cost = rng.integers(0, 3, size=shape).astype(float)  # many ties
        elif trial % 3 == 2:
            cost = -np.abs(cost) * 100  # all negative, large
        rows, cols = linear_assignment(cost)
        k = min(shape)
        assert len(rows) == len(cols) == k
        assert list(rows) == sorted(rows) and len(set(rows)) == k and len(set(cols)) == k
        assert rows.min() >= 0 and rows.max() < shape[0] and cols.min() >= 0 and cols.max() < shape[1]
        if shape[0] <= shape[1]:
            assert rows.tolist() == list(range(shape[0]))  # every row assigned
        else:
            assert sorted(cols.tolist()) == list(range(shape[1]))  # every column assigned
        assert cost[rows, cols].sum() == pytest.approx(_brute_force(cost), abs=1e-9)


def test_assignment_finds_a_hidden_permutation():
    rng = np.random.default_rng(0)
    perm = rng.permutation(40)
    score = rng.uniform(0, 0.5, (40, 40))
    score[np.arange(40), perm] = 1.0
    rows, cols = linear_assignment(-score)
    assert rows.tolist() == list(range(40)) and cols.tolist() == perm.tolist()


def test_assignment_edge_cases():
    rows, cols = linear_assignment(np.zeros((0, 4)))
    assert rows.shape == cols.shape == (0,)
    with pytest.raises(ValueError, match=r"cost must be a 2-D matrix, received shape \(3,\)"):
        linear_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="cost must hold finite numbers only"):
        linear_assignment(np.array([[0.0, np.inf], [1.0, 2.0]]))


# --- matching ------------------------------------------------------------------------------------------------
def test_match_maps_summary_and_schema():
    corr = np.array([[0.20, 0.95, 0.10],
                     [0.97, 0.30, 0.00],
                     [0.10, 0.20, 0.50]])
    result = match_maps(corr)
    assert result["matching"] == [[0, 1, 0.95], [1, 0, 0.97], [2, 2, 0.5]]
    assert result["mean_correlation"] == pytest.approx((0.95 + 0.97 + 0.5) / 3)
    assert result["matched_above_0.9"] == 2 and result["pairs"] == 3 and result["identity_matches"] == 1
    assert result["mean_best_correlation"] == pytest.approx((0.95 + 0.97 + 0.5) / 3)
    assert match_maps(corr, threshold=0.96)["matched_above_0.96"] == 1


def test_match_maps_leaves_dead_pairs_out_of_the_summary():
    corr = np.array([[1.0, 0.0, 0.0],
                     [0.0, 0.6, 0.0],
                     [0.0, 0.0, 1.0]])  # map 2 constant in both runs (r counted as 1.0)
    dead = np.array([False, False, True])
    result = match_maps(corr, dead, dead)
    assert result["constant_pairs"] == 1 and result["pairs"] == 2
    assert result["mean_correlation"] == pytest.approx(0.8)
    assert result["mean_correlation_all"] == pytest.approx(2.6 / 3)
    assert result["matched_above_0.9"] == 1


def test_match_maps_keeps_the_identity_on_ties():
    result = match_maps(np.ones((5, 5)))
    assert [m[:2] for m in result["matching"]] == [[i, i] for i in range(5)]


# --- correlations --------------------------------------------------------------------------------------------
def test_activation_correlation_equals_numpy(run, other_run, images):
    x = images[:60]
    corr, const_a, const_b = activation_correlation(run.model, other_run.model, "Conv2D_2", x, batch_size=7)
    a = activations(run.model, "Conv2D_2", x)
    b = activations(other_run.model, "Conv2D_2", x)
    va = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1).astype(np.float64)
    vb = np.moveaxis(b, 1, 0).reshape(b.shape[1], -1).astype(np.float64)
    assert corr.shape == (12, 12)
    np.testing.assert_array_equal(const_a, va.std(1) == 0)
    np.testing.assert_array_equal(const_b, vb.std(1) == 0)
    live_a, live_b = ~const_a, ~const_b
    expected = np.corrcoef(va[live_a], vb[live_b])[:live_a.sum(), live_a.sum():]
    np.testing.assert_allclose(corr[np.ix_(live_a, live_b)], expected, atol=1e-6)


def test_kernel_correlation_equals_numpy(run, other_run):
    corr = kernel_correlation(run.model, other_run.model, "Conv2D_1")
    wa = run.model.layer("Conv2D_1").conv.weight.detach().double().numpy().reshape(6, -1)
    wb = other_run.model.layer("Conv2D_1").conv.weight.detach().double().numpy().reshape(6, -1)
    np.testing.assert_allclose(corr, np.corrcoef(wa, wb)[:6, 6:], atol=1e-9)


# --- a run with itself ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", LAYERS)
def test_a_run_with_itself_is_the_identity(run, images, layer):
    result = compare_runs(run.model, run.model, layer, images)
    maps = run.spec.layer(layer).output_shape[0]
    assert result["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
    assert result["matching"] == [[i, i, 1.0] for i in range(maps)]
    assert result["identity_matches"] == maps
    assert result["matched_above_0.9"] == result["pairs"] == maps - result["constant_pairs"]
    if layer in CONV:
        kernels = result["kernels"]
        assert kernels["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
        assert kernels["matching"] == [[i, i, 1.0] for i in range(maps)]
        assert kernels["agreement_with_activation_matching"] == 1.0
    else:
        assert result["kernels"] is None


def test_a_permuted_copy_is_matched_to_its_permutation(run, images):
    """Shuffle Conv2D_2's maps (and Conv2D_3's input channels to match) and Conv2D_3's maps (and the dense
    layer's inputs): the network computes the same function, and compare must recover both permutations,
    for activations and, after reordering the input channels, for kernels."""
    model = copy.deepcopy(run.model)
    rng = np.random.default_rng(5)
    p2, p3 = rng.permutation(12), rng.permutation(16)
    with torch.no_grad():
        c2, c3 = model.layer("Conv2D_2").conv, model.layer("Conv2D_3").conv
        c2.weight.copy_(c2.weight[p2])
        c2.bias.copy_(c2.bias[p2])
        c3.weight.copy_(c3.weight[:, p2][p3])
        c3.bias.copy_(c3.bias[p3])
        dense = model.layer("Dense_1").linear  # flatten order: channel-major, 3×3 positions per channel
        index = torch.arange(16 * 9).view(16, 9)[torch.from_numpy(p3)].flatten()
        dense.weight.copy_(dense.weight[:, index])
    x = torch.from_numpy(images)
    with torch.no_grad():
        torch.testing.assert_close(model(x), run.model(x), rtol=1e-4, atol=1e-4)
    for layer, perm in (("Conv2D_2", p2), ("Conv2D_3", p3)):
        result = compare_runs(run.model, model, layer, images)
        # map a of A is map b of B where perm[b] = a
        expected = np.argsort(perm)
        live = [m for m in result["matching"] if m[0] not in result["constant_map_indices_a"]]
        assert [m[1] for m in live] == [int(expected[m[0]]) for m in live]
        assert all(m[2] == pytest.approx(1.0, abs=1e-5) for m in result["matching"])
        assert result["identity_matches"] < len(perm) - 2
        kernels = result["kernels"]
        assert [m[1] for m in kernels["matching"]] == expected.tolist()
        assert kernels["mean_correlation"] == pytest.approx(1.0, abs=1e-6)


# --- two seeds -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["Conv2D_1", "Conv2D_3", "Dense_1"])
def test_two_seeds_correlate_less(run, other_run, images, layer):
    result = compare_runs(run.model, other_run.model, layer, images)
    maps = run.spec.layer(layer).output_shape[0]
    corr = [c for _, _, c in result["matching"]]
    assert result["mean_correlation"] < 0.95
    assert result["matched_above_0.9"] < result["pairs"]
    assert min(corr) < 0.9
    assert sorted(a for a, _, _ in result["matching"]) == list(range(maps))
    assert sorted(b for _, b, _ in result["matching"]) == list(range(maps))
    # one-to-one never beats each map's best partner
    assert result["mean_best_correlation"] >= result["mean_correlation"] - 1e-12
    if layer in CONV:
        assert result["kernels"]["mean_correlation"] < 0.95


def test_result_is_the_documented_json(run, other_run, images):
    result = compare_runs(run.model, other_run.model, "Conv2D_2", images)
    data = json.loads(json.dumps(result, allow_nan=False))  # plain JSON: no numpy types, no NaN
    assert {"mean_correlation", "matched_above_0.9", "matching"} <= set(data)
    assert isinstance(data["mean_correlation"], float) and isinstance(data["matched_above_0.9"], int)
    corr, _, _ = activation_correlation(run.model, other_run.model, "Conv2D_2", images)
    assert len(data["matching"]) == 12
    for a, b, c in data["matching"]:
        assert isinstance(a, int) and isinstance(b, int) and isinstance(c, float)
        assert c == pytest.approx(corr[a, b], abs=1e-6)
    dead_a, dead_b = set(data["constant_map_indices_a"]), set(data["constant_map_indices_b"])
    live = [c for a, b, c in data["matching"] if not (a in dead_a and b in dead_b)]
    assert data["pairs"] == len(live)
    assert data["matched_above_0.9"] == sum(c > 0.9 for c in live)
    # the matching maximises the summed correlation: no pair of swaps improves it
    rows = [a for a, _, _ in data["matching"]]
    cols = [b for _, b, _ in data["matching"]]
    best = corr[rows, cols].sum()
    for i, j in itertools.combinations(range(12), 2):
        swapped = cols.copy()
        swapped[i], swapped[j] = swapped[j], swapped[i]
        assert corr[rows, swapped].sum() <= best + 1e-9


# --- errors --------------------------------------------------------------------------------------------------
def test_wrong_layer_name(run, other_run, images):
    with pytest.raises(SpecError, match="run A: unknown layer 'Conv9'; valid: Conv2D_1, Max_Pool_1, Conv2D_2"):
        compare_runs(run.model, other_run.model, "Conv9", images)


def test_layer_missing_in_one_run(run, images):
    two = build_model(ModelSpec(conv=(ConvSpec(6, pool=PoolSpec()), ConvSpec(12)), dense=(DenseSpec(24),)), seed=0)
    with pytest.raises(SpecError, match="run B: unknown layer 'Conv2D_3'; valid: Conv2D_1, Max_Pool_1, Conv2D_2, "
                                        "Flatten_1"):
        compare_runs(run.model, two, "Conv2D_3", images)


def test_different_map_counts(run, tiny_spec, images):
    wider = build_model(ModelSpec(conv=(ConvSpec(8, pool=PoolSpec()), ConvSpec(12, pool=PoolSpec()), ConvSpec(16)),
                                  dense=(DenseSpec(24),)), seed=0)
    with pytest.raises(RunError, match=r"cannot compare Conv2D_1: run A has 6 maps \(6×26×26\) but run B has 8 maps "
                                       r"\(8×26×26\); compare needs runs whose specs agree on that layer"):
        compare_runs(run.model, wider, "Conv2D_1", images)
    with pytest.raises(RunError, match=r"cannot compare Dense_1: run A has 24 units \(24\) but run B has 30 units"):
        compare_runs(run.model, build_model(ModelSpec(conv=tiny_spec.conv, dense=(DenseSpec(30),)), seed=0),
                     "Dense_1", images)


def test_other_errors(run, other_run, images):
    with pytest.raises(RunError, match="images for A and B differ in number: 10 vs 9"):
        compare_runs(run.model, other_run.model, "Conv2D_1", images[:10], images[:9])
    with pytest.raises(RunError, match="compare needs at least one image"):
        compare_runs(run.model, other_run.model, "Conv2D_1", images[:0])
    with pytest.raises(SpecError, match="layer 'Max_Pool_1' has no kernels; conv layers: Conv2D_1, Conv2D_2, "
                                        "Conv2D_3"):
        kernel_correlation(run.model, other_run.model, "Max_Pool_1")
    big = build_model(presets["seed-iv"], seed=0)
    with pytest.raises(RunError, match="Flatten_1 has 1152 maps/units; compare matches at most 1024"):
        compare_runs(big, big, "Flatten_1", np.zeros((2, 1, 28, 28), np.float32))
