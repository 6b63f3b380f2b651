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


def build_manifest(
    cfg: Any, base: ModelInfo, data: Any, plan: Plan, metrics: dict, data_sha256: str
) -> dict:
    """``plan``: the epochs, batch size and warm-up the run resolved "auto" to."""
    schema = NAMED_MODELS[cfg.schema_name](tuple(data.labels)).model_json_schema()
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
        "schema": {"name": cfg.schema_name, "sha256": canonical_digest(schema)},
        "system_prompt": data.system_prompt,
        "labels": list(data.labels),
        "data_checks": data.checks.as_dict(),
        "training": {
            "answer": cfg.answer,
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "grad_accum": cfg.grad_accum,
            "learning_rate": cfg.learning_rate,
            "lr_schedule": cfg.lr_schedule,
            "warmup_steps": plan.warmup_steps,
            "early_stopping_patience": cfg.early_stopping_patience,
            "max_train_minutes": cfg.max_train_minutes,
            "augment": cfg.augment,
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
