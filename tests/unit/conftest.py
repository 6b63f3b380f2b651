from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.models import ModelInfo
from gateway.server import create_app
from tests.fake_engine import FakeEngine, ScriptedOutput

FAKE_BASE = ModelInfo("fake-base", Path("/nonexistent"), "f" * 64)


def make_peft_folder(path: Path, rank: int = 8) -> Path:
    """Files shaped like a PEFT adapter; enough for catalog checks, not for an engine."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        adapters={"tenant-a": make_peft_folder(tmp_path / "a")},
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
