"""Fine-tuning is not shared between replicas (its files and jobs are one replica's, on
local disk), so shared mode with ``finetune_dir`` set is refused at start, in one line,
before any model, engine or server is touched (the guards of ``test_cli_mistakes``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from tests.unit.test_cli_mistakes import fails, guarded  # noqa: F401  (autouse fixture)

SHARED = {
    "GATEWAY_STATE_BACKEND": "postgres",
    "GATEWAY_STATE_DATABASE_URL": "postgresql://gateway@db.invalid/gateway",
    "GATEWAY_OBJECT_STORE_URL": "s3://adapters/prefix",
}


def test_gateway_serve_refuses_fine_tuning_in_shared_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {**SHARED, "GATEWAY_FINETUNE_DIR": str(tmp_path / "ft")}.items():
        monkeypatch.setenv(name, value)
    line = fails(["serve"], capsys)
    assert "finetune_dir cannot be used with state_backend=postgres" in line
    assert not (tmp_path / "ft").exists()


def test_either_one_alone_is_fine(tmp_path: Path) -> None:
    shared = {k.removeprefix("GATEWAY_").lower(): v for k, v in SHARED.items()}
    assert Settings(**shared).finetune_dir is None
    assert Settings(finetune_dir=tmp_path).state_backend == "files"
    with pytest.raises(ValidationError, match="finetune_dir cannot be used"):
        Settings(**shared, finetune_dir=tmp_path)
