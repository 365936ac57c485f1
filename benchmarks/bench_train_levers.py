"""Training-step levers of issue 12, side by side in one process: each variant runs a block of steps in turn
(A, B, C, A, B, C, ...) so a busy machine slows them alike; prints the median images/s and the ratio to the
reference (the loop as it was before issue 12, kept here as `old_step`).

Usage (from the repository root):
    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_train_levers.py [--quick]
        [--variants old,new,foreach,bf16,...] [--batch-size 64] [--rounds 5] [--steps 60] [--threads N]
Variants: old (fancy indexing, penalty through autograd, three host syncs per step), new (cnnscope.loop as it
is), torchopt (new with torch.optim's RMSprop instead of cnnscope.optimizers), inplace (ReLU in place),
contiguous (new without channels_last), foreach (torch.optim's RMSprop, foreach; it has no fused version), bf16
(autocast), threads1 (one intra-op thread), compile / autotune (torch.compile of the model, default and
max-autotune-no-cudagraphs), b128 / b256 (larger batches; images/s is what matters).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import cnnscope
from cnnscope.trainer.config import TrainConfig
from cnnscope.trainer.loop import Batches, Loop, compute_loss, data_loss, train_step
from cnnscope.trainer.optim import make_optimizer

ALL = ("old", "new", "torchopt", "inplace", "contiguous", "foreach", "bf16", "threads1", "b128", "b256", "compile",
       "autotune")


def load() -> float:
    """The 1-minute load average (the machine is shared: every figure is printed with it)."""
    return os.getloadavg()[0]


class Variant:
    """A model, optimizer and batches of the series' recipe, with one lever changed; `run(steps)` -> images/s."""

    def __init__(self, name: str, dataset: cnnscope.Dataset, batch_size: int) -> None:
        self.name = name
        size = {"b128": 128, "b256": 256}.get(name, batch_size)
        config = TrainConfig(batch_size=size, optimizer="rmsprop", lr=0.001, momentum=0.5, schedule="power",
                             precision="bf16" if name == "bf16" else "fp32")
        model = cnnscope.build_model(cnnscope.presets["seed-iv"], seed=0)
        fmt = torch.contiguous_format if name == "contiguous" else torch.channels_last
        model.to(memory_format=fmt).train()
        if name == "inplace":
            for module in model.modules():
                if isinstance(module, torch.nn.ReLU):
                    module.inplace = True
        optimizer = make_optimizer("rmsprop", model.parameters(), 0.001, 0.5)
        if name in ("torchopt", "foreach"):  # torch.optim's RMSprop with the same settings
            optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7, momentum=0.5,
                                            foreach=name == "foreach")
        self.loop = Loop(Path(tempfile.gettempdir()), model, optimizer, config, Batches(dataset, config),
                         torch.device("cpu"), fmt)
        if name in ("compile", "autotune"):
            mode = "max-autotune-no-cudagraphs" if name == "autotune" else None
            self.loop.model = torch.compile(model, mode=mode)
            self.loop.model.spec = model.spec
            self.loop.model.regularization_loss = model.regularization_loss
        self.loop.order = torch.randperm(self.loop.batches.n)  # the old step's epoch order
        self.batches = self._forever()

    def _forever(self):
        epoch = 0
        while True:
            yield from self.loop.batches.epoch(epoch)
            epoch += 1

    def run(self, steps: int) -> float:
        """Images per second over `steps` training steps."""
        threads = torch.get_num_threads()
        if self.name == "threads1":
            torch.set_num_threads(1)
        try:
            t0, images = time.perf_counter(), 0
            for _ in range(steps):
                xb, yb = next(self.batches)
                images += len(yb)
                if self.name == "old":
                    old_step(self.loop, xb, yb)
                else:
                    train_step(self.loop, xb.to(memory_format=self.loop.memory_format), yb, 0.001).tolist()
            return images / (time.perf_counter() - t0)
        finally:
            torch.set_num_threads(threads)


def old_step(loop: Loop, xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, float, int]:
    """The step before issue 12: a fresh batch by fancy indexing, the penalty through autograd, three syncs."""
    start = loop.step * len(yb) % (loop.batches.n - len(yb))
    loop.step += 1
    idx = loop.order[start:start + len(yb)]
    xb, yb = loop.batches.x[idx], loop.batches.y[idx]  # what Batches did: fancy indexing, a new tensor each time
    xb = xb.to(loop.device, memory_format=loop.memory_format)
    logits = loop.model(xb)
    loss = compute_loss(loop.model, logits, yb)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    loop.optimizer.step()
    with torch.no_grad():
        plain = float(data_loss(loop.model, logits.detach(), yb))
    return loss.item(), plain, int((logits.argmax(1) == yb).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="old,new,foreach,bf16,threads1,b128,b256")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60, help="steps per variant per round (batch 64 images)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 20 steps on 6,000 images")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown variants {unknown}; valid: {', '.join(ALL)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, steps = (3, 20) if args.quick else (args.rounds, args.steps)
    dataset = cnnscope.load_dataset("mnist", preprocess="standard", limit_train=6000 if args.quick else None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {load():.1f} at start")
    variants = [Variant(n, dataset, args.batch_size) for n in names]
    for v in variants:  # warm-up (compile happens here)
        t0 = time.perf_counter()
        v.run(3)
        print(f"  warm-up {v.name}: {time.perf_counter() - t0:.1f} s", flush=True)
    speeds: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            steps_v = max(1, steps * args.batch_size // v.loop.batches.size)  # the same images per block
            speeds[v.name].append(v.run(steps_v))
        print(f"round {r + 1}: " + "  ".join(f"{n} {s[-1]:.0f}" for n, s in speeds.items()) + f"  (load {load():.1f})",
              flush=True)
    ref = statistics.median(speeds[names[0]])
    print(f"\n{'variant':>10} {'img/s (median)':>15} {'× ' + names[0]:>10}")
    for name, s in speeds.items():
        print(f"{name:>10} {statistics.median(s):15.0f} {statistics.median(s) / ref:10.2f}")
    print(f"load {load():.1f} at end")


if __name__ == "__main__":
    main()
