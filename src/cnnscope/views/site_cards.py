"""The static site's map cards: for every map of every conv and pool layer, what the HTTP viewer's card shows
that does not depend on the image looked at — the kernel (cnnscope.views.panels.kernel_panel), the pooling rule,
the top test images over the whole test set (panels.top_panel), whether the map is dead, the class read-out
(panels.readout_panel) and the maximising pattern (cnnscope.inspect.patterns, as the viewer computes it).

Pictures are files (the page's Content-Security-Policy allows no data: URIs): one PNG per kernel and per
pattern, and per layer one PNG of every map's top images (a row per map) that the page cuts tiles from.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.fileio import atomic_write_bytes
from cnnscope.base.imaging import png_bytes
from cnnscope.base.progress import bar, say
from cnnscope.inspect import patterns as search
from cnnscope.inspect.profile import class_readout, map_peaks
from cnnscope.model.layers import CONV
from cnnscope.views import panels

TOP_IMAGES = panels.TOP_IMAGES
READOUT_IMAGES = 1000  # test images averaged for the class read-out (as the HTTP viewer does)


def write(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` to folder/name (atomically, making the folders); returns the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def uri_bytes(uri: str) -> bytes:
    """The bytes of a base64 data: URI (what the panels return for the HTTP viewer's JSON)."""
    return base64.b64decode(uri.split(",", 1)[1])


def readout_layers(spec) -> list[str]:
    """The layers with a class read-out: the last conv layer and the map layers after it (as the viewer)."""
    names, convs = spec.map_layer_names(), spec.layer_names(CONV)
    return names[names.index(convs[-1]):] if convs else []


def kernel_card(folder: Path, run, layer: str, position: int, index: int) -> tuple[dict[str, Any] | None, list]:
    """kernel_panel's answer with its pictures as files (values left out: the card shows the picture)."""
    kernel = panels.kernel_panel(run, layer, index)
    if kernel is None:
        return None, []
    data = {k: v for k, v in kernel.data.items() if k not in ("values", "png", "rgb_png")}
    data["png"] = f"img/kernels/{position}-{index}.png"
    paths = [write(folder, data["png"], uri_bytes(kernel.data["png"]))]
    if kernel.data["rgb_png"]:
        data["rgb_png"] = f"img/kernels/{position}-{index}-rgb.png"
        paths.append(write(folder, data["rgb_png"], uri_bytes(kernel.data["rgb_png"])))
    return data, paths


def top_card(peaks, index: int, width: int, dataset, class_names: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """top_panel's answer without its pictures (the page cuts them from the layer's top-images PNG, row
    `index`), and the raw pictures of that row."""
    top = panels.top_panel(peaks, index, width, dataset.test_y, dataset.test_raw, class_names).data
    rows = [{k: v for k, v in item.items() if k != "png"} for item in top["top"]]
    pictures = np.asarray(dataset.test_raw[[item["index"] for item in rows]], np.uint8)
    return {"top": rows, "dead": top["dead"], "test_images": top["searched"]}, pictures


def tops_png(pictures: list[np.ndarray], shape: tuple[int, ...]) -> bytes:
    """One row per map of its top images (fewer than TOP_IMAGES: black cells)."""
    cells = np.zeros((len(pictures), TOP_IMAGES, *shape), np.uint8)
    for row, found in enumerate(pictures):
        cells[row, :len(found)] = found
    m, k, h, w = cells.shape[:4]
    return png_bytes(cells.swapaxes(1, 2).reshape(m * h, k * w, *shape[2:]))


def pattern_files(folder: Path, run, layer: str, position: int, maps: int, options: dict) -> list[Path]:
    """Every map's maximising pattern (cnnscope.inspect.maximize_activation inside the training data's pixel
    range, with its defaults unless `options` say otherwise; grey PNG as the viewer's /api/pattern gives it)."""
    found = np.asarray(search.maximize_activation(run.model, layer, list(range(maps)), **options), np.float32)
    return [write(folder, f"img/patterns/{position}-{m}.png", panels.pattern_png(found[m], run.preprocessor))
            for m in range(maps)]


def layer_cards(folder: Path, run, dataset, layer: str, position: int, peaks, patterns: dict,
                readout: np.ndarray | None) -> tuple[dict[str, Any], list[Path]]:
    """The cards of every map of one layer, and the files written for them."""
    info = run.spec.layer(layer)
    maps, names = info.output_shape[0], list(dataset.class_names)
    pool = panels.pool_panel(run.spec, layer)
    cards, pictures, paths = [], [], []
    for index in range(maps):
        kernel, written = kernel_card(folder, run, layer, position, index)
        top, found = top_card(peaks, index, info.output_shape[2], dataset, names)
        pictures.append(found)
        paths += written
        cards.append({"map": index, "kernel": kernel, **top, "pattern": f"img/patterns/{position}-{index}.png",
                      "readout": None if readout is None else
                      panels.readout_panel(readout, index, names, min(READOUT_IMAGES, len(dataset.test_x))).data})
    paths.append(write(folder, f"img/tops/{position}.png", tops_png(pictures, dataset.test_raw.shape[1:])))
    paths += pattern_files(folder, run, layer, position, maps, patterns)
    return {"layer": layer, "position": position, "pool": pool.data if pool else None,
            "tops": f"img/tops/{position}.png", "maps": cards}, paths


def write_cards(folder: Path, run, dataset, patterns: dict | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Every conv and pool layer's cards (cards.json's content) and the pictures written for them; `patterns`:
    options of cnnscope.inspect.maximize_activation (steps, restarts, …) other than its defaults."""
    names = run.spec.map_layer_names()
    say("finding the top test images of %d layers", len(names))
    peaks = map_peaks(run.model.eval(), names, dataset.test_x)
    lo, hi = search.input_bounds(dataset.train_x)
    options = {"lo": lo, "hi": hi, **(patterns or {})}
    readouts = {name: class_readout(run.model, name, dataset.test_x[:READOUT_IMAGES])
                for name in readout_layers(run.spec)}
    layers, paths = [], []
    all_names = run.spec.layer_names()
    for layer in bar(names, desc="map cards (kernels, top images, patterns)", unit="layer"):
        card, written = layer_cards(folder, run, dataset, layer, all_names.index(layer), peaks[layer], options,
                                    readouts.get(layer))
        layers.append(card)
        paths += written
    return {"top_images": TOP_IMAGES, "layers": layers}, paths


__all__ = ["write_cards"]
