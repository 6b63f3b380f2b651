"""LoRA training recipe: setup -> checks -> train -> save -> evaluate.

Reads top to bottom like a torchtune recipe. Each example is rendered with exactly
the prompt ``/v1/classify`` uses (same system prompt builder, same chat template,
whitespace-free JSON answer), the loss covers only the assistant's answer, and the
adapter folder it writes is what the gateway loads, with a manifest recording the
base model, prompt, schema and label set so the gateway serves it as it was trained.
"""

from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.prompts import (
    classify_messages,
    default_system_prompt,
    render_answer,
    render_prompt,
)
from gateway.models import ModelInfo
from gateway.registry.publish import publish, require_new_version, staging
from gateway.registry.store import AdapterStore, StoreLimits
from gateway.training.batching import IGNORE, batch_loss, batches
from gateway.training.checks import run_checks
from gateway.training.config import TrainConfig
from gateway.training.data import Example, load_splits, sha256_text
from gateway.training.manifest import build_manifest, write_json_atomic


class DataCheckFailed(ValueError):
    """The data checks found a hard failure; the table says which."""


@dataclass
class Prepared:
    train: list[Example]
    held_out: dict[str, list[Example]]
    labels: tuple[str, ...]
    system_prompt: str
    encoded: list[tuple[list[int], list[int]]]
    val_encoded: list[tuple[list[int], list[int]]]
    checks: Any


def encode(tokenizer: Any, system_prompt: str, example: Example) -> tuple[list[int], list[int]]:
    """Token ids and labels with the prompt masked out of the loss: the prompt exactly as
    the engine renders it for ``/v1/classify``, then the answer and the template's own
    end-of-turn token, so the adapter learns to stop."""
    messages = classify_messages(example.system_prompt or system_prompt, example.text)
    prompt = render_prompt(tokenizer, messages)
    answer = render_answer(tokenizer, example.completion)
    return prompt + answer, [IGNORE] * len(prompt) + answer


def lr_factor(step: int, warmup: int, total: int, kind: str) -> float:
    """Linear warm-up, then constant or cosine decay to a tenth of the peak rate."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def prepare(cfg: TrainConfig, tokenizer: Any) -> Prepared:
    """Load, split and check the data; raises ``DataCheckFailed`` before any training."""
    train, val, held_out = load_splits(cfg)
    labels = cfg.label_set() or tuple(sorted({e.label for e in train if e.label}))
    system_prompt = cfg.system_prompt or default_system_prompt(labels)
    encoded = [encode(tokenizer, system_prompt, e) for e in train]
    val_encoded = [encode(tokenizer, system_prompt, e) for e in val]
    report = run_checks(
        train, held_out, cfg.schema_name, labels, [len(ids) for ids, _ in encoded], cfg.max_length
    )
    print(report.table(), flush=True)
    if report.failed:
        raise DataCheckFailed("data checks failed (see the table above); nothing was trained")
    return Prepared(train, held_out, labels, system_prompt, encoded, val_encoded, report)


def _load_model(cfg: TrainConfig, model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    if cfg.qlora:  # CUDA only: 4-bit base via bitsandbytes
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant)
        return prepare_model_for_kbit_training(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)


def train(cfg: TrainConfig, base: ModelInfo, limits: StoreLimits) -> Path:
    """Train and publish ``cfg.name/cfg.version`` into the store at ``cfg.out_root``.

    ``limits`` are the serving gateway's (``store_limits``): a version it would refuse,
    or one that exists, fails here before any training, and is checked again at publish.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm
    from transformers import AutoTokenizer

    # setup
    store = AdapterStore(cfg.out_root, limits)
    require_new_version(store, cfg.name, cfg.version)
    store.check_lora(cfg.rank, list(cfg.target_modules), f"adapter {cfg.name}/{cfg.version}")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    data = prepare(cfg, tokenizer)
    model = get_peft_model(
        _load_model(cfg, base.path),
        LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(len(data.encoded) / cfg.batch_size / cfg.grad_accum)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, cfg.warmup_steps, steps_per_epoch * cfg.epochs, cfg.lr_schedule),
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.bf16 and not cfg.qlora
        else nullcontext()
    )

    def val_loss() -> float | None:
        if not data.val_encoded:
            return None
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), autocast:
            for chunk in batches(data.val_encoded, cfg.batch_size, random.Random(0)):
                loss, _ = batch_loss(model, data.val_encoded, chunk, pad, cfg.share_prefix)
                total += float(loss) * len(chunk)
                count += len(chunk)
        model.train()
        return total / count

    # train
    rng = random.Random(cfg.seed)
    model.train()
    started, num_tokens = time.perf_counter(), 0
    history: list[dict[str, Any]] = []
    best, best_state, patience = math.inf, None, cfg.early_stopping_patience
    bar = tqdm(total=steps_per_epoch * cfg.epochs, desc=f"training {cfg.name}", unit="step")
    for epoch in range(1, cfg.epochs + 1):
        losses: list[float] = []
        for n, chunk in enumerate(batches(data.encoded, cfg.batch_size, rng), start=1):
            with autocast:
                loss, chunk_tokens = batch_loss(model, data.encoded, chunk, pad, cfg.share_prefix)
            (loss / cfg.grad_accum).backward()
            num_tokens += chunk_tokens
            losses.append(float(loss.detach()))
            if n % cfg.grad_accum == 0:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                speed = num_tokens / (time.perf_counter() - started)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", tok_s=f"{speed:.0f}")
                bar.update()
        epoch_val = val_loss()
        history.append(
            {"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_loss": epoch_val}
        )
        bar.write(f"epoch {epoch}: train_loss={history[-1]['train_loss']:.4f} val_loss={epoch_val}")
        if epoch_val is not None and epoch_val < best:
            best, patience = epoch_val, cfg.early_stopping_patience
            best_state = {
                k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k
            }
        elif epoch_val is not None and cfg.early_stopping_patience:
            patience -= 1
            if patience <= 0:
                bar.write(f"early stop after epoch {epoch} (best val_loss {best:.4f})")
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    seconds = time.perf_counter() - started

    # save: stage in the store, then publish (validate, atomic rename, never replace)
    metrics = {
        "history": history,
        "best_val_loss": None if best == math.inf else best,
        "tokens": num_tokens,
        "tokens_per_second": round(num_tokens / seconds, 1),
        "seconds": round(seconds, 1),
    }
    manifest = build_manifest(cfg, base, data, metrics, sha256_text(cfg.data))
    with staging(store, cfg.name, cfg.version) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # PEFT's model-card stub
        write_json_atomic(folder / "manifest.json", manifest)
        return publish(store, cfg.name, cfg.version, folder).path
