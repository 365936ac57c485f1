"""Where a training step's time goes (torch.profiler), and how much of the machine's peak training reaches.

The series' recipe (seed-iv, RMSprop, batch 64, fp32 unless --precision bf16) through cnnscope.loop's own
Batches and train_step. Each aten operator's self time goes to a group: conv forward, conv backward, pooling,
dense (forward and backward), activations, loss, optimizer (every op under Optimizer.step/zero_grad), batch
assembly (every op while the batch is gathered), other ops; "Python and framework overhead" is the wall time
no operator accounts for. FLOPs per image come from the spec's geometry (spec.layers()); the peak is a
2048×2048 matmul's best FLOP/s in fp32 and bf16.

Usage (from the repository root):
    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python benchmarks/profile_step.py [--quick] [--steps 40]
        [--batch-size 64] [--precision bf16] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import cnnscope
from cnnscope.trainer.config import TrainConfig
from cnnscope.trainer.loop import Batches, Loop, train_step
from cnnscope.trainer.optim import make_optimizer

GROUPS = [("conv backward", r"convolution_backward"), ("conv forward", r"convolution|conv2d"),
          ("pooling", r"pool"), ("dense", r"addmm|aten::mm$|aten::linear|matmul"),
          ("activations", r"relu|threshold"), ("loss", r"log_softmax|nll_loss|cross_entropy")]


def training_flops(spec) -> tuple[float, float]:
    """(forward, training) FLOPs per image from the spec's layers: 2 per multiply-add; training adds the weight
    gradient (as the forward) and the input gradient (as the forward, except the first layer's)."""
    shape, forward, first = spec.input_shape, 0.0, None
    for info in spec.layers():
        if info.kind == "conv":
            kh, kw = info.kernel
            flops = 2.0 * math.prod(info.output_shape) * kh * kw * shape[0]
        elif info.kind == "dense":
            flops = 2.0 * math.prod(shape) * info.output_shape[0]
        else:
            flops = 0.0
        first = flops if first is None and flops else first
        forward += flops
        shape = info.output_shape
    return forward, 3 * forward - (first or 0.0)


def peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n×n matmul in `dtype` (n shrinks while one product takes over 2 s: bf16 without
    hardware support runs at ~0.2 GFLOP/s, where a 2048² product would take a minute)."""
    small = torch.randn(256, 256).to(dtype)
    torch.mm(small, small)
    seconds_256 = _timed(lambda: torch.mm(small, small))
    while n > 256 and seconds_256 * (n / 256) ** 3 > 2.0:
        n //= 2
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_loop(dataset, batch_size: int, precision: str) -> Loop:
    """The series' recipe as cnnscope.loop trains it (channels_last on the CPU)."""
    config = TrainConfig(batch_size=batch_size, optimizer="rmsprop", lr=0.001, momentum=0.5, precision=precision)
    model = cnnscope.build_model(cnnscope.presets["seed-iv"], seed=0).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer("rmsprop", model.parameters(), 0.001, 0.5)
    return Loop(Path(tempfile.gettempdir()), model, optimizer, config, Batches(dataset, config), torch.device("cpu"),
                torch.channels_last)


def group_of(event) -> str:
    """The group of one aten operator: by its enclosing range (optimizer, batch assembly), else by its name."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer."):
            return "optimizer"
        if parent.name == "batch assembly":
            return "batch assembly"
        parent = parent.cpu_parent
    for group, pattern in GROUPS:
        if re.search(pattern, event.name):
            return group
    return "other ops"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 10 if args.quick else args.steps
    dataset = cnnscope.load_dataset("mnist", preprocess="standard", limit_train=args.batch_size * (2 * steps + 20))
    loop = make_loop(dataset, args.batch_size, args.precision)
    batches = loop.batches.epoch(0)

    def step() -> None:
        with record_function("batch assembly"):
            xb, yb = next(batches)
            xb = xb.to(memory_format=loop.memory_format)
        train_step(loop, xb, yb, 0.001).tolist()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - t0) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - t0) / steps
    times: dict[str, float] = defaultdict(float)
    others: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.name.startswith("aten::"):  # self time: without its children's, so nothing counts twice
            group = group_of(event)
            times[group] += event.self_cpu_time_total / 1e6 / steps
            if group == "other ops":
                others[event.name] += event.self_cpu_time_total / 1e3 / steps
    times["Python and framework overhead"] = max(0.0, wall - sum(times.values()))
    fwd, train = training_flops(loop.model.spec)
    images_per_s = args.batch_size / plain
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.precision}, load {os.getloadavg()[0]:.1f}")
    print(f"step {plain * 1e3:.2f} ms unprofiled ({images_per_s:.0f} img/s), {wall * 1e3:.2f} ms profiled\n")
    print("| group | ms per step | share |\n| --- | --- | --- |")
    for group, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {seconds * 1e3:.2f} | {seconds / wall:.0%} |")
    print("other ops, largest: " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in sorted(others.items(),
                                                                                    key=lambda kv: -kv[1])[:4]))
    p32, p16 = peak(torch.float32), peak(torch.bfloat16)
    achieved = images_per_s * train
    print(f"\nFLOPs per image: {fwd / 1e6:.2f} M forward, {train / 1e6:.2f} M training (from spec.layers())")
    print(f"peak (square matmul, 2048² or smaller for slow dtypes): fp32 {p32 / 1e9:.0f} GFLOP/s, "
          f"bf16 {p16 / 1e9:.1f} GFLOP/s")
    print(f"training reaches {achieved / 1e9:.1f} GFLOP/s = {achieved / p32:.0%} of the fp32 peak, "
          f"{achieved / p16:.0%} of the bf16 peak (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
