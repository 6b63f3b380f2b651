"""The adapter manifest: everything needed to serve, audit and reproduce an adapter."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from gateway.common.digest import canonical_digest
from gateway.common.lexicon import Lexicon
from gateway.fileio import write_json_atomic
from gateway.models import ModelInfo
from gateway.training.schedule import Plan
from gateway.training.task import Task
from schemas import NAMED_MODELS

__all__ = ["REQUIRED_KEYS", "build_manifest", "write_json_atomic"]

REQUIRED_KEYS = (
    "name", "version", "base_model", "lora", "dataset", "schema", "system_prompt", "labels",
    "training", "seed", "versions", "created", "launch",
)  # fmt: skip


def tool_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
    }


def answer_format(configured: str, task: Task) -> str:
    """What ``answer=auto`` became: ``decision_token``, ``json``, ``structured``, ``text``."""
    if task.kind != "classification":
        return task.kind
    return configured if configured in ("decision_token", "json") else "decision_token"


def schema_block(task: Task, labels: tuple[str, ...]) -> dict[str, Any] | None:
    """Classification: the named schema's name and digest (``/v1/classify`` builds the
    model from the labels). Structured: the schema itself under ``json``, which the
    gateway enforces on a chat request that sends no ``response_format``. Text: none."""
    if task.kind == "classification" and task.schema_name:
        schema = NAMED_MODELS[task.schema_name](labels).model_json_schema()
        return {"name": task.schema_name, "sha256": canonical_digest(schema)}
    block = task.manifest_block()
    if block is not None and task.schema is not None:
        block["sha256"] = canonical_digest(task.schema)
    return block


def build_manifest(
    cfg: Any, base: ModelInfo, data: Any, plan: Plan, metrics: dict, data_sha256: str
) -> dict:
    """``plan``: the epochs, batch size and warm-up the run resolved "auto" to."""
    classify = data.task.kind == "classification"
    return {
        "name": cfg.name,
        "version": cfg.version,
        "base_model": {"name": base.name, "fingerprint": base.fingerprint, "variant": base.variant},
        "lora": {
            "rank": cfg.rank,
            "alpha": cfg.alpha,
            "dropout": cfg.dropout,
            "target_modules": list(cfg.target_modules),
        },
        "dataset": {
            "file": cfg.data.name,
            "sha256": data_sha256,
            "train_size": len(data.train),
            "held_out_sizes": {k: len(v) for k, v in data.held_out.items()},
            "per_class": cfg.per_class,
        },
        "schema": schema_block(data.task, tuple(data.labels)),
        "system_prompt": data.system_prompt,
        "labels": list(data.labels),
        "data_checks": data.checks.as_dict(),
        "training": {
            "answer": answer_format(cfg.answer, data.task),
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "grad_accum": cfg.grad_accum,
            "learning_rate": cfg.learning_rate,
            "lr_schedule": cfg.lr_schedule,
            "warmup_steps": plan.warmup_steps,
            "early_stopping_patience": cfg.early_stopping_patience,
            "max_train_minutes": cfg.max_train_minutes,
            "augment": cfg.augment if classify else 0,  # never on a structured answer
            "share_prefix": cfg.share_prefix,
            "bf16": cfg.bf16,
            "qlora": cfg.qlora,
            **metrics,
        },
        "evaluation": None,
        "seed": cfg.seed,
        "versions": tool_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "launch": " ".join(["gateway", *sys.argv[1:]]),
        # classify reads messages in the training texts' spelling and casing
        **({"lexicon": Lexicon.from_texts(e.text for e in data.train).block()}
           if data.labels else {}),
    }  # fmt: skip
