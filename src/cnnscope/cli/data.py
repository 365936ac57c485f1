"""`cnnscope data NAME`: what a dataset holds and what preprocessing does to it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .core import add_data_dir, add_figure_flags, print_figures, print_json


def register(sub: argparse._SubParsersAction) -> None:
    from ..data import DATASETS, PREPROCESS_HELP, DataConfig

    p = sub.add_parser("data", help="sizes, classes, value range and what preprocessing does to a dataset",
                       description="A dataset's sizes, classes and counts, channels and value range, and a figure "
                                   "of its per-pixel mean and deviation, what a white pixel becomes after "
                                   "preprocessing, and a few pictures per class before and after.")
    p.add_argument("name", metavar="NAME", help=f"dataset: {', '.join(DATASETS)}")
    p.add_argument("--preprocess", metavar="KIND", default=DataConfig().preprocess,
                   help="; ".join(f"{k}: {v}" for k, v in PREPROCESS_HELP.items())
                   + f" (default {DataConfig().preprocess})")
    add_figure_flags(p)
    for action in p._actions:
        if action.dest == "out":
            action.help = "figure file: .png, .svg or .pdf (default NAME-KIND-preprocessing.png here)"
    add_data_dir(p)
    p.set_defaults(handler=cmd_data)


def summarize(dataset) -> dict[str, Any]:
    """Sizes, classes and counts, channels, raw and preprocessed value ranges, far-out test images."""
    import numpy as np

    from ..inspect.datastats import outside_training_range, pixel_stats

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


def _print_summary(info: dict[str, Any]) -> None:
    h, w = info["image_size"]
    print(f"{info['dataset']}: {h}×{w} pixels, {info['channels']} channel, {len(info['classes'])} classes; "
          f"preprocess {info['preprocess']}")
    for name, split in info["splits"].items():
        counts = ", ".join(f"{c} {n}" for c, n in split["counts"].items())
        lo, hi = split["preprocessed_range"]
        print(f"  {name}: {split['images']} images ({counts}); raw {split['raw_range'][0]}..{split['raw_range'][1]}, "
              f"preprocessed {lo:.3g}..{hi:.3g}")
    px, far = info["pixels"], info["test_far"]
    print(f"  per-pixel deviation (training, 0..255): {px['std_min']:.3g}..{px['std_max']:.3g} "
          f"(median {px['std_median']:.3g}); {px['never_inked_pixels']} pixels never inked in training")
    print(f"  test images with a preprocessed value beyond ±{far['limit']:g} or that far outside their pixels' "
          f"training range: {far['images']} (largest value {far['max_value']:.3g})")


def cmd_data(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..plots.data import preprocessing_section_figure
    from ..plots.figures import save_figure_as

    dataset = load_dataset(args.name, data_dir=args.data_dir, preprocess=args.preprocess)
    info = summarize(dataset)
    fig = preprocessing_section_figure(dataset.preprocessor, dataset.train_raw, dataset.test_raw, dataset.test_y,
                                       dataset.class_names,
                                       title=f"{dataset.name}: preprocessing {dataset.preprocessor.kind}")
    out = args.out or f"{dataset.name}-{dataset.preprocessor.kind}-preprocessing.png"
    paths = save_figure_as(fig, Path(out), svg=args.svg)
    info["figures"] = [str(p) for p in paths]
    if args.json:
        print_json(info)
    else:
        _print_summary(info)
        print_figures(paths)
    return 0
