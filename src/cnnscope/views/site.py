"""The static site's facts: what the viewer's page needs that is computed in Python once, at export time.

`site_data` writes, inside a site folder, the JSON and pictures the in-page back end reads (the model itself and
the runtime are written by cnnscope.serve.site): the run's description and layers as the HTTP viewer's panels
give them, how pictures are prepared and preprocessed, the colour tables, a PNG atlas of test images, the run's
facts (summary, curves, accuracy, confusion matrix) as JSON and pictures, and every map's card
(cnnscope.views.site_cards). File names inside the folder never come from the run (layers are numbered), so a
layer called '../x' cannot write outside it.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.imaging import COLORMAPS, colormap, colormap_strip, png_bytes
from cnnscope.base.progress import say
from cnnscope.data.picture_input import MAX_MEAN, STYLES, picture_target
from cnnscope.inspect.attribution import occlusion
from cnnscope.inspect.methods import METHODS
from cnnscope.inspect.profile import misclassified
from cnnscope.model.layers import DENSE
from cnnscope.model.summary import summary_dict, summary_table
from cnnscope.plots.figures import save_figure
from cnnscope.plots.training import confusion_figure, curves_figure
from cnnscope.views import panels
from cnnscope.views.common import ViewResult
from cnnscope.views.site_cards import write, write_cards

ATLAS_IMAGES = 300  # test images shipped for picking (the first ones of the test set)
ATLAS_COLS = 20
SITE_METHOD = "occlusion"  # gradient-free: the page computes it with the model alone


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None (JSON has no such numbers; a browser refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_document(data: Any) -> bytes:
    """Compact UTF-8 JSON for the page (non-finite numbers as null)."""
    return json.dumps(finite(data), separators=(",", ":"), allow_nan=False).encode("utf-8")


def occlusion_settings() -> dict[str, Any]:
    """The occlusion method's window and stride, read from cnnscope.inspect.attribution.occlusion's defaults
    (the page computes the same heat map as the CLI), with its registry entry's title."""
    params = pyinspect.signature(occlusion).parameters
    return {"name": SITE_METHOD, "title": METHODS[SITE_METHOD].title, "signed": METHODS[SITE_METHOD].signed,
            "window": params["window"].default, "stride": params["stride"].default}


def picture_settings(run) -> dict[str, Any]:
    """How the page prepares a drawing or an upload: cnnscope.data.picture_input's target and style numbers."""
    target = picture_target(run)
    box, centring = STYLES[target.style]
    return {"style": target.style, "channels": target.channels, "height": target.height, "width": target.width,
            "box": box, "centring": centring, "max_mean": MAX_MEAN[target.style], "noun": target.noun}


def unit_texts(run, class_names: list[str]) -> dict[str, dict[str, Any]]:
    """Per dense layer, what cnnscope.views.panels.units_panel says besides the values (type, stage, output)."""
    out = {}
    for name in run.spec.layer_names(DENSE):
        units = run.spec.layer(name).output_shape[0]
        data = panels.units_panel(run, name, np.zeros(units), np.zeros(len(class_names)), class_names).data
        out[name] = {k: v for k, v in data.items() if k not in ("values", "min", "max", "probabilities")}
    return out


def info_data(run, dataset, atlas: dict[str, Any]) -> dict[str, Any]:
    """The HTTP viewer's /api/info answer for the site: the test 'set' is the atlas, one attribution method
    (occlusion, in the page), plus what the page needs to feed the model (preprocessing, picture preparation,
    the graph's output names)."""
    target = picture_target(run)
    info = panels.info_panel(run, dataset, target.noun).data
    method = occlusion_settings()
    blank = run.preprocessor(np.zeros((1, *target.shape), np.uint8))[0]  # a black image, preprocessed
    return {**info, "sets": {"test": atlas["count"]}, "test_images": len(dataset.test_y),
            "methods": [{"name": method["name"], "title": method["title"]}], "occlusion": method,
            "preprocess": run.preprocessor.to_dict(), "picture": picture_settings(run),
            "blank": np.asarray(blank, np.float32).ravel().tolist(), "atlas": atlas,
            "layer_names": run.model.layer_names, "units": unit_texts(run, list(dataset.class_names)),
            "output_layer": run.spec.output_layer_name}


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """Raw pictures (n, H, W) or (n, H, W, 3) side by side, `cols` per row, no gaps (empty cells black)."""
    n, h, w = images.shape[:3]
    rows = max(1, math.ceil(n / cols))
    cells = np.zeros((rows * cols, *images.shape[1:]), np.uint8)
    cells[:n] = images
    cells = cells.reshape(rows, cols, h, w, *images.shape[3:]).swapaxes(1, 2)
    return cells.reshape(rows * h, cols * w, *images.shape[3:])


def write_atlas(folder: Path, dataset, count: int) -> tuple[dict[str, Any], list[Path]]:
    """The first `count` test images as one PNG, and where each one is in it."""
    raw = np.asarray(dataset.test_raw[:count], np.uint8)
    n = len(raw)
    cols = min(ATLAS_COLS, max(1, n))
    path = write(folder, "img/atlas.png", png_bytes(tile(raw, cols)))
    labels = [int(v) for v in np.asarray(dataset.test_y[:n])]
    atlas = {"file": "img/atlas.png", "count": n, "cols": cols, "height": int(raw.shape[1]),
             "width": int(raw.shape[2]), "indices": list(range(n)), "labels": labels}
    return atlas, [path]


def write_colormaps(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """Each offered colour map's 256-entry table (what cnnscope.base.imaging.colorize looks up) and its colour
    bar as a PNG strip."""
    tables, paths = {}, []
    for name in COLORMAPS:
        tables[name] = colormap(name)(np.arange(256), bytes=True)[:, :3].ravel().tolist()
        paths.append(write(folder, f"img/colormaps/{name}.png", colormap_strip(name)))
    return {"tables": tables, "strips": {name: f"img/colormaps/{name}.png" for name in COLORMAPS}}, paths


def write_facts(folder: Path, run, dataset) -> tuple[dict[str, Any], list[Path]]:
    """The run's facts: summary, metrics, curves, test accuracy per class and the confusion matrix, as JSON, and
    the curves and the confusion matrix as pictures."""
    say("testing the model on %s test images", f"{len(dataset.test_y):,}")
    found = misclassified(run.model, dataset.test_x, dataset.test_y)
    names = list(dataset.class_names)
    confusion = np.asarray(found.confusion)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    paths = []
    pictures = {}
    if run.history.get("epoch"):
        paths.append(save_figure(curves_figure(run.history), folder / "img/curves.png", dpi=90))
        pictures["curves"] = "img/curves.png"
    paths.append(save_figure(confusion_figure(confusion.tolist(), names), folder / "img/confusion.png", dpi=90))
    pictures["confusion"] = "img/confusion.png"
    facts = {"summary": summary_dict(run.spec), "summary_text": summary_table(run.spec), "metrics": run.metrics,
             "history": run.history, "class_names": names, "pictures": pictures,
             "test": {"images": int(found.total), "accuracy": float(found.accuracy),
                      "mistakes": int(len(found.indices)), "per_class": [float(v) for v in per_class],
                      "confusion": confusion.tolist()}}
    return facts, paths


def site_data(run, dataset, folder: str | Path, images: int = ATLAS_IMAGES, patterns: dict | None = None) -> ViewResult:
    """Write the site's data and pictures into `folder` (data/*.json, img/…); returns the paths written and, in
    `data`, what was shipped (atlas images, layers with cards, maps). `patterns`: options of the maximising
    patterns' search (cnnscope.inspect.maximize_activation) other than its defaults."""
    folder = Path(folder)
    atlas, paths = write_atlas(folder, dataset, images)
    tables, more = write_colormaps(folder)
    paths += more
    facts, more = write_facts(folder, run, dataset)
    paths += more
    cards, more = write_cards(folder, run, dataset, patterns)
    paths += more
    info = info_data(run, dataset, atlas)
    documents = {"info": info, "layers": panels.layers_panel(run.spec).data, "colormaps": tables, "facts": facts,
                 "cards": cards}
    for name, document in documents.items():
        paths.append(write(folder, f"data/{name}.json", json_document(document)))
    maps = sum(len(layer["maps"]) for layer in cards["layers"])
    return ViewResult(paths, {"images": atlas["count"], "card_layers": len(cards["layers"]), "maps": maps,
                              "test_accuracy": facts["test"]["accuracy"]})


__all__ = ["ATLAS_IMAGES", "site_data"]
