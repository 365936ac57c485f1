"""Dead maps are named (issue 18 §6): a map that is 0 on every test image is "dead" in patterns, profile,
top-images, the report and the viewer's card, and never counted as a pattern that beats the data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.inspect import class_profile_dead, dead_maps, layer_summary, map_peaks, map_statistics, top_images
from cnnscope.runs.checkpoint import save_weights
from conftest import run_cli

DEAD = 2  # the filter of Conv2D_1 zeroed (weights and bias): ReLU(0) = 0 on every image, and so its pool map


@pytest.fixture(scope="module")
def dead_run(trained_run, tmp_path_factory):
    """A copy of the trained run with filter DEAD of Conv2D_1 zeroed."""
    out = tmp_path_factory.mktemp("dead") / "run"
    shutil.copytree(trained_run, out)
    run = cnnscope.load_run(out)
    conv = run.model.layer("Conv2D_1").conv
    with torch.no_grad():
        conv.weight[DEAD] = 0.0
        conv.bias[DEAD] = 0.0
    save_weights(out / "model.safetensors", run.model)
    return out


@pytest.fixture(scope="module")
def loaded(dead_run, data_dir):
    run = cnnscope.load_run(dead_run)
    return run, run.dataset(data_dir)


def test_dead_map_definition():
    assert dead_maps(np.array([0.0, 1e-30, 0.0, 3.0])) == [0, 2]
    assert dead_maps(np.array([0.5, np.nan])) == []  # NaN is broken, not dead


def test_every_inspect_function_finds_the_zeroed_filter(loaded):
    run, ds = loaded
    x, y = ds.test_x[:200], ds.test_y[:200]
    _, dead = class_profile_dead(run.model, "Conv2D_1", x, y)
    assert dead == [DEAD]
    _, _, peaks = layer_summary(run.model, ["Conv2D_1", "Max_Pool_1", "Conv2D_2"], x)
    assert dead_maps(peaks["Conv2D_1"]) == [DEAD] and dead_maps(peaks["Max_Pool_1"]) == [DEAD]
    assert dead_maps(peaks["Conv2D_2"]) == []
    assert dead_maps(map_statistics(run.model, "Conv2D_1", x)["max_abs"]) == [DEAD]
    assert top_images(run.model, "Conv2D_1", DEAD, x, k=3).dead
    assert not top_images(run.model, "Conv2D_1", 0, x, k=3).dead
    assert dead_maps(map_peaks(run.model, ["Max_Pool_1"], x)["Max_Pool_1"][2].max(axis=0)) == [DEAD]


def test_patterns_names_the_dead_map_and_leaves_it_out_of_the_share(dead_run, data_dir, capsys, tmp_path):
    args = ("patterns", dead_run, "--layer", "Conv2D_1", "--maps", "0:4", "--steps", "3", "--restarts", "1",
            "--out", tmp_path / "p.png", "--data-dir", data_dir)
    code, out, _ = run_cli(capsys, *args, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["dead_maps"] == [DEAD] and data["live_maps"] == 3
    rows = {row["map"]: row for row in data["maps"]}
    assert rows[DEAD]["dead"] and not rows[0]["dead"]
    live = [row["activation"] > row["test_max"] for m, row in rows.items() if m != DEAD]
    assert data["above_test_max"] == pytest.approx(np.mean(live))
    code, out, _ = run_cli(capsys, *args)
    line = next(line for line in out.splitlines() if line.split()[:1] == [str(DEAD)])
    assert "dead: 0 on every test image" in line and "below test max" not in line
    assert "of 3 live maps beat every test image; 1 dead map(s), 0 on every test image, left out" in out


def test_profile_and_top_images_say_dead(dead_run, data_dir, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "profile", dead_run, "--layer", "Max_Pool_1", "--out", tmp_path / "a.png",
                           "--data-dir", data_dir, "--json")
    assert code == 0 and json.loads(out)["dead_maps"] == [DEAD]
    code, out, _ = run_cli(capsys, "profile", dead_run, "--layer", "Conv2D_1", "--out", tmp_path / "b.png",
                           "--data-dir", data_dir)
    assert f"1 dead map(s), 0 everywhere on every image: {DEAD}" in out
    code, out, _ = run_cli(capsys, "top-images", dead_run, "--layer", "Conv2D_1", "--map", DEAD, "--out",
                           tmp_path / "c.png", "--data-dir", data_dir)
    assert code == 0 and f"Conv2D_1 map {DEAD} is dead: 0 everywhere on all" in out
    code, out, _ = run_cli(capsys, "top-images", dead_run, "--layer", "Conv2D_1", "--map", 0, "--out",
                           tmp_path / "d.png", "--data-dir", data_dir, "--json")
    assert json.loads(out)["dead"] is False


def test_report_sections_name_dead_maps(loaded):
    from cnnscope.views.report_inside import patterns_section, profiles_section
    from cnnscope.views.report_sections import TestSet

    run, ds = loaded
    tested = TestSet.of(run, ds, ["Conv2D_1", "Conv2D_2"])
    assert tested.dead == {"Conv2D_1": [DEAD], "Conv2D_2": []}
    found = patterns_section(run, ["Conv2D_1"], ds.train_x, tested).data
    assert found["shares"]["Conv2D_1"]["dead"] == [DEAD] and found["shares"]["Conv2D_1"]["live"] == 5
    assert "Dead (0 on every test image): map 2." in found["html"] and "5 live maps" in found["html"]
    html = profiles_section(run, (ds.train_x[:300], ds.train_y[:300]), tested, ["Conv2D_1", "Conv2D_2"]).data
    assert "Dead (0 on every test image): map 2." in html["html"]
    assert "series part VI" in html["html"] and html["classify"]["train_images"] == 300


def test_viewer_card_says_dead(dead_run, data_dir):
    from starlette.testclient import TestClient

    from cnnscope.serve import create_app
    from cnnscope.serve.viewer import Viewer

    app = create_app(dead_run, viewer=Viewer(dead_run, data_dir), warm_up=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        card = client.get("/api/card", params={"layer": "Conv2D_1", "map": DEAD, "index": 0}).json()
        assert card["dead"] is True and card["test_images"] > 0
        assert client.get("/api/card", params={"layer": "Conv2D_1", "map": 0, "index": 0}).json()["dead"] is False
