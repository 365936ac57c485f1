"""Input images for inspection: a test/train image by index, or a user's own picture converted as MNIST expects."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

SIZE = 28  # MNIST's field
# MNIST: the digit is scaled so its longer side is 20 px and placed by its centre of mass in the 28×28 field.
# Fashion-MNIST: the item is scaled so its longer side is 28 px and centred by its bounding box.
STYLES = {"mnist": (20, "mass"), "fashion-mnist": (28, "box")}


@dataclass
class InputImage:
    """One image to look at: raw pixels as the model's data holds them (uint8 (28, 28)) and where it came from."""

    raw: np.ndarray  # (28, 28) uint8, light ink on a dark background
    source: str  # e.g. "test image 12" or "digit.png"
    label: int | None = None  # the true class when it comes from the data set
    notes: list[str] = field(default_factory=list)  # what was done to a user's picture


def _grey(img, notes: list[str]) -> np.ndarray:
    """A Pillow image as float greyscale 0..255; transparency is flattened onto a contrasting background."""
    from PIL import Image

    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        if alpha.min() < 1.0:
            lum = np.asarray(Image.fromarray(rgba[..., :3].astype(np.uint8)).convert("L"), dtype=np.float32)
            opaque = alpha > 0.5
            ink_dark = lum[opaque].mean() < 128 if opaque.any() else True
            background = 255.0 if ink_dark else 0.0
            notes.append(f"flattened transparency onto a {'white' if ink_dark else 'black'} background")
            return lum * alpha + background * (1.0 - alpha)
    if img.mode not in ("L", "I", "I;16", "F", "1"):
        notes.append(f"converted {img.mode} colour to greyscale")
    if img.mode in ("I", "I;16", "F"):  # 16-bit or float greyscale: rescale to 0..255
        x = np.asarray(img, dtype=np.float32)
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(x)
    return np.asarray(img.convert("L"), dtype=np.float32)


def read_picture(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a PNG/JPEG (or any format Pillow reads) as float greyscale (H, W) in 0..255, with notes."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            fmt = img.format or path.suffix.lstrip(".").upper()
            notes = [f"read {path.name}: {img.width}×{img.height} {fmt} ({img.mode})"]
            turned = ImageOps.exif_transpose(img)
            if turned.size != img.size or turned.tobytes() != img.tobytes():
                notes.append("rotated as its EXIF orientation says")
            grey = _grey(turned, notes)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read; give a PNG or JPEG file") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise DataError(f"{path}: cannot read the image ({exc}); the file may be truncated or corrupt") from None
    return grey, notes


def mnist_format(grey: np.ndarray, style: str = "mnist") -> tuple[np.ndarray, list[str]]:
    """Convert a greyscale picture (H, W), 0..255, of any size and polarity to a 28×28 uint8 MNIST-like image.

    Light ink on dark like MNIST (inverted when the border is light), background removed and contrast stretched,
    cropped to the ink's bounding box, the longer side scaled to 20 px (28 for Fashion-MNIST) and placed by its
    centre of mass (Fashion-MNIST: its box) in the 28×28 field. Returns (image, notes on what was done).
    """
    from PIL import Image

    if style not in STYLES:
        raise DataError(f"unknown image style {style!r}; valid: {', '.join(STYLES)}")
    box, centring = STYLES[style]
    x = np.asarray(grey, dtype=np.float32)
    if x.ndim != 2 or min(x.shape) < 1:
        raise DataError(f"expected a greyscale picture (H, W), received shape {x.shape}")
    notes: list[str] = []
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    background = float(np.median(border))
    if background > 127:
        x, background = 255.0 - x, 255.0 - background
        notes.append("inverted: dark ink on a light background (MNIST digits are light on dark)")
    ink = float(np.percentile(x, 99.5)) if x.size > 400 else float(x.max())
    if ink - background < 16:
        raise DataError("no digit found: the picture has (nearly) a single shade; give a picture of a digit with "
                        "clear contrast to its background")
    x = np.clip((x - background) / (ink - background), 0.0, 1.0)
    x[x < 0.1] = 0.0  # paper texture and sensor noise are not ink
    if background > 8 or ink < 247:
        notes.append(f"removed the background level ({background:.0f}) and stretched the ink to full contrast")
    rows, cols = np.nonzero(x > 0.0)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    x = x[top:bottom, left:right]
    h, w = x.shape
    notes.append(f"cropped to the ink's bounding box ({w}×{h} px)")
    factor = box / max(h, w)
    nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
    resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
    x = np.clip(np.asarray(Image.fromarray(x, mode="F").resize((nw, nh), resample)), 0.0, 1.0)
    notes.append(f"scaled to {nw}×{nh} px (longer side {box} px)")
    if centring == "mass" and x.sum() > 0:
        yy, xx = np.indices(x.shape)
        cy, cx = (yy * x).sum() / x.sum(), (xx * x).sum() / x.sum()
        top, left = round((SIZE - 1) / 2 - cy), round((SIZE - 1) / 2 - cx)
        how = "centre of mass"
    else:
        top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
        how = "bounding box"
    top, left = min(max(top, 0), SIZE - nh), min(max(left, 0), SIZE - nw)  # never push ink out of the field
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + nh, left:left + nw] = x
    notes.append(f"placed in the 28×28 field centred by its {how}")
    return np.round(out * 255.0).astype(np.uint8), notes


def load_picture(path: str | os.PathLike, style: str = "mnist") -> InputImage:
    """A user's own picture converted as MNIST (or Fashion-MNIST) expects, with notes on what was done."""
    grey, notes = read_picture(path)
    try:
        raw, more = mnist_format(grey, style)
    except DataError as exc:
        raise DataError(f"{Path(path)}: {exc}") from None
    return InputImage(raw, Path(path).name, None, notes + more)


def dataset_image(dataset, index: int, split: str = "test") -> InputImage:
    """Image `index` of a Dataset's 'test' or 'train' (or 'val') part; DataError stating the set's size."""
    _, y, raw = dataset.split(split)  # DataError listing the valid sets
    n = len(raw)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise DataError(f"index {index} is outside the {split} set, which holds {n:,} images (valid: 0 to {n - 1})")
    return InputImage(np.asarray(raw[index]), f"{split} image {index}", int(y[index]))


def select_image(run, index: int | None = None, split: str = "test", image: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> InputImage:
    """The image a command looks at: a user's picture (`image`) or image `index` of the run's data set."""
    if (index is None) == (image is None):
        raise DataError("give either an image index (--index N) or a picture file (--image FILE)")
    if image is not None:
        style = "fashion-mnist" if run.data_config.dataset == "fashion-mnist" else "mnist"
        return load_picture(image, style)
    return dataset_image(run.dataset(data_dir), index, split)
