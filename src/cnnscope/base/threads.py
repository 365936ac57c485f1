"""One thread budget per process (issue 23, item 3: thread pools fighting for the cores).

A cnnscope process holds two thread pools that compute: PyTorch's OpenMP team (intra-op parallelism) and numpy's
OpenBLAS pool. Each sizes itself to the cores, and each keeps its threads spinning for a while after its work
ends, so code that alternates the two (compare: a forward pass, then a correlation matmul, batch after batch)
runs four busy threads on two cores. cnnscope's heavy work is torch's; its numpy products are small. So, before
numpy or torch is imported, `configure` gives numpy's BLAS one thread and sizes OpenMP to the cores this process
may run on (the CPU affinity, which a container or `taskset` narrows), unless the user set these variables.
"""

from __future__ import annotations

import os
import threading

# numpy's BLAS (the wheels ship OpenBLAS). Not MKL_NUM_THREADS: torch reads it too and would drop to one thread.
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS",)


def cores() -> int:
    """The CPU cores this process may run on (its affinity; os.cpu_count() where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the thread variables this process lacks (numpy's BLAS: 1 thread; OpenMP, hence torch: the cores) in
    `environ` (default os.environ); returns what was set. Only effective before numpy and torch are imported."""
    environ = os.environ if environ is None else environ
    wanted = {name: "1" for name in BLAS_VARIABLES}
    wanted["OMP_NUM_THREADS"] = str(cores())
    added = {name: value for name, value in wanted.items() if not environ.get(name)}
    environ.update(added)
    return added


# Torch work of background threads (the viewer's warm-up, the dashboard's compare matrix), one batch at a time
# in the process: two threads computing at once would each open an OpenMP team of `cores()` threads.
BACKGROUND = threading.Lock()

__all__ = ["BACKGROUND", "configure", "cores"]
