"""Draw -> prediction in the HTTP viewer (`cnnscope serve RUN`), timed in the page: from the stroke's end
(pointerup) to the frame after the probabilities change, over 12 strokes of a "7" in headless Chromium.

    PYTHONPATH=src python benchmarks/bench_serve_draw.py RUN_DIR [--port 8765] [--strokes 12]

The stroke is drawn by benchmarks/bench_site.py's draw(), so the figure compares with the static site's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).parent))
from bench_site import draw, wait_until  # noqa: E402

WATCH = """() => { window.since = null; window.times = [];
  document.getElementById('draw').addEventListener('pointerup', () => { window.since = performance.now(); });
  new MutationObserver(() => { const s = window.since; if (s === null) return; window.since = null;
    requestAnimationFrame(() => window.times.push(performance.now() - s)); })
    .observe(document.getElementById('probs'), { childList: true }); }"""


def wait_for_server(url: str) -> None:
    for _ in range(1200):
        try:
            urllib.request.urlopen(url + "api/info", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def strokes(url: str, count: int) -> list[float]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        wait_until(page, "document.body.dataset.busy === '0' && Number(document.querySelector('#grid').dataset"
                         ".renders) >= 1")
        page.evaluate(WATCH)
        for i in range(count):
            draw(page, 0.01 * (i % 5))
            wait_until(page, f"window.times.length >= {i + 1} && document.body.dataset.busy === '0'")
        times = page.evaluate("window.times")
        browser.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--strokes", type=int, default=12)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "cnnscope", "serve", args.run, "--port", str(args.port), "-q"])
    try:
        wait_for_server(f"http://127.0.0.1:{args.port}/")
        times = strokes(f"http://127.0.0.1:{args.port}/", args.strokes)
    finally:
        server.terminate()
    print(f"draw -> prediction, {len(times)} strokes: median {statistics.median(times):.0f} ms, "
          f"min {min(times):.0f}, max {max(times):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
