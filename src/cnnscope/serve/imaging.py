"""Uploaded or drawn pictures -> MNIST-like 28×28 uint8 images (decoded in memory, never written to disk)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from ..errors import CnnscopeError

MAX_PIXELS = 4096 * 4096  # larger pictures are refused before decoding (decompression bombs)


class ImageError(CnnscopeError):
    """The bytes received are not a picture we can read."""


def decode_image(data: bytes) -> Image.Image:
    """Bytes of a PNG/JPEG/GIF/BMP/WebP/… picture -> a loaded PIL image (EXIF rotation applied)."""
    if not data:
        raise ImageError("the upload is empty; send a PNG or JPEG picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"the picture is {width}×{height} pixels; at most {MAX_PIXELS:,} pixels are "
                                 f"accepted")
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the picture is too large to decode safely") from None
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, … on bad bytes
        raise ImageError(f"the upload is not a readable picture ({type(exc).__name__}); send a PNG or JPEG "
                         f"file") from None
    return image


def grey(image: Image.Image) -> np.ndarray:
    """Float grey (H, W) in 0..255. A transparent background (a drawing app's export) makes the strokes the ink:
    their opacity becomes the brightness, on black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3]
        if alpha.min() < 250 and alpha.max() > 5:
            return alpha
    return np.asarray(image.convert("L"), dtype=np.float32)


def prepare(data: bytes, style: str = "mnist") -> tuple[np.ndarray, list[str]]:
    """Picture bytes -> (uint8 (28, 28) light ink on black, notes on what was done), as the data set expects.

    The conversion itself is cnnscope.inspect.images.mnist_format (invert a light background, crop to the ink,
    scale to 20 px, centre by mass in 28×28; Fashion-MNIST: 28 px, centred by box).
    """
    from ..inspect.images import mnist_format

    return mnist_format(grey(decode_image(data)), style)
