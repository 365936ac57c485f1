"""The pages' JavaScript: one shared module (common.js) for DOM helpers and number formatting, loaded by both pages
under their Content-Security-Policy; texts go in as text only; short functions; the viewer's requests go through
one back-end object that another page can replace."""

from __future__ import annotations

import base64
import io
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.serve.dashboard import create_dashboard_app, viewer_page  # noqa: E402
from cnnscope.serve.guard import CSP  # noqa: E402
from pages import script_faults, static_server  # noqa: E402
from test_serve import browser_page, wait_until  # noqa: E402

STATIC = Path(__file__).parents[1] / "src/cnnscope/serve/static"
SCRIPTS = sorted(STATIC.glob("*.js"))
SHARED = ("$", "el", "svg", "fmt", "pct")


def _defined(source: str) -> set[str]:
    """Names a script defines at its top level (function declarations and const/let bindings)."""
    return set(re.findall(r"^(?:async )?function (\w+)\(", source, re.M)) | set(
        re.findall(r"^(?:const|let) ([\w$]+) =", source, re.M))


def test_both_pages_load_the_shared_module_before_their_own_script():
    """common.js first; the viewer's pages also load png.js (the drawing's encoder) before viewer.js."""
    pages = {"index.html": ["png.js", "viewer.js"], "dashboard.html": ["dashboard.js"], "run page": ["png.js",
                                                                                                    "viewer.js"]}
    for page, scripts in pages.items():
        html = viewer_page() if page == "run page" else (STATIC / page).read_text()
        sources = re.findall(r'<script src="([^"]+)" defer></script>', html)
        assert sources[0] == "/static/common.js" and len(sources) == 1 + len(scripts), page
        assert all(source.endswith(script) for source, script in zip(sources[1:], scripts, strict=True)), page


def test_the_helpers_are_defined_once_in_the_shared_module():
    common = (STATIC / "common.js").read_text()
    assert set(SHARED) <= _defined(common)
    for path in SCRIPTS:
        if path.name != "common.js":
            again = _defined(path.read_text()) & set(SHARED)
            assert not again, f"{path.name} defines {again} again (a second top-level binding is a SyntaxError)"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_insert_text_never_markup_and_keep_functions_short(path):
    assert script_faults(path.read_text()) == []


def test_the_shared_module_is_served_under_the_policy(tmp_path):
    with TestClient(create_dashboard_app(tmp_path), base_url="http://127.0.0.1") as client:
        answer = client.get("/static/common.js")
    assert answer.status_code == 200 and "function fmt(" in answer.text
    assert answer.headers["content-security-policy"] == CSP and "javascript" in answer.headers["content-type"]


def _png_uri(size: int = 2) -> str:
    buffer = io.BytesIO()
    Image.new("L", (size, size), 200).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# A back end that answers from the page itself: what a static copy of the viewer would install (issue 25).
FAKE_BACKEND = """
window.cnnscopeBackend = (() => {
  const png = "%(png)s";
  const blob = async () => (await fetch(png)).blob();
  const meta = { maps: 1, rows: 1, cols: 1, height: 2, width: 2, min: 0, max: 1, "value-min": 0, "value-max": 1 };
  return {
    info: async () => ({ run: "in-page run", dataset: "toy", params: 12, epochs: 1, test_accuracy: 0.5,
      input_shape: [1, 2, 2], channels: 1, drawing: true, noun: "digit", sets: { test: 1 },
      class_names: ["zero", "from the page"], colormaps: ["magma"], methods: [{ name: "m", title: "M" }],
      grid_layers: ["L"], confidence_cap: null }),
    layers: async () => ({ layers: [{ name: "L", type: "Conv2D", kind: "conv", output_shape: [1, 2, 2], params: 2,
      grid: true, maps: 1, geometry: { size: [1, 1], jump: [1, 1], offset: [0, 0] } }] }),
    sample: async () => ({ set: "test", index: 0, label: 1, class_name: "from the page", pixels: "", image: png,
      probabilities: [0.25, 0.75], predicted: 1, predicted_name: "from the page",
      class_names: ["zero", "from the page"] }),
    maps: async () => ({ blob: await blob(), meta }),
    explain: async () => { throw new Error("no explanations in this back end"); },
    colormapUrl: () => png,
  };
})();
"""


@pytest.fixture
def static_copy(tmp_path):
    """The viewer's page and scripts served as plain files (no cnnscope server); its URL."""
    shutil.copytree(STATIC, tmp_path / "static")
    shutil.copy(STATIC / "index.html", tmp_path / "index.html")
    with static_server(tmp_path) as url:
        yield url + "index.html"


def test_the_viewer_runs_on_another_back_end(static_copy):
    requests: list[str] = []
    with browser_page("about:blank") as (page, errors):
        page.on("request", lambda request: requests.append(request.url))
        page.add_init_script(FAKE_BACKEND % {"png": _png_uri()})
        page.goto(static_copy)
        wait_until(page, "document.body.dataset.busy === '0' && "
                         "Number(document.querySelector('#grid').dataset.renders) >= 1")
        assert page.inner_text("#pred-label") == "from the page"
        assert "in-page run" in page.inner_text("#run-info")
        wait_until(page, "document.querySelector('#explain-text').textContent.includes('no explanations')")
    assert not errors, errors
    assert not [url for url in requests if "/api/" in url], requests  # every answer came from the page's back end


ENCODE = """async ([pixels, width, height, grey]) => {
  const blob = encodePNG(Uint8Array.from(pixels), width, height, grey);
  return [blob.type, Array.from(new Uint8Array(await blob.arrayBuffer()))];
}"""


@pytest.mark.parametrize("grey", [False, True], ids=["rgba", "grey"])
def test_png_js_writes_pngs_that_decode_to_the_pixels_given(grey):
    """The viewer's drawing and the site's pictures are encoded by png.js: what PIL reads back is what was given
    (the red channel for grey), over more than one stored deflate block."""
    rng = np.random.default_rng(0)
    height, width = 150, 130  # 150 rows of 521 bytes: two stored blocks for RGBA
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    with browser_page("about:blank") as (page, errors):
        page.add_script_tag(content=(STATIC / "png.js").read_text())
        kind, data = page.evaluate(ENCODE, [rgba.ravel().tolist(), width, height, grey])
    picture = Image.open(io.BytesIO(bytes(data)))
    assert kind == "image/png" and not errors
    assert picture.mode == ("L" if grey else "RGBA")
    np.testing.assert_array_equal(np.asarray(picture), rgba[..., 0] if grey else rgba)
