"""Look inside a model: arrays only (figures live in cnnscope.plots)."""

from __future__ import annotations

from cnnscope.data.picture_input import InputImage, load_picture, mnist_format, read_picture, select_image
from cnnscope.inspect.activations import (
            activation_grid,
            activations,
            as_maps,
            capture,
            conv_layers,
            layer_output_shape,
            map_layers,
            standardize_maps,
)
from cnnscope.inspect.attribution import (
            deeplift,
            guided_backprop,
            input_x_gradient,
            integrated_gradients,
            occlusion,
            saliency,
            smoothgrad,
)
from cnnscope.inspect.classify import LayerClassification, PatternClassification, Readout, classify_by_patterns
from cnnscope.inspect.compare import (
            activation_correlation,
            check_runs,
            compare_many,
            compare_runs,
            kernel_correlation,
            linear_assignment,
            many_correlations,
            match_maps,
)
from cnnscope.inspect.deletion import DeletionResult, brightness_map, curve_area, deletion_score, deletion_scores
from cnnscope.inspect.display import MapDisplay, display_maps, layer_display, overview_displays
from cnnscope.inspect.filters import Filters, conv_filters
from cnnscope.inspect.gradcam import grad_cam, guided_grad_cam, last_conv_layer, seen_pixels
from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS, AttributionMethod, attribute, get_method
from cnnscope.inspect.patterns import (
            PatternResult,
            input_bounds,
            map_statistics,
            maximize_activation,
            maximize_activation_result,
            parse_maps,
)
from cnnscope.inspect.profile import (
            FieldGeometry,
            Misclassified,
            TopImages,
            class_means,
            class_profile,
            class_profile_dead,
            class_readout,
            dead_maps,
            field_geometry,
            layer_means,
            layer_summary,
            map_peak_batches,
            map_peaks,
            misclassified,
            mistakes,
            rank_images,
            readout_batches,
            top_images,
)

__all__ = ["activations", "layer_output_shape"]
__all__ += ["Filters", "InputImage", "MapDisplay", "activation_grid", "as_maps", "capture", "conv_filters",
            "conv_layers", "display_maps", "load_picture", "map_layers", "mnist_format", "read_picture",
            "select_image", "standardize_maps", "layer_display", "overview_displays"]
__all__ += ["PatternResult", "input_bounds", "map_statistics", "maximize_activation", "maximize_activation_result",
            "parse_maps"]
__all__ += ["DEFAULT_METHOD", "METHODS", "AttributionMethod", "DeletionResult", "attribute", "brightness_map",
            "curve_area", "deeplift", "deletion_scores",
            "deletion_score", "get_method", "grad_cam", "guided_backprop", "guided_grad_cam", "input_x_gradient",
            "integrated_gradients", "last_conv_layer", "occlusion", "saliency", "seen_pixels", "smoothgrad"]
__all__ += ["FieldGeometry", "Misclassified", "TopImages", "activation_correlation", "class_profile", "compare_runs",
            "field_geometry", "kernel_correlation", "linear_assignment", "match_maps", "misclassified", "top_images",
            "check_runs", "compare_many", "many_correlations"]
__all__ += ["class_means", "class_readout", "layer_means", "map_peak_batches", "map_peaks", "mistakes", "rank_images",
            "readout_batches"]
__all__ += ["LayerClassification", "PatternClassification", "Readout", "classify_by_patterns"]
__all__ += ["class_profile_dead", "dead_maps", "layer_summary"]
