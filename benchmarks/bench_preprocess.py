"""Preprocessing options on real MNIST: test accuracy, where Conv2D_1's top images land, how large inputs get.

For each run given: test accuracy (metrics.json); "edge": the share of the top-16 peak positions of every Conv2D_1
map whose receptive-field centre lies at most 3 px from the outermost row or column (row/col 0..3 or 24..27);
"inner": the same for at most 2 px (within 3 px of the image's border line); the largest top-image peak; the
largest preprocessed test and training input; how many test images exceed 50; how many are flagged far outside
the training range (inspect.datastats.outside_training_range).

Usage (from the repository root; train one fast-recipe run per option first, one after another):
    for k in standard-floor global unit; do
        CNNSCOPE_DATA_DIR=../shared/data cnnscope train --config configs/seed-iv-fast.toml --preprocess $k \\
            --out runs/pre-$k --no-report; done
    CNNSCOPE_DATA_DIR=../shared/data python benchmarks/bench_preprocess.py runs/seed-iv runs/pre-*
Short screening runs of every option: add --epochs 2 --limit-train 15000 and --out runs/screen-$k.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnscope.inspect.datastats import outside_training_range, pixel_stats, top_edge_share
from cnnscope.runs.load import load_run


def measure(run_dir: Path, layer: str, k: int, margin: int) -> dict:
    """One row of the table for the run in `run_dir`."""
    run = load_run(run_dir)
    data = run.dataset()
    test_x, _, test_raw = data.split("test")
    edges = top_edge_share(run.model, layer, test_x, k=k, margin=margin)
    inner = top_edge_share(run.model, layer, test_x, k=k, margin=margin - 1)  # centre < margin px from the edge line
    far = outside_training_range(run.preprocessor, test_raw, pixel_stats(data.train_raw))
    train_max = float(np.abs(data.train_x).max())
    return {"run": str(run_dir), "preprocess": run.preprocessor.kind,
            "test_accuracy": run.metrics.get("test_accuracy"), "edge_share": edges["edge_share"],
            "edge_share_inner": inner["edge_share"],
            "max_peak": edges["max_peak"], "max_test_input": float(far.max_value.max()),
            "max_train_input": train_max, "test_images_over_50": int((far.max_value > 50).sum()),
            "test_images_far": int(far.far.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--layer", default="Conv2D_1")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--margin", type=int, default=3)
    args = parser.parse_args()
    print(f"{'preprocess':<15} {'test acc':>8} {'edge':>6} {'inner':>6} {'max peak':>8} {'max test in':>11} "
          f"{'max train in':>12} {'>50':>5} {'far':>5}  run")
    for run_dir in args.runs:
        r = measure(run_dir, args.layer, args.k, args.margin)
        print(f"{r['preprocess']:<15} {r['test_accuracy']:8.4f} {r['edge_share']:6.1%} {r['edge_share_inner']:6.1%} "
              f"{r['max_peak']:8.1f} {r['max_test_input']:11.1f} {r['max_train_input']:12.1f} "
              f"{r['test_images_over_50']:5d} {r['test_images_far']:5d}  {r['run']}", flush=True)


if __name__ == "__main__":
    main()
