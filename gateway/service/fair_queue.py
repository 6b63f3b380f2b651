"""Engine slots, handed to waiting requests in weighted fair order.

``slots`` admitted requests run in the engine at once (its batch, ``max_num_seqs``);
the others wait here, and admission bounds how many (``max_waiting_requests``). In
vLLM's own queue they would be served first come, first served, so one tenant's
backlog would become every tenant's latency.

The order is start-time fair queueing with one unit of work per request: a request of
a tenant with weight ``w`` gets the tags ``start = max(V, the tenant's last finish)``
and ``finish = start + 1/w``; a freed slot goes to the waiting request with the
smallest finish tag, and the virtual time ``V`` moves to its start. A backlog stretches
only its own tenant's tags, so another tenant's first request is tagged from ``V``,
ahead of it; over a long backlog tenants are admitted in the ratio of their weights;
and an idle tenant banks no credit, because its next start is at least ``V``.
Weights share admissions, not tokens: a tenant's long generations hold their slots
longer, which its ``max_concurrency`` bounds. With ``fair=False`` the order is arrival.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Waiter:
    tenant: str
    start: float
    finish: float
    seq: int  # arrival order: FCFS, and the tie-break between equal tags
    future: asyncio.Future[None] = field(repr=False)


class FairQueue:
    def __init__(self, slots: int, fair: bool = True) -> None:
        self.slots = slots
        self.fair = fair
        self.num_running = 0
        # At most max_waiting_requests: scanned, not heaped. A cancelled waiter stays until
        # its own task removes it; ``release`` skips it.
        self._waiting: list[_Waiter] = []
        self._last_finish: dict[str, float] = {}
        self._virtual = 0.0
        self._seq = itertools.count()

    @property
    def num_waiting(self) -> int:
        return sum(not w.future.done() for w in self._waiting)

    async def acquire(self, tenant: str, weight: float) -> None:
        """Return once the request holds a slot; ``release`` gives it back. A cancelled
        wait (deadline, disconnect) leaves the queue and holds nothing."""
        start = max(self._virtual, self._last_finish.get(tenant, 0.0))
        finish = start + 1.0 / weight
        self._last_finish[tenant] = finish
        if self.num_running < self.slots:  # then nobody waits: a release hands slots on
            self.num_running += 1
            self._virtual = start
            return
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tenant, start, finish, next(self._seq), future)
        self._waiting.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():
                self._waiting.remove(waiter)
            else:  # the slot was handed over just as the wait was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        pending = [w for w in self._waiting if not w.future.done()]  # cancelled ones leave
        if not pending:
            self.num_running -= 1
            return
        chosen = min(pending, key=self._order)
        self._waiting.remove(chosen)
        self._virtual = chosen.start
        chosen.future.set_result(None)  # the slot passes on: num_running stays

    def _order(self, waiter: _Waiter) -> tuple[float, int]:
        return (waiter.finish, waiter.seq) if self.fair else (0.0, waiter.seq)
