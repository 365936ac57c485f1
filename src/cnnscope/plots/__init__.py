"""Figures drawn from arrays they are given: no run loading, no data, no model calls.

Each *_figure function returns a matplotlib Figure made by cnnscope.plots.backend.new_figure (never through pyplot,
so nothing stays open); cnnscope.plots.figures writes it atomically (save_figure_as, save_figure).
Loading a run and choosing what to draw is the job of cnnscope.views.
"""

from __future__ import annotations

from cnnscope.plots.activations import Prediction, activations_figure, filters_figure, overview_figure, vector_figure
from cnnscope.plots.attribution import explain_figure, explanation_figure, methods_figure
from cnnscope.plots.compare import compare_figure
from cnnscope.plots.figures import check_figure_path, get_cmap, save_figure, save_figure_as, slug, write_figure
from cnnscope.plots.patterns import pattern_pixels, patterns_figure
from cnnscope.plots.profile import errors_figure, profile_figure, top_images_figure
from cnnscope.plots.training import LivePlot, confusion_figure, curves_figure, plot_curves

__all__ = ["LivePlot", "confusion_figure", "curves_figure", "plot_curves", "save_figure"]
__all__ += ["Prediction", "activations_figure", "filters_figure", "overview_figure", "vector_figure"]
__all__ += ["explain_figure", "explanation_figure", "methods_figure", "pattern_pixels", "patterns_figure"]
__all__ += ["compare_figure", "errors_figure", "profile_figure", "top_images_figure"]
__all__ += ["check_figure_path", "get_cmap", "save_figure_as", "slug", "write_figure"]
