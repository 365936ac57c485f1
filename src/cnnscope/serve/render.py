"""The viewer's PNG encoder is cnnscope.imaging (shared with the report); these names stay importable here."""

from __future__ import annotations

from cnnscope.base.errors import RenderError
from cnnscope.base.imaging import (
           COLORMAPS,
           EMPTY_RGB,
           colorize,
           colormap,
           colormap_strip,
           data_uri,
           grey_png,
           layout,
           png_bytes,
)

__all__ = ["COLORMAPS", "EMPTY_RGB", "RenderError", "colorize", "colormap", "colormap_strip", "data_uri", "grey_png",
           "layout", "png_bytes"]
