"""Colour and non-square inputs through every view, the report and every viewer endpoint.

Runs are trained for one epoch on tiny npz files (`--dataset npz:FILE`) whose class is decided by colour: a
3×32×32 colour run, a 3×24×32 colour run and a 1×20×28 grey one. The checks look at what is drawn, not only that
nothing crashed: a figure holds the exact colours of the picture it shows, a PNG decodes with three differing
channels, a JSON answer says channels 3.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnscope.cli import main
from conftest import run_cli

COLOURS = np.array([[230, 30, 30], [30, 200, 50], [40, 50, 235]], np.uint8)  # red, green, blue squares


def squares(n: int, h: int, w: int, seed: int, grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w, 3) dark noisy pictures with one square of the class's colour (grey: (n, h, w), class by
    brightness)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 30, (n, h, w, 3)).astype(np.uint8)
    for i in range(n):
        top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
        x[i, top:top + h // 2, left:left + w // 2] = COLOURS[y[i]]
    if grey:
        x = np.where(x.max(-1) > 100, 80 + 80 * y[:, None, None], x.mean(-1)).astype(np.uint8)
    return x, y


def write_npz(path: Path, h: int, w: int, n_train: int, n_test: int, grey: bool = False) -> Path:
    (xt, yt), (xs, ys) = squares(n_train, h, w, 0, grey), squares(n_test, h, w, 1, grey)
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys, class_names=np.array(["red", "green", "blue"]))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three runs trained one epoch through the CLI: 'colour' (3×32×32, with a probe), 'wide' (3×24×32), 'grey'
    (1×20×28)."""
    root = tmp_path_factory.mktemp("colour")
    out = {}
    for name, (h, w, n, grey) in {"colour": (32, 32, 60, False), "wide": (24, 32, 45, False),
                                  "grey": (20, 28, 45, True)}.items():
        data = write_npz(root / f"{name}.npz", h, w, n, 30 if name == "colour" else 15, grey)
        out[name] = root / name
        probe = ["--probe", "0"] if name == "colour" else []
        code = main(["train", "--dataset", f"npz:{data}", "--preset", "tiny", "--epochs", "1", "--out",
                     str(out[name]), "--no-report", "--no-plot", "--batch-size", "16", "--seed", "0", *probe])
        assert code == 0
    return out


def png(data: bytes | str | Path) -> np.ndarray:
    """A PNG (bytes, data URI or file) decoded to its pixels as stored (L, RGB or RGBA)."""
    if isinstance(data, Path):
        data = data.read_bytes()
    elif isinstance(data, str):
        data = base64.b64decode(data.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)))


def colourful(pixels: np.ndarray, spread: int = 60) -> int:
    """How many pixels have channels at least `spread` apart (0 for a grey picture)."""
    if pixels.ndim == 2:
        return 0
    rgb = pixels[..., :3].astype(int)
    return int((rgb.max(-1) - rgb.min(-1) >= spread).sum())


def holds_class_colour(pixels: np.ndarray, least: int = 30) -> bool:
    """Whether a figure shows one of the data's class colours exactly (a colour picture drawn as it is)."""
    rgb = pixels[..., :3]
    return any(int((rgb == c).all(-1).sum()) >= least for c in COLOURS)


def figures(text: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"^figure: (.+)$", text, re.M)]


# --- the CLI's views on a colour run ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["activations", "--layer", "Conv2D_1", "--index", "0"],
    ["activations", "--all-layers", "--index", "1"],
    ["activations", "--layer", "Dense_1", "--index", "2"],
    ["explain", "--index", "0"],
    ["explain", "--index", "0", "--method", "all"],
    ["top-images", "--layer", "Conv2D_1", "--map", "0", "--k", "6"],
])
@pytest.mark.parametrize("which", ["colour", "wide"])
def test_views_draw_the_pictures_in_colour(runs, capsys, which, argv):
    if which == "wide" and "all" in argv:  # every method once is enough (the slowest view)
        argv = ["explain", "--index", "1", "--method", "occlusion"]
    code, text, err = run_cli(capsys, argv[0], runs[which], *argv[1:])
    assert code == 0, err
    (path,) = figures(text)
    assert holds_class_colour(png(path)), path


def test_explain_says_how_channels_become_one_value(runs, capsys):
    code, text, err = run_cli(capsys, "explain", runs["colour"], "--index", "0", "--method", "saliency", "--json")
    assert code == 0, err
    assert '"channels": 3' in text
    code, text, err = run_cli(capsys, "explain", runs["colour"], "--index", "0", "--method", "input-x-gradient")
    assert "one value per pixel: the 3 colour channels summed" in text + err
    code, text, err = run_cli(capsys, "explain", runs["grey"], "--index", "0", "--method", "saliency")
    assert code == 0 and "colour channels" not in text + err


def test_errors_and_profile(runs, capsys):
    code, text, err = run_cli(capsys, "errors", runs["colour"], "--json")
    assert code == 0, err
    if '"shown": 0' not in text:  # misclassified pictures are drawn in colour
        assert holds_class_colour(png(figures_json(text)[0]))
    for which in ("colour", "wide", "grey"):
        code, _, err = run_cli(capsys, "profile", runs[which], "--layer", "Conv2D_1")
        assert code == 0, err


def figures_json(text: str) -> list[Path]:
    import json

    return [Path(p) for p in json.loads(text)["figures"]]


def test_filters_rgb_by_default_split_and_mean_on_request(runs, capsys):
    run = runs["colour"]
    code, text, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_1")
    assert code == 0, err
    assert "RGB picture" in text and figures(text)[0].name == "filters-Conv2D_1.png"
    code, text, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_1", "--channels", "split")
    assert code == 0 and figures(text)[0].name == "filters-Conv2D_1-split.png"
    code, text, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_1", "--channels", "mean")
    assert code == 0 and "mean over 3 input channels" in text
    code, text, err = run_cli(capsys, "filters", run, "--layer", "Conv2D_2", "--channels", "rgb")
    assert code == 2 and "the RGB view needs the first conv layer" in err
    code, text, err = run_cli(capsys, "filters", runs["grey"], "--layer", "Conv2D_1")
    assert code == 0 and "the kernel on the input image" in text


def test_patterns_are_colour_pictures_inside_the_data_range(runs, capsys):
    code, text, err = run_cli(capsys, "patterns", runs["colour"], "--layer", "Conv2D_1", "--maps", "0:4",
                              "--steps", "6", "--restarts", "1")
    assert code == 0, err
    assert colourful(png(figures(text)[0])) > 200
    code, text, err = run_cli(capsys, "patterns", runs["grey"], "--layer", "Conv2D_1", "--maps", "0:4",
                              "--steps", "6", "--restarts", "1")
    assert code == 0, err
    assert colourful(png(figures(text)[0])) < 20  # a grey run's patterns stay grey


def test_patterns_stay_inside_the_training_range(runs):
    from cnnscope.inspect.patterns import input_bounds, maximize_activation
    from cnnscope.plots.patterns import pattern_pixels
    from cnnscope.runs.load import load_run

    run = load_run(runs["colour"])
    ds = run.dataset()
    lo, hi = input_bounds(ds.train_x)
    found = maximize_activation(run.model, "Conv2D_1", [0, 1], steps=6, restarts=1, lo=lo, hi=hi)
    assert found.shape == (2, 3, 32, 32)
    assert (found >= lo - 1e-5).all() and (found <= hi + 1e-5).all()
    pixels = pattern_pixels(found, run.preprocessor)
    raw = ds.train_raw.astype(np.float32)
    assert pixels.shape == (2, 32, 32, 3)
    assert (pixels >= raw.min(0) - 0.01).all() and (pixels <= raw.max(0) + 0.01).all()


def test_a_colour_picture_keeps_its_colours(runs, capsys, tmp_path):
    picture = np.full((60, 90, 3), 255, np.uint8)  # a blue square on white: not inverted, only cropped and scaled
    picture[15:45, 30:60] = COLOURS[2]
    Image.fromarray(picture).save(tmp_path / "blue.png")
    code, text, err = run_cli(capsys, "activations", runs["colour"], "--layer", "Conv2D_1", "--image",
                              tmp_path / "blue.png")
    assert code == 0, err
    assert "cropped the centre 60×60 px of 90×60" in text + err and "inverted" not in text + err
    assert holds_class_colour(png(figures(text)[0]))
    from cnnscope.data.picture_input import PictureTarget, prepare_picture

    raw, _ = prepare_picture((tmp_path / "blue.png").read_bytes(), PictureTarget("mnist", 3, 24, 32))
    assert raw.shape == (24, 32, 3) and tuple(raw[12, 16]) == tuple(COLOURS[2]) and tuple(raw[0, 0]) == (255,) * 3
    grey, notes = prepare_picture((tmp_path / "blue.png").read_bytes(), PictureTarget("mnist", 1, 20, 28))
    assert grey.shape == (20, 28) and "placed in the 28×20 field centred by its centre of mass" in notes


# --- the report ---------------------------------------------------------------------------------------------------
def test_report_has_colour_thumbnails_filters_and_probe(runs, capsys):
    code, text, err = run_cli(capsys, "report", runs["colour"])
    assert code == 0, err
    html = (runs["colour"] / "report.html").read_text()
    thumbs = re.findall(r'<img src="(data:image/png;base64,[^"]+)" alt="(?:test|probe) image', html)
    assert len(thumbs) >= 7  # the probe's, the inside view's and the explanation's pictures
    shown = [png(uri) for uri in thumbs]
    assert all(p.ndim == 3 and p.shape[:2] == (32, 32) for p in shown)
    assert sum(colourful(p) > 20 for p in shown) >= len(shown) // 2
    assert "RGB picture" in html and "Colour images: one value per pixel" in html and "in colour." in html
    assert "RGB pictures, mid-grey zero" in html  # the probe strip draws the first layer's filters in colour


# --- the viewer ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(runs):
    from starlette.testclient import TestClient

    from cnnscope.serve import create_app

    with TestClient(create_app(runs["colour"], warm_up=False), base_url="http://127.0.0.1") as c:
        yield c


def test_viewer_describes_a_colour_model(client):
    info = client.get("/api/info").json()
    assert info["channels"] == 3 and info["drawing"] is False and info["input_shape"] == [3, 32, 32]
    assert client.get("/api/layers").status_code == 200
    page = client.get("/").text + client.get("/static/viewer.js").text
    assert "info.drawing" in page


def test_viewer_images_are_colour(client):
    sample = client.get("/api/sample?index=0").json()
    assert png(sample["image"]).shape == (32, 32, 3) and colourful(png(sample["image"])) > 50
    assert len(base64.b64decode(sample["pixels"])) == 32 * 32 * 3
    image = png(client.get("/api/image?index=1").content)
    assert image.shape == (32, 32, 3) and holds_class_colour(image, 100)
    for path in ("/api/activations?index=0", "/api/colormap?cmap=viridis"):
        assert client.get(path).status_code == 200
    grid = client.get("/api/activations?index=0&format=json").json()
    assert grid["layer"] == "Conv2D_1"


def test_viewer_uploads_keep_colour(client, tmp_path):
    picture = np.zeros((40, 50, 3), np.uint8)
    picture[5:35, 10:40] = COLOURS[1]
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    files = {"image": ("green.png", buffer.getvalue(), "image/png")}
    answer = client.post("/api/predict", files=files).json()
    assert png(answer["image"]).shape == (32, 32, 3) and holds_class_colour(png(answer["image"]), 100)
    assert any("cropped" in note for note in answer["notes"])
    pixels = answer["pixels"]
    assert len(base64.b64decode(pixels)) == 32 * 32 * 3
    for path in ("/api/activations", "/api/card?map=0", "/api/explain"):
        response = client.post(path, json={"pixels": pixels})
        assert response.status_code == 200, response.text
    listed = np.frombuffer(base64.b64decode(pixels), np.uint8).reshape(32, 32, 3).tolist()
    assert client.post("/api/predict", json={"pixels": listed}).status_code == 200
    grey = client.post("/api/predict", json={"pixels": [[0] * 32] * 32})  # a grey image for a colour model
    assert grey.status_code == 400 and "32×32×3" in grey.json()["error"]
    assert client.post("/api/activations", files=files).status_code == 200


def test_viewer_card_pattern_and_explanation(client):
    card = client.get("/api/card?index=0&layer=Conv2D_1&map=0").json()
    kernel = card["kernel"]
    assert kernel["channels"] == 3 and png(kernel["rgb_png"]).shape[2] == 3
    assert all(png(t["png"]).shape == (32, 32, 3) for t in card["top"])
    deeper = client.get("/api/card?index=0&layer=Conv2D_2&map=0").json()
    assert deeper["kernel"]["rgb_png"] is None
    pattern = png(client.get(card["pattern_url"]).content)
    assert pattern.shape == (32, 32, 3) and colourful(pattern, 30) > 20
    explained = client.get("/api/explain?index=0&method=saliency").json()
    assert explained["channels"] == 3 and "max |·|" in explained["channels_note"]


def test_viewer_on_non_square_runs(runs):
    from starlette.testclient import TestClient

    from cnnscope.serve import create_app

    with TestClient(create_app(runs["grey"], warm_up=False), base_url="http://127.0.0.1") as c:
        info = c.get("/api/info").json()
        assert info["drawing"] is True and info["input_shape"] == [1, 20, 28]
        assert png(c.get("/api/image?index=0").content).shape == (20, 28)
        drawing = np.zeros((100, 100), np.uint8)
        drawing[20:80, 45:55] = 255
        buffer = io.BytesIO()
        Image.fromarray(drawing).save(buffer, "PNG")
        answer = c.post("/api/predict", files={"image": ("d.png", buffer.getvalue(), "image/png")}).json()
        assert len(base64.b64decode(answer["pixels"])) == 20 * 28
        assert c.get("/api/card?index=0&layer=Conv2D_1&map=0").status_code == 200
    with TestClient(create_app(runs["wide"], warm_up=False), base_url="http://127.0.0.1") as c:
        assert png(c.get("/api/sample?index=0").json()["image"]).shape == (24, 32, 3)
        assert c.get("/api/explain?index=0").status_code == 200


# --- array-level helpers ------------------------------------------------------------------------------------------
def test_picture_png_and_pictures():
    from cnnscope.base.errors import RenderError
    from cnnscope.base.imaging import picture_png, pictures, rgb_kernels

    colour = np.zeros((5, 7, 3), np.uint8)
    colour[..., 0] = 200
    assert png(picture_png(colour)).shape == (5, 7, 3)
    assert png(picture_png(colour[..., 0])).shape == (5, 7)
    with pytest.raises(RenderError, match="received shape"):
        picture_png(np.zeros((5, 7, 2)))
    nchw = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert pictures(nchw).shape == (2, 4, 5, 3) and pictures(nchw[:, :1]).shape == (2, 4, 5)
    weights = np.zeros((2, 3, 3, 3), np.float32)
    weights[0, 0] = 1.0  # filter 0 likes red
    weights[1, 2, 1, 1] = -2.0  # filter 1 dislikes blue in the middle
    tiles = rgb_kernels(weights)
    assert tiles.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(tiles[0, 0, 0], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(tiles[1, 1, 1], [0.5, 0.5, 0.0])
