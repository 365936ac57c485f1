"""compare's baseline: the same statistic for the runs at their initial weights, in --json, text and figures;
runs without initial weights; which runs count as "seeds" (describe_runs, the dashboard's title)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cnnscope
from cnnscope.inspect.compare import compare_many, compare_runs
from cnnscope.views.compare import compare, compare_many_runs, describe_runs, study_matrix
from conftest import run_cli
from test_catalog import copy_run

PAIR_KEYS = {"weights", "mean_correlation", "median_correlation", "matched_above_0.9", "pairs", "constant_pairs",
             "mean_correlation_all", "mean_best_correlation", "constant_maps_a", "constant_maps_b"}


def _trained(tmp_path_factory, data_dir, tiny_spec, seed: int, name: str, initial: Path | None = None) -> Path:
    """The tiny model trained 1 epoch from `seed` (from `initial` weights when given)."""
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    out = tmp_path_factory.mktemp("runs") / name
    config = cnnscope.TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=0.003, seed=seed)
    cnnscope.train(tiny_spec, ds, config, out=out, progress=False, plot=False, report=False,
                   initial_weights=initial)
    return out


@pytest.fixture(scope="module")
def seed1(tmp_path_factory, data_dir, tiny_spec) -> Path:
    return _trained(tmp_path_factory, data_dir, tiny_spec, 1, "seed1")


@pytest.fixture(scope="module")
def twin(tmp_path_factory, data_dir, tiny_spec, trained_run) -> Path:
    """Seed 1 trained from the tiny run's initial weights: the two runs share their start, not their end."""
    return _trained(tmp_path_factory, data_dir, tiny_spec, 1, "twin", trained_run / "initial.safetensors")


def _without_initial(run: Path, where: Path) -> Path:
    """A copy of a run as older cnnscope versions wrote it: no initial.safetensors."""
    copy = Path(shutil.copytree(run, where))
    (copy / "initial.safetensors").unlink()
    return copy


# --- two runs ------------------------------------------------------------------------------------------------
def test_two_untrained_copies_of_one_model_have_baseline_one(trained_run, twin, data_dir, tmp_path):
    data = compare(trained_run, twin, "Conv2D_2", limit=60, pairs=4, out=tmp_path / "c.png",
                   data_dir=data_dir).data
    assert data["baseline"]["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
    assert data["baseline"]["matched_above_0.9"] == data["baseline"]["pairs"]
    assert data["kind"] == "trials"  # seeds 0 and 1, but one start
    assert data["kernels"]["baseline"]["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
    assert data["mean_correlation"] < 0.999  # trained apart, they no longer match map for map


def test_baseline_is_compare_runs_on_the_initial_weights(trained_run, seed1, data_dir, tmp_path):
    data = compare(trained_run, seed1, "Conv2D_1", limit=50, pairs=4, out=tmp_path / "c.png",
                   data_dir=data_dir).data
    a, b = cnnscope.load_run(trained_run), cnnscope.load_run(seed1)
    a.reset_weights()
    b.reset_weights()
    x = a.dataset(data_dir).test_x[:50]
    expected = compare_runs(a.model, b.model, "Conv2D_1", x)
    assert set(data["baseline"]) == PAIR_KEYS and data["baseline"]["weights"] == "initial.safetensors"
    for key in PAIR_KEYS - {"weights"}:
        assert data["baseline"][key] == pytest.approx(expected[key], abs=1e-9), key
    assert data["kernels"]["baseline"]["mean_correlation"] == pytest.approx(expected["kernels"]["mean_correlation"])
    assert data["baseline_note"] is None
    assert data["baseline"]["mean_correlation"] < 0.99  # two seeds start apart


def test_two_runs_json_and_text(trained_run, seed1, data_dir, tmp_path, capsys):
    argv = ["compare", trained_run, seed1, "--layer", "Conv2D_1", "--limit", 40, "--data-dir", data_dir,
            "--out", tmp_path / "c.png"]
    code, stdout, _ = run_cli(capsys, *argv, "--json")
    assert code == 0
    data = json.loads(stdout)
    assert set(data["baseline"]) == PAIR_KEYS and data["kind"] == "seeds" and data["seeds"] == [0, 1]
    assert data["notes"] == ["besides the seed they differ in train.epochs: the matrix mixes what a seed changes "
                             "with what those change"]
    code, stdout, _ = run_cli(capsys, *argv)
    base = data["baseline"]
    assert (f"  at initialisation: {base['mean_correlation']:.3f} (median {base['median_correlation']:.3f}), "
            f"{base['matched_above_0.9']} of {base['pairs']} pairs above 0.9") in stdout


def test_an_old_run_without_initial_weights_says_so(trained_run, seed1, data_dir, tmp_path, capsys):
    old = _without_initial(trained_run, tmp_path / "old")
    argv = ["compare", old, seed1, "--layer", "Conv2D_1", "--limit", 40, "--data-dir", data_dir,
            "--out", tmp_path / "c.png"]
    code, stdout, _ = run_cli(capsys, *argv, "--json")
    assert code == 0
    data = json.loads(stdout)
    note = (f"no baseline at initialisation: {old} has no initial.safetensors (trained before cnnscope kept "
            f"initial weights), so these correlations stand without what untrained networks already share")
    assert data["baseline"] is None and data["kernels"]["baseline"] is None
    assert data["baseline_note"] == note and data["notes"][-1] == note
    assert 0 < data["mean_correlation"] < 1
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0 and f"note: {note}" in stdout and "  at initialisation:" not in stdout


def test_a_linked_initial_file_is_not_followed(trained_run, seed1, data_dir, tmp_path):
    linked = _without_initial(trained_run, tmp_path / "linked")
    (linked / "initial.safetensors").symlink_to(seed1 / "initial.safetensors")
    data = compare(linked, seed1, "Conv2D_1", limit=30, pairs=2, out=tmp_path / "c.png", data_dir=data_dir).data
    assert data["baseline"] is None and "has no initial.safetensors" in data["baseline_note"]


# --- many runs -----------------------------------------------------------------------------------------------
def test_many_runs_carry_the_baseline_beside_each_figure(trained_run, seed1, twin, data_dir, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "compare", trained_run, seed1, twin, "--layer", "Conv2D_1", "--layer",
                              "Conv2D_3", "--limit", 50, "--data-dir", data_dir, "--out", tmp_path / "m.png",
                              "--json")
    assert code == 0
    data = json.loads(stdout)
    runs = [cnnscope.load_run(p) for p in (trained_run, seed1, twin)]
    for run in runs:
        run.reset_weights()
    x = runs[0].dataset(data_dir).test_x[:50]
    expected = compare_many([r.model for r in runs], ["Conv2D_1", "Conv2D_3"], [x] * 3)
    for layer, initial in zip(data["layers"], expected, strict=True):
        base = layer["baseline"]
        assert set(base) == {"weights", "matrix", "matched_above", "mean_correlation", "found_by_all", "found_by",
                             "constant_maps"}
        assert np.allclose(base["matrix"], initial["matrix"]) and base["found_by_all"] == initial["found_by_all"]
        assert base["matched_above"] == initial["matched_above"]
        assert base["matrix"][0][2] == pytest.approx(1.0)  # the twin starts where the tiny run started
        assert base["mean_correlation"] == pytest.approx(np.mean([base["matrix"][i][j] for i, j in
                                                                  ((0, 1), (0, 2), (1, 2))]))
        assert layer["mean_correlation"] == pytest.approx(np.mean([layer["matrix"][i][j] for i, j in
                                                                   ((0, 1), (0, 2), (1, 2))]))
    assert data["kind"] == "trials" and data["seeds"] == [0, 1, 1]
    assert f"{trained_run.name}, twin start from the same initial weights" in data["notes"]


def test_many_runs_text_reads_k_of_m_with_k0_at_initialisation(trained_run, seed1, data_dir, tmp_path, capsys):
    argv = ["compare", trained_run, seed1, "--matrix", "--layer", "Conv2D_1", "--limit", 40, "--data-dir", data_dir,
            "--out", tmp_path / "m.png"]
    code, stdout, _ = run_cli(capsys, *argv, "--json")
    layer = json.loads(stdout)["layers"][0]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "2 seeds compared over 40 test images" in stdout
    assert "above the diagonal trained, below at initialisation" in stdout
    assert (f"  {layer['found_by_all']} of 6 maps ({layer['baseline']['found_by_all']} at initialisation) of "
            f"{trained_run.name} found by all 1 other runs (matched r > 0.9)") in stdout
    row = next(line for line in stdout.splitlines() if line.startswith("  seed1 "))
    assert f"{layer['baseline']['matrix'][1][0]:6.3f}" in row  # below the diagonal: the baseline


def test_many_runs_without_initial_weights(trained_run, seed1, data_dir, tmp_path, capsys):
    old = _without_initial(seed1, tmp_path / "old")
    view = compare_many_runs([trained_run, old], ["Conv2D_1"], limit=30, out=tmp_path / "m.png", data_dir=data_dir)
    assert view.data["layers"][0]["baseline"] is None
    assert view.data["baseline_note"].startswith(f"no baseline at initialisation: {old.name} has no "
                                                 f"initial.safetensors")
    assert view.data["baseline_note"] in view.notes
    assert all(Path(f).is_file() for f in view.figures)


# --- seeds or trials -----------------------------------------------------------------------------------------
def test_describe_runs_says_seeds_only_when_only_the_seed_sets_them_apart(trained_run, seed1, twin, tmp_path):
    def kind(*paths):
        runs = [cnnscope.load_run(p) for p in paths]
        return describe_runs(runs, [p.name for p in paths])

    seeds = kind(trained_run, seed1)
    assert seeds["kind"] == "seeds" and seeds["seeds"] == [0, 1]
    assert seeds["notes"] == ["besides the seed they differ in train.epochs: the matrix mixes what a seed changes "
                              "with what those change"]
    assert kind(trained_run, twin)["kind"] == "trials"  # different seeds, the same start (--init-from)
    reseeded = copy_run(seed1, tmp_path / "reseeded")  # --seed also sets [data] seed: still "the seed"
    config = reseeded / "config.toml"
    head, data = config.read_text().split("[data]\n")
    config.write_text(head + "[data]\n" + data.replace("seed = 0\n", "seed = 1\n"))
    assert cnnscope.load_run(reseeded).data_config.seed == 1
    assert kind(trained_run, reseeded)["differ_in"] == ["train.epochs"]
    lr = kind(trained_run, copy_run(trained_run, tmp_path / "lr", train={"lr": 0.01}))
    assert lr["kind"] == "trials" and lr["differ_in"] == ["train.lr"]
    assert lr["notes"] == ["all 2 start from the same initial weights: the matrix shows what their other settings "
                           "(train.lr) change, not what a seed changes"]
    # without initial weights: the same seed and model count as the same start
    old = _without_initial(trained_run, tmp_path / "old")
    assert kind(old, copy_run(trained_run, tmp_path / "lr2", train={"lr": 0.02}))["kind"] == "trials"
    assert kind(_without_initial(seed1, tmp_path / "old1"), old)["kind"] == "seeds"


def test_study_matrix_is_the_views_answer(trained_run, seed1, data_dir):
    got = study_matrix([trained_run, seed1], ["a", "b"], None, 30, data_dir)
    assert got["layer"] == "Conv2D_1" and got["kind"] == "seeds" and got["runs"] == ["a", "b"]
    assert got["baseline"]["matrix"][0][0] == 1.0 and got["baseline"]["matrix"][0][1] < 0.99
    assert got["baseline_note"] is None and len(got["baseline"]["found_by"]) == got["maps"]
