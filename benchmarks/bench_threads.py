"""Thread pools fighting for the cores (issue 23, item 3): `compare` of several runs under thread settings.

Makes N untrained runs of one preset (different seeds: the work of compare does not depend on training), then
times `cnnscope.views.compare.compare_many_runs(--layer all)` in a fresh process per setting, the settings
interleaved round by round, and prints the median per setting with the threads the process held at the end.

    CNNSCOPE_DATA_DIR=../shared/data python benchmarks/bench_threads.py --runs 3 --limit 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {  # name -> environment added to the child's
    "as shipped": {},
    "OMP_NUM_THREADS=2": {"OMP_NUM_THREADS": "2"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "cnnscope.threads.configure": {},  # filled in main(): what every cnnscope command now sets at start-up
}

CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
from cnnscope.views.compare import compare_many_runs
import torch
runs, limit = json.loads(sys.argv[1]), int(sys.argv[2])
compare_many_runs(runs[:1] + runs[:1], ["Conv2D_1"], limit=50, out=sys.argv[3])  # warm-up: imports, first calls
t = time.perf_counter()
compare_many_runs(runs, ["all"], limit=limit, out=sys.argv[3])
seconds = time.perf_counter() - t
threads = len(os.listdir("/proc/self/task"))
print(json.dumps({"seconds": seconds, "threads": threads, "torch_threads": torch.get_num_threads()}))
"""


def make_runs(root: Path, preset: str, count: int, data_dir: str | None) -> list[str]:
    """`count` untrained runs of `preset` on MNIST (initial weights saved as the trained ones)."""
    import cnnscope
    from cnnscope.model.network import build_model
    from cnnscope.model.zoo import get_preset
    from cnnscope.runs.checkpoint import init_run_dir, save_weights, start_run
    from cnnscope.runs.layout import WEIGHTS
    from cnnscope.trainer.config import RunConfig, TrainConfig

    spec = get_preset(preset)
    dataset = cnnscope.load_dataset("mnist", data_dir=data_dir)
    paths = []
    for seed in range(count):
        out = init_run_dir(root / f"{preset}-{seed}", overwrite=True)
        model = build_model(spec, seed=seed)
        start_run(out, RunConfig(spec, TrainConfig(seed=seed), dataset.config), dataset.preprocessor, model)
        save_weights(out / WEIGHTS, model)
        paths.append(str(out))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default="seed-iv")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--data-dir", default=os.environ.get("CNNSCOPE_DATA_DIR"))
    args = parser.parse_args()
    from cnnscope.base.threads import configure

    SETTINGS["cnnscope.threads.configure"] = configure({})
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_runs(Path(tmp), args.preset, args.runs, args.data_dir)
        found: dict[str, list[dict]] = {name: [] for name in args.settings}
        for _ in range(args.rounds):
            for name in args.settings:
                env = {**os.environ, **SETTINGS[name], "CNNSCOPE_DATA_DIR": args.data_dir or ""}
                done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths), str(args.limit),
                                       str(Path(tmp) / "c.png")], env=env, capture_output=True, text=True,
                                      check=True)
                found[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {name}: {found[name][-1]}", file=sys.stderr, flush=True)
    print(f"compare_many_runs of {args.runs} untrained {args.preset} runs, --layer all, {args.limit} test images; "
          f"median of {args.rounds} rounds (settings interleaved)")
    for name, rows in found.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        print(f"  {name:<26} {seconds:7.2f} s   threads at the end {rows[-1]['threads']}, "
              f"torch intra-op {rows[-1]['torch_threads']}")


if __name__ == "__main__":
    main()
