"""Deletion test of every attribution method on a trained run's real test images (issue 9 item 7, issue 13 item 2).

    CNNSCOPE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_deletion.py RUN [--images 500] [--json]

For the first N test images, per method of the registry (`cnnscope.inspect.METHODS`, each with its defaults, a
black image as baseline where the method takes one): the mean probability of the predicted class intact, after
blanking (to black) the 20 % of pixels the method ranks highest, and after blanking a random 20 % (mean of
--draws draws); and the share of images on which the top-ranked pixels hurt more than random ones.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import cnnscope
from cnnscope import inspect


def measure(run, x: np.ndarray, name: str, fraction: float, draws: int, batch: int) -> dict:
    """One method over all images, in batches: mean probabilities, share beating random, heat-map seconds."""
    blank = run.preprocessor(np.zeros((1, *x.shape[2:]), np.uint8))[0]  # a black image, preprocessed
    seconds, parts = 0.0, []
    for i in range(0, len(x), batch):
        start = time.perf_counter()
        heat = inspect.attribute(run.model, x[i:i + batch], name, baseline=blank)
        seconds += time.perf_counter() - start
        parts.append(inspect.deletion_score(run.model, x[i:i + batch], heat, fraction, blank=blank,
                                            random_draws=draws, seed=i))
    probability, top, random = (np.concatenate([getattr(p, f) for p in parts])
                                for f in ("probability", "after_top", "after_random"))
    return {"method": name, "probability": float(probability.mean()), "after_top": float(top.mean()),
            "after_random": float(random.mean()), "images_top_below_random": float((top < random).mean()),
            "passes": bool(top.mean() < random.mean()), "heatmap_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--draws", type=int, default=4, help="random blankings per image (default 4)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--methods", help="comma-separated subset of the registry (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run = cnnscope.load_run(args.run)
    x = run.dataset(args.data_dir).test_x[:args.images]
    names = args.methods.split(",") if args.methods else list(inspect.METHODS)
    rows = [measure(run, x, name, args.fraction, args.draws, args.batch) for name in names]
    if args.json:
        print(json.dumps({"run": args.run, "images": len(x), "fraction": args.fraction, "draws": args.draws,
                          "default": inspect.DEFAULT_METHOD, "methods": rows}, indent=2))
        return
    print(f"{args.run}: {len(x)} test images, blanking {args.fraction:.0%} of the pixels "
          f"(random: mean of {args.draws} draws); default method: {inspect.DEFAULT_METHOD}")
    print(f"{'method':22s} {'intact':>7s} {'top':>7s} {'random':>7s} {'top<random':>11s} {'heat maps':>10s}")
    for r in rows:
        print(f"{r['method']:22s} {r['probability']:7.4f} {r['after_top']:7.4f} {r['after_random']:7.4f} "
              f"{r['images_top_below_random']:10.1%} {r['heatmap_seconds']:9.2f}s  {'ok' if r['passes'] else 'FAIL'}")


if __name__ == "__main__":
    main()
