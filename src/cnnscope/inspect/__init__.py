"""Look inside a model: arrays only (figures live in cnnscope.plots)."""

from __future__ import annotations

from .activations import (
    MapDisplay,
    activation_grid,
    activations,
    as_maps,
    capture,
    conv_layers,
    display_maps,
    layer_output_shape,
    map_layers,
    standardize_maps,
)
from .filters import Filters, conv_filters
from .images import InputImage, load_picture, mnist_format, read_picture, select_image

__all__ = ["activations", "layer_output_shape"]
__all__ += ["Filters", "InputImage", "MapDisplay", "activation_grid", "as_maps", "capture", "conv_filters",
            "conv_layers", "display_maps", "load_picture", "map_layers", "mnist_format", "read_picture",
            "select_image", "standardize_maps"]
