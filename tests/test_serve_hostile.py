"""The viewer under hostile traffic: malformed bodies, odd hosts, NaN models, generated requests, injected names,
concurrent uploads, and the `serve` command started and stopped at awkward moments."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from conftest import budget

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.cli import main  # noqa: E402
from cnnscope.serve import app as app_module  # noqa: E402
from cnnscope.serve import create_app  # noqa: E402
from cnnscope.serve.guard import CSP  # noqa: E402
from cnnscope.serve.viewer import Viewer  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAYLOAD = 'x<img src=q onerror="document.title=1337">'
BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def viewer(trained_run, data_dir) -> Viewer:
    return Viewer(trained_run, data_dir)


@pytest.fixture(scope="module")
def client(trained_run, viewer):
    app = create_app(trained_run, viewer=viewer, warm_up=False, max_upload_bytes=300_000)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as test_client:
        yield test_client


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def stroke(size: int = 120) -> bytes:
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).line([(size // 2, size // 6), (size // 2, size * 5 // 6)], fill=0, width=size // 10)
    return png_bytes(img)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


# --- malformed bodies: always a 400 with {"error": …} ------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"image": "data:abc"}', "must be a base64 data URI"),
    (b'{"image": "data:image/png;base64,@@@"}', "not valid base64"),
    (b'{"image": 5}', "must be a data URI string"),
    (b'{"image": null}', "must be a data URI string"),
    (b'{"pixels": ' + DEEP + b"}", "nested too deeply"),
    (DEEP, "nested too deeply"),
    (b'{"pixels": [[' + b"9" * 400 + b"]]}", "28×28 list"),
    (b'{"pixels": ' + json.dumps([[10 ** 400] + [0] * 27] + [[0] * 28] * 27).encode() + b"}", "received 1000000"),
    (b'{"pixels": [[' + b"9" * 5000 + b"]]}", "not usable JSON"),
    (b'{"pixels": NaN}', "not usable JSON"),
    (b'{"pixels": [[Infinity]]}', "not usable JSON"),
    (b'{"pixels": ' + json.dumps([[1e300] * 28] * 28).encode() + b"}", "from 0 to 255"),
    (b'{"pixels": ' + json.dumps([[True] * 28] * 28).encode() + b"}", "received True"),
    (b'{"pixels": ' + json.dumps([["1"] * 28] * 28).encode() + b"}", "received '1'"),
    (b'{"pixels": ' + json.dumps([[-1] * 28] * 28).encode() + b"}", "received -1"),
    (b'{"pixels": {"a": 1}}', "received dict"),
    (b'{"pixels": "@@"}', "not valid base64"),
    (b'{"pixels": "AAAA"}', "holds 3 bytes; expected 784"),
    (b"[1, 2]", 'JSON bodies must be {"pixels"'),
    (b'"text"', 'JSON bodies must be {"pixels"'),
    (b"\xff\xfe\x00{", "not"),
    (b"{", "not valid JSON"),
])
def test_malformed_json_bodies_are_400(client, body, needle):
    for path in ("/api/predict", "/api/activations", "/api/card?map=0", "/api/explain", "/api/units"):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert needle in error_of(r, 400), (path, r.text)


def test_malformed_forms_and_pictures_are_400(client):
    bad_multipart = b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc"  # never closed
    r = client.post("/api/predict", content=bad_multipart,
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400 and "error" in r.json()
    r = client.post("/api/predict", content=b"a=1", headers={"content-type": "multipart/form-data"})  # no boundary
    assert r.status_code == 400 and "error" in r.json()
    assert "not an image Pillow can read" in error_of(client.post("/api/predict", content=b"GIF89a" + b"\0" * 30), 400)
    icon = io.BytesIO()
    Image.new("L", (32, 32), 128).save(icon, "ICO")  # Pillow reads it, but it is not an offered format
    assert "not an image Pillow can read" in error_of(client.post("/api/predict", content=icon.getvalue()), 400)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "application/octet-stream",
                                          "text/plain", "image/jpeg"])
def test_raw_picture_bytes_work_whatever_the_content_type(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/api/predict", content=stroke(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["predicted_name"] in [str(d) for d in range(10)]
    assert any("inverted" in note for note in r.json()["notes"])


def test_multipart_uploads_stay_in_memory(client, monkeypatch):
    import starlette.formparsers

    class NoDisk(starlette.formparsers.SpooledTemporaryFile):
        def rollover(self):  # what would move the part to a file on disk
            raise AssertionError("a multipart part was spooled to disk")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", NoDisk)
    picture = stroke()
    padded = picture + b"\0" * (1_200_000 - len(picture))  # a PNG with trailing bytes: a 1.2 MB file part
    app = create_app("unused", viewer=client.app.state.viewer, warm_up=False, max_upload_bytes=2_000_000)
    with TestClient(app, base_url=BASE) as big:  # Starlette alone would spool a part past 1 MB to disk
        r = big.post("/api/predict", files={"image": ("big.png", padded, "image/png")})
    assert r.status_code == 200, r.text


# --- nothing non-finite in JSON ------------------------------------------------------------------
def _no_constant(name: str):
    raise AssertionError(f"the answer holds {name}")


def test_a_model_with_nan_weights_answers_null_never_500(trained_run, data_dir):
    sick = Viewer(trained_run, data_dir)
    with torch.no_grad():
        sick.model.layer("Conv2D_1").conv.weight[0].fill_(float("nan"))
    app = create_app(trained_run, viewer=sick, warm_up=False)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        answers = [c.get("/api/sample", params={"index": 0}),
                   c.get("/api/activations", params={"layer": "Conv2D_1", "format": "json"}),
                   c.get("/api/activations", params={"layer": "Conv2D_2"}),
                   c.get("/api/card", params={"layer": "Conv2D_3", "map": 0}),
                   c.post("/api/predict", content=stroke())]
    for r in answers:
        assert r.status_code == 200, r.text
        if r.headers["content-type"].startswith("application/json"):
            json.loads(r.content, parse_constant=_no_constant)  # strict JSON: no NaN / Infinity tokens
    body = answers[0].json()
    assert None in body["probabilities"] and "NaN or infinite" in body["warning"]


# --- who may talk to the server ------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "127.0.0.1.evil.example", "10.0.0.5:8000",
                                  "localhost:abc", ""])
def test_requests_for_another_host_are_refused(client, host):
    r = client.get("/api/info", headers={"host": host})
    assert "only answers requests addressed to" in error_of(r, 400)
    assert r.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"])
def test_local_hosts_are_answered(client, host):
    assert client.get("/api/info", headers={"host": host}).status_code == 200


def test_origin_of_another_site_is_refused(client):
    r = client.post("/api/predict", content=stroke(), headers={"host": "127.0.0.1:8000",
                                                                 "origin": "http://evil.example"})
    assert "other sites" in error_of(r, 403)
    same = client.post("/api/predict", content=stroke(), headers={"host": "127.0.0.1:8000",
                                                                    "origin": "http://127.0.0.1:8000"})
    assert same.status_code == 200


def test_a_wildcard_bind_answers_ip_addresses_but_not_names(trained_run, viewer):
    app = create_app(trained_run, viewer=viewer, warm_up=False, hosts=["0.0.0.0"])
    with TestClient(app, base_url="http://192.168.1.20:8000") as c:
        assert c.get("/api/layers").status_code == 200
        assert c.get("/api/layers", headers={"host": "rebind.example:8000"}).status_code == 400
    app = create_app(trained_run, viewer=viewer, warm_up=False, hosts=["my-box.lan"])
    with TestClient(app, base_url="http://my-box.lan:8000") as c:
        assert c.get("/api/layers").status_code == 200
        assert c.get("/api/layers", headers={"host": "192.168.1.20"}).status_code == 400


def test_security_headers_on_every_answer(client):
    for r in (client.get("/"), client.get("/static/viewer.js"), client.get("/api/info"), client.get("/nothing"),
              client.get("/api/activations", params={"layer": "Nope"}), client.get("/api/image")):
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP


def test_the_page_never_parses_html_from_data(client):
    js = client.get("/static/viewer.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    page = client.get("/").text
    assert "<script>" not in page and " style=" not in page and "onclick" not in page.lower()


# --- generated requests: never anything but 2xx/4xx ------------------------------------------------
PATHS_GET = ["/api/info", "/api/layers", "/api/sample", "/api/image", "/api/activations", "/api/card",
             "/api/pattern", "/api/colormap", "/api/explain", "/api/units", "/", "/static/viewer.js"]
PATHS_POST = ["/api/predict", "/api/activations", "/api/card", "/api/explain", "/api/units"]
KEYS = ["layer", "index", "set", "cols", "scale", "cmap", "format", "map", "class", "random", "method", "x"]
VALUES = st.one_of(st.sampled_from(["", "0", "1", "-1", "299", "300", "Conv2D_1", "Max_Pool_2", "Dense_1", "test",
                                    "Dense_2", "train", "val", "magma", "json", "png", "true", "9" * 40, "1e3", "²",
                                    " 3", "NaN", "saliency", "gradcam", "occlusion", "integrated-gradients"]),
                   st.text(max_size=12), st.integers(-10 ** 6, 10 ** 6).map(str))
PARAMS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=4), max_leaves=20)
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(["pixels", "image", "x"]), JSON_VALUES, max_size=2).map(json.dumps),
    st.builds(lambda rows: json.dumps({"pixels": rows}),
              st.lists(st.lists(st.integers(-2, 300), min_size=27, max_size=29), min_size=27, max_size=29)),
    st.builds(lambda p: json.dumps({"image": "data:image/png;base64," + p}), st.text(max_size=40)),
)


def assert_fine(r) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert "error" in r.json()


@settings(max_examples=budget(40))
@given(path=st.sampled_from(PATHS_GET), params=PARAMS)
def test_generated_get_requests_never_fail(client, path, params):
    assert_fine(client.get(path, params=params))


@settings(max_examples=budget(30))
@given(path=st.sampled_from(PATHS_POST), params=PARAMS, body=BODIES)
def test_generated_json_bodies_never_fail(client, path, params, body):
    assert_fine(client.post(path, params=params, content=body.encode(), headers={"content-type": "application/json"}))


@settings(max_examples=budget(30))
@given(path=st.sampled_from(PATHS_POST), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                                                   b"BM", b"{", b"--b\r\n", b"RIFF\0\0\0\0WEBP"]),
       raw=st.binary(max_size=200), kind=st.sampled_from([None, "application/json", "multipart/form-data; boundary=b",
                                                          "application/x-www-form-urlencoded", "image/png"]))
def test_generated_raw_bodies_never_fail(client, path, prefix, raw, kind):
    headers = {} if kind is None else {"content-type": kind}
    assert_fine(client.post(path, content=prefix + raw, headers=headers))


@settings(max_examples=budget(15))
@given(size=st.tuples(st.integers(1, 300), st.integers(1, 300)), mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "P",
                                                                                         "1", "I;16", "I", "F"]),
       seed=st.integers(0, 2 ** 16), fmt=st.sampled_from(["PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG"]))
def test_generated_pictures_never_fail(client, size, mode, seed, fmt):
    pixels = np.random.default_rng(seed).integers(0, 255, size[::-1], dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    try:
        img.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # that format cannot store that mode
        return
    assert_fine(client.post("/api/predict", content=buffer.getvalue()))


# --- bounded work --------------------------------------------------------------------------------
def test_at_most_a_few_decodes_run_at_once(client, monkeypatch):
    running, peak, lock = [0], [0], threading.Lock()
    real = app_module.prepare_picture

    def slow(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        try:
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(app_module, "prepare_picture", slow)
    app = create_app("unused", viewer=client.app.state.viewer, warm_up=False, max_decodes=2)
    picture, codes = stroke(), []
    with TestClient(app, base_url=BASE) as c:
        threads = [threading.Thread(target=lambda: codes.append(c.post("/api/predict", content=picture).status_code))
                   for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 10 and peak[0] == 2


def test_grids_do_not_wait_for_a_pattern(client, monkeypatch):
    import cnnscope.inspect.patterns as patterns

    real, started, release = patterns.maximize_activation, threading.Event(), threading.Event()

    def held(*args, **kwargs):  # the pattern is held until the grid has answered: events, not timing
        started.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(patterns, "maximize_activation", held)
    done, grid = [], []
    worker = threading.Thread(target=lambda: done.append(client.get("/api/pattern", params={
        "layer": "Conv2D_2", "map": 3, "cmap": "viridis"}).status_code))
    worker.start()
    assert started.wait(10)
    answered = threading.Event()
    grid_worker = threading.Thread(target=lambda: (grid.append(client.get("/api/activations", params={
        "layer": "Conv2D_1", "index": 4}).status_code), answered.set()))
    grid_worker.start()
    try:
        assert answered.wait(30), "the grid waited behind the pattern"
        assert grid == [200] and done == []  # the pattern is still held
    finally:
        release.set()
        worker.join()
        grid_worker.join()
    assert done == [200]


# --- the `serve` command -------------------------------------------------------------------------
def test_bad_host_and_port_are_one_line_exit_2(trained_run, data_dir, capsys):
    assert main(["serve", str(trained_run), "--host", "no such host!", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --host 'no such host!' is not a usable address") and len(err) <= 2
    assert main(["serve", str(trained_run), "--port", "70000", "--data-dir", str(data_dir)]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


def _serve(run: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cnnscope", "serve", str(run), "--data-dir", str(data_dir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=1) as r:
                r.read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(proc.communicate()[1].decode()) from None
            time.sleep(0.1)


def test_busy_port_exits_2_in_a_process(trained_run, data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(trained_run, data_dir, "--port", str(port))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.decode().strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port} "
                                                 f"(Address already in use); pass another --port, or a --host this "
                                                 f"machine has"]


def _torch_loaded(pid: int) -> bool:
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("when", ["loading", "ready", "warm"])
def test_ctrl_c_at_any_moment_exits_cleanly(trained_run, data_dir, when):
    """SIGINT while the run loads, just after the port opens (warm-up thread busy in torch), and later."""
    port = _free_port()
    proc = _serve(trained_run, data_dir, "--port", str(port))
    try:
        if when == "loading":  # torch is in; the run and its data are being loaded (or the server is starting)
            deadline = time.monotonic() + 30
            while not _torch_loaded(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(0.5)
        else:
            _wait_ready(port, proc)
        if when == "warm":
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/card?layer=Conv2D_3&map=0", timeout=30).read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = err.decode()
    assert "terminate called" not in text and "Aborted" not in text and proc.returncode not in (-6, 134), text
    if when != "loading":  # Python's own start-up (imports) may still be under way in "loading"
        assert proc.returncode in (0, 130) and "Traceback" not in text, text


# --- the page never runs what it shows -------------------------------------------------------------
def test_a_run_named_like_markup_runs_nothing_in_a_real_browser(trained_run, data_dir, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    hostile = tmp_path / PAYLOAD
    shutil.copytree(trained_run, hostile)
    port = _free_port()
    proc = _serve(hostile, data_dir, "--port", str(port))
    try:
        _wait_ready(port, proc)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for bypass_csp in (True, False):  # the page itself must be safe, CSP or not
                    page = browser.new_page(bypass_csp=bypass_csp)
                    page.goto(f"http://127.0.0.1:{port}/")
                    deadline = time.monotonic() + 20
                    while page.evaluate("document.body.dataset.busy") != "0" and time.monotonic() < deadline:
                        time.sleep(0.05)
                    time.sleep(0.3)
                    assert page.evaluate("document.title") != "1337"
                    assert PAYLOAD in page.inner_text("#run-info")
                    assert page.evaluate("document.querySelectorAll('img[src=\"q\"]').length") == 0
                    page.close()
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
