"""Train seed-iv with the series' recipe or our fast recipe on real MNIST; print images/s and accuracy per epoch.

Usage (from the repository root):
    CNNSCOPE_DATA_DIR=../shared/data python benchmarks/train_recipes.py series        # 80 epochs, as the series
    CNNSCOPE_DATA_DIR=../shared/data python benchmarks/train_recipes.py fast          # our recipe (>= 99.4 %)
    ... --epochs N --out DIR to change the length or the run directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

import cnnscope
from cnnscope.trainer.config import build_run_config

# The recipes are the TOML files users train with (configs/): what we measure is what the README tells them to run.
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {"series": CONFIGS / "seed-iv-series.toml", "fast": CONFIGS / "seed-iv-fast.toml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {"seed": args.seed, **({"epochs": args.epochs} if args.epochs else {})}
    run_config = build_run_config(RECIPES[args.recipe], train=overrides, data={"seed": args.seed})
    config = run_config.train
    out = args.out or Path("benchmarks/out") / f"{args.recipe}-seed{args.seed}"
    dataset = cnnscope.load_dataset(config=run_config.data)
    print(f"recipe {args.recipe}: {config}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'epoch':>5} {'images/s':>9} {'seconds':>8} {'test acc':>9}")

    def report(log: cnnscope.EpochLog) -> None:
        print(f"{log.epoch:5d} {log.images_per_second:9.0f} {log.seconds:8.1f} {log.val_accuracy:9.4f}", flush=True)

    start = time.perf_counter()
    run = cnnscope.train(run_config.model, dataset, config, out=out, overwrite=True,
                         callbacks=[report], progress=False, plot=True)
    wall = time.perf_counter() - start
    m = run.metrics
    summary = {"recipe": args.recipe, "epochs": m["epochs_completed"], "test_accuracy": m["test_accuracy"],
               "best_epoch_accuracy": m["best_val_accuracy"], "train_seconds": m["train_seconds"],
               "wall_seconds": wall, "mean_images_per_second": m["images_per_second"], "run": str(out)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
