"""Comparing two runs: the Hungarian solver, correlations, self-comparison, a second seed, errors."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.base.errors import RunError, SpecError
from cnnscope.inspect import activations
from cnnscope.inspect.compare import (
    activation_correlation,
    compare_many,
    compare_runs,
    kernel_correlation,
    linear_assignment,
    match_maps,
)
from cnnscope.model.network import build_model
from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec
from cnnscope.model.zoo import presets
from conftest import one_line_error, run_cli

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


# --- many runs -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def third_run(tmp_path_factory, data_dir, tiny_spec):
    """The tiny model from a third seed (1 epoch: it need not be good, only different)."""
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    out = tmp_path_factory.mktemp("runs") / "tiny-seed2"
    config = cnnscope.TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=0.003, seed=2)
    cnnscope.train(tiny_spec, ds, config, out=out, progress=False, plot=False)
    return cnnscope.load_run(out)


def test_many_runs_matrix_is_the_pairwise_matching(run, other_run, third_run, images):
    models = [run.model, other_run.model, third_run.model]
    x = images[:120]
    results = compare_many(models, ["Conv2D_1", "Conv2D_3"], [x, x, x], threshold=0.8, batch_size=50)
    assert [r["layer"] for r in results] == ["Conv2D_1", "Conv2D_3"]
    for result in results:
        matrix = np.array(result["matrix"])
        assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
        for i, j in ((0, 1), (0, 2), (1, 2)):  # one source: each cell is the two-run comparison's number
            pair = compare_runs(models[i], models[j], result["layer"], x, kernels=False)
            assert matrix[i, j] == pytest.approx(pair["mean_correlation"], abs=1e-9)
        first = result["first_run_maps"]
        assert [m["map"] for m in first] == list(range(result["maps"]))
        for j, model in ((1, other_run.model), (2, third_run.model)):
            pair = compare_runs(run.model, model, result["layer"], x, kernels=False)
            assert [m["partners"][j - 1] for m in first if not m["constant"]] == \
                [b for a, b, _ in pair["matching"] if not first[a]["constant"]]
        for m in first:
            assert m["found_by"] == (0 if m["constant"] else sum(r > 0.8 for r in m["r"]))
        assert result["found_by_all"] == sum(m["found_by"] == 2 for m in first)


def test_many_runs_with_themselves_find_every_map(run, images):
    results = compare_many([run.model] * 3, ["Conv2D_2"], [images[:60]] * 3)
    result = results[0]
    live = 12 - result["constant_maps"][0]
    assert np.allclose(result["matrix"], 1.0)
    assert result["found_by_all"] == live and result["matched_above"][0][1] == live


def test_many_runs_cost_one_forward_pass_per_run_and_batch(run, other_run, third_run, images):
    calls = {}
    models = [copy.deepcopy(m) for m in (run.model, other_run.model, third_run.model)]
    handles = [m.register_forward_pre_hook(lambda mod, _inp, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
               for i, m in enumerate(models)]
    try:
        compare_many(models, ["Conv2D_1", "Conv2D_2", "Conv2D_3"], [images[:100]] * 3, batch_size=50)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {0: 2, 1: 2, 2: 2}  # N runs × 2 batches for all three layers, not N² pairs


def test_many_runs_leave_models_and_images_alone(run, other_run, images):
    x = np.asfortranarray(images[:30])
    before = x.copy()
    run.model.train()
    try:
        compare_many([run.model, other_run.model], ["Conv2D_1"], [x, x])
        assert run.model.training and not other_run.model.training
    finally:
        run.model.eval()
    np.testing.assert_array_equal(x, before)
    assert not any(m._forward_hooks for m in run.model.modules())


def test_many_runs_errors(run, other_run, images):
    wider = build_model(ModelSpec(conv=(ConvSpec(8, pool=PoolSpec()), ConvSpec(12, pool=PoolSpec()), ConvSpec(16)),
                                  dense=(DenseSpec(24),)), seed=0)
    with pytest.raises(RunError, match=r"cannot compare Conv2D_1: run 0 has 6 maps \(6×26×26\) but run 2 has 8 maps"):
        compare_many([run.model, other_run.model, wider], ["Conv2D_1"], [images[:5]] * 3)
    two = build_model(ModelSpec(conv=(ConvSpec(6, pool=PoolSpec()), ConvSpec(12)), dense=(DenseSpec(24),)), seed=0)
    with pytest.raises(SpecError, match="run 1: unknown layer 'Conv2D_3'; valid: Conv2D_1, Max_Pool_1, Conv2D_2"):
        compare_many([run.model, two], ["Conv2D_3"], [images[:5]] * 2)
    with pytest.raises(RunError, match=r"compare needs the same images \(at least one\) for every run, received "
                                       r"\[4, 5\]"):
        compare_many([run.model, other_run.model], ["Conv2D_1"], [images[:5], images[:4]])
    with pytest.raises(RunError, match="one image array per run is needed: 2 runs, 1 arrays"):
        compare_many([run.model, other_run.model], ["Conv2D_1"], [images[:5]])


# --- the command for many runs -------------------------------------------------------------------------------
def _study(root, runs, unfinished):
    """A study directory in the sweep layout: study.toml and trials/NNNN/ run directories (one not finished)."""
    (root / "trials").mkdir(parents=True)
    (root / "study.toml").write_text("[sweep]\n")
    for k, path in enumerate(runs):
        shutil.copytree(path, root / "trials" / f"{k:04d}")
    shutil.copytree(unfinished, root / "trials" / "0099")
    metrics = root / "trials" / "0099" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "status": "interrupted"}))
    return root


def test_compare_three_runs_json_and_figures(run, other_run, third_run, data_dir, tmp_path, capsys):
    out = tmp_path / "many.png"
    code, stdout, _ = run_cli(capsys, "compare", run.path, other_run.path, third_run.path, "--layer", "all",
                           "--limit", 80, "--data-dir", data_dir, "--out", out, "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["names"] == ["tiny", "tiny-seed1", "tiny-seed2"] and data["images"] == 80
    assert [layer["layer"] for layer in data["layers"]] == list(CONV)
    assert data["threshold"] == 0.9
    for layer in data["layers"]:
        assert len(layer["matrix"]) == 3 and layer["matrix"][0][0] == 1.0
        assert len(layer["first_run_maps"]) == layer["maps"]
    assert data["figures"] == [str(tmp_path / f"many-{kind}-{layer}.png") for layer in CONV
                               for kind in ("matrix", "found")]
    assert all(open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in data["figures"])


def test_compare_a_study_uses_its_completed_trials(run, other_run, third_run, data_dir, tmp_path, capsys):
    study = _study(tmp_path / "study", [run.path, other_run.path, third_run.path], third_run.path)
    code, stdout, _ = run_cli(capsys, "compare", study, "--layer", "Conv2D_1", "--threshold", "0.5", "--limit", 50,
                           "--data-dir", data_dir)
    assert code == 0
    assert f"note: {study / 'trials' / '0099'}: left out (interrupted)" in stdout
    assert "3 seeds compared over 50 test images: 0000, 0001, 0002" in stdout
    assert "Conv2D_1: mean matched correlation (6 maps); above the diagonal trained, below at initialisation" in stdout
    found = r"\n  \d of 6 maps \(\d at initialisation\) of 0000 found by all 2 other runs \(matched r > 0\.5\)"
    assert re.search(found, stdout)
    assert f"figure: {study / 'compare-matrix-Conv2D_1.png'}" in stdout
    assert (study / "compare-found-Conv2D_1.png").is_file()


def test_two_runs_with_matrix_and_several_layers(run, other_run, data_dir, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "compare", run.path, other_run.path, "--layer", "Conv2D_1", "--layer",
                           "Conv2D_2", "--limit", 40, "--data-dir", data_dir, "--out", tmp_path / "m.png", "--json")
    assert code == 0
    data = json.loads(stdout)
    assert [layer["layer"] for layer in data["layers"]] == ["Conv2D_1", "Conv2D_2"]
    pair = compare_runs(run.model, other_run.model, "Conv2D_2", run.dataset(data_dir).test_x[:40], kernels=False)
    assert data["layers"][1]["matrix"][0][1] == pytest.approx(pair["mean_correlation"], abs=1e-9)
    assert data["layers"][1]["matched_above"][0][1] == pair["matched_above_0.9"]


@pytest.mark.parametrize("argv, message", [
    (["{a}", "--layer", "Conv2D_1"],
     "error: compare needs at least two runs, or a study with at least two completed trials; received 1 run(s) "
     "from {a}"),
    (["{a}", "{b}", "{c}", "--layer", "Conv2D_9"], "error: run tiny: unknown layer 'Conv2D_9'; valid: Conv2D_1, "
                                                   "Max_Pool_1, Conv2D_2, Max_Pool_2, Conv2D_3, Flatten_1, Dense_1, "
                                                   "Dense_2"),
    (["{a}", "{b}", "--layer", "Conv2D_1", "--threshold", "1.5"],
     "error: threshold must be a correlation between -1 and 1 (1 excluded), received 1.5"),
    (["{a}", "{b}", "{fashion}", "--layer", "all"],
     "error: cannot compare runs of different datasets: tiny was trained on mnist, fashion on fashion-mnist"),
    (["{a}", "{b}", "{a}/nowhere", "--layer", "all"], "error: run directory not found"),
])
def test_compare_many_errors(argv, message, run, other_run, third_run, data_dir, tmp_path, capsys):
    fashion = tmp_path / "fashion"
    shutil.copytree(third_run.path, fashion)
    config = fashion / "config.toml"
    config.write_text(config.read_text().replace('dataset = "mnist"', 'dataset = "fashion-mnist"'))
    paths = {"a": run.path, "b": other_run.path, "c": third_run.path, "fashion": fashion}
    argv = [arg.format(**paths) for arg in argv]
    code, stdout, err = run_cli(capsys, "compare", *argv, "--data-dir", data_dir, "--out", tmp_path / "x.png")
    assert code == 2 and stdout == ""
    line = one_line_error(err)
    assert line.startswith(message.format(**paths))
    assert not list(tmp_path.glob("x*.png"))


def test_a_study_with_one_completed_trial(run, third_run, data_dir, tmp_path, capsys):
    study = _study(tmp_path / "s", [run.path], third_run.path)
    code, _, err = run_cli(capsys, "compare", study, "--layer", "Conv2D_1", "--data-dir", data_dir)
    assert code == 2
    assert one_line_error(err) == (f"error: compare needs at least two runs, or a study with at least two completed "
                                   f"trials; received 1 run(s) from {study}")
