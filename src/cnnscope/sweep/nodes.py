"""The nodes of a Ray cluster as a sweep sees them: a label for each (its id and address), the check that every
node runs the driver's cnnscope before the first trial, and a failed Ray task as one line naming its node.

Ray is an optional dependency (cnnscope[ray]): it is imported inside the functions that need it.
"""

from __future__ import annotations

import logging
import platform

from cnnscope.base import version
from cnnscope.base.errors import SweepError

log = logging.getLogger("cnnscope")
PROBE_SECONDS = 120  # a node's first Python worker starts and imports cnnscope within this (2 busy cores: ~3 s)


def label(node_id: str, address: str) -> str:
    """How a node is named in messages: the start of its Ray id and its address, e.g. "64fb913d at 10.0.0.2"."""
    return f"{node_id[:8]} at {address}"


def here() -> str:
    """The label of the node this Ray task runs on."""
    import ray  # optional dependency

    return label(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())


def node_facts() -> dict[str, str]:
    """What a node runs (a Ray task on that node): its label, cnnscope's and Python's versions."""
    return {"node": here(), "cnnscope": version.__version__, "python": platform.python_version()}


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, shortened."""
    cause = getattr(exc, "cause", None)  # a RayTaskError carries the task's own exception
    exc = cause if isinstance(cause, BaseException) else exc
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:limit]


def mismatch(facts: list[dict[str, str]], wanted: str) -> str | None:
    """The first node whose cnnscope is not the driver's `wanted` version, as a sentence (None: all match)."""
    for fact in facts:
        if fact.get("cnnscope") != wanted:
            return (f"node {fact.get('node')} runs cnnscope {fact.get('cnnscope')}, this driver {wanted}: install "
                    f"the same version on every node (pip install cnnscope=={wanted}) before sweeping")
    return None


def check_nodes() -> list[dict[str, str]]:
    """Every alive node that can run a trial (CPUs) answers with its facts; SweepError, naming the node, when one
    cannot run cnnscope, does not answer, or runs another cnnscope version than this driver."""
    import ray  # optional dependency
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
    if not nodes:
        raise SweepError("the Ray cluster has no node with a CPU to run trials on")
    probe = ray.remote(num_cpus=0, max_retries=0)(node_facts)
    refs = {label(n["NodeID"], n["NodeManagerAddress"]):
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes}
    facts = []
    for name, ref in refs.items():
        try:
            facts.append(ray.get(ref, timeout=PROBE_SECONDS))
        except ray.exceptions.GetTimeoutError:
            raise SweepError(f"node {name} did not answer within {PROBE_SECONDS} s (it cannot start a Python "
                             f"worker); check it with 'ray status'") from None
        except Exception as exc:  # the node cannot import cnnscope, or lacks a dependency
            raise SweepError(f"node {name} cannot run cnnscope ({one_line(exc)}); install cnnscope "
                             f"{version.__version__} there") from None
    if problem := mismatch(facts, version.__version__):
        raise SweepError(problem)
    log.info("Ray: %d node(s) with cnnscope %s: %s", len(facts), version.__version__,
             ", ".join(f["node"] for f in facts))
    return facts


def failure(exc: BaseException, node: str | None) -> tuple[str, str]:
    """A failed Ray task as ("lost", reason) when its node died (the trial resumes elsewhere from its last epoch),
    else ("failed", reason); the reason names the node and what happened."""
    import ray  # optional dependency

    errors = ray.exceptions
    where = f"node {node}" if node else f"node at {getattr(exc, 'ip', None) or 'an unknown address'}"
    if isinstance(exc, errors.NodeDiedError):
        return "lost", f"{where} died (it left the cluster, or its raylet crashed)"
    if isinstance(exc, errors.OutOfMemoryError):
        return "failed", f"{where} ran out of memory (Ray's memory monitor killed the trial)"
    if isinstance(exc, errors.WorkerCrashedError):
        return "failed", f"the worker process on {where} died (killed, or out of memory)"
    if isinstance(exc, errors.RayTaskError):
        return "failed", f"{where} could not run the trial ({one_line(exc)})"
    return "failed", f"the Ray task failed on {where} ({one_line(exc)})"


def connect_error(exc: BaseException, address: str | None) -> str:
    """Why ray.init failed, as one line: token authentication named, the address to check otherwise."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    target = f"the Ray cluster at {address}" if address else "a local Ray"
    if any(type(e).__name__ == "AuthenticationError" for e in chain):
        return (f"{target} refused the connection: it uses token authentication; set RAY_AUTH_MODE=token and "
                f"RAY_AUTH_TOKEN_PATH to a file holding the cluster's token (README, 'Sweeps on a Ray cluster')")
    return f"cannot start or reach {target} ({' '.join(str(exc).split())[:200]}); check --ray-address"

