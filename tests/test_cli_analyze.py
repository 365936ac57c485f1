"""`cnnscope profile | top-images | errors | compare | patterns | explain`: figures written, --json, error text."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import cnnscope
from cnnscope.data.dataset import FILES
from cnnscope.inspect import DEFAULT_METHOD, class_profile, curve_area, map_statistics
from cnnscope.inspect.deletion import BEAT_MARGIN, CRITERION, FRACTIONS
from conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"
VALID_LAYERS = "Conv2D_1, Max_Pool_1, Conv2D_2, Max_Pool_2, Conv2D_3, Flatten_1, Dense_1, Dense_2"




def _strict(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def _json(stdout: str, out=None) -> dict:
    """stdout must be exactly one strict JSON object (json.loads fails on anything before or after it, and here
    on NaN/Infinity); with `out`, it lists the PNG and the SVG beside it under "figures"."""
    data = json.loads(stdout, parse_constant=_strict)
    assert isinstance(data, dict)
    if out is not None:
        assert data["figures"] == [str(out), str(out.with_suffix(".svg"))]
        assert out.read_bytes()[:8] == PNG
        assert out.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    return data


@pytest.fixture(scope="module")
def run(trained_run):
    return cnnscope.load_run(trained_run)


@pytest.fixture(scope="module")
def test_set(run, data_dir):
    ds = run.dataset(data_dir)
    return ds.test_x, ds.test_y


# --- profile -------------------------------------------------------------------------------------------------
def test_profile_json_holds_the_profile(run, test_set, trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "profile.png"
    code, stdout, _ = run_cli(capsys, "profile", trained_run, "--layer", "Conv2D_2", "--data-dir", data_dir,
                           "--out", out, "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    assert data["layer"] == "Conv2D_2" and data["maps"] == 12 and data["images"] == 300
    assert data["class_names"] == [str(k) for k in range(10)]
    x, y = test_set
    np.testing.assert_allclose(np.array(data["profile"]), class_profile(run.model, "Conv2D_2", x, y), atol=2e-6)
    profile = np.array(data["profile"])
    for m, preferred in enumerate(data["preferred_class"]):
        assert preferred is None or preferred == int(profile[:, m].argmax())


def test_profile_json_is_strict_when_classes_are_missing(run, test_set, trained_run, data_dir, tmp_path, capsys):
    """A class absent from the --limit images has no mean (NaN in the library): null in the JSON, not NaN."""
    code, stdout, _ = run_cli(capsys, "profile", trained_run, "--layer", "Conv2D_1", "--limit", 3, "--data-dir",
                           data_dir, "--out", tmp_path / "p.png", "--json")
    assert code == 0
    data = _json(stdout)
    y = test_set[1][:3]
    for k, row in enumerate(data["profile"]):
        assert (row == [None] * 6) == (k not in y)


def test_profile_text(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "p.png"
    code, stdout, _ = run_cli(capsys, "profile", trained_run, "--layer", "Dense_1", "--limit", 50, "--order", "class",
                           "--norm", "layer", "--data-dir", data_dir, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "Dense_1: 24 maps over 50 test images" in stdout and f"figure: {out}" in stdout


# --- top-images ----------------------------------------------------------------------------------------------
def test_top_images(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "top.png"
    code, stdout, _ = run_cli(capsys, "top-images", trained_run, "--layer", "Conv2D_3", "--map", 2, "--k", 5,
                           "--data-dir", data_dir, "--out", out, "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    assert data["map"] == 2 and data["searched"] == 300 and data["receptive_field"] == [18, 18]
    values = [item["value"] for item in data["images"]]
    assert len(values) == 5 and values == sorted(values, reverse=True)
    for item in data["images"]:
        top, left, bottom, right = item["box"]
        assert (bottom - top, right - left) == (18, 18) and (top, left) == (4 * item["row"], 4 * item["col"])
    code, stdout, _ = run_cli(capsys, "top-images", trained_run, "--layer", "Conv2D_3", "--map", 2, "--k", 5,
                           "--data-dir", data_dir, "--out", tmp_path / "top2.png")
    assert code == 0
    assert "Conv2D_3 map 2: top 5 of 300 test images, each node sees 18×18 input pixels" in stdout
    assert f"#{data['images'][0]['index']:<6}" in stdout


# --- errors --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def relabelled_dir(data_dir, tmp_path_factory):
    """The synthetic data with the labels of 12 test images moved by 5 classes (the blob one row away): mistakes."""
    from conftest import synthetic_images, write_idx

    root = tmp_path_factory.mktemp("relabelled")
    shutil.copytree(data_dir / "mnist", root / "mnist")
    _, labels = synthetic_images(300, 2)  # the test labels of make_data_dir (read without the loader's logging)
    labels[:12] = (labels[:12] + 5) % 10
    write_idx(root / "mnist" / FILES["test_labels"], labels)
    return root


def test_errors_lists_every_mistake(run, relabelled_dir, trained_run, tmp_path, capsys):
    out = tmp_path / "errors.png"
    code, stdout, _ = run_cli(capsys, "errors", trained_run, "--max", 4, "--data-dir", relabelled_dir, "--out", out,
                           "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    ds = run.dataset(relabelled_dir)
    wrong = np.flatnonzero(run.predict_classes(ds.test_raw) != ds.test_y)
    assert set(range(12)) <= set(wrong.tolist())
    assert data["errors"] == len(wrong) and sorted(m["index"] for m in data["misclassified"]) == wrong.tolist()
    assert data["shown"] == 4 and data["images"] == 300
    assert data["accuracy"] == pytest.approx(1 - len(wrong) / 300)
    confusion = np.array(data["confusion"])
    assert confusion.sum() == 300 and np.trace(confusion) == 300 - len(wrong)
    confidence = [m["confidence"] for m in data["misclassified"]]
    assert confidence == sorted(confidence, reverse=True)
    code, stdout, _ = run_cli(capsys, "errors", trained_run, "--data-dir", relabelled_dir, "--out", tmp_path / "e.png")
    assert code == 0 and f"{len(wrong)} of 300 test images misclassified" in stdout


# --- compare -------------------------------------------------------------------------------------------------
def test_compare_a_run_with_itself(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "compare.png"
    code, stdout, _ = run_cli(capsys, "compare", trained_run, trained_run, "--layer", "Conv2D_2", "--limit", 100,
                           "--index", 7, "--data-dir", data_dir, "--out", out, "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    assert data["mean_correlation"] == pytest.approx(1.0, abs=1e-9)
    assert data["matched_above_0.9"] == data["pairs"] == 12 - data["constant_pairs"]
    assert data["matching"] == [[i, i, 1.0] for i in range(12)]
    assert data["images"] == 100 and data["example_index"] == 7
    assert data["kernels"]["matching"] == [[i, i, 1.0] for i in range(12)]


def test_compare_text_without_kernels(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "c.png"
    code, stdout, _ = run_cli(capsys, "compare", trained_run, trained_run, "--layer", "Dense_1", "--limit", 60,
                           "--no-kernels", "--pairs", 4, "--data-dir", data_dir, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "Dense_1: 24 maps matched one-to-one over 60 test images × 1 positions" in stdout
    assert "activations: mean matched correlation 1.000" in stdout and "kernels:" not in stdout


# --- patterns ------------------------------------------------------------------------------------------------
def test_patterns_json_reports_reached_and_test_p99(run, test_set, trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "patterns.png"
    code, stdout, _ = run_cli(capsys, "patterns", trained_run, "--layer", "Conv2D_3", "--maps", "0:4,9", "--steps", 12,
                           "--restarts", 2, "--seed", 1, "--data-dir", data_dir, "--out", out, "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    assert (data["layer"], data["steps"], data["restarts"], data["seed"]) == ("Conv2D_3", 12, 2, 1)
    assert [row["map"] for row in data["maps"]] == [0, 1, 2, 3, 9]
    stats = map_statistics(run.model, "Conv2D_3", test_set[0], [0, 1, 2, 3, 9])
    np.testing.assert_allclose([row["test_p99"] for row in data["maps"]], stats["p99"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([row["test_max"] for row in data["maps"]], stats["max"], rtol=1e-5, atol=1e-6)
    reached = np.array([row["activation"] for row in data["maps"]])
    assert data["above_test_max"] == pytest.approx(float((reached > stats["max"]).mean()))
    assert data["above_test_p99"] == pytest.approx(float((reached > stats["p99"]).mean()))
    assert data["above_test_p99"] >= 0.8  # even a short ascent beats most test images
    # same seed, same numbers
    code, stdout, _ = run_cli(capsys, "patterns", trained_run, "--layer", "Conv2D_3", "--maps", "0:4,9", "--steps", 12,
                           "--restarts", 2, "--seed", 1, "--data-dir", data_dir, "--out", tmp_path / "again.png",
                           "--json")
    assert [row["activation"] for row in _json(stdout)["maps"]] == reached.tolist()


def test_patterns_text(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "p.png"
    code, stdout, _ = run_cli(capsys, "patterns", trained_run, "--layer", "Conv2D_1", "--steps", 6, "--restarts", 1,
                           "--data-dir", data_dir, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "Conv2D_1: 6 map(s) in" in stdout and "(1 restarts × 6 steps, seed 0)" in stdout
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["map", "reached", "test", "p99", "test",
                                                                         "max"])
    assert [int(line.split()[0]) for line in lines[header + 1:header + 7]] == list(range(6))


# --- explain -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [None, "gradcam", "saliency"])
def test_explain_json_holds_the_deletion_score(run, test_set, trained_run, data_dir, tmp_path, capsys, method):
    import torch

    out = tmp_path / "explain.png"
    chosen = ["--method", method] if method else []
    code, stdout, _ = run_cli(capsys, "explain", trained_run, "--index", 5, *chosen, "--data-dir", data_dir,
                           "--out", out, "--svg", "--json")
    assert code == 0
    data = _json(stdout, out)
    x, y = test_set
    with torch.no_grad():
        probs = run.model.probabilities(run.model(torch.from_numpy(x[5:6])))[0].numpy()
    assert data["method"] == (method or DEFAULT_METHOD)  # the default: it beats the brightness ranking most often
    assert data["source"] == "test image 5" and data["label"] == str(y[5])
    assert data["layer"] == ("Conv2D_3" if method == "gradcam" else None)
    assert data["predicted"]["index"] == int(probs.argmax())
    assert data["predicted"]["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    d = data["deletion"]
    assert data["methods"] == [{"method": data["method"], "layer": data["layer"], "deletion": d}]
    assert d["fractions"] == list(FRACTIONS) and d["random_draws"] == 16
    assert d["probability"] == pytest.approx(data["target"]["probability"], rel=1e-5)
    _check_deletion(d)


def _check_deletion(d: dict) -> None:
    """One image's deletion test as the JSON gives it: curves, their AUCs and a verdict that follows from them."""
    r = d["rankings"]
    assert set(r) == {"method", "brightness", "random"}
    for row in r.values():
        assert len(row["deletion"]) == len(row["insertion"]) == len(d["fractions"])
        assert row["deletion"][0] == pytest.approx(d["probability"], abs=1e-4)  # nothing blanked yet
        assert 0 <= min(row["deletion"] + row["insertion"]) and max(row["deletion"] + row["insertion"]) <= 1
        assert row["deletion_auc"] == pytest.approx(float(curve_area(d["fractions"], row["deletion"])), abs=1e-4)
    gap = r["brightness"]["deletion_auc"] - r["method"]["deletion_auc"]
    assert d["passes"] == d["beats_brightness"] == (gap >= BEAT_MARGIN)
    assert d["beats_random"] == (r["random"]["deletion_auc"] - r["method"]["deletion_auc"] >= BEAT_MARGIN)
    assert d["verdict"] == ("passes" if d["passes"] else "fails") and d["criterion"] == CRITERION


def test_explain_all_methods_side_by_side(trained_run, data_dir, tmp_path, capsys):
    from cnnscope.inspect import METHODS

    out = tmp_path / "all.png"
    code, stdout, _ = run_cli(capsys, "explain", trained_run, "--index", 2, "--method", "all", "--data-dir", data_dir,
                           "--out", out, "--json")
    assert code == 0 and out.read_bytes()[:8] == PNG
    data = _json(stdout)
    assert data["figures"] == [str(out)]
    assert data["method"] == "all" and data["deletion"] is None and data["layer"] == "Conv2D_3"
    assert [row["method"] for row in data["methods"]] == list(METHODS)
    for row in data["methods"]:
        assert row["layer"] == ("Conv2D_3" if METHODS[row["method"]].uses_layer else None)
        d = row["deletion"]
        assert d["probability"] == pytest.approx(data["target"]["probability"], rel=1e-5)
        _check_deletion(d)
    # the same brightness and random rankings for every method (same seed): one baseline, nine methods
    assert len({str(row["deletion"]["rankings"]["brightness"]) for row in data["methods"]}) == 1


def test_explain_text_with_a_target(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "e.png"
    code, stdout, _ = run_cli(capsys, "explain", trained_run, "--index", 0, "--target", 3, "--method", "gradcam",
                           "--layer", "Conv2D_2", "--data-dir", data_dir, "--out", out)
    assert code == 0 and out.read_bytes()[:8] == PNG
    assert "heat maps for class 3" in stdout and "  gradcam on Conv2D_2: deletion AUC " in stdout
    assert "deletion test over 0-50% of the pixels" in stdout and f"  {CRITERION}" in stdout
    assert re.search(r"gradcam on Conv2D_2: .*; (PASSES|FAILS)", stdout) and f"figure: {out}" in stdout


# --- bad input: one line, exit 2, no traceback, no figure ----------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["profile", "{run}", "--layer", "Conv9"], f"error: unknown layer 'Conv9'; valid: {VALID_LAYERS}"),
    (["profile", "{run}", "--layer", "Conv2D_1", "--set", "holdout"],
     "error: unknown set 'holdout'; valid: train, test"),
    (["top-images", "{run}", "--layer", "Pool", "--map", "0"], f"error: unknown layer 'Pool'; valid: {VALID_LAYERS}"),
    (["top-images", "{run}", "--layer", "Conv2D_3", "--map", "16"],
     "error: map 16 is out of range: Conv2D_3 has 16 maps (0..15)"),
    (["top-images", "{run}", "--layer", "Dense_1", "--map", "-1"],
     "error: map -1 is out of range: Dense_1 has 24 units (0..23)"),
    (["errors", "{run}", "--set", "valid"], "error: unknown set 'valid'; valid: train, test"),
    (["compare", "{run}", "{run}", "--layer", "Conv2D_4"],
     f"error: run A: unknown layer 'Conv2D_4'; valid: {VALID_LAYERS}"),
    (["compare", "{run}", "{run}", "--layer", "Conv2D_1", "--index", "300"],
     "error: example index 300 is outside the 300 test images compared (valid: 0 to 299)"),
    (["compare", "{run}", "{run}", "--layer", "Conv2D_1", "--limit", "20", "--index", "20"],
     "error: example index 20 is outside the 20 test images compared (valid: 0 to 19)"),
    (["compare", "{run}", "{tmp}/nowhere", "--layer", "Conv2D_1"], "error: run directory not found"),
    (["patterns", "{run}", "--layer", "conv2d_1"], f"error: unknown layer 'conv2d_1'; valid: {VALID_LAYERS}"),
    (["patterns", "{run}", "--layer", "Conv2D_2", "--maps", "0:13"],
     "error: maps 0:13 go past the end of Conv2D_2, which has 12 maps (valid: 0..11)"),
    (["patterns", "{run}", "--layer", "Conv2D_2", "--maps", "12"],
     "error: map 12 is not in Conv2D_2, which has 12 maps (valid: 0..11)"),
    (["patterns", "{run}", "--layer", "Conv2D_2", "--maps", "1-3"],
     "error: --maps expects 'START:END', 'N' or 'N,M,…' (e.g. 0:32, 5, 1,4,9), received '1-3'"),
    (["explain", "{run}", "--index", "300"],
     "error: index 300 is outside the test set, which holds 300 images (valid: 0 to 299)"),
    (["explain", "{run}", "--index", "-1"],
     "error: index -1 is outside the test set, which holds 300 images (valid: 0 to 299)"),
    (["explain", "{run}", "--index", "0", "--method", "lime"],
     "error: unknown method 'lime'; valid: integrated-gradients, saliency, input-x-gradient, smoothgrad, "
     "guided-backprop, deeplift, occlusion, gradcam, guided-gradcam, all"),
    (["explain", "{run}", "--index", "0", "--method", "gradcam", "--layer", "Conv7"],
     f"error: unknown layer 'Conv7'; valid: {VALID_LAYERS}"),
    (["explain", "{run}", "--index", "0", "--method", "gradcam", "--layer", "Dense_1"],
     "error: Grad-CAM needs a layer with maps; 'Dense_1' has none; valid: Conv2D_1, Max_Pool_1, Conv2D_2, "
     "Max_Pool_2, Conv2D_3"),
    (["explain", "{run}", "--index", "0", "--target", "12"],
     "error: target class 12 is not a class of this model (valid: 0..9)"),
    (["explain", "{run}", "--index", "0", "--method", "saliency", "--layer", "Conv2D_1"],
     "error: --layer applies to gradcam, guided-gradcam only, not to saliency"),
    (["explain", "{run}", "--index", "0", "--layer", "Conv2D_1"],
     "error: --layer applies to gradcam, guided-gradcam only, not to integrated-gradients"),
])
def test_bad_input(trained_run, data_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "never.png"
    argv = [a.format(run=trained_run, tmp=tmp_path) for a in argv]
    code, stdout, stderr = run_cli(capsys, *argv, "--data-dir", data_dir, "--out", out, "--json")
    assert code == 2
    assert stdout == ""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), stderr
    assert "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("argv", [["profile", "{run}", "--layer", "Conv2D_1", "--limit", "0"],
                                  ["top-images", "{run}", "--layer", "Conv2D_1", "--map", "x"],
                                  ["errors", "{run}", "--max", "-3"],
                                  ["patterns", "{run}", "--layer", "Conv2D_1", "--steps", "0"]])
def test_bad_numbers_are_usage_errors(trained_run, capsys, argv):
    code, stdout, stderr = run_cli(capsys, *[a.format(run=trained_run) for a in argv])
    assert code == 2 and stdout == ""
    assert "invalid" in stderr or "expected a positive integer" in stderr
    assert "Traceback" not in stderr
