"""LoRA training recipe for intent classification: setup -> train -> save.

Reads top to bottom like a torchtune recipe. Each example is rendered with exactly
the prompt ``/v1/classify`` uses (same system prompt builder, same chat template,
whitespace-free JSON answer), the loss covers only the assistant's answer, and the
adapter folder it writes is what the gateway loads, with a manifest recording the
prompt and label set so the gateway serves the adapter the way it was trained.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.models import fingerprint_dir
from gateway.service.classify import classify_messages, default_system_prompt
from gateway.training.data import LabelledExample, load_labelled, sha256_text

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out_dir: Path
    model_dir: Path
    labels: tuple[str, ...] = ()
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )  # fmt: skip
    epochs: int = 8
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 5
    confidence: float = 0.9
    seed: int = 0
    system_prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def answer_json(example: LabelledExample, confidence: float) -> str:
    value = {
        "intent": example.label,
        "confidence": confidence,
        "requires_human_agent": example.requires_human_agent,
    }
    return json.dumps(value, separators=(",", ":"))


def encode(tokenizer: Any, system_prompt: str, example: LabelledExample, confidence: float):
    """Token ids and labels with the prompt masked out of the loss."""
    prompt = tokenizer.apply_chat_template(
        classify_messages(system_prompt, example.text),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    answer = answer_json(example, confidence) + "<|im_end|>"
    completion = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return prompt + completion, [IGNORE] * len(prompt) + completion


def batches(encoded: list[tuple[list[int], list[int]]], size: int, rng: random.Random):
    """Length-sorted buckets (little padding), visited in random order each epoch."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(chunks)
    return chunks


def train(cfg: TrainConfig) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # setup
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    examples = load_labelled(cfg.data)
    labels = cfg.labels or tuple(dict.fromkeys(e.label for e in examples))
    unknown = {e.label for e in examples} - set(labels)
    if unknown:
        raise ValueError(f"labels not in the label set: {sorted(unknown)}")
    system_prompt = cfg.system_prompt or default_system_prompt(labels)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir)
    encoded = [encode(tokenizer, system_prompt, e, cfg.confidence) for e in examples]
    model = AutoModelForCausalLM.from_pretrained(cfg.model_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate
    )
    steps_total = cfg.epochs * math.ceil(len(encoded) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps))
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # train
    rng = random.Random(cfg.seed)
    model.train()
    started, num_tokens, losses = time.perf_counter(), 0, []
    bar = tqdm(total=steps_total, desc="training", unit="step")
    for epoch in range(cfg.epochs):
        for chunk in batches(encoded, cfg.batch_size, rng):
            width = max(len(encoded[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad)
            tgt = torch.full((len(chunk), width), IGNORE)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                seq, lab = encoded[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                tgt[row, : len(lab)] = torch.tensor(lab)
                mask[row, : len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=tgt).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            num_tokens += int(mask.sum())
            losses.append(float(loss))
            speed = num_tokens / (time.perf_counter() - started)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", tok_s=f"{speed:.0f}")
            bar.update()
    bar.close()

    # save
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cfg.out_dir, safe_serialization=True)
    (cfg.out_dir / "README.md").unlink(missing_ok=True)  # PEFT's model-card stub
    manifest = {
        "labels": list(labels),
        "system_prompt": system_prompt,
        "schema": "intent_classification",
        "base_model": {
            "path_name": cfg.model_dir.name,
            "fingerprint": fingerprint_dir(cfg.model_dir),
        },
        "dataset": {"path": cfg.data.name, "sha256": sha256_text(cfg.data), "size": len(examples)},
        "lora": {
            "rank": cfg.rank,
            "alpha": cfg.alpha,
            "dropout": cfg.dropout,
            "target_modules": list(cfg.target_modules),
        },
        "training": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "seed": cfg.seed,
            "confidence_target": cfg.confidence,
            "final_loss": losses[-1] if losses else None,
            "mean_loss_last_epoch": sum(losses[-math.ceil(len(encoded) / cfg.batch_size) :])
            / max(1, math.ceil(len(encoded) / cfg.batch_size)),
            "tokens_per_second": round(num_tokens / (time.perf_counter() - started), 1),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "versions": _versions(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (cfg.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return cfg.out_dir


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
    }
