"""The dashboard gives back the memory of the viewers it drops (issue 21, item 2), under uvicorn and in-process.

Under uvicorn, eight runs asked for in turn grew the server by a whole model and data set per request
(0.27 → 7.7 GB in three rounds) although at most four viewers were kept: a dropped viewer app is a reference
cycle, freed only by a rare full collection. The dashboard now collects when it drops one, and viewers of the
same data share one copy.
"""

from __future__ import annotations

import gc
import http.client
import os
import selectors
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from cnnscope.serve.dashboard import Dashboard
from conftest import make_data_dir
from test_catalog import copy_run

RUNS = 6


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)  # a bound, not a wait
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _startup_line(proc: subprocess.Popen, limit: float = 180.0) -> str:
    """The server's first stdout line ("cnnscope dashboard for DIR: URL"), waited for on the pipe itself."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(limit):
            raise AssertionError("the server printed no start-up line")
    return proc.stdout.readline()


@pytest.fixture(scope="module")
def big_data(tmp_path_factory) -> Path:
    """The synthetic data, 30,000 training pictures: ~120 MB per loaded copy, so a kept copy shows in RSS."""
    return make_data_dir(tmp_path_factory.mktemp("bigdata"), n_train=30_000, n_test=300)


def test_uvicorn_dashboard_memory_stays_flat_over_rounds(trained_run, big_data, tmp_path):
    root = tmp_path / "runs"
    for n in range(1, RUNS + 1):
        copy_run(trained_run, root / f"r{n}")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnscope", "serve", str(root), "--port", "0", "--data-dir",
                             str(big_data)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = _startup_line(proc)
        assert "http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        rss = []
        for _ in range(3):
            assert [_get(port, f"/runs/r{n}/api/info") for n in range(1, RUNS + 1)] == [200] * RUNS
            rss.append(_rss_mb(proc.pid))
        # Before the fix each request kept another ~120 MB data set (~1,400 MB over rounds 2 and 3).
        assert rss[2] - rss[0] < 150, rss
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_dropped_viewer_is_freed_at_once_and_data_is_shared(trained_run, data_dir, tmp_path):
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        copy_run(trained_run, root / name)
    board = Dashboard(root, data_dir, warm_up=False, max_open=1)
    gc.disable()  # only the dashboard's own collection may free the dropped viewer
    try:
        first = weakref.ref(board.viewer_app("a").state.viewer)
        data = weakref.ref(first().dataset)
        assert board.viewer_app("b").state.viewer.dataset is data()  # the same data: one copy
        assert first() is None  # dropped and freed, although a viewer app is a reference cycle
        board.viewer_app("c")
        assert list(board.viewers) == ["c"] and data() is not None
    finally:
        gc.enable()
        board.close()
