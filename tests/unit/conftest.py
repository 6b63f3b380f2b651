from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.server import create_app
from tests.adapter_factory import FAKE_BASE, make_peft_folder
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.tenancy_setup import tenant_gateway

__all__ = ["FAKE_BASE", "make_peft_folder", "tenant_gateway"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    make_peft_folder(tmp_path / "store" / "tenant-a" / "v1")
    return Settings(
        adapter_store=tmp_path / "store",
        adapters={"tenant-a": "v1"},
        max_tokens_cap=100,
        default_max_tokens=50,
        max_model_len=1024,
        max_body_bytes=4096,
        max_schema_bytes=2048,
        output_retries=1,
    )


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(settings: Settings, engine: FakeEngine) -> Iterator[TestClient]:
    yield from started_client(settings, engine)


def started_client(settings: Settings, engine: FakeEngine) -> Iterator[TestClient]:
    """The app with the engine test double, once ``/ready`` says it is up."""
    app = create_app(settings, lambda _: (engine, FAKE_BASE), exit_on_failure=False)
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 10
        while test_client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, app.state.startup_error
            time.sleep(0.01)
        yield test_client


def script(engine: FakeEngine, *outputs: tuple[str, str] | str) -> None:
    engine.outputs = [
        ScriptedOutput(o) if isinstance(o, str) else ScriptedOutput(*o) for o in outputs
    ]
