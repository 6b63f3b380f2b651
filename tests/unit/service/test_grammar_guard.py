"""The outlines guard: a client schema whose automaton would take the engine down is
refused with ``schema_unsupported`` before the engine sees it (the probe really runs
outlines_core in a child process); a harmless one passes, and each is probed once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import errors
from gateway.config import Settings
from gateway.service.grammar_guard import OutlinesGuard, ProbeLimits, needs_probe
from gateway.service.schemas import ResolvedSchema, SchemaRegistry
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.service.sharing_setup import build, task, tenant

# The minimal schema that aborted vLLM's engine (docs/upstream/outlines-crash.md).
CRASH = {"type": "string", "maxLength": 24}
HARMLESS = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}}}


def inline(schema: dict[str, Any]) -> ResolvedSchema:
    registry = SchemaRegistry(labels=("a",), schemas_dir=None, max_bytes=4096, max_depth=8)
    return registry.resolve("s", schema)


async def test_the_crash_schema_is_refused_naming_its_length_bound() -> None:
    guard = OutlinesGuard("outlines")
    with pytest.raises(errors.SchemaUnsupported) as caught:
        await guard.check(inline(CRASH))
    assert caught.value.code == "schema_unsupported"
    assert "maxLength 24 on a string" in caught.value.message
    assert caught.value.param == "response_format.json_schema.schema"


async def test_a_harmless_schema_passes_and_is_probed_once() -> None:
    guard = OutlinesGuard("outlines")
    await guard.check(inline(HARMLESS))
    await guard.check(inline(HARMLESS))
    assert guard.num_probes == 1


async def test_a_refusal_is_remembered_without_a_second_probe() -> None:
    guard = OutlinesGuard("outlines", ProbeLimits(max_states=10))
    schema = inline(HARMLESS)  # a few dozen states: over this limit
    for _ in range(2):
        with pytest.raises(errors.SchemaUnsupported, match="states; the limit is 10"):
            await guard.check(schema)
    assert guard.num_probes == 1


async def test_concurrent_requests_with_one_new_schema_share_one_probe() -> None:
    guard = OutlinesGuard("outlines")
    schema = inline(HARMLESS)
    await asyncio.gather(*(guard.check(schema) for _ in range(4)))
    assert guard.num_probes == 1


async def test_what_outlines_cannot_express_is_refused_with_its_reason() -> None:
    guard = OutlinesGuard("outlines")
    with pytest.raises(errors.SchemaUnsupported, match="Format jsonpath is not supported"):
        await guard.check(inline({"type": "string", "format": "jsonpath"}))


@pytest.mark.parametrize(
    ("backend", "schema", "probed"),
    [
        ("outlines", HARMLESS, True),
        ("xgrammar", CRASH, False),
        ("guidance", CRASH, False),
        ("auto", CRASH, False),  # xgrammar takes it; outlines only gets patternProperties
        ("auto", {"type": "object", "patternProperties": {"^a": CRASH}}, True),
    ],
)
def test_only_schemas_that_can_reach_outlines_are_probed(
    backend: str, schema: dict[str, Any], probed: bool
) -> None:
    assert needs_probe(backend, inline(schema)) is probed


def test_an_operators_named_schema_is_not_probed() -> None:
    registry = SchemaRegistry(labels=("a",), schemas_dir=None, max_bytes=4096, max_depth=8)
    assert not needs_probe("outlines", registry.named("intent_classification"))


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


async def test_under_outlines_the_crash_schema_never_reaches_the_engine(
    settings: Settings,
) -> None:
    engine = FakeEngine(outputs=[ScriptedOutput('{"name": "x"}')])
    services = build(settings, engine, structured_backend="outlines")
    crash = services.chat.prepare(task(response_format=json_schema(CRASH)), tenant("a"))
    with pytest.raises(errors.SchemaUnsupported, match="maxLength 24"):
        await services.chat.complete(crash)
    assert engine.calls == []
    harmless = services.chat.prepare(task(response_format=json_schema(HARMLESS)), tenant("a"))
    await services.chat.complete(harmless)
    assert len(engine.calls) == 1
