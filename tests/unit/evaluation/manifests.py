"""A complete adapter manifest, as training writes it, for the evaluation tests."""

from __future__ import annotations

from typing import Any


def manifest(labels: list[str], answer: dict[str, Any] | None = None, **extra: Any) -> dict:
    return {
        "name": "demo",
        "version": "v1",
        "base_model": {"name": "m", "fingerprint": "f" * 64},
        "labels": labels,
        "schema": {"name": "intent_classification"},
        "system_prompt": "Classify.",
        "launch": "gateway train --config x.yaml",
        "dataset": {"train_size": 10, "per_class": None},
        "training": {
            "history": [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4}],
            "epochs": 3,
            "stopped": "early_stopping",
            "tokens": 100,
            "seconds": 1.0,
            "examples_per_second": 10.0,
            "tokens_per_second": 100.0,
            "bf16": True,
            "best_val_loss": 0.4,
        },
        "data_checks": [{"check": "c", "status": "ok", "detail": "d"}],
        **({"answer": answer} if answer else {}),
        **extra,
    }
