"""Text measured in inches, for figures laid out in inches: how wide a label is, captions wrapped to a width, and a
figure's heading drawn from its top-left corner."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from cnnscope.plots.figures import MIN_PT

LINE = 1.25  # a text line's height in em (matplotlib's default line spacing, with a little air)
TITLE_PT = 13.0  # a figure's bold title
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


def draw_heading(fig: Figure, title: list[str], sub: list[str], x: float, top: float = 0.2,
                 gap: float = 0.08) -> None:
    """A bold TITLE_PT title and grey MIN_PT subtitle lines (both already wrapped) from the figure's top-left
    corner: `x` inches from its left edge, `top` from its top, `gap` between the two."""
    W, H = fig.get_size_inches()
    if title:
        fig.text(x / W, 1 - top / H, "\n".join(title), fontsize=TITLE_PT, fontweight="bold", va="top",
                 linespacing=LINE)
    if sub:
        below = top + lines_inches(len(title), TITLE_PT) + gap
        fig.text(x / W, 1 - below / H, "\n".join(sub), fontsize=MIN_PT, va="top", color="#444444", linespacing=LINE)
