"""The small HTML pieces the report's sections share: escaping, embedded images, tables, section frames.

Every picture becomes a data URI (cnnscope.base.imaging for arrays, matplotlib's PNG writer for figures), so a report
is one file that opens anywhere without a network.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from cnnscope.base.imaging import data_uri, picture_png
from cnnscope.plots.backend import figure_png
from cnnscope.views.common import ViewResult


def esc(value: Any) -> str:
    """Text made safe to place in HTML (run names, class names, settings)."""
    return html.escape(str(value))


def figure_uri(fig, dpi: int = 100) -> str:
    """A matplotlib figure as a PNG data URI."""
    return data_uri(figure_png(fig, dpi=dpi))


def img(uri: str, alt: str, cls: str = "") -> str:
    """An <img> of a data URI, with its text alternative and an optional class."""
    klass = f' class="{cls}"' if cls else ""
    return f'<img src="{uri}" alt="{esc(alt)}"{klass}>'


def png_img(png: bytes, alt: str, cls: str = "px") -> str:
    """An <img> of PNG bytes (pixelated by default: maps and digits are drawn cell by cell)."""
    return img(data_uri(png), alt, cls)


def picture_uri(raw: np.ndarray) -> str:
    """A raw picture 0..255, (H, W) grey or (H, W, 3) colour, as a PNG data URI."""
    return data_uri(picture_png(raw))


def table(rows: list[tuple[str, Any]]) -> str:
    """A two-column key/value table."""
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def section(ident: str, title: str, body: str, note: str = "", **data: Any) -> ViewResult:
    """A report section as a view's result: data holds its id, title and HTML (plus what it found)."""
    note_html = f'<p class="note">{note}</p>' if note else ""
    page = f'<section id="{ident}"><h2>{esc(title)}</h2>{note_html}{body}</section>'
    return ViewResult([], {"id": ident, "title": title, "html": page, **data})
