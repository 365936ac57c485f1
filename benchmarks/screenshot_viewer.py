"""Screenshot of the viewer for the README: serve a run, draw a digit in headless Chromium, open a map card.

Usage (from the repository root):
    python benchmarks/screenshot_viewer.py runs/seed-iv-3ep --data-dir ../shared/data --out docs/images/viewer.png

Starts `cnnscope serve RUN` on a free local port, drives Debian's Chromium (/usr/bin/chromium) through Playwright
(never `playwright install`), draws a "7" on the canvas with the mouse, waits for the prediction and the grid to
update, clicks one map of the grid to open its card (kernel, maximising pattern, top images), and saves the
page. The PNG is re-encoded with a 256-colour palette when that is needed to stay under --max-kb.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SEVEN = [(0.26, 0.24), (0.72, 0.22), (0.56, 0.50), (0.44, 0.80)]  # a "7": the bar, then the stem (canvas fractions)
IDLE = "document.body.dataset.busy === '0' && Number(document.querySelector('#grid').dataset.renders) >= {}"


def wait_until(page, expression: str, timeout: int = 20_000) -> None:
    """Poll a JavaScript expression until it is true (page.evaluate: works under the page's CSP, which forbids
    the eval that page.wait_for_function uses for expressions)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} ms waiting for {expression}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, data_dir: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "cnnscope", "serve", run, "--port", str(port)]
    if data_dir:
        command += ["--data-dir", data_dir]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "api/info", timeout=2) as response:
                json.loads(response.read())
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise SystemExit(f"the server did not start:\n{output}") from None
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def draw_stroke(page, points: list[tuple[float, float]]) -> None:
    """Press, move through `points` (fractions of the drawing canvas) in small steps, release: like a hand."""
    box = page.locator("#draw").bounding_box()

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + box["width"] * point[0], box["y"] + box["height"] * point[1]

    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(point), steps=14)
    page.mouse.up()


def shrink_png(data: bytes, max_bytes: int) -> bytes:
    """`data` as is when small enough, else re-encoded with a 256-colour palette (then 128, 64)."""
    from PIL import Image

    if len(data) <= max_bytes:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    for colours in (256, 128, 64):
        buffer = io.BytesIO()
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True)
        if buffer.tell() <= max_bytes:
            break
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="docs/images/viewer.png")
    parser.add_argument("--layer", default="Conv2D_2", help="layer shown in the grid (default Conv2D_2)")
    parser.add_argument("--map", type=int, default=None,
                        help="map whose card is opened (default: the one responding most strongly to the drawing; "
                             "-1: no card)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--max-kb", type=int, default=380)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    proc, url = start_server(args.run, args.data_dir)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": args.width, "height": args.height},
                                        device_scale_factor=1)
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(url)
                wait_until(page, IDLE.format(1), timeout=60_000)
                renders = int(page.get_attribute("#grid", "data-renders"))
                if page.eval_on_selector("#layer", "el => el.value") != args.layer:
                    page.select_option("#layer", args.layer)
                    wait_until(page, IDLE.format(renders + 1), timeout=60_000)
                    renders = int(page.get_attribute("#grid", "data-renders"))

                draw_stroke(page, SEVEN)
                wait_until(page, IDLE.format(renders + 1) + " && document.querySelector('#true-label')"
                                       ".textContent === 'your drawing'", timeout=60_000)
                wait_until(page, "document.body.dataset.busy === '0'", timeout=60_000)
                predicted = page.inner_text("#pred-label")
                confidence = page.inner_text("#pred-conf")
                print(f"drawn a 7: predicted {predicted} ({confidence})")

                chosen = args.map
                if chosen is None:
                    pixels = page.evaluate("state.pixels")
                    request = urllib.request.Request(
                        f"{url}api/activations?layer={args.layer}&format=json", method="POST",
                        data=json.dumps({"pixels": pixels}).encode(), headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=60) as response:
                        grid = json.loads(response.read())
                    chosen = strongest_map(grid)
                if chosen >= 0:
                    layout = page.evaluate("({cell: gridLayout.cell, cellH: gridLayout.cellH, "
                                           "cols: gridLayout.meta.cols})")
                    box = page.locator("#grid").bounding_box()
                    row, col = divmod(chosen, layout["cols"])
                    page.mouse.click(box["x"] + col * (layout["cell"] + 3) + layout["cell"] / 2,
                                     box["y"] + row * (layout["cellH"] + 3) + layout["cellH"] / 2)
                    page.wait_for_selector("#card .top-item", timeout=120_000)
                    wait_until(page, "(() => { const img = document.querySelector('#card img.pattern');"
                                           " return !img || (img.complete && img.naturalWidth > 0); })()",
                                           timeout=120_000)
                    page.mouse.move(5, args.height - 5)  # no hover tooltip in the picture
                    print(f"card: {page.inner_text('#card-title')}")
                png = page.screenshot()
            finally:
                browser.close()
    finally:
        stop_server(proc)
    if errors:
        raise SystemExit(f"the page reported errors: {errors}")
    data = shrink_png(png, args.max_kb * 1024)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    print(f"{out}: {args.width}×{args.height}, {len(data) / 1024:.0f} KB (screenshot {len(png) / 1024:.0f} KB)")
    return 0


def strongest_map(grid: dict) -> int:
    """Index of the map with the strongest single response in a /api/activations?format=json answer.

    (The largest mean tends to pick a map that fires on the background, whose card is less telling.)"""
    peaks = [max(max(row) for row in fmap) for fmap in grid["activations"]]
    return max(range(len(peaks)), key=peaks.__getitem__)


if __name__ == "__main__":
    sys.exit(main())
