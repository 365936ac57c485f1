"""What every view shares: the one result type, run loading, image and data selection, figure files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnscope.base.display import RichDisplay
from cnnscope.base.errors import ConfigError
from cnnscope.base.progress import say
from cnnscope.data.picture_input import select_image
from cnnscope.data.sources import class_names_of
from cnnscope.inspect.datastats import range_warnings
from cnnscope.plots.figures import save_figure_as, slug
from cnnscope.runs.load import load_run

PathLike = str | os.PathLike


@dataclass(repr=False)
class ViewResult(RichDisplay):
    """What a view did: the figure files it wrote, what it found (JSON-ready) and notes for the reader
    (e.g. how a user's picture was converted). A notebook shows its figures and notes; repr() is one line."""

    paths: list[Path]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        figures = ", ".join(p.name for p in self.paths) or "no figure"
        notes = f", {len(self.notes)} note{'s' * (len(self.notes) != 1)}" if self.notes else ""
        keys = [str(k) for k in self.data]
        data = ", ".join(keys[:6]) + (f", … ({len(keys)} keys)" if len(keys) > 6 else "") if keys else "none"
        return f"ViewResult({figures}{notes}; data: {data})"

    @property
    def figures(self) -> list[str]:
        """The figure files as strings."""
        return [str(p) for p in self.paths]

    def to_json(self) -> dict[str, Any]:
        """`data` with the figure files under "figures": what a command's --json prints."""
        return {**self.data, "figures": self.figures}


def load(run_dir: PathLike):
    """The run in `run_dir` (cnnscope.runs.load.load_run: RunError saying what is missing or wrong)."""
    say("loading the run %s", run_dir)
    return load_run(run_dir)


def class_names(run) -> list[str]:
    """The class names of the data set the run was trained on."""
    return list(class_names_of(run.data_config))


def pick_image(run, index: int | None, split: str, image: PathLike | None, data_dir: PathLike | None):
    """The image a view looks at: image `index` of the run's `split` set, or a user's picture file `image`
    (cnnscope.data.picture_input.InputImage, with its raw pixels, label, source and conversion notes)."""
    say("loading %s", f"the picture {image}" if image is not None else f"{split} image {index}")
    picked = select_image(run, index, split, image, data_dir)
    if image is not None:
        picked.notes[:0] = stranger_warnings(run.preprocessor, picked.raw)
    return picked


def stranger_warnings(preprocessor, raw: np.ndarray) -> list[str]:
    """Warnings for a picture from outside the data set (a file, an upload, a drawing): when its pixels lie
    where the model has never seen inputs (cnnscope.inspect.datastats.range_warnings)."""
    return range_warnings(preprocessor, raw)


def image_slug(picked, image: PathLike | None) -> str:
    """The image's part of a default figure name: the picture's file stem, or e.g. 'test-image-3'."""
    return slug(Path(picked.source).stem if image else picked.source)


def check_positive(value: Any, what: str) -> None:
    """ConfigError unless `value` is an int >= 1 (bool refused), naming `what` and the value received."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, received {value!r}")


def split_images(run, split: str, limit: int | None,
                 data_dir: PathLike | None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """(dataset, preprocessed x, labels y, raw images) of the run's `split` set, the first `limit` images
    when given; DataError listing the valid sets, ConfigError for a bad limit."""
    say("loading the %s images", split)
    dataset = run.dataset(data_dir)
    x, y, raw = dataset.split(split)  # DataError listing the valid sets
    if limit is not None:
        check_positive(limit, "limit")
        x, y, raw = x[:limit], y[:limit], raw[:limit]
    return dataset, x, y, raw


def probabilities(model, x: np.ndarray) -> np.ndarray:
    """The model's class probabilities for preprocessed images x (N, C, H, W), without gradients: (N, classes)."""
    with torch.no_grad():
        device = next(model.parameters()).device
        return model.probabilities(model(torch.from_numpy(x).to(device))).cpu().numpy()


def save(fig, out: PathLike | None, default: Path, svg: bool) -> list[Path]:
    """Write `fig` to `out`, or to `default` (a file inside the run directory) when out is not given, and
    return the paths written (an SVG beside a PNG with svg=True)."""
    return save_figure_as(fig, out if out else default, svg)

