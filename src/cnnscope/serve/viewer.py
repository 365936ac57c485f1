"""What the viewer computes, without HTTP: a loaded run, its test images, grids, predictions and map cards."""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import torch
from torch import nn

from ..errors import CnnscopeError, RequestError, SpecError
from ..inspect.images import NOUNS, picture_style
from ..model import ConvBlock
from ..runs import load_run, predict_proba
from ..spec import LayerInfo
from . import render

log = logging.getLogger("cnnscope")

MAX_COLS = 64
TOP_IMAGES = 8
TOP_BATCH = 64
INFLUENCE_IMAGES = 1000  # test images averaged for the class read-out of the last conv layer
GRID_TYPES = ("Conv2D", "MaxPooling2D", "AveragePooling2D")


@dataclass(frozen=True)
class Geometry:
    """Where output position (i, j) of a layer looks on the input: rows offset+i*jump .. +size (per axis)."""

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]

    def to_dict(self) -> dict[str, list[int]]:
        return {"size": list(self.size), "jump": list(self.jump), "offset": list(self.offset)}


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def layer_geometry(model: nn.Module) -> dict[str, Geometry]:
    """Receptive field size, jump and top-left offset (padding makes it negative) of every conv/pool layer."""
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    out: dict[str, Geometry] = {}
    for name, module in model.layers.items():
        if isinstance(module, ConvBlock):
            kernel, stride = _pair(module.conv.kernel_size), _pair(module.conv.stride)
            pad = module.pad.padding if isinstance(module.pad, nn.ZeroPad2d) else (0, 0, 0, 0)
            before = (pad[2], pad[0])  # (top, left)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride, before = _pair(module.kernel_size), _pair(module.stride), (0, 0)
        else:
            break
        for axis in (0, 1):
            offset[axis] -= before[axis] * jump[axis]
            size[axis] += (kernel[axis] - 1) * jump[axis]
            jump[axis] *= stride[axis]
        out[name] = Geometry(tuple(size), tuple(jump), tuple(offset))
    return out


class Viewer:
    """A run and its data, loaded once; every method is safe to call from several threads."""

    def __init__(self, run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> None:
        self.run = load_run(run_path)
        self.model = self.run.model.eval()
        self.dataset = self.run.dataset(data_dir)
        self.class_names = list(self.dataset.class_names)
        self.layers = self.run.spec.layers()
        self.grid_layers = [layer for layer in self.layers if layer.type in GRID_TYPES]
        self.geometry = layer_geometry(self.model)
        conv = [layer.name for layer in self.grid_layers if layer.type == "Conv2D"]
        names = [layer.name for layer in self.grid_layers]
        # The class read-out makes sense from the last conv layer on (through max-pool and the dense head).
        self.readout_layers = names[names.index(conv[-1]):] if conv else []
        self.style = picture_style(self.dataset.name)  # how uploaded pictures are prepared
        self._model_lock = threading.Lock()  # forward hooks are per module: one computation at a time
        self._pattern_lock = threading.Lock()  # patterns run on a copy of the model: grids never wait for them
        self._pattern_model: nn.Module | None = None
        self._stop = threading.Event()  # set by stop_warm_up: background work ends at its next batch
        self._warm_thread: threading.Thread | None = None
        self._cache_lock = threading.Lock()
        self._top_lock = threading.Lock()
        self._top: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._influence: dict[str, np.ndarray] = {}
        self._patterns: dict[tuple[str, int, str], bytes] = {}
        self._bounds: dict[str, np.ndarray] | None = None

    # --- description ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        sets = {"test": len(self.dataset.test_y), "train": len(self.dataset.train_y)}
        if self.dataset.val_x is not None:
            sets["val"] = len(self.dataset.val_y)
        metrics = self.run.metrics
        return {"run": self.run.path.name, "dataset": self.dataset.name, "class_names": self.class_names,
                "sets": sets, "test_accuracy": metrics.get("test_accuracy"),
                "epochs": metrics.get("epochs_completed"), "params": self.run.spec.total_params,
                "input_shape": list(self.run.spec.input_shape), "colormaps": list(render.COLORMAPS),
                "grid_layers": [layer.name for layer in self.grid_layers], "noun": NOUNS[self.style],
                "pattern_available": self._maximizer() is not None}

    def layer_list(self) -> list[dict[str, Any]]:
        out = []
        for layer in self.layers:
            geometry = self.geometry.get(layer.name)
            out.append({"name": layer.name, "type": layer.type, "output_shape": list(layer.output_shape),
                        "params": layer.params, "receptive_field": layer.receptive_field,
                        "grid": layer.type in GRID_TYPES,
                        "maps": layer.output_shape[0] if layer.type in GRID_TYPES else None,
                        "geometry": geometry.to_dict() if geometry else None})
        return out

    def grid_layer(self, name: str) -> LayerInfo:
        """The conv/pool layer called `name`; RequestError saying which layers have maps otherwise."""
        try:
            layer = self.run.spec.layer(name)
        except SpecError as exc:
            raise RequestError(str(exc)) from None
        if layer.type not in GRID_TYPES:
            valid = ", ".join(layer.name for layer in self.grid_layers)
            raise RequestError(f"layer {name!r} is a {layer.type} layer with output {layer.output_shape}; "
                               f"activation maps exist for the conv and pooling layers: {valid}")
        return layer

    # --- images -----------------------------------------------------------------------------
    def _split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            _, labels, raw = self.dataset.split(name)
        except CnnscopeError as exc:
            raise RequestError(str(exc)) from None
        return raw, labels

    def image(self, index: int, split: str = "test") -> tuple[np.ndarray, int]:
        """(raw uint8 (H, W), label) of image `index` of a set; RequestError for a bad index."""
        raw, labels = self._split(split)
        if not 0 <= index < len(raw):
            raise RequestError(f"index {index} is out of range: the {split} set holds {len(raw):,} images "
                               f"(0 to {len(raw) - 1})")
        return raw[index], int(labels[index])

    def random_index(self, split: str = "test", label: int | None = None, rng: Any = None) -> int:
        raw, labels = self._split(split)
        rng = rng or np.random.default_rng()
        if label is None:
            return int(rng.integers(len(raw)))
        if not 0 <= label < len(self.class_names):
            raise RequestError(f"class {label} is out of range: valid classes are 0 to {len(self.class_names) - 1}")
        choices = np.flatnonzero(labels == label)
        if not len(choices):
            raise RequestError(f"the {split} set holds no image of class {label}")
        return int(rng.choice(choices))

    def check_raw(self, raw: np.ndarray) -> np.ndarray:
        shape = tuple(self.run.spec.input_shape[1:])
        raw = np.asarray(raw)
        if raw.shape != shape:
            raise RequestError(f"expected an image of {shape[0]}×{shape[1]} pixels, received shape {raw.shape}")
        return raw

    # --- computations -----------------------------------------------------------------------
    def predict(self, raw: np.ndarray) -> dict[str, Any]:
        """Class probabilities for one raw image (H, W) 0..255."""
        x = self.run.preprocessor(self.check_raw(raw)[None])
        with self._model_lock:
            probs = predict_proba(self.model, x)[0]
        best = int(np.argmax(probs))
        return {"probabilities": [round(float(p), 6) for p in probs], "predicted": best,
                "predicted_name": self.class_names[best], "class_names": self.class_names}

    def maps(self, layer: str, raw: np.ndarray) -> np.ndarray:
        """Activation maps (maps, h, w) of a conv/pool layer for one raw image."""
        from ..inspect import activations

        self.grid_layer(layer)
        x = self.run.preprocessor(self.check_raw(raw)[None])
        with self._model_lock:
            return activations(self.model, layer, x)[0]

    def grid(self, layer: str, raw: np.ndarray, cols: int = 8, scale: bool = False,
             cmap: str = "magma") -> tuple[bytes, dict[str, Any]]:
        """The activation grid as PNG bytes, plus its geometry and value range."""
        return self._render_grid(layer, self.maps(layer, raw), cols, scale, cmap)

    @staticmethod
    def _render_grid(layer: str, maps: np.ndarray, cols: int, scale: bool, cmap: str) -> tuple[bytes, dict]:
        n, h, w = maps.shape
        cols = max(1, min(cols, n))
        values = render.activation_grid(maps, cols, scale)
        rgb, vmin, vmax = render.colorize(values, cmap, 0.0 if scale else None, 255.0 if scale else None)
        meta = {"layer": layer, "maps": n, "height": h, "width": w, "cols": cols, "rows": math.ceil(n / cols),
                "scale": scale, "cmap": cmap, "min": vmin, "max": vmax,
                "value_min": float(maps.min()), "value_max": float(maps.max())}
        return render.png_bytes(rgb), meta

    def grid_json(self, layer: str, raw: np.ndarray, cols: int = 8, scale: bool = False,
                  cmap: str = "magma") -> dict[str, Any]:
        """Activation values as JSON: every map, its statistics, and the grid PNG as a data URI."""
        maps = self.maps(layer, raw)
        png, meta = self._render_grid(layer, maps, cols, scale, cmap)
        meta.update({"shape": list(maps.shape), "png": render.data_uri(png),
                     "mean": [round(float(v), 5) for v in maps.mean(axis=(1, 2))],
                     "activations": _rounded(maps, 5)})
        return meta

    # --- map cards --------------------------------------------------------------------------
    def card(self, layer: str, index: int, raw: np.ndarray, cmap: str = "magma") -> dict[str, Any]:
        """Everything about map `index` of `layer` for one image: enlarged map, kernels, receptive field,
        top test images, class read-out, and where to fetch its maximising pattern."""
        info = self.grid_layer(layer)
        n = info.output_shape[0]
        if not 0 <= index < n:
            raise RequestError(f"map {index} is out of range: {layer} has {n} maps (0 to {n - 1})")
        maps = self.maps(layer, raw)
        fmap = maps[index]
        rgb, vmin, vmax = render.colorize(fmap, cmap)
        peak = np.unravel_index(int(np.argmax(fmap)), fmap.shape)
        card: dict[str, Any] = {
            "layer": layer, "type": info.type, "map": index, "maps": n, "shape": list(fmap.shape),
            "png": render.data_uri(render.png_bytes(rgb)), "min": vmin, "max": vmax,
            "mean": float(fmap.mean()), "peak": [int(peak[0]), int(peak[1])],
            "values": _rounded(fmap, 4),
            "receptive_field": self.geometry[layer].to_dict(),
            "kernel": self._kernel(layer, index), "pool": self._pool(layer),
            "top": self._top_images(layer, index),
            "readout": self._readout(layer, index),
            "pattern_url": (f"/api/pattern?{urlencode({'layer': layer, 'map': index})}"
                            if self._maximizer() is not None else None),
        }
        return card

    def _previous_grid_layer(self, layer: str) -> str:
        names = [lay.name for lay in self.grid_layers]
        position = names.index(layer)
        return names[position - 1] if position else "input"

    def _kernel(self, layer: str, index: int) -> dict[str, Any] | None:
        module = self.model.layer(layer)
        if not isinstance(module, ConvBlock):
            return None
        weights = module.conv.weight[index].detach().cpu().numpy()  # (in_channels, kh, kw)
        channels = weights.shape[0]
        cols = min(8, channels)
        values = render.activation_grid(weights, cols, False)
        rgb, vmin, vmax = render.colorize(values, "RdBu_r", symmetric=True)
        return {"input": self._previous_grid_layer(layer), "channels": channels, "cols": cols,
                "rows": math.ceil(channels / cols), "height": weights.shape[1], "width": weights.shape[2],
                "png": render.data_uri(render.png_bytes(rgb)), "min": vmin, "max": vmax,
                "bias": float(module.conv.bias[index].detach()), "values": _rounded(weights, 5)}

    def _pool(self, layer: str) -> dict[str, Any] | None:
        module = self.model.layer(layer)
        if not isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            return None
        return {"kind": "max" if isinstance(module, nn.MaxPool2d) else "average",
                "size": list(_pair(module.kernel_size)), "stride": list(_pair(module.stride)),
                "input": self._previous_grid_layer(layer)}

    def _top_table(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per grid layer: each test image's spatial maximum of every map and where it is (computed once)."""
        from ..inspect.activations import capture

        with self._top_lock:
            if self._top is not None:
                return self._top
            names = [layer.name for layer in self.grid_layers]
            peaks: dict[str, list[np.ndarray]] = {name: [] for name in names}
            where: dict[str, list[np.ndarray]] = {name: [] for name in names}
            x = self.dataset.test_x
            # Small batches, the model lock taken per batch and a pause after each: a page request waiting for
            # the lock gets it within one batch (~10-30 ms) even while this runs in the background.
            for start in range(0, len(x), TOP_BATCH):
                self._check_stop()
                batch = torch.as_tensor(x[start:start + TOP_BATCH]).contiguous(memory_format=torch.channels_last)
                with self._model_lock, torch.no_grad():
                    outputs, _ = capture(self.model, names, batch)
                    for name in names:
                        values, positions = outputs[name].flatten(2).max(dim=2)  # (n, maps)
                        peaks[name].append(values.numpy())
                        where[name].append(positions.numpy().astype(np.int32))
                time.sleep(0.002)
            self._top = {name: (np.concatenate(peaks[name]), np.concatenate(where[name])) for name in names}
            return self._top

    def _top_images(self, layer: str, index: int) -> list[dict[str, Any]]:
        values, positions = self._top_table()[layer]
        order = np.argsort(-values[:, index], kind="stable")[:TOP_IMAGES]
        width = self.run.spec.layer(layer).output_shape[2]
        out = []
        for i in order:
            label = int(self.dataset.test_y[i])
            pos = int(positions[i, index])
            out.append({"index": int(i), "label": label, "class_name": self.class_names[label],
                        "value": round(float(values[i, index]), 5), "position": [pos // width, pos % width],
                        "png": render.data_uri(render.grey_png(self.dataset.test_raw[i]))})
        return out

    def _readout(self, layer: str, index: int) -> dict[str, Any] | None:
        """For the last conv layer (and pools after it): d logit_c / d (spatial mean of the map), averaged
        over test images — how much each class's score rises when the whole map rises by one unit."""
        if layer not in self.readout_layers:
            return None
        with self._cache_lock:
            if layer not in self._influence:
                self._influence[layer] = self._compute_influence(layer)
        values = self._influence[layer][:, index]
        return {"class_names": self.class_names, "values": [round(float(v), 5) for v in values],
                "images": min(INFLUENCE_IMAGES, len(self.dataset.test_x)),
                "method": "gradient of each class logit w.r.t. the map's spatial mean, averaged over test images"}

    def _compute_influence(self, layer: str) -> np.ndarray:
        """(classes, maps): mean over images of sum_ij d logit_c / d A[m, i, j] (in small locked batches)."""
        from ..inspect.activations import capture

        names = list(self.model.layers.keys())
        rest = [self.model.layers[name] for name in names[names.index(layer) + 1:]]
        x = torch.as_tensor(self.dataset.test_x[:INFLUENCE_IMAGES])
        total: torch.Tensor | None = None
        for start in range(0, len(x), TOP_BATCH):
            self._check_stop()
            with self._model_lock:
                with torch.no_grad():
                    outputs, _ = capture(self.model, [layer], x[start:start + TOP_BATCH])
                features = outputs[layer].detach().requires_grad_(True)  # (n, maps, h, w)
                logits = features
                for module in rest:
                    logits = module(logits)
                rows = []
                for c in range(logits.shape[1]):
                    (grad,) = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=True)
                    rows.append(grad.sum(dim=(2, 3)).sum(dim=0))  # (maps,)
                part = torch.stack(rows)  # (classes, maps)
            total = part if total is None else total + part
            time.sleep(0.002)
        return (total / len(x)).numpy()

    def warm_up(self) -> None:
        """Fill the caches a map card needs (top images, class read-out); run in a background thread."""
        _warming.on = True
        try:
            self._top_table()
            for layer in self.readout_layers:
                with self._cache_lock:
                    if layer not in self._influence:
                        self._influence[layer] = self._compute_influence(layer)
        except _Stopped:
            log.debug("viewer warm-up stopped")
        except Exception:  # never let a background thread die noisily; the card computes lazily again
            log.exception("viewer warm-up failed")

    def start_warm_up(self) -> threading.Thread:
        """Run `warm_up` in a background thread (stopped by `stop_warm_up`)."""
        self._stop.clear()
        thread = threading.Thread(target=self.warm_up, name="cnnscope-viewer-warm-up", daemon=True)
        thread.start()
        self._warm_thread = thread
        return thread

    def stop_warm_up(self, timeout: float = 10.0) -> None:
        """Ask the warm-up thread to stop after its current batch and wait for it (clean interpreter exit)."""
        self._stop.set()
        thread, self._warm_thread = self._warm_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _check_stop(self) -> None:
        if self._stop.is_set() and getattr(_warming, "on", False):
            raise _Stopped

    # --- maximising patterns ------------------------------------------------------------------
    @staticmethod
    def _maximizer() -> Any:
        try:
            from ..inspect.patterns import maximize_activation
        except ImportError:  # an installation without the patterns module
            return None
        return maximize_activation

    def pattern(self, layer: str, index: int, cmap: str = "gray") -> bytes:
        """PNG of the input (in pixels, 0..255) that maximises the spatial mean of map `index`: gradient ascent
        by cnnscope.inspect.maximize_activation inside the training data's pixel range; computed once, cached."""
        info = self.grid_layer(layer)
        if not 0 <= index < info.output_shape[0]:
            raise RequestError(f"map {index} is out of range: {layer} has {info.output_shape[0]} maps "
                               f"(0 to {info.output_shape[0] - 1})")
        maximize = self._maximizer()
        if maximize is None:
            raise RequestError("maximising patterns need cnnscope.inspect.maximize_activation, which this "
                               "installation lacks", status=404)
        cached = self.cached_pattern(layer, index, cmap)
        if cached is not None:
            return cached
        with self._pattern_lock:
            return self._compute_pattern(layer, index, cmap, maximize)

    def cached_pattern(self, layer: str, index: int, cmap: str = "gray") -> bytes | None:
        """The pattern's PNG when it was computed already, else None (no lock, no computation: a dict look-up)."""
        return self._patterns.get((layer, index, cmap))

    def _compute_pattern(self, layer: str, index: int, cmap: str, maximize: Any) -> bytes:
        """Gradient ascent on a private copy of the model (under _pattern_lock), cached by (layer, map, cmap)."""
        key = (layer, index, cmap)
        if key in self._patterns:  # computed by a request that held the lock before this one
            return self._patterns[key]
        if self._pattern_model is None:
            with self._model_lock:
                self._pattern_model = copy.deepcopy(self.model)
        if self._bounds is None:
            try:
                from ..inspect.patterns import input_bounds
            except ImportError:
                self._bounds = {}
            else:  # keep the patterns inside the pixel range the training images span
                lo, hi = input_bounds(self.dataset.train_x)
                self._bounds = {"lo": lo, "hi": hi}
        pattern = np.asarray(maximize(self._pattern_model, layer, [index], **self._bounds), dtype=np.float32)
        pattern = pattern.reshape(-1, *pattern.shape[-2:])[0]  # (H, W), preprocessed units
        prep = self.run.preprocessor
        pixels = pattern * prep.scale + prep.mean  # back to 0..255 pixels, as an input image would hold them
        rgb, _, _ = render.colorize(pixels, cmap, 0.0, 255.0)
        png = render.png_bytes(rgb)
        self._patterns[key] = png  # one dict assignment (atomic); _pattern_lock orders the writers
        return png


_warming = threading.local()  # .on is True in the warm-up thread: only it stops when asked


class _Stopped(Exception):
    """Raised inside the warm-up thread when the server stops."""


def _rounded(values: np.ndarray, decimals: int) -> list:
    """Nested lists of floats rounded in float64 (float32 -> JSON would print 0.11191000044345856)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def load_viewer(run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Viewer:
    path = Path(run_path)
    log.info("loading %s for the viewer", path)
    return Viewer(path, data_dir)


__all__ = ["Geometry", "RequestError", "Viewer", "layer_geometry", "load_viewer"]
