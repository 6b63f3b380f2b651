"""A few-step training run on a tiny dataset, end to end through the recipe."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.models import ModelInfo, resolve_model
from gateway.registry.store import AdapterInvalid, AdapterStore, StoreLimits
from gateway.training.config import ALL_LINEAR, TrainConfig
from gateway.training.manifest import REQUIRED_KEYS
from gateway.training.recipe import DataCheckFailed, train

ROWS = [
    ("I was billed twice", "billing"),
    ("refund my last payment", "billing"),
    ("invoice is wrong", "billing"),
    ("what are your hours", "other"),
    ("are you hiring", "other"),
    ("where is your office", "other"),
]


@pytest.fixture(scope="module")
def base() -> ModelInfo:
    return resolve_model(None, Settings().model_cache_dir)


def _config(tmp_path: Path, rows: list[tuple[str, str]], **extra: object) -> TrainConfig:
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "intent": lab}) for t, lab in rows))
    options: dict = {
        "name": "tiny",
        "data": data,
        "labels": ["billing", "other"],
        "val_share": 0.34,
        "rank": 2,
        "alpha": 4,
        "epochs": 1,
        "batch_size": 4,
        "target_modules": ["q_proj", "v_proj"],
        "out_root": tmp_path / "store",
        "evaluate": False,
    }
    return TrainConfig(**{**options, **extra})


def test_tiny_run_writes_a_loadable_adapter(tmp_path: Path, base: ModelInfo) -> None:
    out = train(_config(tmp_path, ROWS), base)
    assert out == tmp_path / "store" / "tiny" / "v1"
    assert {p.name for p in out.iterdir()} == {
        "adapter_config.json", "adapter_model.safetensors", "manifest.json",
    }  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(REQUIRED_KEYS) <= set(manifest)
    assert manifest["base_model"]["fingerprint"] == base.fingerprint
    assert manifest["labels"] == ["billing", "other"]
    assert manifest["training"]["tokens"] > 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # readable by a gateway run as another user
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    limits = StoreLimits(base.fingerprint, 16, frozenset(ALL_LINEAR), 10**9)
    adapter = AdapterStore(tmp_path / "store", limits).inspect("tiny", "v1")
    assert adapter.labels == ("billing", "other")
    assert adapter.system_prompt == manifest["system_prompt"]
    # trained on another base -> refused
    other = StoreLimits("0" * 64, 16, frozenset(ALL_LINEAR), 10**9)
    with pytest.raises(AdapterInvalid, match="another base model"):
        AdapterStore(tmp_path / "store", other).inspect("tiny", "v1")


def test_failed_checks_train_nothing(tmp_path: Path, base: ModelInfo) -> None:
    rows = [*ROWS, ("I was billed twice", "other")]  # same text, two labels
    with pytest.raises(DataCheckFailed):
        train(_config(tmp_path, rows, val_share=0), base)
    assert not (tmp_path / "store").exists()
