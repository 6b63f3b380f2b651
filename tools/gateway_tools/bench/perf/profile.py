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

RATE = 200  # samples per second


def wrapper(out: Path, rate: int = RATE) -> list[str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).is_file():
        raise SystemExit("--profile needs py-spy (pip install py-spy; it is in the dev extra)")
    return [spy, "record", "--format", "raw", "--rate", str(rate), "--threads", "--idle",
            "--nonblocking", "--output", str(out), "--"]  # fmt: skip


# uvicorn runs on uvloop: while the loop waits in epoll or runs its own C code, the
# deepest Python frame py-spy sees is ``Runner.run``.
LOOP_LEAVES = ("Runner.run (", "select (selectors.py", "_run_once (asyncio/base_events.py")
STARTUP_MARKERS = ("start_services (", "<frozen importlib")
REQUEST_MARKERS = ("gateway/api/", "gateway/service/", "BodyLimit.__call__", "uvicorn/protocols")


def summarise(path: Path, rate: int, requests: int, top: int = 20) -> dict[str, Any]:
    """Where the gateway's event-loop thread spent the run, from py-spy's samples.

    Start-up (engine build, imports) is split off; the rest is "loop" (uvloop waiting or
    in C), our request path, and vLLM's front end (output processing, detokenising).
    CPU milliseconds per request = samples x sampling interval / requests.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue  # the event-loop thread; py-spy puts the thread's name first
        count = int(count_text)
        if any(m in f for f in frames for m in STARTUP_MARKERS):
            kinds["startup"] += count
            continue
        if any(frames[-1].startswith(m) or m in frames[-1] for m in LOOP_LEAVES):
            kinds["loop_idle_or_c"] += count
            continue
        if any(m in f for f in frames for m in REQUEST_MARKERS):
            kinds["gateway_request_path"] += count
        elif any("vllm/" in f for f in frames):
            kinds["vllm_front_end"] += count
        else:
            kinds["other_python"] += count
        self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if "gateway/" in f}:
            inclusive[frame] += count
    running = sum(n for k, n in kinds.items() if k != "startup")
    ms = 1000 / rate
    return {
        "samples": dict(kinds),
        "share_of_run": {k: round(n / running, 4) for k, n in kinds.items() if k != "startup"}
        if running else {},
        "cpu_ms_per_request": {
            k: round(kinds[k] * ms / requests, 3)
            for k in ("gateway_request_path", "vllm_front_end", "other_python")
        } if requests else {},
        "self_top": [(name, n) for name, n in self_time.most_common(top)],
        "gateway_inclusive_top": [(name, n) for name, n in inclusive.most_common(top)],
    }  # fmt: skip


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"
