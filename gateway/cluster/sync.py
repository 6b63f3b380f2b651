"""Keeps a replica in step with the shared state: ``LISTEN`` for changes, resync on each,
and resync every ``state_resync_s`` anyway, since a notification sent while this replica
was disconnected is lost for good.

The listening connection lives in a thread (psycopg's blocking ``notifies``); it only
wakes the event loop, where the resync runs. If the database goes away, the replica goes
on serving from what it last adopted, reconnects with back-off, and resyncs once it is
back, which picks up whatever it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import psycopg

from gateway.cluster.db import CHANNEL, connect

log = logging.getLogger(__name__)
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0


class StateFollower:
    def __init__(
        self,
        url: str,
        resync: Callable[[], Awaitable[None]],
        *,
        resync_s: float,
        on_connected: Callable[[bool], None] | None = None,
        on_sync: Callable[[str, float], None] | None = None,
    ) -> None:
        self.url = url
        self.resync = resync
        self.resync_s = resync_s
        self.on_connected = on_connected or (lambda up: None)
        self.on_sync = on_sync or (lambda outcome, seconds: None)
        self.connected = False
        self.last_sync: float | None = None  # wall-clock time of the last good resync
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="state-listen", daemon=True)
        self._thread.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_s)
            self._wake.clear()
            started = time.monotonic()
            try:
                await self.resync()
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("state: resync failed, serving from the last state: %s", exc)
                self.on_sync("unavailable", time.monotonic() - started)
            except Exception:
                log.exception("state: resync failed, serving from the last state")
                self.on_sync("error", time.monotonic() - started)
            else:
                self.last_sync = time.time()
                self.on_sync("ok", time.monotonic() - started)

    def _listen(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stop.is_set():
            try:
                with connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._set_connected(True)
                    delay = RECONNECT_MIN_S
                    self.wake()  # whatever happened while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("state: lost the database (%s); serving from the cache", exc)
                self._set_connected(False)
                self._stop.wait(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        try:
            self.on_connected(up)
        except Exception:  # a metric must never stop the listener
            log.exception("state: on_connected hook failed")
