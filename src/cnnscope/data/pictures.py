"""Reading one picture file safely for a data set: known formats only, the pixel limit checked from the header
before anything is decoded, the channel count it holds, transparency flattened (`flatten_transparency`: the one
rule, which users' pictures in data/picture_input.py follow too), and one size. Works on chunks of paths so that a
process pool can share the work (data/folder.py)."""

from __future__ import annotations

import numpy as np

from cnnscope.base.errors import DataError

# One source for the per-picture pixel limit (decompression bombs): pictures above it are refused from their
# header, before anything is decoded. data/picture_input.py reads the same value for users' pictures.
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma: the weights Pillow's convert("L") uses


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Float luminance (H, W) 0..255 of float RGB (or RGBA) pixels (H, W, 3|4), by the LUMA weights."""
    return np.asarray(rgb, np.float32)[..., :3] @ np.array(LUMA, np.float32)


def flatten_transparency(rgba: np.ndarray) -> tuple[np.ndarray, bool]:
    """Float RGBA (H, W, 4) 0..255 -> (float RGB (H, W, 3) on a background that contrasts with the opaque part,
    whether that background is white): white under dark ink, black under light ink, white when nothing is
    opaque. The one rule for folders of pictures and for users' pictures."""
    alpha = rgba[..., 3:] / 255.0
    opaque = alpha[..., 0] > 0.5
    white = bool(not opaque.any() or luminance(rgba)[opaque].mean() < 128)
    background = 255.0 if white else 0.0
    return rgba[..., :3] * alpha + background * (1.0 - alpha), white


def probe_chunk(paths: list[str]) -> list[tuple[int, int, int, str]]:
    """(H, W, channels, "") per picture from its header, or (0, 0, 0, why it cannot be read)."""
    from PIL import Image

    out = []
    for path in paths:
        try:
            with Image.open(path, formats=FORMATS) as img:
                w, h = img.size
                if img.format == "JPEG" and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w  # EXIF says it is turned a quarter
                out.append((0, 0, 0, f"{w}×{h} is more than {MAX_PIXELS:,} pixels") if w * h > MAX_PIXELS
                           else (h, w, native_channels(img), ""))
        except Exception as exc:  # noqa: BLE001 - any failure of any decoder means "unreadable", named in the list
            out.append((0, 0, 0, unreadable_reason(exc)))
    return out


def native_channels(img) -> int:
    """1 for grey pictures (grey palettes included), 3 for colour ones."""
    if img.mode in GREY_MODES:
        return 1
    if img.mode in ("P", "PA"):
        palette = np.frombuffer(bytes(img.getpalette("RGB") or b""), np.uint8).reshape(-1, 3)
        return 1 if (palette == palette[:, :1]).all() else 3
    return 3


def unreadable_reason(exc: BaseException) -> str:
    """Why a picture cannot be read, in a few words, for the list of unreadable pictures."""
    from PIL import UnidentifiedImageError


    if isinstance(exc, UnidentifiedImageError):
        return "not a picture"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def decode_chunk(paths: list[str], size: tuple[int, int], channels: int) -> tuple[np.ndarray, list[str], dict]:
    """(pixels uint8 (n, H, W) or (n, H, W, 3), why each picture cannot be read ("" when it can), counts of
    what was done: converted, flattened, resized). An unreadable picture's pixels are zeros."""
    pixels = np.zeros((len(paths), *size, *((3,) if channels == 3 else ())), np.uint8)
    whys, counts = [""] * len(paths), {"converted": 0, "flattened": 0, "resized": 0}
    for i, path in enumerate(paths):
        try:
            pixels[i], done = _decode(path, size, channels)
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data: named in the list of unreadable ones
            whys[i] = unreadable_reason(exc)
            continue
        for key, value in done.items():
            counts[key] += value
    return pixels, whys, counts


def _decode(path: str, size: tuple[int, int], channels: int) -> tuple[np.ndarray, dict]:
    """One picture as uint8 (H, W) or (H, W, 3) of `size`, and what was done (converted, flattened, resized)."""
    from PIL import Image, ImageOps

    done = {}
    with Image.open(path, formats=FORMATS) as img:
        if img.size[0] * img.size[1] > MAX_PIXELS:  # changed since the header pass
            raise DataError(f"more than {MAX_PIXELS:,} pixels")
        w, h = img.size
        if img.format == "JPEG":
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w  # as the header pass reads it
            img.draft(img.mode, (max(size), max(size)))  # decoded at 1/2..1/8 scale when that is still larger
            img.load()
            img = ImageOps.exif_transpose(img)
        img.load()
        done["converted"] = int(native_channels(img) != channels)
        img = reduce_towards(img, size)  # before any float conversion: a 4096² RGBA PNG costs 64 MB, not 5 GB
        img, done["flattened"] = _to_mode(img, channels)
    done["resized"] = int((w, h) != (size[1], size[0]))
    if img.size != (size[1], size[0]):
        shrink = img.size[0] * img.size[1] > size[0] * size[1]
        img = img.resize((size[1], size[0]), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
    return np.asarray(img), done


# modes Pillow's reduce() cannot take, and the mode each is reduced in; alpha is premultiplied while averaging
_REDUCE_AS = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I"}
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}


def reduce_towards(img, size: tuple[int, int]):
    """A decoded picture box-averaged by the largest whole factor that keeps it at least `size` (H, W) on both
    sides (Pillow's reduce: no float copy); unchanged when it is not twice as large."""
    factor = min(img.size[0] // size[1], img.size[1] // size[0])
    if factor < 2:
        return img
    if img.mode in ("P", "PA"):  # a palette is averaged in colour (with its transparent entry as alpha)
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    mode = img.mode
    working = _PREMULTIPLIED.get(mode, _REDUCE_AS.get(mode, mode))
    reduced = (img if img.mode == working else img.convert(working)).reduce(factor)
    back = mode if mode in _PREMULTIPLIED else working
    return reduced if reduced.mode == back else reduced.convert(back)


def _to_mode(img, channels: int):
    """(Pillow image in mode L or RGB, 1 if transparency was flattened else 0)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        if rgba[..., 3].min() < 255:
            flat, _ = flatten_transparency(rgba)
            rgb = np.clip(np.round(flat), 0, 255).astype(np.uint8)
            return Image.fromarray(rgb, "RGB").convert(mode), 1
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit or float grey: stretched to 0..255
        x = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        x = np.nan_to_num((x - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros_like(x)
        img = Image.fromarray(np.round(x).astype(np.uint8), "L")
    return (img if img.mode == mode else img.convert(mode)), 0
