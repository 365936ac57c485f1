"""Regenerate the README's pictures (docs/images/) from trained seed-iv runs, through the CLI users have.

    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python docs/make_images.py RUN [RUN_OTHER_SEED]

RUN is a trained seed-iv run (e.g. `cnnscope train --config configs/seed-iv-fast.toml --out runs/seed-iv`);
RUN_OTHER_SEED, the same recipe with another --seed, adds the `compare` picture. The viewer screenshot comes
from benchmarks/screenshot_viewer.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cnnscope.cli import main as cnnscope

IMAGES = Path(__file__).resolve().parent / "images"


def make(run: str, other: str | None = None) -> None:
    IMAGES.mkdir(exist_ok=True)
    jobs = [
        ("activations.png", ["activations", run, "--layer", "Conv2D_1", "--index", "0", "--scale"]),
        ("activations-conv2d3.png", ["activations", run, "--layer", "Conv2D_3", "--index", "0", "--norm", "layer"]),
        ("all-layers.png", ["activations", run, "--all-layers", "--index", "0"]),
        ("filters.png", ["filters", run, "--layer", "Conv2D_1"]),
        ("patterns-conv2d2.png", ["patterns", run, "--layer", "Conv2D_2", "--maps", "0:32"]),
        ("patterns-conv2d3.png", ["patterns", run, "--layer", "Conv2D_3", "--maps", "0:32"]),
        ("explain.png", ["explain", run, "--index", "0", "--method", "all"]),
        ("saliency.png", ["explain", run, "--index", "0"]),  # the default method, with its deletion curves
        ("profile.png", ["profile", run, "--layer", "Conv2D_3", "--order", "class"]),
        ("top-images.png", ["top-images", run, "--layer", "Conv2D_2", "--map", "5", "--k", "16"]),
        ("errors.png", ["errors", run, "--max", "24"]),
    ]
    if other:
        jobs.append(("compare.png", ["compare", run, other, "--layer", "Conv2D_1"]))
    for name, argv in jobs:
        start = time.perf_counter()
        code = cnnscope([*argv, "--out", str(IMAGES / name)])
        if code:
            raise SystemExit(f"{name}: cnnscope {' '.join(argv)} exited with {code}")
        sys.stderr.write(f"{name}: {time.perf_counter() - start:.1f} s\n")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    make(*sys.argv[1:])
