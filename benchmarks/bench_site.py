"""The static site (`cnnscope export-site`): the folder's size and export time, the page's first paint and start,
and the time of each interaction in the page (draw -> prediction, next image, layer switch, map card, occlusion).

Usage (from the repository root):
    python benchmarks/bench_site.py runs/seed-iv --data-dir ../shared/data --repeats 20
    python benchmarks/bench_site.py runs/seed-iv --skip-export --screenshot docs/images/site.png

Exports RUN into benchmarks/out/www/site (unless --skip-export), serves benchmarks/out/www with Python's
http.server from a thread, and drives Debian's Chromium (/usr/bin/chromium) through Playwright. Times are the
page's own (performance.now(), recorded by the page in data-*-ms attributes), so Playwright's round trips are not
counted; draw -> prediction runs from the stroke's end (pointerup) to the prediction painted and includes the
page's 30 ms wait for a stroke to end. Prints median / 90th percentile / max.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import sys
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SEVEN = [(0.26, 0.24), (0.72, 0.22), (0.56, 0.50), (0.44, 0.80)]  # a "7" in canvas fractions


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/site/"


def wait_until(page, expression: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.01)


def measured(page, name: str, act) -> float:
    """Run `act`, wait for the page to record a new `name` time, return it (ms)."""
    page.evaluate(f"delete document.body.dataset.{name}Ms")
    act()
    wait_until(page, f"document.body.dataset.{name}Ms !== undefined && document.body.dataset.busy === '0'")
    return float(page.evaluate(f"document.body.dataset.{name}Ms"))


def draw(page, jitter: float) -> None:
    box = page.locator("#draw").bounding_box()
    points = [(box["x"] + box["width"] * (x + jitter), box["y"] + box["height"] * y) for x, y in SEVEN]
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for k in range(1, 9):
            page.mouse.move(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8)
    page.mouse.up()


def stats(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):7.1f} {p90:7.1f} {values[-1]:7.1f}   (n={len(values)})"


def start_times(browser, url: str, loads: int) -> dict[str, list[float]]:
    """First contentful paint and 'ready' (model loaded, first image predicted and drawn) over fresh pages."""
    out: dict[str, list[float]] = {"first paint": [], "ready (model loaded, first grid drawn)": []}
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        wait_until(page, "document.body.dataset.ready === '1'")
        paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
        out["first paint"].append(float(paint))
        out["ready (model loaded, first grid drawn)"].append(float(page.evaluate("document.body.dataset.readyMs")))
        page.close()
    return out


def interactions(page, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("draw -> prediction", "  of it: preparing the drawing",
                                                    "  of it: the model (every output)", "next image -> grid",
                                                    "layer switch -> grid", "map card", "occlusion heat map")}
    layers = page.evaluate("[...document.querySelector('#layer').options].map((o) => o.value)")
    for i in range(repeats):
        out["draw -> prediction"].append(measured(page, "stroke", lambda i=i: draw(page, 0.01 * (i % 5))))
        out["  of it: preparing the drawing"].append(float(page.evaluate("document.body.dataset.prepareMs")))
        out["  of it: the model (every output)"].append(float(page.evaluate("document.body.dataset.predictMs")))
        page.evaluate("delete document.body.dataset.explainMs")
        out["next image -> grid"].append(measured(page, "grid", lambda: page.click("#next")))
        wait_until(page, "document.body.dataset.explainMs !== undefined")  # computed after the grid's request
        out["occlusion heat map"].append(float(page.evaluate("document.body.dataset.explainMs")))
        layer = layers[(i + 1) % len(layers)]
        switch = lambda layer=layer: page.select_option("#layer", layer)  # noqa: E731
        out["layer switch -> grid"].append(measured(page, "grid", switch))
        if page.evaluate("!document.querySelector('#grid').hidden"):
            click = lambda: page.locator("#grid").click(position={"x": 4, "y": 4})  # noqa: E731  (map 0)
            out["map card"].append(measured(page, "card", click))
            page.click("#card-close")
    return out


def sizes(folder: Path) -> dict[str, int]:
    parts = {"onnxruntime-web (ort/)": folder / "ort", "model.onnx": folder / "model.onnx",
             "facts, cards, colour tables (data/)": folder / "data", "pictures (img/)": folder / "img",
             "page (index.html, static/)": folder / "static"}
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    out = {name: (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else
                  path.stat().st_size) for name, path in parts.items()}
    return {**out, "total": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--www", default="benchmarks/out/www", help="web root; the site goes into WWW/site")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3, help="fresh page loads timed")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--screenshot", help="save a screenshot of the page after a drawing and a card")
    args = parser.parse_args()
    www = Path(args.www)
    if not args.skip_export:
        from cnnscope.serve.site import export_site

        www.mkdir(parents=True, exist_ok=True)
        info = export_site(args.run, www / "site", data_dir=args.data_dir)
        print(f"export: {info['seconds']} s, {info['files']} files")
    for name, size in sizes(www / "site").items():
        print(f"{name:40s} {size / 1e6:8.2f} MB")
    from playwright.sync_api import sync_playwright

    server, url = serve(www)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        results = start_times(browser, url, args.loads)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        wait_until(page, "document.body.dataset.ready === '1'")
        results.update(interactions(page, args.repeats))
        if args.screenshot:
            screenshot(page, args.screenshot)
        browser.close()
    server.shutdown()
    print(f"{'ms':40s}  median     p90     max")
    for name, values in results.items():
        print(f"{name:40s} {stats(values)}")
    print(json.dumps({k: statistics.median(v) for k, v in results.items()}))
    return 0


def screenshot(page, path: str) -> None:
    page.select_option("#layer", page.evaluate("document.querySelector('#layer').options[0].value"))
    wait_until(page, "document.body.dataset.busy === '0'")
    draw(page, 0.0)
    wait_until(page, "document.querySelector('#true-label').textContent === 'your drawing' && "
                     "document.body.dataset.busy === '0'")
    grid = page.locator("#grid").bounding_box()
    page.mouse.click(grid["x"] + grid["width"] * 0.3, grid["y"] + 10)
    page.wait_for_selector("#card .tops canvas")
    time.sleep(0.5)
    page.screenshot(path=path)


if __name__ == "__main__":
    sys.exit(main())
