"""Views of a dataset and its preprocessing: what `cnnscope data` shows and the report's preprocessing section
draw, from the statistics of cnnscope.inspect.datastats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..inspect.datastats import outside_training_range, pixel_stats
from ..plots.data import preprocessing_section_figure
from .common import PathLike, ViewResult, save


def summarize(dataset) -> dict[str, Any]:
    """Sizes, classes and counts, channels, raw and preprocessed value ranges, far-out test images."""
    stats = pixel_stats(dataset.train_raw)
    far = outside_training_range(dataset.preprocessor, dataset.test_raw, stats)
    splits = {}
    for name in ("train", "test"):
        x, y, raw = dataset.split(name)
        counts = np.bincount(y, minlength=len(dataset.class_names))
        splits[name] = {"images": int(len(y)), "counts": dict(zip(dataset.class_names, counts.tolist(), strict=True)),
                        "raw_range": [int(raw.min()), int(raw.max())],
                        "preprocessed_range": [float(x.min()), float(x.max())]}
    return {"dataset": dataset.name, "preprocess": dataset.preprocessor.kind,
            "image_size": list(dataset.train_raw.shape[1:]), "channels": 1, "classes": list(dataset.class_names),
            "splits": splits, "pixels": stats.to_dict(),
            "test_far": {"limit": far.limit, "images": int(far.far.sum()),
                         "max_value": float(far.max_value.max()),
                         "outside_training_range": int((far.excess > 0).sum())}}


def preprocessing_figure(dataset, title: str | None = None):
    """The preprocessing figure of a loaded dataset: per-pixel mean and deviation, what a white pixel becomes,
    one test picture per class before and after."""
    return preprocessing_section_figure(dataset.preprocessor, dataset.train_raw, dataset.test_raw, dataset.test_y,
                                        dataset.class_names, title=title)


def data(name: str, *, preprocess: str | None = None, data_dir: PathLike | None = None,
         out: PathLike | None = None, svg: bool = False) -> ViewResult:
    """`cnnscope data NAME`: the dataset's summary (data) and its preprocessing figure, written to `out` or to
    NAME-KIND-preprocessing.png in the current directory."""
    from ..data import load_dataset

    kwargs = {} if preprocess is None else {"preprocess": preprocess}
    dataset = load_dataset(name, data_dir=data_dir, **kwargs)
    info = summarize(dataset)
    fig = preprocessing_figure(dataset, title=f"{dataset.name}: preprocessing {dataset.preprocessor.kind}")
    default = Path(f"{dataset.name}-{dataset.preprocessor.kind}-preprocessing.png")
    return ViewResult(save(fig, out, default, svg), info)
