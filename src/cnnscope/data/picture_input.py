"""Input images for inspection: a test/train image by index, or a user's own picture converted as the model expects.

One rule for every entry point (the CLI's --image and the viewer's uploads): a picture is decoded safely
(`decode_picture`: known formats only, pixel limit checked before decoding, reduced to at most WORK_SIZE px
before any float conversion) and prepared for the model's input (`PictureTarget`): one-channel models get
`mnist_format` (ink found, centred, light on dark, in the model's field), colour models the picture's own colours
cropped to the model's aspect ratio and scaled to its size (`colour_format`). The notes say what was done and
warn when the picture is far from what the data set holds.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnscope.base.errors import DataError, PictureError
from cnnscope.data.pictures import ALPHA_MODES, MAX_PIXELS, flatten_transparency, luminance  # one limit, one rule

SIZE = 28  # MNIST's field
# MNIST: the digit is scaled so its longer side is 20 px and placed by its centre of mass in the 28×28 field.
# Fashion-MNIST: the item is scaled so its longer side is 28 px and centred by its bounding box.
STYLES = {"mnist": (20, "mass"), "fashion-mnist": (28, "box")}
NOUNS = {"mnist": "digit", "fashion-mnist": "item"}
# The prepared image's mean brightness (0..1) above which it holds more ink than any image of the data set
# (the largest values over the 10,000 test images: MNIST 0.30, Fashion-MNIST 0.67).
MAX_MEAN = {"mnist": 0.35, "fashion-mnist": 0.75}
WORK_SIZE = 1024  # the longer side a picture is reduced to before preparation (the result is 28 px anyway)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
         (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


@dataclass(frozen=True)
class PictureTarget:
    """What a user's picture is prepared into: the model's channels and size, and (one channel) the data's style."""

    style: str = "mnist"  # one channel: "mnist" (digits centred by mass) or "fashion-mnist" (items by their box)
    channels: int = 1
    height: int = SIZE
    width: int = SIZE

    @property
    def noun(self) -> str:
        """What the pictures show, for messages: 'digit', 'item' or (colour) 'picture'."""
        return NOUNS[self.style] if self.channels == 1 else "picture"

    @property
    def shape(self) -> tuple[int, ...]:
        """The raw picture's shape: (H, W) for one channel, (H, W, C) for colour."""
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)


@dataclass
class InputImage:
    """One image to look at: raw pixels as the model's data holds them and where it came from."""

    raw: np.ndarray  # uint8 (H, W) (light ink on a dark background for MNIST-like data) or (H, W, 3) colour
    source: str  # e.g. "test image 12" or "digit.png"
    label: int | None = None  # the true class when it comes from the data set
    notes: list[str] = field(default_factory=list)  # what was done to a user's picture ("warning: …" first)


def sniff_picture(data: bytes) -> str | None:
    """The picture format the first bytes announce (PNG, JPEG, GIF, BMP, WEBP, TIFF), or None."""
    head = bytes(data[:12])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in MAGIC if head.startswith(magic)), None)


def _open(source: bytes | str | os.PathLike, name: str):
    """Pillow image with its header read (nothing decoded yet); PictureError when it is not a known picture."""
    from PIL import Image, UnidentifiedImageError

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        return Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise PictureError(f"{name}: not an image Pillow can read; give a PNG or JPEG file (also GIF, BMP, "
                           f"WebP or TIFF)") from None
    except Image.DecompressionBombError:
        raise PictureError(f"{name} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; at most "
                           f"{MAX_PIXELS:,} ({_side()}) are accepted: scale it down first") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PictureError(f"{name}: cannot read the picture ({type(exc).__name__}); the file may be truncated "
                           f"or corrupt") from None


def _side() -> str:
    side = int(MAX_PIXELS ** 0.5)
    return f"{side}×{side}"


def _reduced(img, notes: list[str], channels: int = 1):
    """The decoded picture, no larger than WORK_SIZE on its longer side, in a mode that scales smoothly."""
    from PIL import Image, ImageOps

    img.draft(img.mode, (WORK_SIZE, WORK_SIZE))  # JPEG decodes at 1/2..1/8 scale; a no-op for other formats
    img.load()
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        clear = "transparency" in img.info
        img = img.convert(("RGBA" if clear else "RGB") if channels == 3 else ("LA" if clear else "L"))
    if max(img.size) > WORK_SIZE:
        before = img.size
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)
        notes.append(f"reduced from {before[0]}×{before[1]} to {img.width}×{img.height} px before preparing it")
    turned = ImageOps.exif_transpose(img)
    if turned is not img and (turned.size != img.size or turned.tobytes() != img.tobytes()):
        notes.append("rotated as its EXIF orientation says")
    return turned


def decode_picture(source: bytes | str | os.PathLike, name: str = "the picture",
                   channels: int = 1) -> tuple[np.ndarray, list[str]]:
    """Picture bytes or a file -> float greyscale (H, W) (channels=3: RGB (H, W, 3)) in 0..255 (longer side
    ≤ WORK_SIZE), with notes.

    Only PNG, JPEG, GIF, BMP, WebP and TIFF are read; a picture over MAX_PIXELS is refused from its header,
    before anything is decoded. PictureError (one line) for anything that is not a readable picture.
    """
    if isinstance(source, (bytes, bytearray, memoryview)) and not len(source):
        raise PictureError(f"{name} is empty; send a PNG or JPEG picture")
    with _open(source, name) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise PictureError(f"{name} is {width}×{height} pixels ({width * height:,}); at most {MAX_PIXELS:,} "
                               f"({_side()}) are accepted: scale it down first")
        notes = [f"read {name}: {width}×{height} {img.format} ({img.mode})"]
        mode = img.mode
        try:
            reduced = _reduced(img, notes, channels)
        except MemoryError:
            raise PictureError(f"{name} is too large to decode ({width}×{height})") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
            raise PictureError(f"{name}: cannot read the picture ({brief_exc(exc)}); the file may be truncated "
                               f"or corrupt") from None
        pixels = _rgb(reduced, mode, notes) if channels == 3 else _grey(reduced, mode, notes)
    return pixels, notes


def brief_exc(exc: BaseException, limit: int = 80) -> str:
    """An exception as one short line: 'Type: message', cut to `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _grey(img, mode: str, notes: list[str]) -> np.ndarray:
    """A Pillow image as float greyscale 0..255; transparency is flattened onto a contrasting background."""
    if img.mode in ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        if rgba[..., 3].min() < 255:
            return luminance(_flatten(rgba, notes))
    if mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F", "1"):
        notes.append(f"converted {mode} colour to greyscale")
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit or float greyscale: rescale to 0..255
        x = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        return np.nan_to_num((x - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros_like(x)
    return np.asarray(img.convert("L"), dtype=np.float32)


def _flatten(rgba: np.ndarray, notes: list[str]) -> np.ndarray:
    """RGBA float (H, W, 4) -> RGB flattened by cnnscope.data.pictures.flatten_transparency (white under dark ink,
    black under light), with the note saying so."""
    rgb, white = flatten_transparency(rgba)
    notes.append(f"flattened transparency onto a {'white' if white else 'black'} background")
    return rgb


def _rgb(img, mode: str, notes: list[str]) -> np.ndarray:
    """A Pillow image as float RGB (H, W, 3) 0..255; transparency flattened as for grey pictures, a grey picture's
    value copied into the three channels."""
    if img.mode in ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        if rgba[..., 3].min() < 255:
            return _flatten(rgba, notes)
        return rgba[..., :3].copy()
    if img.mode.startswith("I") or img.mode == "F" or mode in ("L", "1"):
        grey = _grey(img, mode, notes)
        notes.append("a grey picture: its values copied into the red, green and blue channels")
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def read_picture(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a picture file as float greyscale (H, W) in 0..255 (reduced to WORK_SIZE), with notes."""
    path = Path(path)
    if not path.is_file():
        raise PictureError(f"image file not found: {path}")
    return decode_picture(path, path.name)


def _uneven_edges(edges: np.ndarray, contrast: float, noun: str) -> list[str]:
    """A warning when the picture's edges (background removed, 0 = background) vary like a shadow does."""
    lo, hi = np.percentile(edges, [10, 90])
    if hi - lo <= 0.3 * contrast:
        return []
    return [f"warning: uneven lighting: the background at the picture's edges ranges over {hi - lo:.0f} of the "
            f"{contrast:.0f} levels between background and ink (a shadow or a gradient), so part of it may be "
            f"taken for ink; photograph the {noun} under even light or crop the picture closer to it"]


def _ink_at_edges(x: np.ndarray, noun: str) -> list[str]:
    """A warning when much of the picture's border is ink (x in 0..1 after background removal)."""
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    share = float((border > 0).mean())
    if min(x.shape) <= 2 or share <= 0.25:
        return []
    return [f"warning: the ink runs into the picture's edges ({share:.0%} of them): the {noun} may be cut off, "
            f"or background was taken for ink; leave a margin around the {noun}"]


def _crop_and_scale(x: np.ndarray, box: int, notes: list[str]) -> np.ndarray:
    """Crop to the ink's bounding box and scale its longer side to `box` px (x in 0..1, ink > 0)."""
    from PIL import Image

    rows, cols = np.nonzero(x > 0.0)
    full = x.shape
    x = x[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = x.shape
    notes.append(f"cropped to the ink's bounding box ({w}×{h} px of {full[1]}×{full[0]})")
    factor = box / max(h, w)
    nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
    resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
    x = np.clip(np.asarray(Image.fromarray(np.ascontiguousarray(x), mode="F").resize((nw, nh), resample)), 0, 1)
    notes.append(f"scaled to {nw}×{nh} px (longer side {box} px)")
    return x


def _place(x: np.ndarray, centring: str, notes: list[str], size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """Put the scaled ink into the field (28×28, or the model's H×W), by its centre of mass or its bounding box."""
    nh, nw = x.shape
    fh, fw = size
    if centring == "mass" and x.sum() > 0:
        yy, xx = np.indices(x.shape)
        cy, cx = (yy * x).sum() / x.sum(), (xx * x).sum() / x.sum()
        top, left = round((fh - 1) / 2 - cy), round((fw - 1) / 2 - cx)
        how = "centre of mass"
    else:
        top, left = (fh - nh) // 2, (fw - nw) // 2
        how = "bounding box"
    top, left = min(max(top, 0), fh - nh), min(max(left, 0), fw - nw)  # never push ink out of the field
    out = np.zeros((fh, fw), np.float32)
    out[top:top + nh, left:left + nw] = x
    notes.append(f"placed in the {fw}×{fh} field centred by its {how}")
    return out


def mnist_format(grey: np.ndarray, style: str = "mnist",
                 size: tuple[int, int] = (SIZE, SIZE)) -> tuple[np.ndarray, list[str]]:
    """Convert a greyscale picture (H, W), 0..255, of any size and polarity to a 28×28 (or `size`) uint8
    MNIST-like image.

    Light ink on dark like MNIST (inverted when the border is light), background removed and contrast stretched,
    cropped to the ink's bounding box, the longer side scaled to 20 px (28 for Fashion-MNIST; in another field
    size, the same share of its shorter side) and placed by its centre of mass (Fashion-MNIST: its box) in the
    field. Returns (image, notes on what was done); notes starting with "warning:" (listed first) say the picture
    is far from the data set's images.
    """
    if style not in STYLES:
        raise DataError(f"unknown image style {style!r}; valid: {', '.join(STYLES)}")
    box, centring = STYLES[style]
    box = box if tuple(size) == (SIZE, SIZE) else max(1, round(box * min(size) / SIZE))
    noun, data = NOUNS[style], "MNIST digits" if style == "mnist" else "Fashion-MNIST items"
    x = np.array(grey, dtype=np.float32)  # a copy: the caller's array is never changed
    if x.ndim != 2 or min(x.shape) < 1:
        raise DataError(f"expected a greyscale picture (H, W), received shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("the picture holds NaN or infinite values; give values from 0 to 255")
    notes: list[str] = []
    edges = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    background = float(np.median(edges))
    if background > 127:
        x, edges, background = 255.0 - x, 255.0 - edges, 255.0 - background
        notes.append(f"inverted: dark ink on a light background ({data} are light on dark)")
    ink = float(np.percentile(x, 99.5)) if x.size > 400 else float(x.max())
    if ink - background < 16:
        raise DataError(f"no {noun} found: the picture has (nearly) a single shade; give a picture of a {noun} "
                        f"with clear contrast to its background")
    warnings = _uneven_edges(edges - background, ink - background, noun)
    x = np.clip((x - background) / (ink - background), 0.0, 1.0)
    x[x < 0.1] = 0.0  # paper texture and sensor noise are not ink
    if background > 8 or ink < 247:
        notes.append(f"removed the background level ({background:.0f}) and stretched the ink to full contrast")
    warnings += _ink_at_edges(x, noun)
    out = _place(_crop_and_scale(x, box, notes), centring, notes, tuple(size))
    if out.mean() > MAX_MEAN[style]:
        warnings.append(f"warning: the prepared image is {out.mean():.0%} ink, more than any of the {data} "
                        f"(at most {MAX_MEAN[style] - 0.05:.0%}): the model will see something unlike its data")
    return np.round(out * 255.0).astype(np.uint8), warnings + notes


def colour_format(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """An RGB picture (H, W, 3), 0..255, of any size -> uint8 (h, w, 3) for a colour model of input `size`
    (h, w): the centre cropped to the model's aspect ratio, then scaled (no inversion, no ink detection: a colour
    picture is taken as it is). Returns (image, notes)."""
    from PIL import Image

    x = np.clip(np.asarray(rgb, dtype=np.float32), 0, 255)
    if x.ndim != 3 or x.shape[2] != 3 or min(x.shape[:2]) < 1:
        raise DataError(f"expected a colour picture (H, W, 3), received shape {x.shape}")
    h, w = size
    notes: list[str] = []
    ph, pw = x.shape[:2]
    if pw * h > ph * w:  # wider than the model's inputs: cut the sides
        keep = max(1, round(ph * w / h))
        x = x[:, (pw - keep) // 2:(pw - keep) // 2 + keep]
    elif pw * h < ph * w:
        keep = max(1, round(pw * h / w))
        x = x[(ph - keep) // 2:(ph - keep) // 2 + keep]
    if x.shape[:2] != (ph, pw):
        notes.append(f"cropped the centre {x.shape[1]}×{x.shape[0]} px of {pw}×{ph} to the model's aspect ({w}×{h})")
    if x.shape[:2] != (h, w):
        img = Image.fromarray(np.round(x).astype(np.uint8), mode="RGB")
        down = x.shape[0] > h
        x = np.asarray(img.resize((w, h), Image.Resampling.LANCZOS if down else Image.Resampling.BICUBIC))
        notes.append(f"scaled to {w}×{h} px, the model's input size")
    return np.clip(np.round(x), 0, 255).astype(np.uint8), notes


def picture_target(run) -> PictureTarget:
    """How users' pictures are prepared for a run: its input's channels and size, and the data's style."""
    c, h, w = run.spec.input_shape
    return PictureTarget(picture_style(run.data_config.dataset), int(c), int(h), int(w))


def _target(style: str | PictureTarget) -> PictureTarget:
    if isinstance(style, PictureTarget):
        if style.channels not in (1, 3):
            raise PictureError(f"pictures can be prepared for models with 1 or 3 input channels, not "
                               f"{style.channels}")
        return style
    if style not in STYLES:
        raise DataError(f"unknown image style {style!r}; valid: {', '.join(STYLES)}")
    return PictureTarget(style)


def prepare_picture(source: bytes | str | os.PathLike, style: str | PictureTarget = "mnist",
                    name: str = "the picture") -> tuple[np.ndarray, list[str]]:
    """Picture bytes or a file -> (uint8 pixels as the model's data holds them, notes): what the CLI and viewer
    use. `style` is a PictureTarget (see picture_target) or a one-channel style name (a 28×28 field)."""
    target = _target(style)
    pixels, notes = decode_picture(source, name, target.channels)
    try:
        if target.channels == 3:
            raw, more = colour_format(pixels, (target.height, target.width))
        else:
            raw, more = mnist_format(pixels, target.style, (target.height, target.width))
    except DataError as exc:
        raise PictureError(f"{name}: {exc}") from None
    notes += more
    return raw, [n for n in notes if n.startswith("warning:")] + [n for n in notes if not n.startswith("warning:")]


def load_picture(path: str | os.PathLike, style: str | PictureTarget = "mnist") -> InputImage:
    """A user's own picture converted as the model expects (MNIST-like, Fashion-MNIST-like or colour; see
    prepare_picture), with notes on what was done."""
    path = Path(path)
    if not path.is_file():
        raise PictureError(f"image file not found: {path}")
    raw, notes = prepare_picture(path, style, path.name)
    return InputImage(raw, path.name, None, notes)


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
        return load_picture(image, picture_target(run))
    return dataset_image(run.dataset(data_dir), index, split)


def picture_style(dataset: str) -> str:
    """The preparation style for a data set's name: 'fashion-mnist' or 'mnist' (every other data set)."""
    return "fashion-mnist" if dataset == "fashion-mnist" else "mnist"
