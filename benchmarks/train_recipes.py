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

RECIPES = {
    # The series (article IV): RMSprop lr 0.001 momentum 0.5, Keras InverseTimeDecay ("power") with rate 0.001
    # per step, batch 64, L2 0.001 on the dense layers (part of the seed-iv preset), 80 epochs, per-pixel
    # standardisation, validation on the test set.
    "series": dict(epochs=80, batch_size=64, optimizer="rmsprop", lr=0.001, momentum=0.5, schedule="power",
                   schedule_args={"rate": 0.001, "decay_steps": 1}),
    # Ours: same model and preprocessing; Adam with a one-cycle schedule, larger batches, and random shifts of up
    # to 2 pixels so a few epochs generalise as well as many.
    "fast": dict(epochs=8, batch_size=128, optimizer="adam", lr=0.003, schedule="one-cycle", augment_shift=2,
                 label_smoothing=0.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = dict(RECIPES[args.recipe], seed=args.seed)
    if args.epochs:
        settings["epochs"] = args.epochs
    config = cnnscope.TrainConfig(**settings)
    out = args.out or Path("benchmarks/out") / f"{args.recipe}-seed{args.seed}"
    dataset = cnnscope.load_dataset("mnist", seed=args.seed)
    print(f"recipe {args.recipe}: {config}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'epoch':>5} {'images/s':>9} {'seconds':>8} {'test acc':>9}")

    def report(log: cnnscope.EpochLog) -> None:
        print(f"{log.epoch:5d} {log.images_per_second:9.0f} {log.seconds:8.1f} {log.val_accuracy:9.4f}", flush=True)

    start = time.perf_counter()
    run = cnnscope.train(cnnscope.presets["seed-iv"], dataset, config, out=out, overwrite=True,
                         callbacks=[report], progress=False, plot=True)
    wall = time.perf_counter() - start
    m = run.metrics
    summary = {"recipe": args.recipe, "epochs": m["epochs_completed"], "test_accuracy": m["test_accuracy"],
               "best_epoch_accuracy": m["best_val_accuracy"], "train_seconds": m["train_seconds"],
               "wall_seconds": wall, "mean_images_per_second": m["images_per_second"], "run": str(out)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
