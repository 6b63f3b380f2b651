"""Builds real PEFT LoRA adapters with seeded random weights for tests.

They are genuine PEFT folders (``adapter_config.json`` + ``adapter_model.safetensors``)
that vLLM loads like any trained adapter; their random, non-zero B matrices make two
adapters steer the base model differently, which is what adapter-routing tests need.
They are not trained and say so in their manifest.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_random_adapter(
    model_dir: Path, out_dir: Path, *, seed: int, rank: int = 8, scale: float = 1.0
) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (out_dir / "adapter_model.safetensors").is_file():
        return out_dir
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "manifest.json").write_text(
        json.dumps({"trained": False, "note": "seeded random LoRA weights for tests", "seed": seed})
    )
    return out_dir
