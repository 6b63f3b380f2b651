"""Profiling the gateway process under load with py-spy, summarised for the report.

py-spy starts the gateway (attaching to a running interpreter needs ptrace rights that
containers often lack), samples every thread including idle ones, and writes collapsed
stacks; ``summarise`` turns those into the shares that answer "where does the
front-end process spend its time": our code, vLLM's front end, uvicorn, idle.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def wrapper(out: Path, rate: int = 200) -> list[str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).is_file():
        raise SystemExit("--profile needs py-spy (pip install py-spy; it is in the dev extra)")
    return [spy, "record", "--format", "raw", "--rate", str(rate), "--threads", "--idle",
            "--nonblocking", "--output", str(out), "--"]  # fmt: skip


IDLE_LEAVES = ("select (selectors.py", "_run_once (asyncio/base_events.py", "wait (threading.py",
               "poll (selectors.py", "recv_multipart", "_recv_copy", "recv (zmq")  # fmt: skip


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    """Self time of the busiest functions, and inclusive time of the gateway's own
    modules, as shares of all non-idle samples of the main (event-loop) thread."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue  # the event-loop thread; py-spy puts the thread's name first
        total += count
        leaf = frames[-1]
        if any(marker in leaf for marker in IDLE_LEAVES):
            continue
        busy += count
        self_time[_short(leaf)] += count
        for frame in {_short(f) for f in frames if "gateway/" in f}:
            inclusive[frame] += count
    share = (lambda n: round(n / busy, 4)) if busy else (lambda n: 0.0)
    return {
        "samples_main_thread": total,
        "busy_share": round(busy / total, 4) if total else 0.0,
        "self_top": [(name, share(n)) for name, n in self_time.most_common(top)],
        "gateway_inclusive_top": [(name, share(n)) for name, n in inclusive.most_common(top)],
    }


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"
