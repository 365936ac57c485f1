"""A user's picture: decoded safely (pixel limit, reduced before float), one preparation rule for the CLI's
--image and the viewer, notes worded for the data set, and warnings when a picture is far from the data."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnscope.base.errors import DataError, PictureError
from cnnscope.cli import main
from cnnscope.data.picture_input import (
    MAX_PIXELS,
    WORK_SIZE,
    decode_picture,
    load_picture,
    mnist_format,
    prepare_picture,
    sniff_picture,
)


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height (a decompression bomb's header) and holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


def seven(size=(280, 280), paper=(255, 255, 255, 255), ink=(0, 0, 0, 255), mode="RGBA") -> Image.Image:
    img = Image.new(mode, size, paper)
    w, h = size
    ImageDraw.Draw(img).line([(0.25 * w, 0.2 * h), (0.7 * w, 0.2 * h), (0.45 * w, 0.8 * h)], fill=ink,
                             width=max(2, w // 14))
    return img


def test_sniff_picture_knows_the_offered_formats():
    assert sniff_picture(png(seven())) == "PNG"
    assert sniff_picture(png(seven().convert("RGB"), "JPEG")) == "JPEG"
    assert sniff_picture(png(seven(), "GIF")) == "GIF"
    assert sniff_picture(png(seven().convert("RGB"), "BMP")) == "BMP"
    assert sniff_picture(png(seven(), "WEBP")) == "WEBP"
    assert sniff_picture(png(seven(), "TIFF")) == "TIFF"
    assert sniff_picture(b'{"pixels": 1}') is None and sniff_picture(b"") is None


def test_giant_pictures_are_refused_from_their_header():
    with pytest.raises(PictureError, match=r"is 5000×5000 pixels \(25,000,000\); at most 16,777,216"):
        decode_picture(header_only_png(5000, 5000))
    with pytest.raises(PictureError, match="at most 16,777,216"):
        decode_picture(header_only_png(20000, 20000))  # Pillow's own bomb check fires first
    assert MAX_PIXELS == 4096 * 4096


def test_cli_image_giant_picture_is_one_line_exit_2(tmp_path, trained_run, data_dir, capsys):
    giant = tmp_path / "giant.png"
    giant.write_bytes(header_only_png(20000, 20000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["activations", str(trained_run), "--layer", "Conv2D_1", "--image", str(giant),
                     "--data-dir", str(data_dir), "--out", str(tmp_path / "a.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: giant.png has more than"), err
    assert not (tmp_path / "a.png").exists()


def test_large_pictures_are_reduced_before_preparation():
    big = seven((4096, 3000))
    grey, notes = decode_picture(png(big))
    assert max(grey.shape) == WORK_SIZE and grey.dtype == np.float32
    assert any(n.startswith(f"reduced from 4096×3000 to {WORK_SIZE}×750") for n in notes)
    small, _ = decode_picture(png(seven((4096 // 4, 3000 // 4))))
    raw_big, _ = mnist_format(grey)
    raw_small, _ = mnist_format(small)
    assert np.corrcoef(raw_big.ravel(), raw_small.ravel())[0, 1] > 0.9  # reducing first changes little


def test_one_preparation_rule_for_transparent_pictures(tmp_path, trained_run, data_dir):
    """The same transparent PNG gives the same 28×28 input in `activations --image` and in the viewer."""
    import warnings as _w

    _w.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    from cnnscope.serve import create_app

    picture = png(seven(paper=(0, 0, 0, 0)))
    (tmp_path / "clear.png").write_bytes(picture)
    cli = load_picture(tmp_path / "clear.png")
    assert any("flattened transparency onto a white background" in n for n in cli.notes)
    with TestClient(create_app(trained_run, data_dir, warm_up=False), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/predict", content=picture).json()
    served = np.frombuffer(base64.b64decode(answer["pixels"]), np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(served, cli.raw)
    assert answer["notes"] == [n.replace("clear.png", "the upload") for n in cli.notes]


def test_notes_follow_the_data_set():
    light = np.full((60, 60), 230.0)
    light[10:50, 25:35] = 20
    _, digit = mnist_format(light, "mnist")
    _, item = mnist_format(light, "fashion-mnist")
    assert any("MNIST digits are light on dark" in n for n in digit)
    assert any("Fashion-MNIST items are light on dark" in n for n in item) and not any("digit" in n for n in item)
    with pytest.raises(DataError, match="no item found"):
        mnist_format(np.full((30, 30), 7.0), "fashion-mnist")
    with pytest.raises(DataError, match="no digit found"):
        mnist_format(np.full((30, 30), 7.0), "mnist")


def shadowed_photo(shadow: bool) -> np.ndarray:
    """A 640×480 'photo' of a 7 on paper, optionally with a shadow darkening its left side."""
    img = np.asarray(seven((640, 480), paper=230, ink=40, mode="L"), dtype=np.float32).copy()
    if shadow:
        img *= 0.45 + 0.55 * np.clip(np.linspace(-0.6, 1.0, 640), 0, 1)[None, :]
    return img


def test_uneven_lighting_is_warned_about_first():
    _, notes = mnist_format(shadowed_photo(True))
    assert notes[0].startswith("warning: uneven lighting")
    _, clean = mnist_format(shadowed_photo(False))
    assert not any(n.startswith("warning:") for n in clean)


def test_real_mnist_digits_raise_no_warning(real_data_dir):
    from cnnscope.data.dataset import load_dataset

    raw = load_dataset("mnist", data_dir=real_data_dir).test_raw[:300]
    warned = sum(any(n.startswith("warning:") for n in mnist_format(img.astype(np.float32))[1]) for img in raw)
    assert warned <= 3


def test_mnist_format_leaves_its_input_alone():
    grey = shadowed_photo(False)
    before = grey.copy()
    mnist_format(grey)
    np.testing.assert_array_equal(grey, before)


@pytest.mark.parametrize("mode", ["1", "P", "LA", "I;16", "I", "F", "CMYK", "RGB"])
def test_every_pillow_mode_prepares(mode):
    img = seven(mode="L", paper=255, ink=0).convert(mode)
    fmt = "TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG"
    raw, notes = prepare_picture(png(img, fmt))
    assert raw.shape == (28, 28) and raw.max() > 200 and raw[0].max() == 0, notes


def test_broken_bytes_are_one_line():
    data = png(seven())
    with pytest.raises(PictureError, match="truncated or corrupt"):
        prepare_picture(data[: len(data) // 2])
    with pytest.raises(PictureError, match="is empty"):
        prepare_picture(b"")
    with pytest.raises(PictureError, match="not an image Pillow can read"):
        prepare_picture(b"hello")
