"""Sweep wall time: 12 trials of the fast recipe (lr × seed grid, 3 epochs each) with --workers 1, --workers 2 and
--engine ray (local Ray, 2 CPUs); Ray's overhead per trial; the best trial's test accuracy against the recipe's lr.

    .venv/bin/python benchmarks/bench_sweep.py --data-dir ../shared/data            # the full figures (quiet machine)
    .venv/bin/python benchmarks/bench_sweep.py --limit-train 2000 --limit-test 1000  # a quick check that it works

Each configuration runs the same study from scratch in its own directory under --out (default a temp dir) through
the CLI (`cnnscope sweep`), so start-up (worker processes, torch imports, Ray) is part of the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LRS = "0.001,0.003,0.01"  # the recipe's lr (0.003) in the middle
SEEDS = "range:0:4"
RUNS = {"local, 1 worker": ["--workers", "1"], "local, 2 workers": ["--workers", "2"],
        "ray (local, 2 CPUs)": ["--engine", "ray", "--workers", "2"]}


def base_config(out: Path, epochs: int, limit_train: int | None, limit_test: int | None, data_dir: str | None) -> Path:
    """configs/seed-iv-fast.toml with `epochs` (and the limits, data directory) changed."""
    text = (ROOT / "configs" / "seed-iv-fast.toml").read_text()
    text = text.replace("epochs = 8", f"epochs = {epochs}")
    extra = "".join(f"{k} = {v}\n" for k, v in (("limit_train", limit_train), ("limit_test", limit_test)) if v)
    if data_dir:
        extra += f'data_dir = "{Path(data_dir).resolve()}"\n'
    path = out / "bench-sweep.toml"
    path.write_text(text.replace('split = "official"\n', f'split = "official"\n{extra}'))
    return path


def run(config: Path, study: Path, flags: list[str]) -> tuple[float, dict]:
    """Wall seconds of one `cnnscope sweep` and its results.json."""
    argv = [sys.executable, "-m", "cnnscope", "sweep", "--config", str(config), "--out", str(study), "--param",
            f"train.lr=choice:{LRS}", "--param", f"train.seed={SEEDS}", "--sampler", "grid", "--trials", "12",
            "--json", *flags]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int)
    parser.add_argument("--limit-test", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", help="where the studies go (default: a temporary directory)")
    parser.add_argument("--only", choices=list(RUNS), action="append", help="run only these configurations")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    config = base_config(out, args.epochs, args.limit_train, args.limit_test, args.data_dir)
    walls: dict[str, float] = {}
    for name, flags in RUNS.items():
        if args.only and name not in args.only:
            continue
        seconds, results = run(config, out / f"study-{len(walls)}", flags)
        rows = results["trials"]
        train = sum(r["seconds"] or 0 for r in rows)
        walls[name] = seconds
        best = next(r for r in rows if r["number"] == results["best"])
        default = next(r for r in rows if r["params"] == {"train.lr": 0.003, "train.seed": 0})
        print(f"{name}: wall {seconds:.1f} s for {len(rows)} trials ({seconds / len(rows):.1f} s/trial; "
              f"training itself {train:.1f} s in all); best trial {best['number']} {best['params']} test accuracy "
              f"{best['test_accuracy']:.4f}; the recipe's lr 0.003 (seed 0) {default['test_accuracy']:.4f}",
              flush=True)
    if "ray (local, 2 CPUs)" in walls and "local, 2 workers" in walls:
        extra = (walls["ray (local, 2 CPUs)"] - walls["local, 2 workers"]) / 12
        print(f"Ray's overhead against local 2 workers: {extra:+.2f} s per trial")


if __name__ == "__main__":
    main()
