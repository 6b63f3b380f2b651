"""Where a benchmark's numbers came from: the machine, the code, and how much of the CPU
the machine really had.

On a shared virtual machine the hypervisor can take a large share of the CPU ("steal"
time in ``/proc/stat``): one run of the perf matrix here went 2.4 times slower than the
previous one, ``vllm serve`` included, and its millisecond differences grew with it.
Ratios within one run survive that; absolute times do not, so a report says how much
was stolen while it ran and which commit it measured.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import REPO_ROOT

STAT = Path("/proc/stat")


def revision(root: Path = REPO_ROOT) -> dict[str, Any] | None:
    """The commit checked out and whether tracked files differ from it; None outside a
    git checkout (an installed package)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed)}


@dataclass(frozen=True)
class CpuTimes:
    """The machine's cumulative CPU time split, in clock ticks (first line of /proc/stat)."""

    busy: int
    idle: int
    steal: int

    @classmethod
    def read(cls, path: Path = STAT) -> CpuTimes | None:
        try:
            fields = path.read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if not fields or fields[0] != "cpu" or len(fields) < 9:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return cls(user + nice + system + irq + softirq, idle + iowait, steal)

    def share_since(self, before: CpuTimes) -> dict[str, float] | None:
        """Shares of the wall-clock CPU time between two readings: what ran here (busy),
        what sat idle, and what the hypervisor gave to other guests (steal)."""
        busy, idle, steal = (self.busy - before.busy, self.idle - before.idle,
                             self.steal - before.steal)  # fmt: skip
        total = busy + idle + steal
        if total <= 0:
            return None
        return {"busy": round(busy / total, 3), "idle": round(idle / total, 3),
                "steal": round(steal / total, 3)}  # fmt: skip


def share_from(start: CpuTimes | None) -> dict[str, float] | None:
    """The CPU shares from ``start`` to now; None where /proc/stat cannot be read."""
    now = CpuTimes.read()
    return now.share_since(start) if start and now else None


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)),
        "revision": revision(),
    }


def describe(machine_info: dict[str, Any]) -> str:
    """One report line: CPUs, the steal share while the run lasted, the commit."""
    parts = [f"{machine_info.get('cpus', '?')} CPUs"]
    cpu = machine_info.get("cpu_share")
    if cpu:
        parts.append(
            f"CPU time while it ran: {cpu['busy']:.0%} busy, {cpu['idle']:.0%} idle, "
            f"{cpu['steal']:.0%} stolen by the hypervisor (absolute times scale with it; "
            "ratios within the run much less)"
        )
    rev = machine_info.get("revision")
    if rev:
        dirty = " with local changes" if rev["dirty"] else ""
        parts.append(f"code at {rev['commit'][:12]}{dirty}")
    return "Machine: " + "; ".join(parts) + "."
