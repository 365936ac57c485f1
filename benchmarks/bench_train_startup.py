"""Start-up of `cnnscope train`: seconds from the process's start to the end of the first training step.

The loop logs "first training step done X s after the process started" (debug level; info with
CNNSCOPE_STARTUP_LOG=1; the process's start from /proc, so the interpreter's start and every import count).
Each repeat is a fresh
`cnnscope train` of one epoch on a few images (the first step is what is timed), alternating with and
without the preprocessed-data cache (CNNSCOPE_DATA_CACHE=0 turns it off), so load slows both alike.

Usage (from the repository root):
    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_train_startup.py [--quick] [--repeats 5]
        [--config configs/seed-iv-fast.toml]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"first training step done ([0-9.]+) s after the process started")


def one(config: str, cache: bool, out: Path) -> tuple[float, float]:
    """(seconds to the first step as logged, wall seconds of the whole command) of one fresh process."""
    env = {**os.environ, "CNNSCOPE_DATA_CACHE": "1" if cache else "0", "CNNSCOPE_STARTUP_LOG": "1"}
    cmd = [str(Path(sys.executable).with_name("cnnscope")), "train", "--config", config, "--epochs", "1",
           "--limit-train", "256", "--out", str(out), "--overwrite", "--no-report"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    found = LINE.search(done.stderr + done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return float(found.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/seed-iv-fast.toml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        one(args.config, True, Path(tmp) / "warm")  # fills the cache (and the page cache)
        for r in range(repeats):
            for cache in (True, False):
                first, wall = one(args.config, cache, Path(tmp) / "run")
                times[cache].append(first)
                print(f"repeat {r + 1} cache {'on ' if cache else 'off'}: first step {first:.2f} s, whole command "
                      f"{wall:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    for cache in (True, False):
        print(f"cache {'on ' if cache else 'off'}: median {statistics.median(times[cache]):.2f} s, best "
              f"{min(times[cache]):.2f} s to the first step")


if __name__ == "__main__":
    main()
