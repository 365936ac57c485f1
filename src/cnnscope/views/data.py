"""Views of a dataset and its preprocessing: what `cnnscope data` shows and the report's preprocessing section
draw, from the statistics of cnnscope.inspect.datastats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnscope.base.progress import say
from cnnscope.data.dataset import DataConfig, load_dataset, raw_channels
from cnnscope.data.sources import checksum_note
from cnnscope.inspect.datastats import outside_training_range, pixel_stats
from cnnscope.plots.data import preprocessing_section_figure
from cnnscope.views.common import PathLike, ViewResult, save


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
    for name, split in splits.items():
        raw = dataset.split(name)[2]
        if raw.ndim == 4:  # colour: the range of each channel too
            split["channel_ranges"] = [[int(c.min()), int(c.max())] for c in np.moveaxis(raw, -1, 0)]
    return {"dataset": dataset.name, "source": dataset.config.dataset, "preprocess": dataset.preprocessor.kind,
            "image_size": list(dataset.train_raw.shape[1:3]), "channels": raw_channels(dataset.train_raw),
            "classes": list(dataset.class_names), "notes": list(dataset.notes),
            "splits": splits, "pixels": stats.to_dict(),
            "test_far": {"limit": far.limit, "images": int(far.far.sum()),
                         "max_value": float(far.max_value.max()),
                         "outside_training_range": int((far.excess > 0).sum())}}


def preprocessing_figure(dataset, title: str | None = None, per_class: int = 1):
    """The preprocessing figure of a loaded dataset: per-pixel mean and deviation, what a white pixel becomes,
    `per_class` test pictures per class (in colour when colour) before and after."""
    return preprocessing_section_figure(dataset.preprocessor, dataset.train_raw, dataset.test_raw, dataset.test_y,
                                        dataset.class_names, per_class=per_class, title=title)


def data(name: str, *, preprocess: str | None = None, data_dir: PathLike | None = None,
         out: PathLike | None = None, svg: bool = False, **folder: Any) -> ViewResult:
    """`cnnscope data NAME`: the summary (data) of a built-in dataset, npz:FILE or folder:PATH and its
    preprocessing figure, written to `out` or to NAME-KIND-preprocessing.png in the current directory.
    `folder` holds DataConfig's folder options (image_size, channels, skip_bad, test_size)."""
    config = DataConfig(name, **({} if preprocess is None else {"preprocess": preprocess}),
                        data_dir=None if data_dir is None else str(data_dir), **folder)
    say("loading %s", name)
    dataset = load_dataset(config=config)
    say("summarising %s training and %s test images", f"{len(dataset.train_y):,}", f"{len(dataset.test_y):,}")
    info = summarize(dataset)
    note = checksum_note(config.dataset, data_dir)  # other commands warn once per file version; this always says it
    info["notes"] = [note, *info["notes"]] if note else info["notes"]
    per_class = 3 if len(dataset.class_names) <= 10 else 1
    say("drawing the preprocessing figure")
    fig = preprocessing_figure(dataset, title=f"{dataset.name}: preprocessing {dataset.preprocessor.kind}",
                               per_class=per_class)
    default = Path(f"{dataset.name}-{dataset.preprocessor.kind}-preprocessing.png")
    return ViewResult(save(fig, out, default, svg), info)
