"""Latency of the viewer's answers (activation grids, predictions, map cards) for a trained run.

Usage (from the repository root):
    python benchmarks/bench_serve.py runs/seed-iv-3ep --data-dir ../shared/data            # in-process (ASGI)
    python benchmarks/bench_serve.py runs/seed-iv-3ep --data-dir ../shared/data --http     # real uvicorn server

Every request is timed end to end (parameters, forward pass, colour map, PNG encoding, response); the first
request of each kind is a warm-up and not counted. Prints median / 95th percentile / max per kind.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings

import torch


def stroke_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(img).line([(90, 50), (190, 60), (120, 230)], fill=255, width=20)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def summarise(name: str, seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<46} n={len(ms):<3} median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--http", action="store_true", help="measure through a real `cnnscope serve` process")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    proc = None
    if args.http:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "cnnscope", "serve", args.run, "--port", str(port)]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/api/info", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)

        def get(path: str, params: dict) -> bytes:
            with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}") as r:
                return r.read()

        def post(path: str, params: dict, body: bytes) -> bytes:
            request = urllib.request.Request(f"{base}{path}?{urllib.parse.urlencode(params)}", data=body,
                                             headers={"Content-Type": "image/png"})
            with urllib.request.urlopen(request) as r:
                return r.read()
    else:
        warnings.filterwarnings("ignore", message="Using `httpx`")
        from starlette.testclient import TestClient

        from cnnscope.serve import create_app

        t0 = time.perf_counter()
        app = create_app(args.run, args.data_dir, warm_up=False)
        print(f"loaded the run and its data in {time.perf_counter() - t0:.1f} s")
        client = TestClient(app, base_url="http://127.0.0.1")  # the viewer only answers its own address

        def get(path: str, params: dict) -> bytes:
            r = client.get(path, params=params)
            r.raise_for_status()
            return r.content

        def post(path: str, params: dict, body: bytes) -> bytes:
            r = client.post(path, params=params, content=body, headers={"Content-Type": "image/png"})
            r.raise_for_status()
            return r.content

    try:
        info = json.loads(get("/api/info", {}))
        layers, n_test = info["grid_layers"], info["sets"]["test"]
        drawing = stroke_png()
        for layer in layers:
            for label, extra in (("png", {}), ("png scale=1 viridis", {"scale": 1, "cmap": "viridis"}),
                                 ("json", {"format": "json"})):
                times = []
                for i in range(args.repeats + 1):
                    t = time.perf_counter()
                    get("/api/activations", {"layer": layer, "index": (37 * i) % n_test, **extra})
                    times.append(time.perf_counter() - t)
                print(summarise(f"GET  activations {layer} {label}", times[1:]))
        for path, params in (("/api/predict", {}), ("/api/activations", {"layer": layers[0]})):
            times = []
            for _ in range(args.repeats + 1):
                t = time.perf_counter()
                post(path, params, drawing)
                times.append(time.perf_counter() - t)
            print(summarise(f"POST {path[5:]} (drawn PNG)", times[1:]))
        t = time.perf_counter()
        get("/api/card", {"layer": layers[-1], "map": 0, "index": 0})
        print(f"first map card (top images over the test set, class read-out): {time.perf_counter() - t:.2f} s")
        times = []
        for m in range(1, 11):
            t = time.perf_counter()
            get("/api/card", {"layer": layers[-1], "map": m, "index": m})
            times.append(time.perf_counter() - t)
        print(summarise(f"GET  card {layers[-1]} (caches warm)", times))
        for method in (m["name"] for m in info["methods"]):  # heat map + deletion test, one image
            times = []
            for i in range(4):
                t = time.perf_counter()
                get("/api/explain", {"index": i, "method": method})
                times.append(time.perf_counter() - t)
            print(summarise(f"GET  explain {method}", times[1:]))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
