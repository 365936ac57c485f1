"""Look inside a model: arrays only (figures live in cnnscope.plots)."""

from __future__ import annotations

from .activations import activations, layer_output_shape

__all__ = ["activations", "layer_output_shape"]
