"""The runs listing over configs that all differ (issue 21, item 4): `/api/runs` time and size, `runs --json`.

Usage (from the repository root):
    python benchmarks/bench_catalog_settings.py [--runs 200] [--keys 100]

Writes `--runs` run folders whose config.toml each holds `--keys` settings of its own into a temporary folder,
then times the dashboard's GET /api/runs (Starlette's TestClient, in-process: the first answer scans and reads
every file, the next polls reread none) and measures its size; then runs `cnnscope runs FOLDER --json` in a
subprocess and reports its output size and peak memory (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import tomli_w


def make_runs(root: Path, runs: int, keys: int) -> int:
    total = 0
    for r in range(runs):
        folder = root / f"run{r:03d}"
        folder.mkdir(parents=True)
        text = tomli_w.dumps({"model": {"preset": "tiny"}, "train": {"lr": 0.001 * (r + 1)},
                              "extra": {f"k{r}_{i}": i * 1.5 for i in range(keys)}})
        (folder / "config.toml").write_text(text)
        total += len(text)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keys", type=int, default=100)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    from cnnscope.serve.dashboard import Dashboard, create_dashboard_app

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        size = make_runs(root, args.runs, args.keys)
        print(f"{args.runs} runs × {args.keys} keys of their own: {size / 1e6:.2f} MB of config.toml")
        began = time.perf_counter()
        board = Dashboard(root, warm_up=False)
        print(f"first scan (reads every file): {time.perf_counter() - began:.2f} s")
        with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1") as client:
            for label in ("GET /api/runs", "again (a poll, no If-None-Match)"):
                began = time.perf_counter()
                answer = client.get("/api/runs")
                print(f"{label}: {time.perf_counter() - began:.2f} s, {len(answer.content) / 1e6:.2f} MB, "
                      f"{len(answer.json()['differing'])} columns, notes {answer.json()['notes']}")
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "cnnscope", "runs", str(root), "--json"], capture_output=True,
                             check=True).stdout
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"cnnscope runs --json: {time.perf_counter() - began:.2f} s, {len(out) / 1e6:.2f} MB written, "
              f"peak {peak:,.0f} MB")


if __name__ == "__main__":
    main()
