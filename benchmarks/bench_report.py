"""Time `build_report` (the self-contained HTML report) for a trained run; the issue's goal is < 60 s for seed-iv.

Usage (from the repository root):
    python benchmarks/bench_report.py runs/seed-iv-3ep --data-dir ../shared/data --out /tmp/report.html

--out keeps the run directory untouched (without it the report goes to RUN/report.html). Prints the total and
each section's time (the library logs them), the file size and how many images it embeds. --repeats N builds
it N times and prints the median.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", help="report file (default: a temp file, so the run is not touched)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--goal", type=float, default=60.0, help="seconds (exit 1 when the median is over it)")
    args = parser.parse_args()
    from cnnscope.report import build_report

    logger = logging.getLogger("cnnscope")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} before the run")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cnnscope-report-")) / "report.html"
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        path = build_report(args.run, out=out, data_dir=args.data_dir)
        times.append(time.perf_counter() - t)
    text = path.read_text(encoding="utf-8")
    images = len(re.findall(r"<img ", text))
    median = statistics.median(times)
    print(f"report {path}: {len(text.encode()) / 1e6:.1f} MB, {images} embedded images")
    verdict = "met" if median < args.goal else "MISSED"
    print(f"build_report: median {median:.1f} s over {len(times)} build(s) "
          f"({', '.join(f'{s:.1f}' for s in times)} s); goal < {args.goal:.0f} s: {verdict}")
    return 0 if median < args.goal else 1


if __name__ == "__main__":
    sys.exit(main())
