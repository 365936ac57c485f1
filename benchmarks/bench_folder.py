"""Image folders: export MNIST's 60,000 training images as PNGs (PATH/<label>/*.png), then time load_own.

    .venv/bin/python benchmarks/bench_folder.py [--data-dir ../shared/data] [--limit N] [--keep DIR]

Times, each in a fresh process with an empty cache directory of its own: the first load decoding in this
process (no pool), the first load with the process pool (what load_own does for ≥ POOL_MIN pictures), and
the cached load after it. Reads real MNIST with cnnscope.data.read_idx; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD = """
import json, sys, time
t0 = time.perf_counter()
from cnnscope import owndata
if sys.argv[2] == "no-pool":
    owndata.POOL_MIN = 10**12
t1 = time.perf_counter()
raw = owndata.load_own(sys.argv[1], progress=False)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "train": list(raw.train_raw.shape),
                  "test": list(raw.test_raw.shape), "notes": list(raw.notes)}))
"""


def export(data_dir: Path, folder: Path, limit: int | None) -> float:
    """Write the MNIST training images as folder/<label>/<index>.png; seconds taken."""
    import numpy as np
    from PIL import Image

    from cnnscope.data.dataset import FILES, read_idx

    images = read_idx(data_dir / "mnist" / FILES["train_images"])[:limit]
    labels = read_idx(data_dir / "mnist" / FILES["train_labels"])[:limit]
    start = time.perf_counter()
    for label in np.unique(labels):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")
    return time.perf_counter() - start


def load(folder: Path, cache: Path, mode: str) -> dict:
    """Run load_own in a fresh process with XDG_CACHE_HOME=cache; its timings, plus the process's wall time."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT / "src"))
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", LOAD, str(folder), mode], env=env, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process and its pool's workers
    result["cpu_s"] = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real = os.environ.get("CNNSCOPE_REAL_DATA", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", default=real, help="folder holding mnist/ (official IDX files)")
    parser.add_argument("--limit", type=int, default=None, help="export only the first N images")
    parser.add_argument("--keep", default=None, help="export into this folder and keep it (reused when present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnscope-bench-folder-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp) / "mnist-png"
        if not folder.is_dir():
            seconds = export(Path(args.data_dir), folder, args.limit)
            print(f"exported {sum(1 for _ in folder.rglob('*.png')):,} PNGs to {folder} in {seconds:.1f} s")
        print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
        rows = [("first load, one process", load(folder, Path(tmp) / "cache-a", "no-pool"))]
        rows.append(("first load, process pool", load(folder, Path(tmp) / "cache-b", "pool")))
        rows += [("cached load (fresh process)", load(folder, Path(tmp) / "cache-b", "pool")) for _ in range(3)]
        for name, r in rows:
            print(f"{name:28s} load_own {r['load_s']:6.2f} s   process {r['process_s']:6.2f} s   CPU "
                  f"{r['cpu_s']:6.2f} s   (import {r['import_s']:.2f} s)   train {r['train']} test {r['test']}")
        print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print("notes:", "; ".join(rows[-1][1]["notes"]))


if __name__ == "__main__":
    main()
