"""How the library makes figures: matplotlib Figure objects with their own Agg canvas, never pyplot's.

A figure made here is in no global list, so a loop that draws hundreds leaves nothing open (no "More than 20
figures" warning), a server thread never touches a GUI backend, and a notebook shows a returned figure once (as
the cell's value; pyplot's inline backend would show it a second time at the end of the cell). The user's own
pyplot and backend are left alone.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnscope.base.jupyter import ipython_shell

__all__ = ["figure_png", "new_figure"]


def new_figure(**figure: Any) -> Figure:
    """A Figure (keywords as matplotlib.figure.Figure: figsize, dpi, ...) drawn by Agg, outside pyplot."""
    fig = Figure(**figure)
    FigureCanvasAgg(fig)  # draw(), buffer_rgba() and savefig work without any backend being chosen
    return fig


def figure_png(fig: Figure, dpi: float | None = None, tight: bool = True) -> bytes:
    """The figure as PNG bytes (for HTML pages, notebooks and widgets); tight: cropped to what is drawn."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi, **({"bbox_inches": "tight"} if tight else {}))
    return buffer.getvalue()


def show_figures_inline(shell: Any) -> None:
    """Let IPython show a bare Figure as a PNG, as pyplot's inline backend would once it starts; a format the
    user or the inline backend already chose for figures (retina, SVG) is kept."""
    formatters = shell.display_formatter.formatters
    for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
        try:
            if mime in formatters:
                formatters[mime].lookup_by_type(Figure)
                return  # figures already have a picture format
        except KeyError:
            continue
    if "image/png" in formatters:
        formatters["image/png"].for_type(Figure, figure_png)


if (_shell := ipython_shell()) is not None:
    show_figures_inline(_shell)
