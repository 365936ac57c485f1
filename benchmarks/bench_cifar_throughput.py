"""Training throughput (images/s) of a recipe's model on synthetic data of its input shape: forward, loss,
backward and optimizer step, as the training loop does them, without any dataset on disk.

Usage (from the repository root):
    python benchmarks/bench_cifar_throughput.py                                   # configs/cifar10-fast.toml
    python benchmarks/bench_cifar_throughput.py --config configs/fashion-mnist-fast.toml --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from cnnscope.model.network import build_model
from cnnscope.trainer.config import build_run_config
from cnnscope.trainer.loop import compute_loss
from cnnscope.trainer.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cifar10-fast.toml")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = build_run_config(args.config)
    spec, train = config.model, config.train
    model = build_model(spec, seed=0).train()
    optimizer = make_optimizer(train.optimizer, model.parameters(), train.lr, train.momentum)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((train.batch_size, *spec.input_shape), generator=gen)
    y = torch.randint(0, spec.num_classes, (train.batch_size,), generator=gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_loss(model, model(x), y, train.label_smoothing).backward()
        optimizer.step()

    for _ in range(5):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    images = args.steps * train.batch_size
    print(json.dumps({"config": str(args.config.resolve().relative_to(ROOT)), "params": spec.total_params,
                      "input_shape": list(spec.input_shape), "batch_size": train.batch_size, "threads": args.threads,
                      "images_per_second": round(images / wall, 1), "cpu_seconds_per_1000_images":
                      round(1000 * cpu / images, 2), "load_average": os.getloadavg()[0], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
