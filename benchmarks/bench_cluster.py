"""Sweeps on a real two-node Ray cluster (issue 22): 12 trials of the tiny model on a head and a worker node started
with `ray start` on this machine (1 CPU each, token authentication, no data on the nodes: the driver ships it),
against the same study with `--engine local --workers 2` (run first). Wall time, what travelled (the driver's
last log line), and Ray's overhead per trial = (cluster wall − local wall) / 12.

    .venv/bin/python benchmarks/bench_cluster.py --data-dir ../shared/data
    .venv/bin/python benchmarks/bench_cluster.py --data-dir ../shared/data --limit-train 2000   # a quick check

Both studies run from scratch through the CLI (`cnnscope sweep`), so start-up (torch imports, worker processes,
connecting to Ray, the version check on every node, loading the data) is part of the wall time; the cluster's own
start is not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from raycluster import running_cluster  # noqa: E402  (the tests' helper: one way to start the cluster)

TRIALS = 12
GRID = ["--param", "train.lr=choice:0.001,0.003,0.01", "--param", "train.seed=range:0:4", "--sampler", "grid"]


def sweep(study: Path, args: argparse.Namespace, env: dict[str, str], flags: list[str]) -> tuple[float, dict, str]:
    """Wall seconds, results.json and the log of one `cnnscope sweep`."""
    limits = [f for k, v in (("--limit-train", args.limit_train), ("--limit-test", args.limit_test)) if v
              for f in (k, str(v))]
    argv = [sys.executable, "-m", "cnnscope", "sweep", "--out", str(study), "--preset", "tiny", "--epochs",
            str(args.epochs), "--trials", str(TRIALS), *GRID, *limits, "--workers", "2", *flags]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads((study / "results.json").read_text()), done.stderr


def row(name: str, seconds: float, results: dict) -> str:
    rows = results["trials"]
    done = [r for r in rows if r["status"] == "completed"]
    trained = sum(r["seconds"] or 0 for r in rows)
    return (f"| {name} | {seconds:.1f} s | {seconds / TRIALS:.2f} s | {trained:.1f} s | {len(done)} of "
            f"{len(rows)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="holds mnist/ (the driver's data; the nodes have none)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-train", type=int)
    parser.add_argument("--limit-test", type=int)
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    out = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    lines = ["| engine | wall (12 trials) | per trial | training seconds summed | completed |",
             "| --- | --- | --- | --- | --- |"]
    local_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    local_env["CNNSCOPE_DATA_DIR"] = str(data_dir)
    local_seconds, local_results, _ = sweep(out / "local", args, local_env, ["--engine", "local"])
    lines.append(row("local, 2 workers", local_seconds, local_results))
    with running_cluster() as cluster:
        env = cluster.driver_env(data_dir)
        ray_flags = ["--engine", "ray", "--ray-address", f"127.0.0.1:{cluster.port}"]
        ray_seconds, results, log = sweep(out / "ray", args, env, ray_flags)
    lines.append(row("Ray, 2 nodes (`ray start`, 1 CPU each)", ray_seconds, results))
    print("\n".join(lines))
    print(f"\nRay's overhead per trial: {(ray_seconds - local_seconds) / TRIALS:+.2f} s")
    for pattern in (r"data loaded here[^\n]*", r"Ray: [\d.]+ MB of data[^\n]*", r"Ray: \d+ node\(s\)[^\n]*"):
        found = re.search(pattern, log)
        print(found.group(0) if found else f"(no line matching {pattern!r})")
    print(f"studies in {out}")


if __name__ == "__main__":
    main()
