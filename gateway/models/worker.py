"""Quantizes one model with llmcompressor; runs INSIDE the tool's own venv.

Standalone on purpose: that venv holds llmcompressor and its pinned transformers, not
the gateway, so this file imports nothing from ``gateway``. ``gateway.models.quantize``
writes the job as JSON, runs ``python worker.py JOB.json``, then checks what it wrote.

- w4a16: GPTQ, symmetric int4 weights in groups along the input dimension, activations
  left 16-bit (compressed-tensors ``pack-quantized``).
- w8a8: int8 weights per output channel, int8 activations per token computed at run
  time (``int-quantized``); no calibration-fitted activation scales, so it is fast.
The output head (``lm_head``, tied to the embeddings in small models) stays unquantized.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def build_recipe(scheme: str, group_size: int | None) -> Any:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if scheme == "w4a16":
        weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                   "group_size": group_size}  # fmt: skip
        groups = {"group_0": {"targets": ["Linear"], "weights": weights}}
        return GPTQModifier(config_groups=groups, ignore=["lm_head"])
    if scheme == "w8a8":
        return QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])
    raise SystemExit(f"unknown scheme {scheme!r}")


def main(job_file: str) -> None:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    torch.manual_seed(job["seed"])
    tokenizer = AutoTokenizer.from_pretrained(job["source"])
    model = AutoModelForCausalLM.from_pretrained(job["source"], dtype=torch.bfloat16)

    def render(text: str) -> str:  # calibrate on prompts as they are served
        if tokenizer.chat_template is None:
            return text
        chat = [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    recipe = build_recipe(job["scheme"], job["group_size"])
    if not job["texts"]:  # a data-free scheme: round-to-nearest weights, dynamic activations
        oneshot(model=model, recipe=recipe)
    else:
        length = job["max_seq_length"]
        dataset = Dataset.from_dict({"text": [render(t) for t in job["texts"]]}).map(
            lambda batch: tokenizer(
                batch["text"], truncation=True, max_length=length, add_special_tokens=False
            ),
            batched=True,
            remove_columns=["text"],
        )
        oneshot(
            model=model,
            dataset=dataset,
            recipe=recipe,
            max_seq_length=length,
            num_calibration_samples=len(job["texts"]),
            shuffle_calibration_samples=False,  # the texts were drawn with the job's seed
        )
    model.save_pretrained(job["out"], save_compressed=True)
    tokenizer.save_pretrained(job["out"])


if __name__ == "__main__":
    main(sys.argv[1])
