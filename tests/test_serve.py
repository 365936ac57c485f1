"""The viewer: its API through Starlette's TestClient, and the page in a real (headless) Chromium."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.base.imaging import EMPTY_RGB  # noqa: E402
from cnnscope.cli import main  # noqa: E402
from cnnscope.serve import create_app  # noqa: E402
from cnnscope.serve.viewer import Viewer  # noqa: E402
from conftest import finite_readout  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
SAFETY_MS = 120_000  # browser waits end on an event; this deadline only stops a hung test, even at load 14
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def viewer(trained_run, data_dir) -> Viewer:
    return Viewer(trained_run, data_dir)


@pytest.fixture(scope="module")
def client(trained_run, viewer) -> TestClient:
    app = create_app(trained_run, viewer=viewer, warm_up=False, max_upload_bytes=200_000)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:  # one event loop for the module
        yield test_client


def stroke_png(size: int = 200, light_background: bool = True) -> bytes:
    """A picture of a vertical stroke, like a photographed '1'."""
    img = Image.new("L", (size, size), 255 if light_background else 0)
    ImageDraw.Draw(img).line([(size // 2, size // 6), (size // 2, size * 5 // 6)], fill=0 if light_background else
                             255, width=size // 12)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _pair(value) -> list[int]:
    """A receptive field as [rows, cols], whether the spec gives one int or a pair."""
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 2


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


# --- GET endpoints -------------------------------------------------------------------------------
def test_layers_lists_names_types_and_shapes(client, tiny_spec):
    layers = client.get("/api/layers").json()["layers"]
    spec_layers = tiny_spec.layers()
    assert [layer["name"] for layer in layers] == [layer.name for layer in spec_layers]
    assert [layer["type"] for layer in layers] == [layer.type for layer in spec_layers]
    assert [tuple(layer["output_shape"]) for layer in layers] == [layer.output_shape for layer in spec_layers]
    grid = [layer["name"] for layer in layers if layer["grid"]]
    assert grid == ["Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3"]
    first = layers[0]
    assert first["maps"] == 6 and first["geometry"] == {"size": [3, 3], "jump": [1, 1], "offset": [0, 0]}


def test_info_describes_the_run(client):
    info = client.get("/api/info").json()
    assert info["dataset"] == "mnist" and info["class_names"] == [str(d) for d in range(10)]
    assert info["sets"]["test"] == 300 and 0.9 < info["test_accuracy"] <= 1
    assert "magma" in info["colormaps"] and info["grid_layers"][0] == "Conv2D_1"
    assert info["label_smoothing"] == 0 and info["confidence_cap"] is None  # trained without: no cap to explain


def test_label_smoothing_caps_the_confidence_the_viewer_explains():
    from cnnscope.views.panels import confidence_cap

    assert confidence_cap(0.05, 10) == pytest.approx(0.955) and confidence_cap(0.0, 10) is None


def test_activation_grid_png_has_the_grid_geometry(client):
    r = client.get("/api/activations", params={"layer": "Conv2D_2", "index": 3, "cols": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == PNG_MAGIC
    assert (r.headers["x-grid-maps"], r.headers["x-grid-cols"], r.headers["x-grid-rows"]) == ("12", "5", "3")
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (5 * 11, 3 * 11)  # Conv2D_2 maps are 11×11
    pixels = np.asarray(image)
    assert (pixels[-11:, -11:] == EMPTY_RGB).all()  # the empty cells of the last row: the page's panel colour
    assert pixels[:11, :11].std() > 0


def test_activation_options_change_the_picture(client):
    base = {"layer": "Conv2D_1", "index": 0}
    plain = client.get("/api/activations", params=base).content
    scaled = client.get("/api/activations", params={**base, "scale": 1}).content
    viridis = client.get("/api/activations", params={**base, "cmap": "viridis"}).content
    other = client.get("/api/activations", params={**base, "index": 1}).content
    assert len({plain, scaled, viridis, other}) == 4


def test_activation_json_matches_the_library(client, viewer):
    r = client.get("/api/activations", params={"layer": "Max_Pool_1", "index": 7, "format": "json", "cols": 4})
    body = r.json()
    assert body["shape"] == [6, 13, 13] and (body["rows"], body["cols"]) == (2, 4)
    assert body["index"] == 7 and body["label"] == int(viewer.dataset.test_y[7])
    expected = viewer.maps("Max_Pool_1", viewer.dataset.test_raw[7])
    np.testing.assert_allclose(np.asarray(body["activations"]), expected, atol=1e-4)
    assert body["png"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["png"].split(",", 1)[1])[:8] == PNG_MAGIC


def test_sample_gives_probabilities_and_random_class(client):
    body = client.get("/api/sample", params={"index": 5}).json()
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    assert body["predicted"] == int(np.argmax(body["probabilities"]))
    assert len(base64.b64decode(body["pixels"])) == 28 * 28
    for _ in range(3):
        picked = client.get("/api/sample", params={"class": 4, "random": 1}).json()
        assert picked["label"] == 4
    assert client.get("/api/image", params={"index": 2}).content[:8] == PNG_MAGIC


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"layer": "Nope"}, 400, "unknown layer 'Nope'; valid: Conv2D_1, Max_Pool_1"),
    ({"layer": "Dense_1"}, 400, "activation maps exist for the conv and pooling layers"),
    ({"layer": "Conv2D_1", "index": 300}, 400, "index 300 is out of range: the test set holds 300 images"),
    ({"layer": "Conv2D_1", "index": -1}, 400, "index -1 is out of range"),
    ({"layer": "Conv2D_1", "index": "two"}, 400, "parameter 'index' must be an integer, received 'two'"),
    ({"layer": "Conv2D_1", "set": "holdout"}, 400, "unknown set 'holdout'"),
    ({"layer": "Conv2D_1", "cmap": "rainbowz"}, 400, "unknown colour map 'rainbowz'"),
    ({"layer": "Conv2D_1", "cols": 0}, 400, "'cols' must be between 1 and 64"),
    ({"layer": "Conv2D_1", "scale": "maybe"}, 400, "'scale' must be 0 or 1"),
    ({"layer": "Conv2D_1", "format": "xml"}, 400, "'format' must be 'png' or 'json'"),
])
def test_bad_activation_requests_get_clear_4xx_json(client, params, status, needle):
    assert needle in error_of(client.get("/api/activations", params=params), status)


def test_unknown_routes_and_methods_are_json_errors(client):
    assert "no such page" in error_of(client.get("/api/nothing"), 404)
    assert "not allowed" in error_of(client.delete("/api/predict"), 405)
    assert "missing parameter 'map'" in error_of(client.get("/api/card", params={"layer": "Conv2D_1"}), 400)


# --- POST endpoints ------------------------------------------------------------------------------
def test_predict_accepts_multipart_raw_and_json(client, viewer):
    picture = stroke_png()
    multipart = client.post("/api/predict", files={"image": ("one.png", picture, "image/png")}).json()
    raw_body = client.post("/api/predict", content=picture, headers={"content-type": "image/png"}).json()
    assert multipart["probabilities"] == raw_body["probabilities"]
    assert abs(sum(multipart["probabilities"]) - 1) < 1e-4
    assert any("inverted" in note for note in multipart["notes"])  # dark ink on white was made MNIST-like
    pixels = np.frombuffer(base64.b64decode(multipart["pixels"]), np.uint8).reshape(28, 28)
    assert pixels[0].max() == 0 and pixels[14].max() > 200  # light ink on black, centred
    # A test image sent as JSON pixels predicts exactly what the server says for that index.
    raw = viewer.dataset.test_raw[11]
    as_list = client.post("/api/predict", json={"pixels": raw.tolist()}).json()
    as_b64 = client.post("/api/predict", json={"pixels": base64.b64encode(raw.tobytes()).decode()}).json()
    by_index = client.get("/api/sample", params={"index": 11}).json()
    assert as_list["probabilities"] == as_b64["probabilities"] == by_index["probabilities"]


def test_post_activations_for_a_drawing(client):
    picture = stroke_png(light_background=False)
    r = client.post("/api/activations", params={"layer": "Conv2D_1", "cols": 3},
                    files={"image": ("d.png", picture, "image/png")})
    assert r.status_code == 200 and r.content[:8] == PNG_MAGIC
    assert Image.open(io.BytesIO(r.content)).size == (3 * 26, 2 * 26)
    body = client.post("/api/activations", data={"layer": "Conv2D_3", "format": "json"},
                       files={"image": ("d.png", picture, "image/png")}).json()
    assert body["shape"] == [16, 3, 3] and body["source"] == "upload"


def test_bad_uploads_are_refused_cleanly(client):
    text = error_of(client.post("/api/predict", files={"image": ("notes.txt", b"just text", "text/plain")}), 400)
    assert "not an image Pillow can read" in text
    broken = error_of(client.post("/api/predict", content=b"\x89PNG\r\n\x1a\nbroken"), 400)
    assert "not an image Pillow can read" in broken or "cannot read the picture" in broken
    assert "empty" in error_of(client.post("/api/predict", content=b""), 400)
    assert "no 'image' file field" in error_of(client.post("/api/predict", data={"x": "1"}), 400)
    assert "not valid JSON" in error_of(client.post("/api/predict", content=b"{", headers={
        "content-type": "application/json"}), 400)
    assert "28×28" in error_of(client.post("/api/predict", json={"pixels": [[1, 2], [3, 4]]}), 400)
    blank = io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, "PNG")
    assert "no digit found" in error_of(client.post("/api/predict", content=blank.getvalue()), 400)


def test_huge_uploads_get_413(client):
    big = b"\0" * 300_000  # the test app's cap is 200,000 bytes
    assert "limit is 200,000 bytes" in error_of(client.post("/api/predict", content=big), 413)
    # Without a Content-Length (chunked), the cap applies while streaming.
    chunks = (b"\0" * 50_000 for _ in range(6))
    assert "larger than the limit" in error_of(client.post("/api/activations", content=chunks), 413)
    assert client.get("/api/layers").status_code == 200  # and the server carries on


def test_huge_picture_dimensions_are_refused(client):
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, "PNG")  # small file, 25 megapixels
    assert "at most" in error_of(client.post("/api/predict", content=buffer.getvalue()), 400)


# --- map cards ----------------------------------------------------------------------------------
def test_card_of_a_conv_map(client, viewer, tiny_spec):
    card = client.get("/api/card", params={"layer": "Conv2D_2", "map": 4, "index": 9}).json()
    assert card["shape"] == [11, 11] and card["map"] == 4
    fmap = viewer.maps("Conv2D_2", viewer.dataset.test_raw[9])[4]
    assert card["peak"] == list(np.unravel_index(int(np.argmax(fmap)), fmap.shape))
    weights = viewer.model.layer("Conv2D_2").conv.weight[4].detach().numpy()
    assert np.asarray(card["kernel"]["values"]).shape == (6, 3, 3)
    np.testing.assert_allclose(card["kernel"]["values"], weights, atol=1e-5)
    assert card["kernel"]["input"] == "Max_Pool_1" and card["pool"] is None
    assert card["receptive_field"]["size"] == _pair(tiny_spec.layer("Conv2D_2").receptive_field)
    # Top images: sorted, and their values are the real spatial maxima of this map.
    top = card["top"]
    values = [t["value"] for t in top]
    assert len(top) == 8 and values == sorted(values, reverse=True)
    all_maps = viewer.maps("Conv2D_2", viewer.dataset.test_raw[top[0]["index"]])
    assert abs(all_maps[4].max() - values[0]) < 1e-3
    rest = [viewer.maps("Conv2D_2", viewer.dataset.test_raw[i])[4].max() for i in range(40)]
    assert max(rest) <= values[0] + 1e-4
    assert card["readout"] is None  # only the last conv layer (and pools after it) reads out to classes


def test_card_of_a_pool_map_and_the_class_readout(client):
    pool = client.get("/api/card", params={"layer": "Max_Pool_1", "map": 2, "index": 0}).json()
    assert pool["kernel"] is None and pool["pool"] == {"kind": "max", "size": [2, 2], "stride": [2, 2],
                                                       "input": "Conv2D_1"}
    last = client.get("/api/card", params={"layer": "Conv2D_3", "map": 0, "index": 0}).json()
    readout = last["readout"]
    assert len(readout["values"]) == 10 and readout["images"] == 300
    assert any(abs(v) > 0 for v in readout["values"])
    assert "out of range" in error_of(client.get("/api/card", params={"layer": "Conv2D_3", "map": 16}), 400)


def test_class_readout_is_the_gradient_of_logits(viewer):
    """Check the read-out against a finite difference: raise map m everywhere by eps, watch the logits move."""
    layer, m = "Conv2D_3", 5
    finite = finite_readout(viewer.model, layer, viewer.dataset.test_x, m)
    readout = viewer._readout(layer, m)["values"]
    np.testing.assert_allclose(readout, finite, atol=2e-3)


def test_pattern_endpoint(client):
    r = client.get("/api/pattern", params={"layer": "Conv2D_1", "map": 1})
    if r.status_code == 404:
        pytest.skip(r.json()["error"])
    assert r.status_code == 200 and r.content[:8] == PNG_MAGIC
    assert Image.open(io.BytesIO(r.content)).size == (28, 28)
    assert client.get("/api/pattern", params={"layer": "Conv2D_1", "map": 1}).content == r.content  # cached


def test_geometry_handles_same_padding_and_strides():
    """The API's geometry is the spec's (cnnscope.model.geometry): size, jump and a negative offset under padding."""
    from cnnscope.model.spec import ConvSpec, DenseSpec, ModelSpec, PoolSpec
    from cnnscope.views.panels import layers_panel

    spec = ModelSpec(conv=(ConvSpec(4, kernel=5, padding="same", pool=PoolSpec()), ConvSpec(4, stride=2)),
                     dense=(DenseSpec(8),))
    layers = {row["name"]: row for row in layers_panel(spec).data["layers"]}
    assert layers["Conv2D_1"]["geometry"] == {"size": [5, 5], "jump": [1, 1], "offset": [-2, -2]}
    assert layers["Max_Pool_1"]["geometry"]["jump"] == [2, 2] and layers["Max_Pool_1"]["geometry"]["size"] == [6, 6]
    assert layers["Conv2D_2"]["geometry"]["size"] == [10, 10] and layers["Conv2D_2"]["geometry"]["jump"] == [4, 4]
    for layer in spec.layers():
        row = layers[layer.name]
        assert row["grid"] == layer.has_maps and (row["geometry"] is None) == (not layer.has_maps)
        if layer.has_maps:
            assert row["geometry"]["size"] == row["receptive_field"] == list(layer.receptive_field)


def test_the_viewer_reads_geometry_and_kinds_from_the_spec():
    """No torch module is inspected to decide what a layer is: serve/ asks the spec."""
    source = "".join(path.read_text() for path in (Path(__file__).parents[1] / "src/cnnscope/serve").glob("*.py"))
    for needle in ("isinstance(module", "ConvBlock", "nn.MaxPool2d", "GRID_TYPES", "layer_geometry",
                   "pattern_available"):
        assert needle not in source


# --- explanations -------------------------------------------------------------------------------
def _check_verdict(d: dict) -> None:
    """/api/explain's deletion test: the three rankings' curves over 0-50 %, their AUCs, the verdict from them."""
    from cnnscope.inspect.deletion import BEAT_MARGIN, CRITERION, FRACTIONS, curve_area

    assert d["fractions"] == list(FRACTIONS) and set(d["rankings"]) == {"method", "brightness", "random"}
    for row in d["rankings"].values():
        for kind in ("deletion", "insertion"):
            assert len(row[kind]) == len(FRACTIONS)
            assert row[f"{kind}_auc"] == pytest.approx(float(curve_area(FRACTIONS, row[kind])), abs=1e-4)
    gap = d["rankings"]["brightness"]["deletion_auc"] - d["rankings"]["method"]["deletion_auc"]
    assert d["passes"] is (gap >= BEAT_MARGIN) and d["verdict"] == ("passes" if d["passes"] else "fails")
    assert d["criterion"] == CRITERION and isinstance(d["beats_random"], bool)


def test_explain_every_method_with_its_deletion_test(client, viewer):
    from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS

    info = client.get("/api/info").json()
    assert [m["name"] for m in info["methods"]][0] == DEFAULT_METHOD
    assert {m["name"] for m in info["methods"]} == set(METHODS) and "pattern_available" not in info
    default = client.get("/api/explain", params={"index": 4}).json()
    assert default["method"] == DEFAULT_METHOD and default["index"] == 4
    assert default["class"] == client.get("/api/sample", params={"index": 4}).json()["predicted"]
    deletion = default["deletion"]
    assert abs(deletion["probability"] - default["probability"]) < 1e-5
    _check_verdict(deletion)
    assert default["verdict"] == deletion["verdict"]
    image = Image.open(io.BytesIO(base64.b64decode(default["png"].split(",", 1)[1])))
    assert image.size == (28, 28)
    for name in ("saliency", "gradcam"):
        body = client.get("/api/explain", params={"index": 4, "method": name}).json()
        assert body["method"] == name and body["title"] == METHODS[name].title
        assert (body["layer"] == "Conv2D_3") == METHODS[name].uses_layer
    gradcam = client.get("/api/explain", params={"index": 4, "method": "gradcam"}).json()
    assert gradcam["unseen_pixels"] > 0  # valid convolutions drop the edges: grey, never "unimportant"
    _check_verdict(gradcam["deletion"])
    posted = client.post("/api/explain", params={"method": "saliency"},
                         json={"pixels": viewer.dataset.test_raw[4].tolist()}).json()
    assert posted["source"] == "upload" and posted["png"] == client.get(
        "/api/explain", params={"index": 4, "method": "saliency"}).json()["png"]


def test_explain_refuses_a_wrong_method_listing_them(client):
    from cnnscope.inspect.methods import METHODS

    text = error_of(client.get("/api/explain", params={"index": 0, "method": "magic"}), 400)
    assert text == f"unknown method 'magic'; valid: {', '.join(METHODS)}"
    assert error_of(client.post("/api/explain", params={"method": "magic"}, content=b"not read"), 400) == text


def test_the_run_directory_is_left_untouched(client, trained_run):
    before = {p: p.stat().st_mtime_ns for p in Path(trained_run).rglob("*")}
    client.post("/api/predict", content=stroke_png())
    client.get("/api/card", params={"layer": "Conv2D_1", "map": 0})
    assert {p: p.stat().st_mtime_ns for p in Path(trained_run).rglob("*")} == before


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas id=\"draw\"" in page.text
    for asset in ("/static/viewer.js", "/static/viewer.css"):
        assert client.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    js = client.get("/static/viewer.js").text
    assert "https://" not in js and "pointerdown" in js


# --- the command --------------------------------------------------------------------------------
def test_serve_command_errors(tmp_path, trained_run, data_dir, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(trained_run), "--port", str(port), "--data-dir", str(data_dir)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(trained_run), "--host", "0.0.0.0", "--port", str(port),
                     "--data-dir", str(data_dir)]) == 2
        err = capsys.readouterr().err
        assert "warning: --host 0.0.0.0 makes the viewer reachable from other machines" in err


# --- the page in a real browser -----------------------------------------------------------------
def wait_until(page, expression: str, timeout: int = SAFETY_MS) -> None:
    """Poll a JavaScript expression until it is true (page.evaluate: works under the page's CSP, which forbids
    the eval that page.wait_for_function uses for expressions)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} ms waiting for {expression}")
        time.sleep(0.05)


@contextlib.contextmanager
def browser_page(url: str, viewport: dict | None = None) -> Iterator[tuple[Any, list[str]]]:
    """(page, script errors) at `url` in headless Chromium, closed afterwards; skipped without chromium or
    playwright."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
            page.set_default_timeout(SAFETY_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(trained_run, data_dir):
    """`cnnscope serve` in a subprocess on a free port; always stopped at teardown."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnscope", "serve", str(trained_run), "--port", str(port),
                             "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "api/info", timeout=1) as r:
                    json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {proc.stdout.read().decode()}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_drawing_in_a_real_browser_updates_prediction_and_grid(served, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served)
            idle = "document.body.dataset.busy === '0' && Number(document.querySelector('#grid').dataset.renders) >= {}"
            wait_until(page, idle.format(1), timeout=SAFETY_MS)
            grid_before = page.evaluate("document.querySelector('#grid').toDataURL()")
            probs_before = page.inner_text("#probs")
            assert "true class" in page.inner_text("#true-label")
            renders = int(page.get_attribute("#grid", "data-renders"))

            box = page.locator("#draw").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
            page.mouse.down()
            for i in range(1, 16):  # a diagonal stroke, drawn in steps like a hand would
                page.mouse.move(box["x"] + box["width"] * (0.3 + 0.03 * i), box["y"] + box["height"] * (0.2 + 0.04 * i))
            page.mouse.up()
            wait_until(page, idle.format(renders + 1) + " && document.querySelector('#source-label')"
                                   ".textContent.includes('drawing')", timeout=SAFETY_MS)
            wait_until(page, "document.body.dataset.busy === '0'", timeout=SAFETY_MS)
            assert page.evaluate("document.querySelector('#grid').toDataURL()") != grid_before
            assert page.inner_text("#probs") != probs_before
            assert page.inner_text("#true-label") == "your drawing"

            assert page.is_hidden("#notes")  # a clean drawing: nothing to warn about, no notes for drawings
            upload = tmp_path / "one.png"
            upload.write_bytes(stroke_png())
            renders = int(page.get_attribute("#grid", "data-renders"))
            page.set_input_files("#upload", str(upload))
            wait_until(page, idle.format(renders + 1) + " && !document.querySelector('#notes').hidden")
            notes = page.inner_text("#notes")
            assert "inverted: dark ink on a light background" in notes and "cropped to the ink" in notes
            assert page.inner_text("#source-label") == "showing one.png"

            grid = page.locator("#grid").bounding_box()
            page.mouse.click(grid["x"] + 5, grid["y"] + 5)  # the first map opens its card
            page.wait_for_selector("#card .kernels", timeout=SAFETY_MS)
            assert page.inner_text("#card-title").startswith("Conv2D_1 · map 0")
            # why this class: the default method's heat map with its deletion test, then another method
            wait_until(page, "document.querySelector('#explain-text').textContent.includes('deletion AUC')")
            verdict = page.inner_text("#explain-verdict")
            assert verdict in ("passes", "fails") and page.locator("#explain-curves svg").count() == 2
            assert page.locator("#method option:checked").inner_text().endswith(f" · {verdict}")
            assert page.input_value("#method") == "integrated-gradients"
            page.select_option("#method", "gradcam")
            wait_until(page, "document.querySelector('#explain-text').textContent.startsWith('Grad-CAM')")
            assert "no cell of Conv2D_3 sees" in page.inner_text("#explain-text")
            assert re.search(r"It (passes|FAILS): passing means", page.inner_text("#explain-text"))
            page.screenshot(path=str(tmp_path / "viewer.png"))
            assert (tmp_path / "viewer.png").stat().st_size > 10_000
        finally:
            browser.close()
    assert not errors, errors
