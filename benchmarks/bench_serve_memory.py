"""Memory and latency of a real `cnnscope serve` process under hostile traffic.

Usage (from the repository root):
    python benchmarks/bench_serve_memory.py runs/seed-iv --data-dir ../shared/data [--uploads 32] [--size 4096]

Starts the server in a subprocess on 127.0.0.1 and reads its memory from /proc/PID/status: VmRSS when idle
(after a map card has filled the caches), the peak (VmHWM, reset through /proc/PID/clear_refs just before)
while `--uploads` concurrent POST /api/predict each send a --size² RGBA PNG (a drawing app's transparent
export, ~70 kB), and VmRSS a few seconds afterwards. Counts the status codes. Then times GET /api/activations
(grid PNGs) alone and while /api/pattern computes maximising patterns for other maps (p50/p95).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, key: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def mb(kb: int) -> str:
    return f"{kb / 1024:,.0f} MB"


def big_png(size: int) -> bytes:
    """A transparent size² RGBA picture with a drawn '7' (what a drawing app exports)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    s = size / 280
    ImageDraw.Draw(img).line([(70 * s, 60 * s), (200 * s, 60 * s), (120 * s, 230 * s)], fill=(0, 0, 0, 255),
                             width=int(18 * s))
    buffer = io.BytesIO()
    img.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 300) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "image/png"} if body else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start(run: str, data_dir: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "cnnscope", "serve", run, "--port", str(port)]
    if data_dir:
        command += ["--data-dir", data_dir]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=1).read()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(proc.stderr.read().decode()) from None
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def uploads(proc: subprocess.Popen, port: int, n: int, size: int) -> None:
    picture = big_png(size)
    print(f"picture: {size}×{size} RGBA PNG, {len(picture):,} bytes; {n} concurrent POST /api/predict")
    request(port, "GET", "/api/card?layer=Conv2D_1&map=0")  # fills the caches (top images, read-out)
    time.sleep(2)
    idle = status_kb(proc.pid, "VmRSS")
    with open(f"/proc/{proc.pid}/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    codes: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def one() -> None:
        try:
            code = request(port, "POST", "/api/predict", picture)
        except OSError as exc:
            code = type(exc).__name__
        with lock:
            codes[code] += 1

    t = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - t
    peak = status_kb(proc.pid, "VmHWM")
    time.sleep(3)
    after = status_kb(proc.pid, "VmRSS")
    time.sleep(12)  # idle worker threads end after 10 s
    later = status_kb(proc.pid, "VmRSS")
    print(f"RSS idle {mb(idle)}, peak during the uploads {mb(peak)}, 3 s after {mb(after)}, 15 s after "
          f"{mb(later)}; {n} answers in {took:.1f} s: {dict(codes)}")


def timed_grids(port: int, n: int, layer: str) -> list[float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        assert request(port, "GET", f"/api/activations?layer={layer}&index={(37 * i) % 10000}") == 200
        times.append(1000 * (time.perf_counter() - t))
        time.sleep(0.02)
    return times


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"n={len(ms)} median {statistics.median(ms):.1f} ms, p95 {ms[round(0.95 * (len(ms) - 1))]:.1f} ms, "
            f"max {ms[-1]:.1f} ms")


def grids_under_patterns(port: int, n: int) -> None:
    import json

    info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info").read())
    layer, last = info["grid_layers"][0], info["grid_layers"][-1]
    print(f"GET /api/activations?layer={layer} alone:            {summary(timed_grids(port, n, layer))}")
    stop, computed = threading.Event(), [0]

    def patterns(offset: int) -> None:
        m = offset
        while not stop.is_set():
            request(port, "GET", f"/api/pattern?layer={last}&map={m}&cmap=viridis")
            computed[0] += 1
            m += 2

    workers = [threading.Thread(target=patterns, args=(k,)) for k in range(2)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    times = timed_grids(port, n, layer)
    stop.set()
    for w in workers:
        w.join()
    print(f"GET /api/activations?layer={layer} while patterns compute: {summary(times)} "
          f"({computed[0]} patterns of {last} computed meanwhile)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--uploads", type=int, default=32)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--grids", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="bursts of uploads, one after the other")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs")
    proc, port = start(args.run, args.data_dir)
    try:
        for _ in range(args.rounds):
            uploads(proc, port, args.uploads, args.size)
        grids_under_patterns(port, args.grids)
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
