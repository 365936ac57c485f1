"""`cnnscope data NAME`: what a dataset holds and what preprocessing does to it.

Imports inside the command functions: `cnnscope --help` and a mistyped flag must not load torch."""

from __future__ import annotations

import argparse
from typing import Any

from cnnscope.cli.train import (
    add_data_dir,
    add_figure_flags,
    add_folder_flags,
    folder_overrides,
    print_figures,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    from cnnscope.data.dataset import PREPROCESS_HELP, DataConfig
    from cnnscope.data.sources import DATASETS

    p = sub.add_parser("data", help="sizes, classes, value range and what preprocessing does to a dataset",
                       description="A dataset's sizes, classes and counts, channels and value range, and a figure "
                                   "of its per-pixel mean and deviation, what a white pixel becomes after "
                                   "preprocessing, and a few pictures per class before and after.")
    p.add_argument("name", metavar="NAME", help=f"dataset: {', '.join(DATASETS)}, npz:FILE or folder:PATH")
    p.add_argument("--preprocess", metavar="KIND", default=DataConfig().preprocess,
                   help="; ".join(f"{k}: {v}" for k, v in PREPROCESS_HELP.items())
                   + f" (default {DataConfig().preprocess})")
    add_figure_flags(p)
    for action in p._actions:
        if action.dest == "out":
            action.help = "figure file: .png, .svg or .pdf (default NAME-KIND-preprocessing.png here)"
    add_data_dir(p)
    add_folder_flags(p.add_argument_group("folder:PATH options"))
    p.set_defaults(handler=cmd_data)


def _print_summary(info: dict[str, Any]) -> None:
    from cnnscope.cli import one_line  # class names and notes come from files: control characters are printed escaped

    def say(text: str) -> None:
        print(one_line(text))

    h, w = info["image_size"]
    channels = "1 channel (grey)" if info["channels"] == 1 else f"{info['channels']} channels (colour)"
    say(f"{info['dataset']}: {h}×{w} pixels, {channels}, {len(info['classes'])} classes; "
        f"preprocess {info['preprocess']}")
    for note in info.get("notes", []):
        say(f"  note: {note}")
    for name, split in info["splits"].items():
        counts = ", ".join(f"{c} {n}" for c, n in split["counts"].items())
        lo, hi = split["preprocessed_range"]
        per = "".join(f", {c} {a}..{b}" for c, (a, b) in zip("RGB", split.get("channel_ranges", []), strict=False))
        say(f"  {name}: {split['images']} images ({counts}); raw {split['raw_range'][0]}..{split['raw_range'][1]}"
            f"{per}, preprocessed {lo:.3g}..{hi:.3g}")
    px, far = info["pixels"], info["test_far"]
    say(f"  per-pixel deviation (training, 0..255): {px['std_min']:.3g}..{px['std_max']:.3g} "
        f"(median {px['std_median']:.3g}); {px['never_inked_pixels']} pixels never inked in training")
    say(f"  test images with a preprocessed value beyond ±{far['limit']:g} or that far outside their pixels' "
        f"training range: {far['images']} (largest value {far['max_value']:.3g})")


def cmd_data(args: argparse.Namespace) -> int:
    from cnnscope.views.data import data

    result = data(args.name, preprocess=args.preprocess, data_dir=args.data_dir, out=args.out, svg=args.svg,
                  **folder_overrides(args))
    if args.json:
        print_json(result.to_json())
    else:
        _print_summary(result.data)
        print_figures(result.paths)
    return 0
