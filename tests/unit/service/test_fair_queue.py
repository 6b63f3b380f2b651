"""The slot queue's order, on its own: weighted fair queueing, FCFS when it is off, and
cancelled waits. Every step is driven by hand on one event loop: no clock, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from gateway.service.fair_queue import FairQueue


async def settle() -> None:
    """Let every task that can run reach its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


class Backlog:
    """Waiters on one queue whose slot is held; records who gets each freed slot."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.admitted: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, tenant: str, weight: float = 1.0, count: int = 1) -> None:
        for _ in range(count):
            name = f"{tenant}{len([t for t in self.tasks if t.startswith(tenant)])}"
            self.tasks[name] = asyncio.create_task(self._wait(tenant, weight, name))

    async def _wait(self, tenant: str, weight: float, name: str) -> None:
        await self.queue.acquire(tenant, weight)
        self.admitted.append(name)

    async def drain(self, count: int) -> list[str]:
        """Free ``count`` slots one at a time; the names admitted, in order."""
        start = len(self.admitted)
        for _ in range(count):
            self.queue.release()
            await settle()
        return self.admitted[start:]


async def busy_queue(fair: bool = True) -> Backlog:
    queue = FairQueue(slots=1, fair=fair)
    await queue.acquire("first", 1.0)  # the one slot is taken: everyone else waits
    return Backlog(queue)


async def test_a_backlog_does_not_delay_another_tenants_first_request() -> None:
    backlog = await busy_queue()
    backlog.add("a", count=6)
    await settle()
    backlog.add("b")  # arrives after all of a's
    await settle()
    assert backlog.queue.num_waiting == 7
    assert await backlog.drain(7) == ["a0", "b0", "a1", "a2", "a3", "a4", "a5"]


async def test_without_fair_share_the_order_is_arrival() -> None:
    backlog = await busy_queue(fair=False)
    backlog.add("a", count=6)
    await settle()
    backlog.add("b")
    await settle()
    assert await backlog.drain(7) == ["a0", "a1", "a2", "a3", "a4", "a5", "b0"]


async def test_weights_share_admissions_in_their_ratio() -> None:
    backlog = await busy_queue()
    backlog.add("a", weight=2.0, count=40)
    backlog.add("b", weight=1.0, count=40)
    await settle()
    first = await backlog.drain(30)
    assert sum(n.startswith("a") for n in first) == 20
    assert sum(n.startswith("b") for n in first) == 10
    await backlog.drain(50)


async def test_an_idle_tenant_banks_no_credit() -> None:
    """b sent nothing while a was served 11 times; then both queue up behind a's running
    request: they alternate from now on, b does not take 11 turns in a row."""
    queue = FairQueue(slots=1)
    for _ in range(10):
        await queue.acquire("a", 1.0)
        queue.release()
    await queue.acquire("a", 1.0)
    backlog = Backlog(queue)
    backlog.add("a", count=4)
    backlog.add("b", count=4)
    await settle()
    assert await backlog.drain(8) == ["b0", "a0", "b1", "a1", "b2", "a2", "b3", "a3"]


async def test_a_cancelled_wait_leaves_the_queue_and_holds_nothing() -> None:
    backlog = await busy_queue()
    backlog.add("a", count=2)
    await settle()
    backlog.tasks["a0"].cancel()
    await settle()
    assert backlog.queue.num_waiting == 1
    assert await backlog.drain(1) == ["a1"]
    backlog.queue.release()
    assert backlog.queue.num_running == 0


async def test_a_slot_handed_to_a_wait_cancelled_at_that_moment_passes_on() -> None:
    backlog = await busy_queue()
    backlog.add("a", count=2)
    await settle()
    backlog.queue.release()  # a0's future gets the slot ...
    backlog.tasks["a0"].cancel()  # ... but a0 is cancelled before it resumes
    await settle()
    assert backlog.tasks["a0"].cancelled()
    assert backlog.admitted == ["a1"] and backlog.queue.num_running == 1
    backlog.queue.release()
    assert backlog.queue.num_running == 0


@pytest.mark.parametrize("fair", [True, False])
async def test_free_slots_are_taken_without_waiting(fair: bool) -> None:
    queue = FairQueue(slots=3, fair=fair)
    for tenant in ("a", "a", "b"):
        await queue.acquire(tenant, 1.0)  # would hang here if it waited
    assert queue.num_running == 3 and queue.num_waiting == 0
