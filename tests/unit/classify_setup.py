"""Adapters for /v1/classify tests with the engine test double, one per answer format.

The double's tokenizer (``tests.fake_engine.FakeTokenizer``) gives the demo labels
their first letters as decision tokens and labels that share a first letter the codes
AA, AB, ...; the manifests below record what training would have written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.common.prompts import decision_tokens
from gateway.config import Settings
from schemas.intent import DEMO_LABELS
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeTokenizer

LABELS = list(DEMO_LABELS)  # password_reset, billing_inquiry, technical_support, ...
SHARED = ["card_arrival", "card_linking", "cash_withdrawal"]  # one first letter: codes
TEMPERATURE = 2.0
THRESHOLD = 0.5
# what training writes for texts like "I was charged twice" (see gateway.common.lexicon)
LEXICON = {"format": "word_counts", "version": 1, "capitalize_first": True,
           "words": {"I": 4, "was": 3, "charged": 3, "twice": 2}}  # fmt: skip


def answer_block(labels: list[str]) -> dict[str, Any]:
    tokens = decision_tokens(FakeTokenizer(), labels)
    return {
        "format": "decision_token",
        "version": 1,
        "tokens": [{"label": t.label, "text": t.text, "id": t.token_id} for t in tokens],
    }


def calibration_block(temperature: float = TEMPERATURE) -> dict[str, Any]:
    return {"method": "temperature", "temperature": temperature, "fit_on": "validation"}


def escalation_block(threshold: float = THRESHOLD, labels: list[str] | None = None) -> dict:
    return {"threshold": threshold, "labels": labels or [], "target_accuracy": 0.95}


def classify_settings(tmp_path: Path) -> Settings:
    """plain: no labels; legacy: labels, JSON answers; coded: decision-token codes,
    uncalibrated; calibrated: T and an escalation default; forged: a token id that is not
    its text's; lexical: decision tokens and a lexicon."""
    store = tmp_path / "store"
    forged = answer_block(LABELS)
    forged["tokens"][0]["id"] = 999
    folders: dict[str, tuple[list[str] | None, dict[str, Any]]] = {
        "plain": (None, {}),
        "legacy": (LABELS, {}),
        "coded": (SHARED, {"answer": answer_block(SHARED)}),
        "calibrated": (LABELS, {
            "answer": answer_block(LABELS), "calibration": calibration_block(),
            "escalation": escalation_block(labels=["password_reset"]),
        }),
        "forged": (LABELS, {"answer": forged}),
        "lexical": (LABELS, {"answer": answer_block(LABELS), "lexicon": LEXICON}),
    }  # fmt: skip
    for name, (labels, extra) in folders.items():
        make_peft_folder(store / name / "v1", labels=labels, extra=extra)
    return Settings(
        adapter_store=store,
        adapters={name: "v1" for name in folders},
        max_tokens_cap=100,
        default_max_tokens=50,
        max_model_len=1024,
        max_cpu_loras=8,
    )
