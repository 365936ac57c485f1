"""Dashboard figures: GET /api/runs over N copies of a run (cold: first scan; warm: nothing changed; one run
changed), and the live delay of the page (run tests/test_dashboard_browser.py -s for that one).

    .venv/bin/python benchmarks/bench_dashboard.py RUN_DIR [--copies 200]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.serve.dashboard import Dashboard, create_dashboard_app  # noqa: E402


def timed(client: TestClient, headers: dict | None = None) -> tuple[float, int]:
    t0 = time.perf_counter()
    answer = client.get("/api/runs", headers=headers or {})
    return (time.perf_counter() - t0) * 1000, answer.status_code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--copies", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for i in range(args.copies):
            shutil.copytree(args.run, root / f"run-{i:03d}", ignore=shutil.ignore_patterns("*.safetensors", "*.png",
                                                                                            "*.html"))
        board = Dashboard(root, warm_up=False)  # its constructor scans once: time a fresh one for "cold"
        board.catalog.files.__init__()
        board.catalog._facts.clear()
        with TestClient(create_dashboard_app(root, board=board), base_url="http://127.0.0.1") as client:
            cold, _ = timed(client)
            reads = board.catalog.files.reads
            warm = [timed(client)[0] for _ in range(20)]
            tag = client.get("/api/runs").headers["etag"]
            not_modified = [timed(client, {"If-None-Match": tag}) for _ in range(20)]
            history = root / "run-007" / "history.json"
            history.write_text(history.read_text() + " ")
            one_changed, _ = timed(client)
        print(f"{args.copies} runs: cold {cold:.0f} ms ({reads} files read); warm median "
              f"{statistics.median(warm):.0f} ms (max {max(warm):.0f}, {board.catalog.files.reads - reads - 1} files "
              f"read again); If-None-Match median {statistics.median(t for t, _ in not_modified):.0f} ms "
              f"(status {not_modified[0][1]}); after one history.json changed {one_changed:.0f} ms")


if __name__ == "__main__":
    main()
