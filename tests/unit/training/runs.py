"""A tiny labelled data set and the training config the recipe tests run it with, and a
tiny LoRA model for the loss tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.models import ModelInfo
from gateway.registry.store import StoreLimits
from gateway.training.config import ALL_LINEAR, TrainConfig
from tests.adapter_factory import tiny_llama_config

ROWS = [
    ("I was billed twice", "billing"),
    ("refund my last payment", "billing"),
    ("invoice is wrong", "billing"),
    ("what are your hours", "other"),
    ("are you hiring", "other"),
    ("where is your office", "other"),
]


def limits(base: ModelInfo, max_rank: int = 16) -> StoreLimits:
    return StoreLimits(base.fingerprint, max_rank, frozenset(ALL_LINEAR), 10**9)


def config(tmp_path: Path, rows: list[tuple[str, str]], **extra: object) -> TrainConfig:
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


def tiny_lora_model() -> Any:
    """A 64-token Llama with LoRA whose B is non-zero, so LoRA changes the prefix's keys
    and values (a fresh adapter's B is zero and would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(64, max_position_embeddings=128))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(base, lora)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model
