"""Figures (matplotlib, Agg backend). Each function returns a Figure; save_figure writes it atomically."""

from __future__ import annotations

from .activations import (
    activations_figure,
    filters_figure,
    overview_figure,
    render_activations,
    render_filters,
    save_figure_as,
)
from .attribution import explain_figure, render_explain
from .compare import compare_figure, render_compare
from .patterns import pattern_pixels, patterns_figure, render_patterns
from .profile import (
    errors_figure,
    profile_figure,
    render_errors,
    render_profile,
    render_top_images,
    top_images_figure,
)
from .training import LivePlot, confusion_figure, curves_figure, plot_curves, save_figure

__all__ = ["LivePlot", "confusion_figure", "curves_figure", "plot_curves", "save_figure"]
__all__ += ["activations_figure", "filters_figure", "overview_figure", "render_activations", "render_filters",
            "save_figure_as"]
__all__ += ["explain_figure", "pattern_pixels", "patterns_figure", "render_explain", "render_patterns"]
__all__ += ["compare_figure", "errors_figure", "profile_figure", "render_compare", "render_errors", "render_profile",
            "render_top_images", "top_images_figure"]
