"""Builds real PEFT LoRA adapters with seeded random weights for tests.

They are genuine PEFT folders (``adapter_config.json`` + ``adapter_model.safetensors``)
that vLLM loads like any trained adapter; their random, non-zero B matrices make two
adapters steer the base model differently, which is what adapter-routing tests need.
They are not trained and say so in their manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.models import ModelInfo
from schemas.intent import DEMO_LABELS

if TYPE_CHECKING:
    from transformers import LlamaConfig

FAKE_BASE = ModelInfo("fake-base", Path("/nonexistent"), "f" * 64)


def tiny_llama_config(vocab_size: int, **extra: Any) -> LlamaConfig:
    """Two layers, 32 wide: the real Llama architecture, small enough to train in a test."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        **extra,
    )


def make_random_adapter(
    base: ModelInfo, out_dir: Path, *, seed: int, rank: int = 8, scale: float = 1.0
) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (out_dir / "adapter_model.safetensors").is_file():
        return out_dir
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "README.md").unlink(missing_ok=True)
    manifest = {
        "name": out_dir.parent.name,
        "version": out_dir.name,
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "lora": {"rank": rank, "alpha": rank, "target_modules": list(config.target_modules)},
        "system_prompt": None,
        # a label set, so /v1/classify serves it (in JSON, as an adapter without an
        # ``answer`` block); without one classify refuses it (adapter_has_no_labels)
        "labels": list(DEMO_LABELS),
        "trained": False,
        "note": "seeded random LoRA weights for tests",
        "seed": seed,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return out_dir


def make_peft_folder(
    path: Path,
    rank: int = 8,
    fingerprint: str = FAKE_BASE.fingerprint,
    labels: list[str] | None = None,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    extra: dict[str, Any] | None = None,
) -> Path:
    """A valid PEFT adapter folder (real safetensors, complete manifest), built without
    torch; the tensors are tiny, so it suits registry checks, not an engine."""
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    config = {"r": rank, "peft_type": "LORA", "lora_alpha": 16, "target_modules": list(modules)}
    (path / "adapter_config.json").write_text(json.dumps(config))
    tensors = {f"base_model.model.layers.0.self_attn.{m}.lora_A.weight": np.zeros((rank, 4),
               dtype=np.float32) for m in modules}  # fmt: skip
    save_file(tensors, str(path / "adapter_model.safetensors"))
    manifest = {
        "name": path.parent.name,
        "version": path.name,
        "base_model": {"name": FAKE_BASE.name, "fingerprint": fingerprint},
        "lora": {"rank": rank},
        "system_prompt": "Classify." if labels else None,
        "labels": labels,
        **(extra or {}),  # e.g. the answer, calibration and escalation blocks
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
