"""Views of the web viewer's panels: the run's description, the layer list, activation grids and the parts of a
map card (enlarged map, kernel, pooling rule, top images, class read-out) and the explanation of a prediction.

Each panel takes what the viewer holds (the run, its data, maps already computed, tables from
cnnscope.inspect.profile) and returns a ViewResult whose `data` is the JSON-ready answer (no files: `paths` is
empty). The viewer (cnnscope.serve) only loads, caches, locks and answers HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnscope.base.errors import RequestError, choice_error
from cnnscope.base.imaging import COLORMAPS, colorize, data_uri, picture_png, png_bytes, rgb_kernels
from cnnscope.inspect.filters import colour_layer
from cnnscope.inspect.gradcam import last_conv_layer
from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS, channel_note
from cnnscope.inspect.profile import dead_maps, rank_images
from cnnscope.model.geometry import Geometry
from cnnscope.model.layers import CONV, POOL, POOL_TYPES
from cnnscope.views.activations import stage_words
from cnnscope.views.common import ViewResult, probabilities
from cnnscope.views.explain import explain_one
from cnnscope.views.tiles import grid_png

TOP_IMAGES = 8
READOUT_METHOD = "gradient of each class logit w.r.t. the map's spatial mean, averaged over test images"


def rounded(values: np.ndarray, decimals: int) -> list:
    """Nested lists of floats rounded in float64 (float32 -> JSON would print 0.11191000044345856)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def geometry_json(geometry: Geometry) -> dict[str, list[int]]:
    """The API's receptive field of a layer: size, jump and top-left offset (negative under padding), per axis."""
    return {"size": list(geometry.receptive_field), "jump": list(geometry.jump), "offset": list(geometry.offset)}


def confidence_cap(label_smoothing: float, classes: int) -> float | None:
    """The probability label smoothing trains the true class towards (1 - ε + ε/K): confidences stop near it.
    None without smoothing."""
    if not label_smoothing:
        return None
    return 1 - label_smoothing + label_smoothing / max(1, classes)


def info_panel(run, dataset, noun: str) -> ViewResult:
    """The run's description: name, data set, classes, set sizes, accuracy, parameters, layers with maps, and the
    label smoothing that caps its confidence."""
    sets = {"test": len(dataset.test_y), "train": len(dataset.train_y)}
    if dataset.val_raw is not None:
        sets["val"] = len(dataset.val_y)
    metrics = run.metrics
    return ViewResult([], {
        "run": run.path.name, "dataset": dataset.name, "class_names": list(dataset.class_names), "sets": sets,
        "test_accuracy": metrics.get("test_accuracy"), "epochs": metrics.get("epochs_completed"),
        "params": run.spec.total_params, "input_shape": list(run.spec.input_shape),
        "channels": int(run.spec.input_shape[0]), "drawing": run.spec.input_shape[0] == 1, "colormaps": list(COLORMAPS),
        "grid_layers": run.spec.map_layer_names(), "noun": noun, "methods": explain_methods(),
        "label_smoothing": run.config.label_smoothing,
        "confidence_cap": confidence_cap(run.config.label_smoothing, len(dataset.class_names))})


def layers_panel(spec) -> ViewResult:
    """Every layer: name, type, kind, output shape, parameters, receptive field and, for layers with maps,
    their count and geometry."""
    out = []
    for layer in spec.layers():
        out.append({"name": layer.name, "type": layer.type, "kind": layer.kind,
                    "output_shape": list(layer.output_shape), "params": layer.params,
                    "receptive_field": None if layer.receptive_field is None else list(layer.receptive_field),
                    "grid": layer.has_maps, "maps": layer.output_shape[0] if layer.has_maps else None,
                    "geometry": geometry_json(layer.geometry) if layer.has_maps else None})
    return ViewResult([], {"layers": out})


def grid_panel(layer: str, maps: np.ndarray, cols: int, scale: bool, cmap: str,
               values: bool = False) -> tuple[bytes, dict[str, Any]]:
    """(PNG, meta) of one image's maps tiled `cols` per row; with `values`, meta also holds every value, the
    maps' means and the PNG as a data URI (the grid's JSON form)."""
    png, meta = grid_png(maps, max(1, min(cols, len(maps))), scale, cmap)
    meta = {"layer": layer, **meta, "scale": scale, "cmap": cmap}
    if values:
        meta.update({"shape": list(maps.shape), "png": data_uri(png),
                     "mean": [round(float(v), 5) for v in maps.mean(axis=(1, 2))], "activations": rounded(maps, 5)})
    return png, meta


def map_panel(info, index: int, fmap: np.ndarray, cmap: str) -> ViewResult:
    """One map enlarged: PNG, colour range, mean, peak, values and the layer's receptive field."""
    rgb, vmin, vmax = colorize(fmap, cmap)
    peak = np.unravel_index(int(np.argmax(fmap)), fmap.shape)
    return ViewResult([], {
        "layer": info.name, "type": info.type, "map": index, "maps": info.output_shape[0],
        "shape": list(fmap.shape), "png": data_uri(png_bytes(rgb)), "min": vmin, "max": vmax,
        "mean": float(fmap.mean()), "peak": [int(peak[0]), int(peak[1])], "values": rounded(fmap, 4),
        "receptive_field": geometry_json(info.geometry)})


def units_panel(run, layer: str, values: np.ndarray, probabilities: np.ndarray,
                class_names: Sequence[str]) -> ViewResult:
    """A dense layer's units for one image: their values (the output layer's are the logits, given with the class
    names and the probabilities they become), what the values are, and their range."""
    output = layer == run.spec.output_layer_name
    values = np.asarray(values, np.float64).reshape(-1)
    data = {"layer": layer, "type": run.spec.layer(layer).type, "units": int(len(values)), "output": output,
            "stage": stage_words(run.model, layer, False), "values": rounded(values, 5),
            "min": float(values.min()), "max": float(values.max())}
    if output:
        data.update({"class_names": list(class_names), "activation": run.spec.output_activation,
                     "probabilities": rounded(probabilities, 6)})
    return ViewResult([], data)


def previous_map_layer(spec, layer: str) -> str:
    """The layer with maps before `layer` ('input' for the first)."""
    names = spec.map_layer_names()
    position = names.index(layer)
    return names[position - 1] if position else "input"


def kernel_panel(run, layer: str, index: int) -> ViewResult | None:
    """Filter `index` of a conv layer: its weights per input channel as a PNG grid (and, on a colour model's first
    layer, as one RGB picture: rgb_png), values and bias; None for layers without kernels."""
    if run.spec.layer(layer).kind != CONV:
        return None
    conv = run.model.layer(layer).conv
    weights = conv.weight[index].detach().float().cpu().numpy()  # (in_channels, kh, kw)
    channels = weights.shape[0]
    png, meta = grid_png(weights, min(8, channels), False, "RdBu_r", symmetric=True)
    bias = float(conv.bias[index].detach()) if conv.bias is not None else 0.0
    rgb = None
    if colour_layer(run.model, layer):  # a colour model's first layer: the filter as one RGB picture too
        rgb = data_uri(picture_png(rgb_kernels(weights[None])[0] * 255.0))
    return ViewResult([], {"input": previous_map_layer(run.spec, layer), "channels": channels, "rgb_png": rgb,
                           "cols": meta["cols"], "rows": meta["rows"], "height": weights.shape[1],
                           "width": weights.shape[2], "png": data_uri(png), "min": meta["min"], "max": meta["max"],
                           "bias": bias, "values": rounded(weights, 5)})


def pool_panel(spec, layer: str) -> ViewResult | None:
    """The pooling rule of a pool layer (kind, window, stride, input layer); None for other layers."""
    info = spec.layer(layer)
    if info.kind != POOL:
        return None
    kind = next(name for name, keras_type in POOL_TYPES.items() if keras_type == info.type)
    return ViewResult([], {"kind": kind, "size": list(info.kernel), "stride": list(info.stride),
                           "input": previous_map_layer(spec, layer)})


def top_panel(peaks: tuple[np.ndarray, np.ndarray, np.ndarray], index: int, width: int, labels: np.ndarray,
              raw: np.ndarray, class_names: Sequence[str], k: int = TOP_IMAGES) -> ViewResult:
    """The k test images in which map `index` peaks highest (from cnnscope.inspect.profile.map_peaks' table),
    each with its class, value, peak position and picture; `dead`: the map is 0 on every test image
    (cnnscope.inspect.dead_maps), `searched`: how many images."""
    values, positions, sizes = peaks
    out = []
    for i in rank_images(values[:, index], k):
        label, pos = int(labels[i]), int(positions[i, index])
        out.append({"index": int(i), "label": label, "class_name": class_names[label],
                    "value": round(float(values[i, index]), 5), "position": [pos // width, pos % width],
                    "png": data_uri(picture_png(raw[i]))})
    dead = bool(dead_maps(sizes[:, [index]].max(axis=0))) if len(sizes) else False
    return ViewResult([], {"top": out, "dead": dead, "searched": int(len(values))})


def readout_panel(readout: np.ndarray, index: int, class_names: Sequence[str], images: int) -> ViewResult:
    """Map `index`'s column of cnnscope.inspect.profile.class_readout: how it feeds each class."""
    return ViewResult([], {"class_names": list(class_names),
                           "values": [round(float(v), 5) for v in readout[:, index]], "images": images,
                           "method": READOUT_METHOD})


def pattern_png(pattern: np.ndarray, preprocessor, cmap: str = "gray") -> bytes:
    """A maximising pattern ((H, W) or (C, H, W), preprocessed units) as a PNG of pixels 0..255, as an input image
    holds them: grey through `cmap`, colour as it is (the colour map does not apply)."""
    from cnnscope.plots.patterns import pattern_pixels  # matplotlib: loaded on the first pattern, not at start

    pixels = pattern_pixels(np.asarray(pattern)[None], preprocessor)[0]
    if pixels.ndim == 3:
        return picture_png(pixels)
    rgb, _, _ = colorize(pixels, cmap, 0.0, 255.0)
    return png_bytes(rgb)


def explain_method(name: str | None) -> str:
    """The attribution method called `name` (the default one for None or ''); RequestError listing the methods
    the viewer offers otherwise."""
    name = name or DEFAULT_METHOD
    if name not in METHODS:
        raise choice_error(RequestError, "method", name, METHODS)
    return name


def explain_methods() -> list[dict[str, str]]:
    """The attribution methods the viewer offers (cnnscope.inspect.methods.METHODS), the default first."""
    order = [DEFAULT_METHOD, *(name for name in METHODS if name != DEFAULT_METHOD)]
    return [{"name": name, "title": METHODS[name].title} for name in order]


def explain_panel(run, raw: np.ndarray, method: str, class_names: Sequence[str],
                  random_draws: int = 4) -> ViewResult:
    """Why the model predicts its class for one raw image: `method`'s heat map (PNG, blue/red for signed methods,
    grey where no cell sees) and its deletion test: deletion and insertion curves over 0–50 % of the pixels for
    the method, the brightness ranking (no model) and random ones, their AUCs and the verdict (pass: a lower
    deletion AUC than brightness)."""
    chosen = METHODS[method]
    x = run.preprocessor(np.asarray(raw)[None])
    blank = run.preprocessor(np.zeros_like(raw)[None])[0]
    probs = probabilities(run.model, x)[0]
    cls = int(probs.argmax())
    layer = last_conv_layer(run.model) if chosen.uses_layer else None
    heat, deletion = explain_one(run.model, x, raw, blank, method, layer, cls, random_draws, 0)
    rgb, vmin, vmax = colorize(heat, "RdBu_r" if chosen.signed else "magma", symmetric=chosen.signed)
    unseen = int(np.isnan(heat).sum())
    note = channel_note([method], int(x.shape[1]))
    return ViewResult([], {"method": method, "title": chosen.title, "layer": layer, "class": cls,
                           "channels": int(x.shape[1]), "channels_note": note or None,
                           "class_name": class_names[cls], "probability": float(probs[cls]),
                           "png": data_uri(png_bytes(rgb)), "min": vmin, "max": vmax, "signed": chosen.signed,
                           "unseen_pixels": unseen, "deletion": deletion, "verdict": deletion["verdict"]})


__all__ = ["explain_method", "explain_panel", "geometry_json", "grid_panel", "info_panel", "kernel_panel",
           "layers_panel", "map_panel", "pattern_png", "pool_panel", "readout_panel", "top_panel", "units_panel"]
