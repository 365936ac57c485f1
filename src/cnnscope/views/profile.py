"""Views of classification by activation patterns: a layer's class profile, the images that excite a map most,
and the misclassified images beside the confusion matrix."""

from __future__ import annotations

import numpy as np

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.classify import TRAIN_IMAGES, Readout, classifiable, classify_by_patterns, sample_indices
from cnnscope.inspect.profile import check_map, class_profile_dead, misclassified
from cnnscope.inspect.profile import top_images as find_top_images
from cnnscope.plots.profile import (
    check_profile_options,
    classify_figure,
    errors_figure,
    profile_figure,
    top_images_figure,
)
from cnnscope.views.common import PathLike, ViewResult, check_positive, load, save, split_images


def preferred_classes(profile: np.ndarray) -> list[int | None]:
    """Per map (column of a (classes, maps) profile) the class with the largest mean, None for a map that never
    fires (no positive mean)."""
    with np.errstate(invalid="ignore"):
        return [int(np.argmax(col)) if np.nanmax(col) > 0 else None for col in profile.T]


def profile(run_dir: PathLike, layer: str, *, split: str = "test", limit: int | None = None, norm: str = "map",
            order: str = "index", out: PathLike | None = None, svg: bool = False,
            data_dir: PathLike | None = None) -> ViewResult:
    """Class profile of a layer (mean activation of each map per class) over the run's test (or train) images;
    saved to `out` or RUN_DIR/profile-LAYER.png. data: layer, set, images, class_names, maps, profile,
    preferred_class, silent_maps (no positive class mean), dead_maps (0 at every position of every image)."""
    check_profile_options(norm, order)
    run = load(run_dir)
    run.model.layer(layer)  # a wrong name fails before the data is loaded
    dataset, x, y, _ = split_images(run, split, limit, data_dir)
    found, dead = class_profile_dead(run.model, layer, x, y)
    fig = profile_figure(found, dataset.class_names, layer=layer, norm=norm, order=order, images=len(x), dead=dead)
    paths = save(fig, out, run.path / f"profile-{layer}.png", svg)
    preferred = preferred_classes(found)
    data = {"layer": layer, "set": split, "images": int(len(x)), "class_names": list(dataset.class_names),
            "maps": int(found.shape[1]), "profile": np.round(found.astype(np.float64), 6).tolist(),
            "preferred_class": preferred, "silent_maps": [i for i, p in enumerate(preferred) if p is None],
            "dead_maps": dead}
    return ViewResult(paths, data)


def classify(run_dir: PathLike, layer: str, *, limit: int | None = None, train_limit: int | None = TRAIN_IMAGES,
             out: PathLike | None = None, svg: bool = False, data_dir: PathLike | None = None) -> ViewResult:
    """Series part VI: the test accuracy of the nearest class-mean pattern (cosine, Euclidean) and of a linear
    read-out for the input pixels and every conv and pool layer, beside the whole model and chance, with the
    confusion of the nearest-mean classifier on `layer`; class means and read-out from a seeded random sample of
    `train_limit` training images (None: all), accuracies on the first `limit` test images (None: all). Saved to
    `out` or RUN_DIR/classify-LAYER.png. data: cnnscope.inspect.PatternClassification.to_dict, layer,
    class_names."""
    run = load(run_dir)
    layers = classifiable(run.model)
    if layer not in layers:
        run.model.layer(layer)  # SpecError listing every layer for a wrong name
        raise ConfigError(f"--classify needs a layer with maps; valid: {', '.join(layers[1:])}")
    if train_limit is not None:
        check_positive(train_limit, "training-image limit")
    dataset, x, y, _ = split_images(run, "test", limit, data_dir)
    pick = sample_indices(len(dataset.train_x), train_limit)
    found = classify_by_patterns(run.model, dataset.train_x[pick], dataset.train_y[pick], x, y, layers,
                                 readout=Readout())
    fig = classify_figure(found, dataset.class_names, layer=layer)
    paths = save(fig, out, run.path / f"classify-{layer}.png", svg)
    return ViewResult(paths, {"layer": layer, "class_names": list(dataset.class_names), **found.to_dict()})


def top_images(run_dir: PathLike, layer: str, map_index: int, *, k: int = 16, split: str = "test",
               limit: int | None = None, out: PathLike | None = None, svg: bool = False,
               data_dir: PathLike | None = None) -> ViewResult:
    """The k images of the run's test (or train) set that excite one map most, with the input patch its
    strongest node sees; saved to `out` or RUN_DIR/top-images-LAYER-mapK.png. data: layer, map,
    receptive_field, images (index, value, row, col, box, class), set, searched."""
    run = load(run_dir)
    check_map(run.model, layer, map_index)  # wrong layer or map number fails before the data is loaded
    dataset, x, y, raw = split_images(run, split, limit, data_dir)
    top = find_top_images(run.model, layer, map_index, x, k)
    fig = top_images_figure(raw[top.indices], top, labels=y[top.indices], class_names=dataset.class_names,
                            searched=len(x))
    paths = save(fig, out, run.path / f"top-images-{layer}-map{map_index}.png", svg)
    data = top.to_dict()
    for item, label in zip(data["images"], y[top.indices], strict=True):
        item["class"] = dataset.class_names[int(label)]
    return ViewResult(paths, {**data, "set": split, "searched": int(len(x))})


def errors(run_dir: PathLike, *, max_images: int = 36, split: str = "test", limit: int | None = None,
           out: PathLike | None = None, svg: bool = False, data_dir: PathLike | None = None) -> ViewResult:
    """The confusion matrix and the most confident mistakes of the run on its test (or train) set; saved to
    `out` or RUN_DIR/errors.png. data: set, the mistakes (cnnscope.inspect.Misclassified.to_dict), class_names,
    shown."""
    check_positive(max_images, "max images")
    run = load(run_dir)
    dataset, x, y, raw = split_images(run, split, limit, data_dir)
    found = misclassified(run.model, x, y)
    shown = found.indices[:max_images]
    fig = errors_figure(raw[shown], found, dataset.class_names, max_images=max_images)
    paths = save(fig, out, run.path / "errors.png", svg)
    names = list(dataset.class_names)
    return ViewResult(paths, {"set": split, **found.to_dict(names), "class_names": names, "shown": int(len(shown))})
