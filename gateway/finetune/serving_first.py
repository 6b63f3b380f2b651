"""Training steps aside while the gateway serves: a worker is paused (SIGSTOP to its
process group) the moment a request is admitted, and continued (SIGCONT) once no request
has been in flight for ``idle_s``.

Why not a lower priority alone: measured on this 2-core machine (docs/fine-tuning.md), a
job training under nice 19, with or without SCHED_IDLE, still took ``/v1/classify`` at
concurrency 4 from about 200 ms to 750-850 ms p50. The worker got a quarter of a core
either way: it runs in the gaps the engine leaves between steps, and what it does there
(streaming the model's weights through the shared cache and memory) slows the engine's
next step. A stopped worker touches nothing.

A job under constant traffic would then never train. ``min_share`` (0 by default: serving
always first) lets it run that share of every ``window_s`` even while requests are in
flight, at that cost to their latency. Paused time does not count against the job's
training budget: the worker's training clock is its CPU time (``worker.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable

TICK_S = 0.05


class ServingFirst:
    def __init__(
        self,
        idle_s: float = 1.0,
        min_share: float = 0.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.min_share = min_share
        self.window_s = window_s
        self.clock = clock
        self.in_flight = 0
        self.last_busy = clock()
        self.workers: set[int] = set()  # process groups of running workers
        self.paused_since: float | None = None  # None: the workers run
        self.slice_until = 0.0  # a starving worker's guaranteed run ends then
        self.paused_seconds = 0.0  # all pauses so far, ended ones
        self._ticker: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    # what serving reports -------------------------------------------------------------
    def started(self) -> None:
        """A request was admitted."""
        self.in_flight += 1
        self.last_busy = self.clock()
        if not self.paused and self.clock() >= self.slice_until:
            self._pause()

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_busy = self.clock()

    # the workers ----------------------------------------------------------------------
    def add(self, pgid: int) -> None:
        """A worker started; it is paused at once if serving is busy."""
        self.workers.add(pgid)
        if self.paused or (self.in_flight and self.clock() >= self.slice_until):
            self.paused_since = self.paused_since or self.clock()
            _signal(pgid, signal.SIGSTOP)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    def remove(self, pgid: int) -> None:
        """Before it is stopped (a stopped process would not see SIGTERM), or once it
        has exited."""
        if pgid in self.workers:
            self.workers.discard(pgid)
            _signal(pgid, signal.SIGCONT)
        if not self.workers:
            self._end_pause()
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    def seconds_paused(self) -> float:
        """Every pause so far, the current one included."""
        now = self.clock()
        return self.paused_seconds + (now - self.paused_since if self.paused_since else 0.0)

    # internals ------------------------------------------------------------------------
    def decide(self) -> None:
        """One tick: continue paused workers once serving is idle or when they have
        starved past their share; pause running ones when serving is busy again."""
        now = self.clock()
        if self.paused_since is not None:
            idle = self.in_flight == 0 and now - self.last_busy >= self.idle_s
            starving = self.min_share > 0 and now - self.paused_since >= self.window_s * (
                1 - self.min_share
            )
            if idle or starving:
                self.slice_until = now + self.window_s * self.min_share if starving else 0.0
                self._resume()
        elif self.in_flight and now >= self.slice_until:
            self._pause()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.decide()

    def _pause(self) -> None:
        if not self.workers:
            return
        self.paused_since = self.clock()
        for pgid in self.workers:
            _signal(pgid, signal.SIGSTOP)

    def _resume(self) -> None:
        self._end_pause()
        for pgid in self.workers:
            _signal(pgid, signal.SIGCONT)

    def _end_pause(self) -> None:
        if self.paused_since is not None:
            self.paused_seconds += self.clock() - self.paused_since
            self.paused_since = None


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
