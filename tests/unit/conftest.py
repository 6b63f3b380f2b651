from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
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
    with running(app) as test_client:
        yield test_client


@contextmanager
def running(app: FastAPI) -> Iterator[TestClient]:
    """Services start in the background (as in production), so wait for ``/ready``."""
    with TestClient(app) as test_client:
        wait_for(
            lambda: test_client.get("/ready").status_code == 200,
            lambda: f"not ready: {app.state.startup_error}",
        )
        yield test_client


def wait_for(condition: Callable[[], bool], failure: Callable[[], str]) -> None:
    """For what the app does on its own event loop (TestClient runs it in another thread):
    poll the condition itself, never a fixed sleep. The limit only stops a hung test."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, failure()
        time.sleep(0.001)


def script(engine: FakeEngine, *outputs: tuple[str, str] | str) -> None:
    engine.outputs = [
        ScriptedOutput(o) if isinstance(o, str) else ScriptedOutput(*o) for o in outputs
    ]
