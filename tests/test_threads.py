"""One thread budget per process (issue 23, item 3): numpy's BLAS gets one thread, OpenMP (torch) the cores, unless
the user chose; a cnnscope process then holds no more compute threads than cores."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from cnnscope.base.threads import BACKGROUND, configure, cores


def test_configure_fills_only_what_the_user_left_unset():
    env = {"OPENBLAS_NUM_THREADS": "4"}
    added = configure(env)
    assert env["OPENBLAS_NUM_THREADS"] == "4" and "OPENBLAS_NUM_THREADS" not in added
    assert env["OMP_NUM_THREADS"] == str(cores()) and "MKL_NUM_THREADS" not in env  # torch reads MKL's too
    assert configure(env) == {}  # a second call changes nothing


def test_cores_follow_the_affinity():
    assert cores() == len(os.sched_getaffinity(0))


CHILD = """
import os, sys
from cnnscope.base.threads import configure
if sys.argv[1] == "fixed":
    configure()
import numpy as np, torch
x = torch.randn(64, 1, 28, 28); w = torch.randn(32, 1, 3, 3)
for _ in range(3):
    y = torch.nn.functional.conv2d(x, w).reshape(64, -1).numpy()
    (y.astype(np.float64) @ y.T.astype(np.float64)).sum()
print(len(os.listdir("/proc/self/task")), torch.get_num_threads())
"""


def test_a_configured_process_holds_one_compute_thread_per_core():
    """Counted, not timed: after a conv (torch's OpenMP team) and a float64 matmul (numpy's BLAS pool), the
    process holds at most `cores` threads (main + OpenMP workers; BLAS runs in the calling thread)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    found = {}
    for mode in ("fixed", "default"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        found[mode] = (int(out[0]), int(out[1]))
    assert found["fixed"][1] == cores()
    assert found["fixed"][0] <= cores() + 0, found  # main thread + (cores − 1) OpenMP workers
    if cores() > 1:
        assert found["default"][0] > found["fixed"][0], found  # numpy's BLAS pool added its own threads


def test_background_work_is_one_at_a_time():
    assert isinstance(BACKGROUND, type(threading.Lock()))
    from cnnscope.serve import viewer

    assert viewer.BACKGROUND is BACKGROUND  # the viewer's warm-up batches take the process-wide lock
