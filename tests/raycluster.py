"""A real two-node Ray cluster on this machine for tests and benchmarks (issue 22): a head and a worker node
started with `ray start --block`, each in its own process group (not its own session: Linux's autogroup scheduler
would give each session its own share of a busy machine's CPU, and a node twice the share of the driver's local
workers) with its own HOME, cache, TMPDIR and Ray folders,
token authentication on (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), no CNNSCOPE_* variable. Stopping kills the
nodes' process groups: only the processes this helper started (`ray stop` would end every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cnnscope

RAY = Path(sys.executable).parent / "ray"
SRC = str(Path(cnnscope.__file__).resolve().parents[1])
DEADLINE = 300.0  # seconds before a wait gives up (they end at their event, usually within seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(event: Callable[[], object], what: str, logs: list[Path]) -> object:
    """Poll `event` until it returns something true; fail (with the logs' tails) after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = event()
        if found:
            return found
        time.sleep(0.05)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.is_file())
    raise AssertionError(f"no {what} within {DEADLINE:.0f} s\n{tails}")


class Cluster:
    """A head and a worker node (1 CPU each) on 127.0.0.1, each in its own process group and folders."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.token = root / "token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        self.nodes: dict[str, subprocess.Popen] = {}

    def auth(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}

    def env(self, name: str) -> dict[str, str]:
        """A node's environment: its own HOME, cache and TMPDIR, cnnscope importable, no CNNSCOPE_* variable."""
        home = self.root / name
        for sub in ("home", "cache", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CNNSCOPE_", "RAY_"))}
        env.update(self.auth(), HOME=str(home / "home"), XDG_CACHE_HOME=str(home / "cache"), TMPDIR=str(home / "tmp"),
                   PYTHONPATH=os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]),
                   RAY_USAGE_STATS_ENABLED="0", RAY_health_check_period_ms="1000",
                   RAY_health_check_failure_threshold="5")  # a killed node is declared dead within ~5 s
        return env

    def start(self, name: str, *args: str) -> None:
        log = self.root / f"{name}.log"
        command = [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                   "--object-store-memory", str(100 * 2**20), "--disable-usage-stats", "--temp-dir",
                   str(self.root / name / "ray"), "--dashboard-agent-listen-port", str(free_port()), *args]
        with open(log, "w") as out:
            self.nodes[name] = subprocess.Popen(command, env=self.env(name), stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, preexec_fn=os.setpgrp)
        proc = self.nodes[name]
        wait_for(lambda: "Ray runtime started" in log.read_text(errors="replace") or proc.poll() is not None,
                 f"'Ray runtime started' from the {name} node", [log])
        assert self.nodes[name].poll() is None, log.read_text()

    def up(self) -> None:
        self.start("head", "--head", "--port", str(self.port), "--include-dashboard", "false",
                   "--ray-client-server-port", str(free_port()), "--dashboard-port", str(free_port()))
        self.start("worker", "--address", f"127.0.0.1:{self.port}")

    def kill(self, name: str) -> None:
        """SIGKILL a node's whole process group (its raylet and workers): only the processes this test started."""
        proc = self.nodes.pop(name, None)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)

    def down(self) -> None:
        for name in list(self.nodes):
            self.kill(name)

    def driver_env(self, data_dir: Path) -> dict[str, str]:
        """The driver's environment: its own HOME and cache, the cluster's token, and the data (CNNSCOPE_DATA_DIR)
        that the nodes do not have."""
        return {**self.env("driver"), "CNNSCOPE_DATA_DIR": str(data_dir)}


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started head and worker node, stopped (their process groups killed, their folders removed) at the end."""
    root = Path(tempfile.mkdtemp(prefix="cnnscope-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    nodes = Cluster(root)
    try:
        nodes.up()
        yield nodes
    finally:
        nodes.down()
        shutil.rmtree(root, ignore_errors=True)
