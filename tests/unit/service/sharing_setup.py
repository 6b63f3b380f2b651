"""Services over the engine test double for the deadline and fair-share tests: tenants
are built here directly (no keys are checked below the HTTP layer)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.config import Settings
from gateway.service import Services
from gateway.service.types import ChatTask
from gateway.tenancy import Tenant
from tests.adapter_factory import FAKE_BASE
from tests.fake_engine import FakeEngine

KEY_HASH = "sha256:" + "0" * 64
HI = [{"role": "user", "content": "hi"}]


def build(settings: Settings, engine: FakeEngine, **updates: Any) -> Services:
    return Services.build(settings.model_copy(update=updates), engine, FAKE_BASE)


def tenant(name: str, **fields: Any) -> Tenant:
    return Tenant(name=name, key_hashes=[KEY_HASH], **fields)


def task(**fields: Any) -> ChatTask:
    return ChatTask(messages=HI, **fields)


async def settle() -> None:
    """Let every task that can run reach its next wait (one event loop, no clock)."""
    for _ in range(5):
        await asyncio.sleep(0)


def sample(services: Services, name: str, **labels: str) -> float:
    """One sample's value (0 when it was never recorded)."""
    return services.metrics.registry.get_sample_value(name, labels) or 0.0
