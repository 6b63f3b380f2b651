"""Fixtures of the base-model tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def gateway_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GATEWAY_* setting of the machine running the tests; a model cache of our own."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
