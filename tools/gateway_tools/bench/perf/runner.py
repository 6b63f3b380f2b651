"""Run one cell against a ``send`` coroutine while sampling the server's memory."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil
from tqdm import tqdm

from gateway_tools.bench.perf.loadgen import Send, closed_loop, open_loop
from gateway_tools.bench.perf.stats import summarise
from gateway_tools.bench.perf.workload import Cell, Workload


class MemorySampler:
    """Peak resident memory of a process and its descendants (the engine core is a
    child), sampled on a thread so it sees the load, not the idle server."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_total_mb = 0.0
        self.peak_front_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            front = root.memory_info().rss
            total = front
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # exited between list and read
                    total += child.memory_info().rss
        except psutil.Error:
            return
        self.peak_front_mb = max(self.peak_front_mb, front / 2**20)
        self.peak_total_mb = max(self.peak_total_mb, total / 2**20)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return


async def run_cell(
    send: Send, workload: Workload, cell: Cell, pid: int, label: str
) -> dict[str, Any]:
    bar = tqdm(total=cell.requests, desc=f"{label} {cell.key}", unit="req", leave=False)
    with MemorySampler(pid) as memory:
        started = time.perf_counter()
        if cell.rate:
            records = await open_loop(send, workload.arrivals(cell), bar.update)
        else:
            records = await closed_loop(send, cell.requests, cell.concurrency, bar.update)
        wall = time.perf_counter() - started
    bar.close()
    summary = summarise(records, wall)
    summary["rss_mb"] = round(memory.peak_total_mb, 1)
    summary["rss_front_mb"] = round(memory.peak_front_mb, 1)
    return summary
