"""Deadlines through the chat and classify services, with the engine test double: the
engine request is aborted (the double records it), the error is typed and counted.

The double stalls (``stall_at``) until it is cancelled, so a deadline always passes
there; where work must finish first, the deadline leaves it seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from gateway import errors
from gateway.config import Settings
from gateway.service.deadline import Deadline
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.service.sharing_setup import build, sample, settle, task

SHORT = 0.05  # a deadline that only a stalled engine reaches
ROOMY = 2.0  # one that unstalled work never reaches


async def test_a_request_past_its_deadline_is_aborted_in_the_engine(settings: Settings) -> None:
    engine = FakeEngine(stall_at=0)
    services = build(settings, engine)
    prepared = services.chat.prepare(task(timeout_s=SHORT))
    with pytest.raises(errors.DeadlineExceeded, match=f"deadline of {SHORT:g} s") as caught:
        await services.chat.complete(prepared)
    assert caught.value.status_code == 504 and caught.value.retryable
    assert engine.aborted == [prepared.params.request_id] and engine.running == set()
    assert sample(services, "gateway_deadline_exceeded_total", tenant="open", adapter="base") == 1
    code = {"tenant": "open", "outcome": "error", "code": "deadline_exceeded"}
    assert sample(services, "gateway_requests_total", adapter="base", schema="none",
                  endpoint="chat", **code) == 1  # fmt: skip
    admission = services.chat.admission
    assert admission.in_flight == 0 and admission.slots.num_running == 0


async def test_a_longer_deadline_than_the_servers_gets_the_servers(settings: Settings) -> None:
    engine = FakeEngine(stall_at=0)
    services = build(settings, engine, request_timeout_s=SHORT)
    with pytest.raises(errors.DeadlineExceeded, match=f"deadline of {SHORT:g} s"):
        await services.chat.complete(services.chat.prepare(task(timeout_s=3600)))
    with pytest.raises(errors.DeadlineExceeded, match=f"deadline of {SHORT:g} s"):
        await services.chat.complete(services.chat.prepare(task()))  # none asked: the server's
    assert len(engine.aborted) == 2


async def test_waiting_for_a_slot_counts_against_the_deadline(settings: Settings) -> None:
    engine = FakeEngine(gate=asyncio.Semaphore(0))
    services = build(settings, engine, max_num_seqs=1)
    first = asyncio.create_task(services.chat.complete(services.chat.prepare(task())))
    await settle()  # it holds the one slot, waiting at the engine's gate
    late = services.chat.prepare(task(timeout_s=SHORT))
    with pytest.raises(errors.DeadlineExceeded):
        await services.chat.complete(late)
    assert late.params.request_id not in {p.request_id for p in engine.calls}  # never ran
    assert services.chat.admission.slots.num_waiting == 0
    engine.gate.release()
    assert (await first).text == "hello"  # the running request was not disturbed


async def test_a_stream_past_its_deadline_ends_with_the_error(settings: Settings) -> None:
    engine = FakeEngine([ScriptedOutput("hello world")], stall_at=1)
    services = build(settings, engine)
    prepared = services.chat.prepare(task(timeout_s=ROOMY))
    received = []
    with pytest.raises(errors.DeadlineExceeded):
        async for delta in services.chat.stream(prepared):
            received.append(delta.text)
    assert received == ["hel"]  # the first piece, then the stall
    assert engine.aborted == [prepared.params.request_id] and engine.running == set()


async def test_classify_has_the_same_deadline(settings: Settings) -> None:
    engine = FakeEngine(stall_at=0)
    services = build(settings, engine)
    prepared = services.classify.prepare("I was charged twice", None, timeout_s=SHORT)
    with pytest.raises(errors.DeadlineExceeded):
        await services.classify.run(prepared)
    assert engine.aborted == [prepared.chat.params.request_id]
    labels = {"tenant": "open", "adapter": "base"}
    assert sample(services, "gateway_deadline_exceeded_total", **labels) == 1


async def test_past_the_deadline_a_stream_with_items_ready_is_closed_unread() -> None:
    read, closed = [], []

    async def ready() -> AsyncGenerator[int, None]:
        try:
            for i in range(3):
                read.append(i)
                yield i
        finally:
            closed.append(True)

    deadline = Deadline(1.0, asyncio.get_running_loop().time() - 1)
    items = ready()
    await anext(items)  # started, so closing it runs its ``finally`` (as an abort would)
    with pytest.raises(errors.DeadlineExceeded):
        async for _ in deadline.chunks(items):
            pass
    assert read == [0] and closed == [True]


async def test_a_timeout_of_the_awaited_work_is_not_a_deadline() -> None:
    async def own_timeout() -> None:
        raise TimeoutError("the work's own")

    deadline = Deadline.after(ROOMY)
    with pytest.raises(TimeoutError, match="the work's own"):
        await deadline.bound(own_timeout())
