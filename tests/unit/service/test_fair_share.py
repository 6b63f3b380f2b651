"""Fair share through the chat service: requests queued for the engine's one slot reach
the engine (the test double) in weighted fair order, by tenant."""

from __future__ import annotations

import asyncio

from gateway.config import Settings
from gateway.service import Services
from gateway.tenancy import Tenant
from tests.fake_engine import FakeEngine
from tests.unit.service.sharing_setup import build, settle, task, tenant


async def engine_order(services: Services, engine: FakeEngine, senders: list[Tenant]) -> str:
    """Each sender's request in list order, all but the first waiting for the one slot;
    the tenants' names (one letter each) in the order the engine got them."""
    engine.gate = asyncio.Semaphore(0)  # the first request holds the slot until released
    owner, running = {}, []
    for sender in senders:
        prepared = services.chat.prepare(task(), sender)
        owner[prepared.params.request_id] = sender.name
        running.append(asyncio.create_task(services.chat.complete(prepared)))
        await settle()  # it is queued before the next one arrives
    assert services.chat.admission.slots.num_waiting == len(senders) - 1
    for _ in senders:
        engine.gate.release()
    await asyncio.gather(*running)
    return "".join(owner[params.request_id] for params in engine.calls)


async def test_one_tenants_backlog_does_not_hold_back_anothers_request(
    settings: Settings,
) -> None:
    engine = FakeEngine()
    services = build(settings, engine, max_num_seqs=1)
    a, b = tenant("a"), tenant("b")
    assert await engine_order(services, engine, [a] * 8 + [b]) == "ab" + "a" * 7


async def test_without_fair_share_requests_are_served_in_arrival_order(
    settings: Settings,
) -> None:
    engine = FakeEngine()
    services = build(settings, engine, max_num_seqs=1, fair_share=False)
    a, b = tenant("a"), tenant("b")
    assert await engine_order(services, engine, [a] * 8 + [b]) == "a" * 8 + "b"


async def test_weights_share_the_engine_in_their_ratio(settings: Settings) -> None:
    engine = FakeEngine()
    services = build(settings, engine, max_num_seqs=1, max_waiting_requests=64)
    heavy, light = tenant("h", weight=2.0), tenant("l", weight=1.0)
    order = await engine_order(services, engine, [heavy] * 31 + [light] * 30)
    served = order[1:31]  # the first 30 taken from the backlog, after the running one
    assert (served.count("h"), served.count("l")) == (20, 10)
