"""Deletion test of every attribution method on a trained run's real test images (issue 3, section 4).

    .venv/bin/python benchmarks/bench_deletion.py RUN --data-dir ../shared/data [--images 100] [--json]

For the first N test images: the mean probability of the predicted class intact, after blanking (to black)
the 20 % of pixels each method ranks highest, and after blanking a random 20 %. A method passes when its
top-ranked pixels matter more than random ones: the mean after-top probability is below the after-random one.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import cnnscope
from cnnscope import inspect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run = cnnscope.load_run(args.run)
    x = run.dataset(args.data_dir).test_x[:args.images]
    blank = run.preprocessor(np.zeros((1, *x.shape[2:])))[0, 0]  # a black pixel, preprocessed
    rows = []
    for name in inspect.METHODS:
        start = time.perf_counter()
        heat = inspect.get_method(name)(run.model, x)
        seconds = time.perf_counter() - start
        result = inspect.deletion_score(run.model, x, heat, args.fraction, blank=blank)
        rows.append({"method": name, "probability": float(result.probability.mean()),
                     "after_top": float(result.after_top.mean()), "after_random": float(result.after_random.mean()),
                     "images_top_below_random": float((result.after_top < result.after_random).mean()),
                     "passes": bool(result.after_top.mean() < result.after_random.mean()), "heatmap_seconds": seconds})
    if args.json:
        print(json.dumps({"run": args.run, "images": len(x), "fraction": args.fraction, "methods": rows}, indent=2))
        return
    print(f"{args.run}: {len(x)} test images, blanking {args.fraction:.0%} of the pixels")
    print(f"{'method':22s} {'intact':>7s} {'top':>7s} {'random':>7s} {'top<random':>11s} {'heat maps':>10s}")
    for r in rows:
        print(f"{r['method']:22s} {r['probability']:7.4f} {r['after_top']:7.4f} {r['after_random']:7.4f} "
              f"{r['images_top_below_random']:10.0%} {r['heatmap_seconds']:9.2f}s  {'ok' if r['passes'] else 'FAIL'}")


if __name__ == "__main__":
    main()
