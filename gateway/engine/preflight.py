"""Is there room for the engine? Asked by ``gateway serve`` before anything loads.

vLLM's CPU worker refuses to start when the memory it is to reserve (``kv_cache_gib``, or
``gpu_memory_utilization`` of the memory node's total) is more than the node has
available, but only after the engine has spent its start getting there, as
``WorkerProc initialization failed`` deep in a traceback. A common cause is a previous
gateway's engine left running (see ``common.lifeline``: since that, an engine no longer
outlives its gateway, but an older version's, or one from another program, may be
there). So the same comparison is made here first, and a refusal is one line that names
the leftover vLLM processes holding memory, with their pids.

The memory numbers are read the way vLLM 0.32 reads them
(``vllm.utils.cpu_resource_utils.get_memory_node_info``), without importing vLLM, which
takes seconds; the unit test compares both. GPU builds are not checked here (vLLM's own
check there is quick and its message clear).
"""

from __future__ import annotations

import glob
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from gateway.common.usage import UsageError

VLLM_TITLE = "VLLM::"  # vLLM's process titles: VLLM::EngineCore, VLLM::Worker...
V1_UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a huge number


@dataclass(frozen=True)
class NodeMemory:
    total: int
    available: int


def engine_needs(kv_cache_gib: float | None, gpu_memory_utilization: float, total: int) -> int:
    """Bytes vLLM's CPU worker insists on having available at its start."""
    if kv_cache_gib is not None:
        return int(kv_cache_gib * 2**30)
    return math.ceil(total * gpu_memory_utilization)


def check_engine_room(kv_cache_gib: float | None, gpu_memory_utilization: float) -> None:
    """Raise a one-line ``UsageError`` when the CPU engine could not reserve its memory."""
    memory = node_memory()
    needs = engine_needs(kv_cache_gib, gpu_memory_utilization, memory.total)
    if needs <= memory.available:
        return
    setting = (
        f"kv_cache_gib {kv_cache_gib:g}"
        if kv_cache_gib is not None
        else f"gpu_memory_utilization {gpu_memory_utilization:g} of {gib(memory.total)}"
    )
    message = (
        f"not enough memory for the engine: it reserves {gib(needs)} ({setting}), and "
        f"{gib(memory.available)} is available"
    )
    leftovers = leftover_engines()
    if leftovers:
        held = ", ".join(f"{p['pid']} {p['name']} ({gib(p['rss'])})" for p in leftovers)
        pids = " ".join(str(p["pid"]) for p in leftovers)
        message += (
            f"; vLLM processes without a running front end hold memory: {held} (a crashed "
            f"earlier engine? stop them with: kill {pids})"
        )
    else:
        message += "; free memory, or lower kv_cache_gib / gpu_memory_utilization"
    raise UsageError(message)


def leftover_engines() -> list[dict[str, object]]:
    """vLLM processes whose front end (the first ancestor that is not a vLLM process) is
    gone: re-parented to PID 1 or to a subreaper, which is not a Python program."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "memory_info"]):
        try:
            if not proc.info["name"].startswith(VLLM_TITLE):
                continue
            front = proc.parent()
            while front is not None and front.name().startswith(VLLM_TITLE):
                front = front.parent()
            if front is None or front.pid == 1 or "python" not in " ".join(front.cmdline()):
                rss = proc.info["memory_info"].rss
                found.append({"pid": proc.pid, "name": proc.info["name"], "rss": rss})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def node_memory() -> NodeMemory:
    """Total and available memory of the node of this process's first allowed CPU, as
    vLLM counts them: free plus file cache plus reclaimable slab, clamped to the cgroup's
    limit (a container's, a pod's)."""
    node = first_cpu_node()
    meminfo = Path(f"/sys/devices/system/node/node{node}/meminfo")
    if sys.platform != "linux" or not meminfo.exists():
        vm = psutil.virtual_memory()
        total, available = vm.total, vm.available
    else:
        fields = {}
        for line in meminfo.read_text().splitlines():  # "Node 0 MemTotal:  97421888 kB"
            parts = line.split()
            fields[parts[2].rstrip(":")] = int(parts[3]) * 1024
        total = fields["MemTotal"]
        available = (
            fields["MemFree"]
            + fields["Active(file)"]
            + fields["Inactive(file)"]
            + fields["SReclaimable"]
        )
    limit, usage = cgroup_memory()
    if limit is not None and limit < total:
        total = limit
        available = max(0, min(available, limit - (usage or 0)))
    return NodeMemory(total, available)


def first_cpu_node() -> int:
    if not hasattr(os, "sched_getaffinity"):
        return 0
    cpu = min(os.sched_getaffinity(0))
    for path in glob.glob(f"/sys/devices/system/cpu/cpu{cpu}/node*"):
        return int(path.rsplit("node", 1)[1])
    return 0


def cgroup_memory() -> tuple[int | None, int | None]:
    """(limit, usage) of this process's memory cgroup, v2 or v1; (None, None) unlimited."""
    limit = _read_int("/sys/fs/cgroup/memory.max")
    if limit is not None:
        return limit, _read_int("/sys/fs/cgroup/memory.current")
    limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if limit is not None and limit < V1_UNLIMITED:
        return limit, _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    return None, None


def _read_int(path: str) -> int | None:
    try:
        value = Path(path).read_text().strip()
        return None if not value or value == "max" else int(value)
    except (OSError, ValueError):
        return None


def port_holder(port: int) -> str | None:
    """``pid N (command)`` of the process listening on ``port``, if it can be seen."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline())[:80]
            except psutil.Error:
                command = "?"
            return f"pid {conn.pid} ({command})"
    return None


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
