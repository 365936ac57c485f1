"""The dashboard's API (`cnnscope serve DIR` on a folder of runs) through Starlette's TestClient."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_catalog import copy_run, make_study

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.serve.dashboard import Dashboard, create_dashboard_app, viewer_script  # noqa: E402
from cnnscope.serve.guard import CSP  # noqa: E402
from cnnscope.serve.server import is_dashboard  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)>"
STATIC = Path(__file__).resolve().parents[1] / "src" / "cnnscope" / "serve" / "static"


@pytest.fixture(scope="module")
def root(tmp_path_factory, trained_run) -> Path:
    root = tmp_path_factory.mktemp("dash") / "runs"
    copy_run(trained_run, root / "a")
    copy_run(trained_run, root / HOSTILE, train={"lr": 0.01})
    make_study(root, trained_run)
    return root


def _client(root: Path, data_dir) -> Iterator[TestClient]:
    """A test client of the dashboard over `root`, its board closed afterwards."""
    board = Dashboard(root, data_dir, warm_up=False)
    with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1",
                    raise_server_exceptions=False) as test_client:
        yield test_client
    board.close()


@pytest.fixture(scope="module")
def client(root, data_dir):
    yield from _client(root, data_dir)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_runs_lists_every_run_and_study(client):
    answer = client.get("/api/runs")
    assert answer.status_code == 200 and answer.headers["content-security-policy"] == CSP
    runs = {e["name"]: e for e in answer.json()["runs"]}
    assert set(runs) == {"a", HOSTILE, "studies/lr", "studies/lr/trials/0000", "studies/lr/trials/0001",
                         "studies/lr/trials/0002"}
    assert runs["a"]["status"] == "completed" and runs["studies/lr"]["kind"] == "study"
    assert answer.json()["differing"] == ["train.lr"]


def test_unchanged_answers_are_304_without_a_body(client, root):
    first = client.get("/api/runs")
    again = client.get("/api/runs", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    history = client.get("/api/runs/a/history")
    assert history.status_code == 200 and history.json()["history"]["epoch"] == [1, 2, 3, 4]
    tag = history.headers["etag"]
    assert client.get("/api/runs/a/history", headers={"If-None-Match": tag}).status_code == 304
    path = root / "a" / "history.json"
    path.write_text(path.read_text() + "\n")  # a new epoch would change mtime and size the same way
    changed = client.get("/api/runs/a/history", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_hostile_names_are_data(client):
    history = client.get(f"/api/runs/{HOSTILE}/history")
    assert history.status_code == 200 and history.json()["name"] == HOSTILE
    assert client.get("/api/runs").json()["runs"][0]["name"] == HOSTILE  # sent as JSON text, nothing more
    js = (STATIC / "dashboard.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js


@pytest.mark.parametrize("name", ["nope", "../a", "a/..", "studies/lr", "/etc", "a%2F..%2Fa", "studies/lr/trials",
                                  "%2e%2e/a", ""])
def test_unknown_names_are_404_json(client, name):
    error = error_of(client.get(f"/api/runs/{name}/history"), 404)  # the client may resolve '..' itself first
    assert "GET /api/runs lists them" in error or error.startswith("no such page")


def test_study_detail_and_unknown_study(client):
    detail = client.get("/api/studies/studies/lr").json()
    assert detail["params"] == ["train.lr"] and len(detail["trials"]) == 3
    assert detail["study"]["best"]["name"] == "studies/lr/trials/0001"
    assert detail["study"]["selected_on"] == "test" and "TEST set" in detail["study"]["warning"]  # no split saved
    assert all({"value", "val_accuracy", "test_accuracy"} <= set(row) for row in detail["trials"])
    assert detail["compare"] == "/api/studies/studies/lr/compare"
    assert "no study called 'a'" in error_of(client.get("/api/studies/a"), 404)


def test_each_run_opens_in_the_single_run_viewer_under_runs(client):
    assert client.get("/runs/a", follow_redirects=False).headers["location"] == "/runs/a/"
    page = client.get("/runs/a/")
    assert page.status_code == 200 and 'src="/dashboard-run/viewer.js"' in page.text and 'href="/"' in page.text
    info = client.get("/runs/a/api/info")
    assert info.status_code == 200 and info.json()["epochs"] == 4
    assert client.get("/runs/studies/lr/trials/0001/api/layers").status_code == 200
    assert "no such page: '/api/nope'" in error_of(client.get("/runs/a/api/nope"), 404)
    assert "no run called 'zzz/api/info'" in error_of(client.get("/runs/zzz/api/info"), 404)
    assert "must be an integer" in error_of(client.get("/runs/a/api/sample", params={"index": "x"}), 400)


def test_the_viewer_script_uses_paths_relative_to_the_run():
    script = viewer_script()
    assert "api/info" in script
    assert not re.search(r"""["'`(]/api/""", script)  # every API call stays under /runs/NAME/


def test_the_guard_applies(client):
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/runs/a/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/").headers["x-frame-options"] == "DENY"


def test_serve_picks_the_dashboard_for_folders_only(root, trained_run, tmp_path):
    assert is_dashboard(root) and not is_dashboard(trained_run) and not is_dashboard(tmp_path / "missing")


@settings(max_examples=40)
@given(name=st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
       route=st.sampled_from(["/api/runs/{}/history", "/api/studies/{}", "/api/studies/{}/compare",
                              "/runs/{}/api/info", "/runs/{}/"]))
def test_generated_names_never_fail(client, name, route):
    answer = client.get(route.format(quote(name, safe="/")))
    assert answer.status_code in (200, 307, 400, 404), answer.text
    if answer.status_code >= 400:
        assert answer.json()["error"]


# --- the seeds' compare matrix of a study ----------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds_root(tmp_path_factory, trained_run, data_dir, tiny_spec) -> Path:
    """A study of 3 completed trials (the tiny run and two 1-epoch seeds), one unfinished, and a 1-trial study."""
    import cnnscope

    root = tmp_path_factory.mktemp("seeds")
    study = root / "seeds"
    (study / "trials").mkdir(parents=True)
    (study / "study.toml").write_text('metric = "val_accuracy"\n')
    copy_run(trained_run, study / "trials" / "0000")
    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    for seed in (1, 2):
        config = cnnscope.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=0.003, seed=seed)
        cnnscope.train(tiny_spec, ds, config, out=study / "trials" / f"{seed:04d}", progress=False, plot=False)
    copy_run(trained_run, study / "trials" / "0003", metrics={"status": "interrupted"})
    (root / "one" / "trials").mkdir(parents=True)
    (root / "one" / "study.toml").write_text("")
    copy_run(trained_run, root / "one" / "trials" / "0000")
    return root


@pytest.fixture(scope="module")
def seeds(seeds_root, data_dir):
    yield from _client(seeds_root, data_dir)


def library_matrix(root: Path, trials: list[str], layer: str, images: int, data_dir: Path) -> dict:
    """compare_many over the same trials and test images, called directly."""
    import cnnscope
    from cnnscope.inspect.compare import compare_many

    runs = [cnnscope.load_run(root / t) for t in trials]
    raw = runs[0].dataset(data_dir).test_raw[:images]
    return compare_many([r.model for r in runs], [layer], [r.preprocessor(raw) for r in runs])[0]


@pytest.mark.parametrize("layer", [None, "Conv2D_3"])
def test_compare_matrix_equals_the_library(seeds, seeds_root, data_dir, layer):
    params = {"images": 60} if layer is None else {"images": 60, "layer": layer}
    answer = seeds.get("/api/studies/seeds/compare", params=params)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    trials = ["seeds/trials/0000", "seeds/trials/0001", "seeds/trials/0002"]
    assert got["runs"] == trials and got["layers"] == ["Conv2D_1", "Conv2D_2", "Conv2D_3"]
    assert got["layer"] == (layer or "Conv2D_1") and got["images"] == 60 and got["threshold"] == 0.9
    assert any("0003: left out (interrupted)" in n for n in got["notes"])
    expected = library_matrix(seeds_root, trials, got["layer"], 60, data_dir)
    matrix = np.array(got["matrix"], dtype=float)
    assert matrix.shape == (3, 3) and np.allclose(matrix, np.array(expected["matrix"]))
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert (matrix[~np.eye(3, dtype=bool)] < 1.0).all()  # different seeds: not the same maps
    assert got["counts"] == [m["found_by"] for m in expected["first_run_maps"]]
    assert got["found_by_all"] == expected["found_by_all"] == sum(c == 2 for c in got["counts"])
    assert len(got["counts"]) == got["maps"] == expected["maps"]
    # beside it, the same matrix at the trials' initial weights; three seeds of one model: "seeds"
    base = np.array(got["baseline"]["matrix"], dtype=float)
    assert base.shape == (3, 3) and np.allclose(np.diag(base), 1.0) and (base[~np.eye(3, dtype=bool)] < 0.99).all()
    assert got["baseline"]["found_by_all"] == sum(c == 2 for c in got["baseline"]["found_by"])
    assert got["kind"] == "seeds" and got["seeds"] == [0, 1, 2] and got["baseline_note"] is None
    assert ("besides the seed they differ in train.batch_size, train.epochs: the matrix mixes what a seed changes "
            "with what those change") in got["notes"]


def test_compare_is_cached_by_the_weight_files(seeds, seeds_root):
    board = seeds.app.state.board
    first = seeds.get("/api/studies/seeds/compare", params={"images": 40}).json()
    assert board.compare_cached("seeds", None, 40) is not None
    assert seeds.get("/api/studies/seeds/compare", params={"images": 40, "layer": "Conv2D_1"}).json() == first
    weights = seeds_root / "seeds" / "trials" / "0001" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert board.compare_cached("seeds", None, 40) is None  # a new checkpoint: computed again
    assert seeds.get("/api/studies/seeds/compare", params={"images": 40}).json()["matrix"] == first["matrix"]


def test_identical_trials_match_fully(client):
    got = client.get("/api/studies/studies/lr/compare", params={"images": 30}).json()
    assert got["runs"] == ["studies/lr/trials/0000", "studies/lr/trials/0001"]
    assert np.allclose(np.array(got["matrix"], dtype=float), 1.0)
    assert got["found_by_all"] == got["maps"] - got["constant_maps"][0]
    # one seed, two learning rates: "trials", and the note says they start from the same weights
    assert got["kind"] == "trials" and got["seeds"] == [0, 0]
    assert np.allclose(np.array(got["baseline"]["matrix"], dtype=float), 1.0)
    assert ("all 2 start from the same initial weights: the matrix shows what their other settings (train.lr) "
            "change, not what a seed changes") in got["notes"]


def test_compare_of_trials_without_initial_weights(tmp_path, trained_run, data_dir):
    study = tmp_path / "old"
    (study / "trials").mkdir(parents=True)
    (study / "study.toml").write_text("")
    for k, lr in enumerate((0.003, 0.01)):
        copy_run(trained_run, study / "trials" / f"{k:04d}", train={"lr": lr, "seed": k})
        (study / "trials" / f"{k:04d}" / "initial.safetensors").unlink()
    for client in _client(tmp_path, data_dir):  # the loop's end closes the board
        got = client.get("/api/studies/old/compare", params={"images": 20}).json()
    assert got["baseline"] is None and got["matrix"] is not None
    assert got["baseline_note"].startswith("no baseline at initialisation: old/trials/0000, old/trials/0001 have "
                                           "no initial.safetensors")
    assert got["baseline_note"] in got["notes"]
    assert got["kind"] == "seeds"  # seeds 0 and 1 of one model: different starts even without the files


def test_compare_with_fewer_than_two_trials_is_a_note(seeds):
    answer = seeds.get("/api/studies/one/compare")
    assert answer.status_code == 200
    got = answer.json()
    assert got["matrix"] is None and got["runs"] == ["one/trials/0000"]
    assert got["note"] == "the compare matrix needs at least two completed trials; this study has 1 so far"


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"layer": "Dense_1"}, 400, "unknown layer 'Dense_1'; the conv layers of seeds/trials/0000 are: Conv2D_1, "
                                "Conv2D_2, Conv2D_3"),
    ({"layer": HOSTILE}, 400, "unknown layer"),
    ({"images": "0"}, 400, "parameter 'images' must be a whole number of test images from 1 to 2000, received 0"),
    ({"images": "2001"}, 400, "from 1 to 2000, received 2001"),
    ({"images": "-3"}, 400, "from 1 to 2000, received '-3'"),
    ({"images": "x" * 100}, 400, "from 1 to 2000, received 'xxxx"),
    ({"images": "²"}, 400, "from 1 to 2000, received '²'"),
])
def test_compare_bad_parameters_are_4xx_json(seeds, params, status, message):
    assert message in error_of(seeds.get("/api/studies/seeds/compare", params=params), status)


def test_compare_of_an_unknown_study_is_404(seeds):
    assert "no study called 'nope'" in error_of(seeds.get("/api/studies/nope/compare"), 404)
    assert "no study called 'seeds/trials/0000'" in error_of(seeds.get("/api/studies/seeds/trials/0000/compare"), 404)


def test_the_page_draws_the_matrix_as_text_only():
    js = (STATIC / "dashboard.js").read_text()
    assert "/compare" in js and "found by every other trial" in js and 'svg("rect"' in js
    assert "seeds' compare matrix" in js and "trials' compare matrix" in js and 'data.kind === "seeds"' in js
    assert "at initialisation" in js and '"data-role": "legend"' in js
