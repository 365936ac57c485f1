"""The dashboard's API (`cnnscope serve DIR` on a folder of runs) through Starlette's TestClient."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from urllib.parse import quote

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


@pytest.fixture(scope="module")
def client(root, data_dir):
    board = Dashboard(root, data_dir, warm_up=False)
    with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1",
                    raise_server_exceptions=False) as test_client:
        yield test_client
    board.close()


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
    assert detail["compare"] is None and "compare" in detail["compare_note"]
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
       route=st.sampled_from(["/api/runs/{}/history", "/api/studies/{}", "/runs/{}/api/info", "/runs/{}/"]))
def test_generated_names_never_fail(client, name, route):
    answer = client.get(route.format(quote(name, safe="/")))
    assert answer.status_code in (200, 307, 400, 404), answer.text
    if answer.status_code >= 400:
        assert answer.json()["error"]
