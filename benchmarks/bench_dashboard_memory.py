"""The dashboard's memory under uvicorn while runs' viewers are opened and dropped (issue 21, item 2).

Usage (from the repository root):
    python benchmarks/bench_dashboard_memory.py RUN --data-dir ../shared/data [--copies 8] [--rounds 3]

Copies RUN (a quick-start run) `--copies` times into a temporary folder, starts `cnnscope serve FOLDER --port 0`
in a subprocess (127.0.0.1), waits for its "cnnscope dashboard …: URL" line, then for each round asks
GET /runs/rN/api/info for N = 1…copies, one after the other (each opens that run's viewer: the model and its
data; at most MAX_OPEN stay open). Prints VmRSS after start-up, after each round, and after the server has been
idle for `--idle` seconds, plus VmHWM (the peak) and the status codes.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = ("config.toml", "model.safetensors", "history.json", "metrics.json", "preprocess.json", "state.json")


def status_kb(pid: int, key: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start(folder: Path, data_dir: str | None) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "cnnscope", "serve", str(folder), "--port", "0"]
    command += ["--data-dir", data_dir] if data_dir else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # "cnnscope dashboard for DIR: http://127.0.0.1:PORT/  (Ctrl-C to stop)"
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "runs"
        for n in range(1, args.copies + 1):
            (folder / f"r{n}").mkdir(parents=True)
            for name in KEEP:
                if (Path(args.run) / name).is_file():
                    shutil.copy2(Path(args.run) / name, folder / f"r{n}" / name)
        proc, port = start(folder, args.data_dir)
        try:
            codes: collections.Counter = collections.Counter()
            print(f"started: VmRSS {status_kb(proc.pid, 'VmRSS') / 1024:,.0f} MB", flush=True)
            for round_ in range(1, args.rounds + 1):
                began = time.perf_counter()
                for n in range(1, args.copies + 1):
                    codes[get(port, f"/runs/r{n}/api/info")] += 1
                print(f"round {round_}: VmRSS {status_kb(proc.pid, 'VmRSS') / 1024:,.0f} MB "
                      f"({time.perf_counter() - began:.1f} s)", flush=True)
            time.sleep(args.idle)  # a benchmark, not a test: give the warm-up threads time to stop
            print(f"after {args.idle:.0f} s idle: VmRSS {status_kb(proc.pid, 'VmRSS') / 1024:,.0f} MB; "
                  f"peak VmHWM {status_kb(proc.pid, 'VmHWM') / 1024:,.0f} MB; status codes {dict(codes)}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
