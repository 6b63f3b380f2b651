"""A few-step training run on a tiny dataset, end to end through the recipe and publisher.

Tests marked ``heavy`` need the provisioned base model (its tokenizer, or all of it).
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from gateway.errors import AdapterInvalid, AdapterVersionExists
from gateway.models import ModelInfo
from gateway.registry.store import AdapterStore, StoreLimits
from gateway.training.config import ALL_LINEAR
from gateway.training.manifest import REQUIRED_KEYS
from gateway.training.recipe import DataCheckFailed, train
from tests.adapter_factory import FAKE_BASE, make_peft_folder
from tests.unit.training.runs import ROWS, config, limits


@pytest.mark.heavy
def test_tiny_run_writes_a_loadable_adapter(tmp_path: Path, base: ModelInfo) -> None:
    out = train(config(tmp_path, ROWS), base, limits(base))
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
    adapter = AdapterStore(tmp_path / "store", limits(base)).inspect("tiny", "v1")
    assert adapter.labels == ("billing", "other")
    assert adapter.system_prompt == manifest["system_prompt"]
    # the lexicon holds the training split's words: held-out texts add none
    words = [re.findall("[A-Za-z]+", text) for text, _ in ROWS]
    assert adapter.lexicon is not None
    assert set(adapter.lexicon.counts) <= {w for ws in words for w in ws}
    assert 0 < sum(adapter.lexicon.counts.values()) < sum(map(len, words))
    # trained on another base -> refused
    other = StoreLimits("0" * 64, 16, frozenset(ALL_LINEAR), 10**9)
    with pytest.raises(AdapterInvalid, match="another base model"):
        AdapterStore(tmp_path / "store", other).inspect("tiny", "v1")


@pytest.mark.heavy
def test_failed_checks_train_nothing(tmp_path: Path, base: ModelInfo) -> None:
    rows = [*ROWS, ("I was billed twice", "other")]  # same text, two labels
    with pytest.raises(DataCheckFailed):
        train(config(tmp_path, rows, val_share=0), base, limits(base))
    assert not (tmp_path / "store").exists()


def test_an_existing_version_is_refused_before_any_training(tmp_path: Path) -> None:
    """No force: training never replaces a version (a gateway may be serving it)."""
    existing = make_peft_folder(tmp_path / "store" / "tiny" / "v1")
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    # FAKE_BASE has no files: reaching the tokenizer or the model would fail differently
    with pytest.raises(AdapterVersionExists, match="tiny/v1 already exists"):
        train(config(tmp_path, ROWS), FAKE_BASE, limits(FAKE_BASE))
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    assert [p.name for p in existing.parent.iterdir()] == ["v1"]


def test_a_rank_the_gateway_would_refuse_fails_before_any_training(tmp_path: Path) -> None:
    with pytest.raises(AdapterInvalid, match=r"rank 8 is outside 1\.\.4"):
        train(config(tmp_path, ROWS, rank=8), FAKE_BASE, limits(FAKE_BASE, max_rank=4))
    assert not (tmp_path / "store").exists()


# A seeded float32 run of 6 optimizer steps (3 epochs of 2 batches of 2). Runs with 1, 2
# and 4 threads differ by ~1e-7 relative; dropping the prompt mask moves these by ~5e-2,
# dropping the end token by >1e-3, both far outside the 1e-4 tolerance. Epoch 1 starts
# from the base model (LoRA B is zero), so it checks the rendering and the mask alone.
PINNED_HISTORY = [
    {"epoch": 1, "train_loss": 24.08402, "val_loss": 23.83834},
    {"epoch": 2, "train_loss": 23.50548, "val_loss": 23.54004},
    {"epoch": 3, "train_loss": 23.10758, "val_loss": 23.41478},
]


@pytest.mark.heavy
def test_seeded_first_steps_have_pinned_losses(tmp_path: Path, tiny_base: ModelInfo) -> None:
    cfg = config(
        tmp_path,
        ROWS,
        epochs=3,
        batch_size=2,
        learning_rate=1e-2,
        warmup_steps=0,
        early_stopping_patience=0,
        bf16=False,
        target_modules=list(ALL_LINEAR),
        answer="json",  # the legacy recipe, pinned before decision tokens existed
        augment=0,
    )
    out = train(cfg, tiny_base, limits(tiny_base))
    history = json.loads((out / "manifest.json").read_text())["training"]["history"]
    assert history == [
        {k: v if k == "epoch" else pytest.approx(v, rel=1e-4) for k, v in epoch.items()}
        for epoch in PINNED_HISTORY
    ]
