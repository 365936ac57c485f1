"""What the viewer computes, without HTTP: a loaded run, its test images, grids, predictions and map cards."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from torch import nn

from cnnscope.base.errors import CnnscopeError, RequestError, SpecError, WarmUpStopped
from cnnscope.base.threads import BACKGROUND
from cnnscope.data.dataset import Dataset
from cnnscope.data.picture_input import picture_target
from cnnscope.model.layers import CONV, DENSE
from cnnscope.model.spec import LayerInfo
from cnnscope.runs.load import Run, load_run, predict_proba
from cnnscope.views import panel_data, panels

log = logging.getLogger("cnnscope")

MAX_COLS = 64
TOP_BATCH = 64
INFLUENCE_IMAGES = 1000  # test images averaged for the class read-out of the last conv layer


class Viewer:
    """A run and its data, loaded once; every method is safe to call from several threads."""

    def __init__(self, run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                 datasets: MutableMapping[tuple, Dataset] | None = None) -> None:
        self.run = load_run(run_path)
        self.model = self.run.model.eval()
        self.dataset = shared_dataset(self.run, data_dir, datasets)
        self.class_names = list(self.dataset.class_names)
        self.layers = self.run.spec.layers()
        self.grid_layers = [layer for layer in self.layers if layer.has_maps]
        self.geometry = {layer.name: layer.geometry for layer in self.grid_layers}
        conv = self.run.spec.layer_names(CONV)
        names = [layer.name for layer in self.grid_layers]
        # The class read-out makes sense from the last conv layer on (through max-pool and the dense head).
        self.readout_layers = names[names.index(conv[-1]):] if conv else []
        self.style = picture_target(self.run)  # how uploaded pictures are prepared (channels, size, style)
        self._model_lock = threading.Lock()  # forward hooks are per module: one computation at a time
        self._pattern_lock = threading.Lock()  # patterns run on a copy of the model: grids never wait for them
        self._pattern_model: nn.Module | None = None
        self._stop = threading.Event()  # set by stop_warm_up: background work ends at its next batch
        self._warm_thread: threading.Thread | None = None
        self._cache_lock = threading.Lock()
        self._top_lock = threading.Lock()
        self._top: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._influence: dict[str, np.ndarray] = {}
        self._patterns: dict[tuple[str, int, str], bytes] = {}
        self._bounds: dict[str, np.ndarray] | None = None

    # --- description ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The run's description (cnnscope.views.panels.info_panel)."""
        return panels.info_panel(self.run, self.dataset, self.style.noun).data

    def layer_list(self) -> list[dict[str, Any]]:
        """Every layer with its shape, receptive field and geometry (cnnscope.views.panels.layers_panel)."""
        return panels.layers_panel(self.run.spec).data["layers"]

    def grid_layer(self, name: str) -> LayerInfo:
        """The conv/pool layer called `name`; RequestError saying which layers have maps otherwise."""
        try:
            layer = self.run.spec.layer(name)
        except SpecError as exc:
            raise RequestError(str(exc)) from None
        if not layer.has_maps:
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
        """(raw uint8 (H, W) or (H, W, 3), label) of image `index` of a set; RequestError for a bad index."""
        raw, labels = self._split(split)
        if not 0 <= index < len(raw):
            raise RequestError(f"index {index} is out of range: the {split} set holds {len(raw):,} images "
                               f"(0 to {len(raw) - 1})")
        return raw[index], int(labels[index])

    def random_index(self, split: str = "test", label: int | None = None, rng: Any = None) -> int:
        """A random image index in `split`, of class `label` when given; RequestError when there is none."""
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

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        """The shape of one raw image: (H, W) for a one-channel model, (H, W, C) for a colour one."""
        return self.style.shape

    def check_raw(self, raw: np.ndarray) -> np.ndarray:
        """The raw image as an array when it has the model's input size and channels; RequestError otherwise."""
        shape = self.pixel_shape
        raw = np.asarray(raw)
        if raw.shape != shape:
            colour = f" with {shape[2]} channels" if len(shape) == 3 else ""
            raise RequestError(f"expected an image of {shape[0]}×{shape[1]} pixels{colour}, received shape "
                               f"{raw.shape}")
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
        self.grid_layer(layer)
        x = self.run.preprocessor(self.check_raw(raw)[None])
        with self._model_lock:
            return panel_data.layer_maps(self.model, layer, x)

    def grid(self, layer: str, raw: np.ndarray, cols: int = 8, scale: bool = False,
             cmap: str = "magma") -> tuple[bytes, dict[str, Any]]:
        """The activation grid as PNG bytes, plus its geometry and value range."""
        return panels.grid_panel(layer, self.maps(layer, raw), cols, scale, cmap)

    def grid_json(self, layer: str, raw: np.ndarray, cols: int = 8, scale: bool = False,
                  cmap: str = "magma") -> dict[str, Any]:
        """Activation values as JSON: every map, its statistics, and the grid PNG as a data URI."""
        return panels.grid_panel(layer, self.maps(layer, raw), cols, scale, cmap, values=True)[1]

    def units(self, layer: str, raw: np.ndarray) -> dict[str, Any]:
        """A dense layer's units for one raw image; for the output layer its logits and the class probabilities
        (cnnscope.views.panels.units_panel). RequestError for a layer that is not dense."""
        try:
            info = self.run.spec.layer(layer)
        except SpecError as exc:
            raise RequestError(str(exc)) from None
        if info.kind != DENSE:
            valid = ", ".join(self.run.spec.layer_names(DENSE))
            raise RequestError(f"layer {layer!r} is a {info.type} layer; units are shown for the dense layers: "
                               f"{valid}")
        x = self.run.preprocessor(self.check_raw(raw)[None])
        with self._model_lock:
            values, probs = panel_data.dense_outputs(self.model, layer, x)
        return panels.units_panel(self.run, layer, values, probs, self.class_names).data

    # --- map cards --------------------------------------------------------------------------
    def card(self, layer: str, index: int, raw: np.ndarray, cmap: str = "magma") -> dict[str, Any]:
        """Everything about map `index` of `layer` for one image: enlarged map, kernels, receptive field,
        top test images, whether the map is dead (0 on every test image), class read-out, and where to fetch its
        maximising pattern."""
        info = self.grid_layer(layer)
        n = info.output_shape[0]
        if not 0 <= index < n:
            raise RequestError(f"map {index} is out of range: {layer} has {n} maps (0 to {n - 1})")
        fmap = self.maps(layer, raw)[index]
        kernel = panels.kernel_panel(self.run, layer, index)
        pool = panels.pool_panel(self.run.spec, layer)
        top = panels.top_panel(self._top_table()[layer], index, info.output_shape[2], self.dataset.test_y,
                               self.dataset.test_raw, self.class_names)
        return {**panels.map_panel(info, index, fmap, cmap).data,
                "kernel": kernel.data if kernel else None, "pool": pool.data if pool else None,
                "top": top.data["top"], "dead": top.data["dead"], "test_images": top.data["searched"],
                "readout": self._readout(layer, index),
                "pattern_url": f"/api/pattern?{urlencode({'layer': layer, 'map': index})}"}

    def explain(self, raw: np.ndarray, method: str | None = None) -> dict[str, Any]:
        """Why the model predicts its class for one raw image: `method`'s heat map (default: the viewer's default
        method) and its deletion test (cnnscope.views.panels.explain_panel); RequestError listing the methods for
        a wrong name."""
        method = panels.explain_method(method)
        raw = self.check_raw(raw)
        with self._model_lock:
            return panels.explain_panel(self.run, raw, method, self.class_names).data

    def _top_table(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per grid layer: each test image's spatial maximum of every map, where it is, and its largest |value|
        (computed once, by cnnscope.views.panel_data.peak_table)."""
        with self._top_lock:
            if self._top is None:
                names = [layer.name for layer in self.grid_layers]
                self._top = panel_data.peak_table(self.model, names, self.dataset.test_x, TOP_BATCH, self._drain)
            return self._top

    def _drain(self, batches) -> list:
        """Every part a batch generator yields, computing each under the model lock with a pause after it: a page
        request waiting for the lock gets it within one batch (~10-30 ms) even while this runs in the background."""
        parts = []
        while True:
            self._check_stop()
            with BACKGROUND, self._model_lock:  # one batch of one viewer at a time in the process
                part = next(batches, None)
            if part is None:
                return parts
            parts.append(part)
            time.sleep(0.002)

    def _readout(self, layer: str, index: int) -> dict[str, Any] | None:
        """For the last conv layer (and pools after it): d logit_c / d (spatial mean of the map), averaged
        over test images — how much each class's score rises when the whole map rises by one unit."""
        if layer not in self.readout_layers:
            return None
        with self._cache_lock:
            if layer not in self._influence:
                self._influence[layer] = self._compute_influence(layer)
        images = min(INFLUENCE_IMAGES, len(self.dataset.test_x))
        return panels.readout_panel(self._influence[layer], index, self.class_names, images).data

    def _compute_influence(self, layer: str) -> np.ndarray:
        """(classes, maps): cnnscope.views.panel_data's class read-out, in small batches under the model lock."""
        x = self.dataset.test_x[:INFLUENCE_IMAGES]
        return panel_data.class_readout_table(self.model, layer, x, TOP_BATCH, self._drain)

    def warm_up(self) -> None:
        """Fill the caches a map card needs (top images, class read-out); run in a background thread."""
        _warming.on = True
        try:
            self._top_table()
            for layer in self.readout_layers:
                with self._cache_lock:
                    if layer not in self._influence:
                        self._influence[layer] = self._compute_influence(layer)
        except WarmUpStopped:
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
            raise WarmUpStopped

    # --- maximising patterns ------------------------------------------------------------------
    def pattern(self, layer: str, index: int, cmap: str = "gray") -> bytes:
        """PNG of the input (in pixels, 0..255) that maximises the spatial mean of map `index`: gradient ascent
        by cnnscope.views.panel_data.map_pattern inside the training data's pixel range; computed once, cached."""
        info = self.grid_layer(layer)
        if not 0 <= index < info.output_shape[0]:
            raise RequestError(f"map {index} is out of range: {layer} has {info.output_shape[0]} maps "
                               f"(0 to {info.output_shape[0] - 1})")
        cached = self.cached_pattern(layer, index, cmap)
        if cached is not None:
            return cached
        with self._pattern_lock:
            return self._compute_pattern(layer, index, cmap)

    def cached_pattern(self, layer: str, index: int, cmap: str = "gray") -> bytes | None:
        """The pattern's PNG when it was computed already, else None (no lock, no computation: a dict look-up)."""
        return self._patterns.get((layer, index, cmap))

    def _compute_pattern(self, layer: str, index: int, cmap: str) -> bytes:
        """Gradient ascent on a private copy of the model (under _pattern_lock), cached by (layer, map, cmap)."""
        key = (layer, index, cmap)
        if key in self._patterns:  # computed by a request that held the lock before this one
            return self._patterns[key]
        if self._pattern_model is None:
            with self._model_lock:
                self._pattern_model = copy.deepcopy(self.model)
        if self._bounds is None:  # keep the patterns inside the pixel range the training images span
            self._bounds = panel_data.pattern_bounds(self.dataset.train_x)
        png = panel_data.map_pattern(self._pattern_model, layer, index, self._bounds, self.run.preprocessor, cmap)
        self._patterns[key] = png  # one dict assignment (atomic); _pattern_lock orders the writers
        return png


_warming = threading.local()  # .on is True in the warm-up thread: only it stops when asked


def shared_dataset(run: Run, data_dir: str | os.PathLike | None,
                   cache: MutableMapping[tuple, Dataset] | None) -> Dataset:
    """The run's data set; with `cache` (the dashboard's weak dictionary) one copy for every viewer of the same
    data, preprocessing and folder, freed with the last of them. Viewers only read it."""
    if cache is None:
        return run.dataset(data_dir)
    key = (run.data_config, json.dumps(run.preprocessor.to_dict(), sort_keys=True), str(data_dir),
           os.environ.get("CNNSCOPE_DATA_DIR"))
    found = cache.get(key)
    if found is None:
        found = run.dataset(data_dir)
        cache[key] = found
    return found


def load_viewer(run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Viewer:
    """Load a run (and its data) into a Viewer for the web viewer."""
    path = Path(run_path)
    log.info("loading %s for the viewer", path)
    return Viewer(path, data_dir)


__all__ = ["RequestError", "Viewer", "load_viewer"]
