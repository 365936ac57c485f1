"""A folder of very large pictures (issue 21, item 5): peak memory, time and cache size of `cnnscope data`.

Usage (from the repository root):
    python benchmarks/bench_folder_big.py [--pictures 6] [--size 4096] [--image-size H W]

Writes `--pictures` transparent --size² RGBA PNGs with a drawn stroke (a drawing app's export) into two class
folders of a temporary directory, then runs `cnnscope data folder:DIR --out …` in a subprocess with an empty
cache directory of its own (XDG_CACHE_HOME) and reports its wall time, peak memory (ru_maxrss of the child) and
the size of the cache it wrote.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def big_png(path: Path, size: int, k: int) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    s = size / 280
    ImageDraw.Draw(img).line([(70 * s, (60 + 10 * k) * s), (200 * s, 60 * s), (120 * s, 230 * s)],
                             fill=(0, 0, 0, 255), width=int(18 * s))
    img.save(path, "PNG", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=6)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--image-size", type=int, nargs=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big"
        for k in range(args.pictures):
            (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
            big_png(root / f"c{k % 2}" / f"p{k}.png", args.size, k)
        size = sum(p.stat().st_size for p in root.rglob("*.png"))
        print(f"{args.pictures} pictures {args.size}×{args.size} RGBA PNG: {size / 1e3:,.0f} kB")
        command = [sys.executable, "-m", "cnnscope", "data", f"folder:{root}", "--out", str(Path(tmp) / "d.png"),
                   "--test-size", "2"]
        command += ["--image-size", *map(str, args.image_size)] if args.image_size else []
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        cache = sum(p.stat().st_size for p in (Path(tmp) / "cache").rglob("*.npz"))
        print(f"cnnscope data: exit {done.returncode}, {seconds:.1f} s, peak {peak:,.0f} MB, "
              f"cache {cache / 1e6:.2f} MB")
        print("\n".join(line for line in (done.stdout + done.stderr).splitlines() if "note" in line.lower())[:2000])


if __name__ == "__main__":
    main()
