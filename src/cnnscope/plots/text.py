"""Text measured in inches, for figures laid out in inches: how wide a label is, and captions wrapped to a width."""

from __future__ import annotations

from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

LINE = 1.25  # a text line's height in em (matplotlib's default line spacing, with a little air)
_SLACK = 1.06  # Agg's hinting draws a few percent wider than the outlines measure


def text_inches(text: str, size: float, weight: str = "normal") -> float:
    """The width in inches of `text` (one line) at `size` points in the default font."""
    width, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=size, weight=weight),
                                                             ismath=False)
    return width * _SLACK / 72


def lines_inches(lines: int, size: float) -> float:
    """The height in inches of `lines` lines of text at `size` points."""
    return lines * size * LINE / 72


def wrap_inches(text: str, size: float, width: float, weight: str = "normal") -> list[str]:
    """`text` broken into lines no wider than `width` inches at `size` points (its own newlines kept; a word wider
    than the width stands alone on its line)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and text_inches(candidate, size, weight) > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines
