"""`cnnscope export-site`: the runtime's fetch and checks, the folder it writes, and the page in a real Chromium
served by a plain static file server (Python's http.server in a thread) — the model's outputs in the page equal
PyTorch's, a drawing gets a prediction, nothing is requested outside the site's folder."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnscope.base.errors import DataError, SiteError
from cnnscope.data.picture_input import mnist_format, picture_target, prepare_picture
from cnnscope.data.sources import class_names_of
from cnnscope.inspect.activations import capture
from cnnscope.inspect.attribution import occlusion
from cnnscope.interop import ortweb
from cnnscope.runs.load import load_run
from cnnscope.serve.site import MARKER, export_site, site_page
from conftest import budget, one_line_error, run_cli
from pages import script_faults, static_server
from test_serve import CHROMIUM, CHROMIUM_ARGS, SAFETY_MS, wait_until

FAST_PATTERNS = {"steps": 4, "restarts": 1}  # the cards' patterns: enough to be drawn, quick to compute
IMAGES = 20  # test images compared with PyTorch
TOLERANCE = 1e-4


# --- the runtime: fetch, cache, checks (a fake package, so no network is needed) ----------------------------
def fake_package(folder: Path, version: str = ortweb.VERSION) -> tuple[Path, str, dict]:
    """A tarball shaped like the npm package with made-up files; (path, its integrity, FILES for it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ortweb.TARBALL
    files = {}
    with tarfile.open(path, "w:gz") as tar:
        for member, (name, _) in ortweb.FILES.items():
            data = f"fake {name}".encode()
            info = tarfile.TarInfo(f"package/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            files[member] = (name, hashlib.sha256(data).hexdigest())
        manifest = json.dumps({"name": ortweb.PACKAGE, "version": version}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return path, ortweb.integrity_of(path), files


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    """A fake package pinned as if the registry published it, and an empty cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tarball, integrity, files = fake_package(tmp_path / "npm" / ortweb.PACKAGE / "-")
    monkeypatch.setattr(ortweb, "INTEGRITY", integrity)
    monkeypatch.setattr(ortweb, "FILES", files)
    return tarball


def test_a_local_tarball_is_verified_and_its_files_kept_in_the_cache(fake_runtime, tmp_path):
    files = ortweb.runtime_files(fake_runtime.parent)
    assert sorted(files) == sorted(name for name, _ in ortweb.FILES.values())
    assert all(path.parent == ortweb.runtime_cache() for path in files.values())
    assert files["ort.wasm.min.js"].read_bytes() == b"fake ort.wasm.min.js"
    assert ortweb.fetch_runtime() == files  # now cached: no download needed


def test_the_registry_is_asked_once_then_the_cache_answers(fake_runtime, tmp_path, monkeypatch):
    with static_server(tmp_path / "npm") as url:
        monkeypatch.setenv("CNNSCOPE_NPM_REGISTRY", url)
        files = ortweb.fetch_runtime()
    monkeypatch.setenv("CNNSCOPE_NPM_REGISTRY", "http://127.0.0.1:9")  # nothing listens: the cache must answer
    assert ortweb.fetch_runtime() == files


def test_a_tarball_that_differs_from_the_published_one_is_refused(fake_runtime, tmp_path, monkeypatch):
    with open(fake_runtime, "ab") as fh:
        fh.write(b"\0")  # one byte more: another tarball
    with pytest.raises(SiteError, match=r"is not onnxruntime-web 1\.30\.0 as the npm registry publishes it"):
        ortweb.runtime_files(fake_runtime.parent)
    with static_server(tmp_path / "npm") as url:  # the same from a registry (a mirror serving other bytes)
        monkeypatch.setenv("CNNSCOPE_NPM_REGISTRY", url)
        with pytest.raises(SiteError, match="integrity is sha512-"):
            ortweb.fetch_runtime()
    assert not any(ortweb.runtime_cache().glob("*"))  # nothing unverified is kept


def test_an_unreachable_registry_says_how_to_work_offline(fake_runtime, monkeypatch):
    monkeypatch.setenv("CNNSCOPE_NPM_REGISTRY", "http://127.0.0.1:9")
    with pytest.raises(SiteError, match=r"could not download onnxruntime-web 1\.30\.0 .* give --ort-dir DIR"):
        ortweb.fetch_runtime()


def test_an_unpacked_package_is_checked_file_by_file(fake_runtime, tmp_path):
    unpacked = tmp_path / "node_modules"
    with tarfile.open(fake_runtime) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "package").rename(unpacked / ortweb.PACKAGE)
    assert ortweb.runtime_files(unpacked)["ort-wasm-simd-threaded.wasm"].read_bytes().startswith(b"fake")
    (unpacked / ortweb.PACKAGE / "dist" / "ort-wasm-simd-threaded.wasm").write_bytes(b"changed")
    with pytest.raises(SiteError, match="missing or differs from onnxruntime-web 1.30.0"):
        ortweb.runtime_files(unpacked)
    _, _, _ = fake_package(tmp_path / "old" / ortweb.PACKAGE, version="1.17.0")
    with tarfile.open(tmp_path / "old" / ortweb.PACKAGE / ortweb.TARBALL) as tar:
        tar.extractall(tmp_path / "old-unpacked", filter="data")
    with pytest.raises(SiteError, match="holds onnxruntime-web 1.17.0, not 1.30.0"):
        ortweb.runtime_files(tmp_path / "old-unpacked" / "package")


def test_a_missing_or_empty_ort_dir_is_one_line(capsys, trained_run, tmp_path):
    code, _, err = run_cli(capsys, "export-site", trained_run, "--out", tmp_path / "site", "--ort-dir",
                           tmp_path / "nowhere")
    assert code == 2
    line = one_line_error(err)
    assert "no such folder" in line and "onnxruntime-web-1.30.0.tgz" in line
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "export-site", trained_run, "--out", tmp_path / "site", "--ort-dir",
                           tmp_path / "empty")
    assert code == 2 and "holds neither onnxruntime-web-1.30.0.tgz nor an unpacked" in one_line_error(err)
    assert not (tmp_path / "site").exists()


def test_the_command_s_defaults_are_the_library_s():
    from cnnscope.cli import site as cli_site
    from cnnscope.views.site import ATLAS_IMAGES

    assert cli_site.ATLAS_IMAGES == ATLAS_IMAGES


def test_a_wrong_run_fails_before_anything_is_downloaded(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNSCOPE_NPM_REGISTRY", "http://127.0.0.1:9")  # would fail loudly if asked
    code, _, err = run_cli(capsys, "export-site", tmp_path / "no-run", "--out", tmp_path / "site")
    assert code == 2 and "could not download" not in one_line_error(err)
    assert not (tmp_path / "site").exists() and not (tmp_path / "cache").exists()


def test_a_folder_of_other_files_is_never_overwritten(capsys, trained_run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "export-site", trained_run, "--out", tmp_path / "mine")
    assert code == 2 and "a folder with other files in it" in one_line_error(err)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- the real site ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime() -> dict[str, Path]:
    """onnxruntime-web as export-site gets it: the cache, filled from the npm registry the first time (CI fetches
    it before the tests, see .ci/run)."""
    try:
        return ortweb.runtime_files()
    except SiteError as exc:
        pytest.skip(f"onnxruntime-web is not available here: {exc}")


@pytest.fixture(scope="module")
def site(runtime, trained_run, data_dir, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(web root, the site's folder under it, export's answer) for a run whose name is markup."""
    root = tmp_path_factory.mktemp("www")
    run = root.parent / "<img src=x onerror=alert(1)>"  # texts from the run must reach the page as text
    shutil.copytree(trained_run, run)
    (root / "site").mkdir()  # as an earlier export left it: replaced whole
    (root / "site" / MARKER).write_text("{}")
    (root / "site" / "stale.txt").write_text("from before")
    info = export_site(run, root / "site", data_dir=data_dir, images=60, patterns=FAST_PATTERNS)
    return root, root / "site", info


def test_the_folder_holds_the_page_the_model_the_runtime_and_the_facts(site):
    _, folder, info = site
    for name in ("index.html", "model.onnx", "ort/ort-wasm-simd-threaded.wasm", "data/info.json",
                 "data/facts.json", "data/cards.json", "img/atlas.png", "img/confusion.png", MARKER):
        assert (folder / name).is_file(), name
    html = (folder / "index.html").read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "script-src 'self' 'wasm-unsafe-eval'" in csp
    assert "img-src 'self' blob:;" in csp  # blob: the pictures the page draws itself
    assert not re.search(r"https?:", csp) and "unsafe-inline" not in csp and "data:" not in csp
    for path in [*folder.glob("static/*"), folder / "index.html"]:  # the page's own files name no other host
        assert not re.search(r"(src|href)=\"?(https?:)?//", path.read_text(errors="replace")), path
    assert info["bytes"] < 20 * 2**20 and info["runtime_bytes"] > 14 * 10**6
    facts = json.loads((folder / "data/facts.json").read_text())
    assert facts["test"]["confusion"] and len(facts["test"]["per_class"]) == 10


SITE_STATIC = Path(__file__).parents[1] / "src/cnnscope/serve/static"


def test_the_page_is_the_viewer_s_page_with_its_own_back_end():
    """Every element viewer.js looks for is in the static page (the two pages cannot drift apart), and the page
    loads the HTTP viewer's own scripts after the module that installs the in-page back end."""
    viewer = (SITE_STATIC / "viewer.js").read_text()
    html = site_page()
    wanted = set(re.findall(r'\$\("([\w-]+)"\)', viewer))
    present = set(re.findall(r'id="([\w-]+)"', html))
    assert wanted and wanted <= present, wanted - present
    scripts = re.findall(r'<script (?:type="module" )?src="([^"]+)"', html)
    assert scripts == ["static/site.js", "static/guard.js", "static/common.js", "static/png.js", "static/viewer.js"]
    assert html.index("Content-Security-Policy") < html.index("<link") and 'class="muted small legend"' not in html
    body = lambda page: re.sub(r"\s+", " ", page[page.index("<main"):page.index("</main>")])  # noqa: E731
    viewer_page = re.sub(r'<p class="muted small legend">.*?</p>', "", (SITE_STATIC / "index.html").read_text())
    assert body(html) == body(viewer_page)  # the same viewer, not a copy


def test_a_changed_viewer_page_stops_the_site_page_loudly(monkeypatch, tmp_path):
    """The site page is made by editing the viewer's; an edit that no longer finds its place raises, naming it."""
    import cnnscope.serve.site as site

    static = tmp_path / "static"
    static.mkdir()
    page = (SITE_STATIC / "index.html").read_text()
    (static / "index.html").write_text(page.replace('<body data-busy="1">', "<body>"))
    monkeypatch.setattr(site, "STATIC", static)
    with pytest.raises(RuntimeError, match="data-busy"):
        site.site_page()


@pytest.mark.parametrize("path", sorted((SITE_STATIC / "site").glob("*.js")), ids=lambda p: p.name)
def test_the_page_s_modules_insert_text_and_keep_functions_short(path):
    assert script_faults(path.read_text()) == []


def test_an_earlier_export_is_replaced_whole(site):
    _, folder, _ = site
    assert not (folder / "stale.txt").exists()
    assert json.loads((folder / MARKER).read_text())["images"] == 60
    assert not list(folder.parent.glob(".site.*"))  # no temporary or old folder left beside it


@pytest.fixture(scope="module")
def page(site):
    """The site in headless Chromium from a static server whose root is the folder's parent: (page, site URL,
    requests made, console errors and page errors)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    root, _, _ = site
    with static_server(root) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(SAFETY_MS)
            requests, errors = [], []
            tab.on("request", lambda r: requests.append(r.url))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            started = time.perf_counter()
            tab.goto(url + "site/")
            wait_until(tab, "document.body.dataset.ready === '1'", timeout=SAFETY_MS)
            tab.ready_seconds = time.perf_counter() - started
            yield tab, url + "site/", requests, errors
        finally:
            browser.close()


PAGE_OUTPUTS = """async (count) => {
  const backend = await (await import(new URL("static/site.js", document.baseURI).href)).ready;
  const found = [];
  for (let i = 0; i < count; i++) {
    const pixels = await backend.testPixels(i);
    const out = await backend.outputs(pixels);
    found.push({ pixels: Array.from(pixels), probabilities: Array.from(out.probabilities.data),
      layers: Object.fromEntries(backend.info.layer_names.map((n) => [n, Array.from(out[n].data)])) });
  }
  return found;
}"""


def torch_outputs(run, raw: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x = torch.from_numpy(run.preprocessor(raw))
    with torch.no_grad():
        outputs, logits = capture(run.model.eval(), run.model.layer_names, x)
        probs = run.model.probabilities(logits).numpy()
    return probs, {name: value.numpy() for name, value in outputs.items()}


def test_the_page_computes_what_pytorch_computes(page, site, trained_run, data_dir):
    tab, _, _, errors = page
    tab.reload()  # showing test image 0 again, whatever an earlier test drew or picked
    wait_until(tab, "document.body.dataset.ready === '1'", timeout=SAFETY_MS)
    run = load_run(trained_run)
    test_raw = run.dataset(data_dir).test_raw[:IMAGES]
    found = tab.evaluate(PAGE_OUTPUTS, IMAGES)
    pixels = np.array([f["pixels"] for f in found], np.uint8).reshape(test_raw.shape)
    np.testing.assert_array_equal(pixels, test_raw)  # the atlas holds the test images exactly
    probs, layers = torch_outputs(run, test_raw)
    np.testing.assert_allclose(np.array([f["probabilities"] for f in found]), probs, atol=TOLERANCE, rtol=0)
    for name, expected in layers.items():
        got = np.array([f["layers"][name] for f in found], np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0, err_msg=name)
    shown = tab.inner_text("#pred-label")  # what the page shows for test image 0
    assert shown == class_names_of(run.data_config)[int(probs[0].argmax())]
    assert not errors, errors


def test_texts_from_the_run_are_text(page):
    tab, _, _, _ = page
    assert "<img src=x onerror=alert(1)>" in tab.inner_text("#run-info")
    assert tab.locator("#run-info img").count() == 0


def draw_stroke(tab) -> None:
    box = tab.locator("#draw").bounding_box()
    tab.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.2)
    tab.mouse.down()
    for i in range(1, 16):  # a slightly slanted '1', drawn in steps as a hand would
        tab.mouse.move(box["x"] + box["width"] * (0.45 + 0.005 * i), box["y"] + box["height"] * (0.2 + 0.04 * i))
    tab.mouse.up()


def test_a_drawing_is_prepared_as_python_prepares_it_and_predicted(page, trained_run):
    tab, _, _, errors = page
    renders = int(tab.get_attribute("#grid", "data-renders"))
    draw_stroke(tab)
    wait_until(tab, f"document.body.dataset.busy === '0' && Number(document.querySelector('#grid').dataset.renders)"
                    f" > {renders} && document.querySelector('#true-label').textContent === 'your drawing'")
    drawn = tab.evaluate("""() => ({ png: document.querySelector("#draw").toDataURL("image/png"),
      pixels: Array.from(state.pixels), predicted: document.querySelector("#pred-label").textContent })""")
    run = load_run(trained_run)
    expected, _ = prepare_picture(base64.b64decode(drawn["png"].split(",", 1)[1]), picture_target(run))
    got = np.array(drawn["pixels"], np.uint8).reshape(expected.shape)
    assert np.abs(got.astype(int) - expected).max() <= 1  # Pillow's resampling, ported: the same pixels
    probs, _ = torch_outputs(run, got[None])
    assert drawn["predicted"] == class_names_of(run.data_config)[int(probs[0].argmax())]
    wait_until(tab, "document.body.dataset.strokeMs !== undefined")
    assert float(tab.evaluate("document.body.dataset.strokeMs")) < 10_000  # a sanity bound: benchmarks/ measures
    assert not errors, errors


def test_pictures_of_any_polarity_and_size_are_prepared_as_in_python(page):
    tab, _, _, _ = page
    rng = np.random.default_rng(0)
    pictures = []
    for h, w, light in ((200, 150, True), (40, 90, False), (31, 31, True)):
        grey = np.full((h, w), 230.0 if light else 12.0, np.float32) + rng.normal(0, 3, (h, w)).astype(np.float32)
        grey[h // 5:h * 4 // 5, w // 3:w // 3 + max(2, w // 8)] = 20.0 if light else 240.0
        pictures.append(np.clip(grey, 0, 255).round().astype(np.float32))
    found = tab.evaluate("""async (pictures) => {
      const { mnistFormat } = await import(new URL("static/prepare.js", document.baseURI).href);
      const backend = await (await import(new URL("static/site.js", document.baseURI).href)).ready;
      return pictures.map(([grey, h, w]) => Array.from(mnistFormat(Float32Array.from(grey), h, w,
        backend.info.picture).pixels));
    }""", [[p.ravel().tolist(), *p.shape] for p in pictures])
    for picture, got in zip(pictures, found, strict=True):
        expected, _ = mnist_format(picture)
        assert np.abs(np.array(got, int).reshape(28, 28) - expected).max() <= 1


PREPARE_IN_PAGE = """async ([grey, h, w]) => {
  const { mnistFormat } = await import(new URL("static/prepare.js", document.baseURI).href);
  const backend = await (await import(new URL("static/site.js", document.baseURI).href)).ready;
  try { return Array.from(mnistFormat(Float32Array.from(grey), h, w, backend.info.picture).pixels); }
  catch (error) { return String(error.message); }
}"""


@settings(max_examples=budget(15), deadline=None)
@given(h=st.integers(12, 90), w=st.integers(12, 90), light=st.booleans(), seed=st.integers(0, 2**16),
       blobs=st.integers(0, 3))
def test_the_page_prepares_any_picture_as_python_does_property(page, h, w, light, seed, blobs):
    tab = page[0]
    rng = np.random.default_rng(seed)
    grey = rng.normal(215 if light else 30, 8, (h, w))
    for _ in range(blobs):  # strokes of ink: rectangles of random size and place
        top, left = rng.integers(0, h - 2), rng.integers(0, w - 2)
        grey[top:top + rng.integers(2, h // 2 + 3), left:left + rng.integers(2, w // 2 + 3)] = 20 if light else 235
    grey = np.clip(grey, 0, 255).round().astype(np.float32)
    got = tab.evaluate(PREPARE_IN_PAGE, [grey.ravel().tolist(), h, w])
    try:
        expected, _ = mnist_format(grey)
    except DataError as exc:
        assert got == str(exc)  # the same refusal, in the same words
        return
    assert not isinstance(got, str), got
    assert np.abs(np.array(got, int).reshape(28, 28) - expected).max() <= 1


def test_occlusion_in_the_page_is_the_library_s(page, trained_run, data_dir):
    tab, _, _, _ = page
    heat = tab.evaluate("""async () => {
      const backend = await (await import(new URL("static/site.js", document.baseURI).href)).ready;
      const { occlusionHeat } = await import(new URL("static/occlusion.js", document.baseURI).href);
      return Array.from((await occlusionHeat(backend, await backend.testPixels(3))).heat);
    }""")
    run = load_run(trained_run)
    raw = run.dataset(data_dir).test_raw[3:4]
    blank = run.preprocessor(np.zeros_like(raw))
    expected = occlusion(run.model, run.preprocessor(raw), baseline=blank)[0]
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.array(heat).reshape(expected.shape), expected, atol=TOLERANCE * scale, rtol=0)
    wait_until(tab, "document.querySelector('#explain-text').textContent.startsWith('Occlusion')")


def test_a_map_card_opens_with_its_kernel_pattern_and_top_images(page):
    tab, _, _, errors = page
    grid = tab.locator("#grid").bounding_box()
    tab.mouse.click(grid["x"] + 5, grid["y"] + 5)
    tab.wait_for_selector("#card .kernels", timeout=SAFETY_MS)
    assert tab.inner_text("#card-title").startswith("Conv2D_1 · map 0")
    tab.wait_for_selector("#card .tops canvas")
    wait_until(tab, "document.querySelector('#card .pattern').complete && "
                    "document.querySelector('#card .pattern').naturalWidth > 0")
    tab.keyboard.press("Escape")
    assert not errors, errors


def test_a_folder_without_its_runtime_says_so_and_asks_no_server(page, site, tmp_path):
    _, folder, _ = site
    shutil.copytree(folder, tmp_path / "site", ignore=shutil.ignore_patterns("ort"))  # a copy that lost ort/
    browser = page[0].context.browser  # the module's browser (one Playwright per thread)
    with static_server(tmp_path) as url:
        tab, requests = browser.new_page(), []
        tab.set_default_timeout(SAFETY_MS)
        try:
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(url + "site/")
            wait_until(tab, "!document.querySelector('#error').hidden")
            assert "this page's scripts could not be loaded" in tab.inner_text("#error")
        finally:
            tab.close()
    assert all(r.startswith(url + "site/") for r in requests), requests  # never the HTTP viewer's /api/


def test_nothing_is_requested_outside_the_site_s_folder(page):
    tab, url, requests, errors = page
    origin = url.split("/site/")[0]
    inside = [r for r in requests if r.startswith(url) or r.startswith(f"blob:{origin}/")]  # blob: the page's own
    assert requests and inside == requests, [r for r in requests if r not in inside]
    # the policy holds (checked last: its refusals are console errors): no inline script, no other origin
    assert tab.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
      document.head.append(s); return window.ran === undefined; }""")
    before = len(requests)
    outcome = tab.evaluate("() => fetch('http://127.0.0.1:9/x').then(() => 'fetched', () => 'blocked')")
    assert outcome == "blocked" and len(requests) == before
    assert any("Content Security Policy" in e and "connect-src" in e for e in errors)
    errors[:] = [e for e in errors if "Content Security Policy" not in e]  # expected here only: not for later tests
