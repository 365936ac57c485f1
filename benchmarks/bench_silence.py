"""Issue 23's goal "no command silent for more than 2 s on a terminal", measured: each long command runs in a
pseudo-terminal (so progress bars are on, as a user sees them) and every chunk it writes is timed; the longest
silence is the longest gap between the start, any output and the exit (for `serve`: until it prints its address).

    CNNSCOPE_DATA_DIR=../shared/data PYTHONPATH=src python benchmarks/bench_silence.py RUN_DIR [--only NAME ...]

RUN_DIR: a trained seed-iv run on MNIST (e.g. `cnnscope train --config configs/seed-iv-fast.toml --epochs 1`).
Everything is written under a temporary folder. Prints a Markdown table: command, total seconds, longest silence
and where it fell (after which line).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def commands(run: str, out: str) -> dict[str, list[str]]:
    """name -> argv after `cnnscope` (the README's commands, on `run`)."""
    return {
        "train (tiny, 1 epoch)": ["train", "--preset", "tiny", "--epochs", "1", "--out", f"{out}/t", "--no-report"],
        "data mnist": ["data", "mnist", "--out", f"{out}/d.png"],
        "activations all layers": ["activations", run, "--index", "0", "--layer", "all", "--out", f"{out}/a.png"],
        "patterns Conv2D_3": ["patterns", run, "--layer", "Conv2D_3", "--out", f"{out}/p.png"],
        "explain, all methods": ["explain", run, "--index", "0", "--method", "all", "--out", f"{out}/x.png"],
        "profile Conv2D_3": ["profile", run, "--layer", "Conv2D_3", "--out", f"{out}/r.png"],
        "errors": ["errors", run, "--out", f"{out}/e.png"],
        "compare A A --layer all": ["compare", run, run, "--layer", "all", "--out", f"{out}/c.png"],
        "report": ["report", run, "--out", f"{out}/report.html"],
        "serve (until it answers)": ["serve", run, "--port", "8791"],
    }


def timed(argv: list[str], until: str | None) -> tuple[float, float, str]:
    """(total seconds, longest silence, the last line before it) of `cnnscope argv` on a pseudo-terminal; `until`:
    stop the command once this text appears."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a new pty is 0×0: bars would be empty
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnscope", *argv], stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    start = last = time.monotonic()
    longest, before, text = 0.0, "(start)", ""
    while True:
        ready, _, _ = select.select([master], [], [], 0.05)
        now = time.monotonic()
        if ready:
            try:
                chunk = os.read(master, 65536).decode(errors="replace")
            except OSError:  # the command closed the terminal: it has ended
                break
            if not chunk:
                break
            if now - last > longest:
                longest, before = now - last, _last_line(text)
            last, text = now, text + chunk
            if until and until in text:
                os.killpg(proc.pid, signal.SIGINT)
                break
        elif proc.poll() is not None:
            break
    proc.wait()
    end = time.monotonic()
    if not until and end - last > longest:
        longest, before = end - last, _last_line(text) + " (to the exit)"
    os.close(master)
    return end - start, longest, before


def _last_line(text: str) -> str:
    lines = [line.strip() for line in ANSI.sub("\n", text).splitlines() if line.strip()]
    return (lines[-1][:70] if lines else "(start)").replace("|", "/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--only", nargs="*", help="names (substrings) of the commands to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        rows = []
        for name, argv in commands(args.run, out).items():
            if args.only and not any(part in name for part in args.only):
                continue
            total, longest, before = timed(argv, "http://" if argv[0] == "serve" else None)
            rows.append(f"| `{name}` | {total:.1f} | **{longest:.2f}** | {before} |")
            print(rows[-1], flush=True)
    print("\n| command | seconds | longest silence (s) | after |\n| --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
