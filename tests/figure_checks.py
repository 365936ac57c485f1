"""Measurements of a figure at its default size, for the projector checks (issue 23): the smallest text in
points, the share of image panels that are one flat colour."""

from __future__ import annotations

import numpy as np
from matplotlib.text import Text


def smallest_text_pt(fig) -> float:
    """The smallest font size (pt) of the visible, non-empty texts of `fig`, tick labels included."""
    fig.canvas.draw()  # tick labels exist once drawn
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return float(min(sizes))


def flat_panel_share(fig) -> float:
    """The share of the figure's image panels (imshow) whose drawn colours are all alike (max − min of the
    RGB values below 2 %)."""
    panels = [image for ax in fig.axes for image in ax.images]
    flat = 0
    for image in panels:
        rgba = np.asarray(image.to_rgba(image.get_array(), bytes=False))[..., :3]
        flat += float(np.ptp(rgba)) < 0.02
    return flat / max(len(panels), 1)
