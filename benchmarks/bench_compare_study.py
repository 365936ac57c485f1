"""Time the dashboard's compare matrix (trained and at initialisation) for runs gathered into one study.

    CNNSCOPE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_compare_study.py RUN [RUN …] [--images 500]

Copies the runs into a temporary study (trials/0000…), then asks GET /api/studies/NAME/compare for every conv
layer through Starlette's TestClient and prints the seconds per request (the first includes loading the runs,
their initial weights and the data set), the trained and initial mean correlations and the "found by all" counts,
then the cached answer's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.serve.dashboard import Dashboard, create_dashboard_app  # noqa: E402


def main() -> None:
    """Build the study, time each layer's matrix, print one line per layer."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        study = Path(root) / "study"
        for k, run in enumerate(args.runs):
            shutil.copytree(run, study / "trials" / f"{k:04d}")
        (study / "study.toml").write_text('metric = "val_accuracy"\n')
        board = Dashboard(root, os.environ.get("CNNSCOPE_DATA_DIR"), warm_up=False)
        with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1") as client:
            layers, done = [None], []
            while layers:
                params = {"images": args.images, **({"layer": layers[0]} if layers[0] else {})}
                start = time.perf_counter()
                got = client.get("/api/studies/study/compare", params=params).json()
                seconds = time.perf_counter() - start
                base = got["baseline"] or {}
                print(f"{got['layer']}: {seconds:.1f} s, {got['kind']}, mean r {got['mean_correlation']:.3f} "
                      f"({base.get('mean_correlation', float('nan')):.3f} at initialisation), found by all "
                      f"{got['found_by_all']} ({base.get('found_by_all')})", flush=True)
                done.append(got["layer"])
                layers = [name for name in got["layers"] if name not in done][:1]
            start = time.perf_counter()
            client.get("/api/studies/study/compare", params={"images": args.images, "layer": done[0]})
            print(f"cached: {1000 * (time.perf_counter() - start):.0f} ms")
        board.close()


if __name__ == "__main__":
    main()
