"""The manifest's answer, calibration and escalation blocks: read when present, absent
for older adapters, and a malformed block makes the version invalid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from gateway.calibration import EscalationPolicy
from gateway.common.prompts import DecisionToken
from gateway.registry.store import AdapterInvalid, AdapterStore, StoreLimits
from tests.adapter_factory import FAKE_BASE, make_peft_folder

LIMITS = StoreLimits(FAKE_BASE.fingerprint, 16, frozenset({"q_proj", "v_proj"}), 10_000_000)
LABELS = ["billing", "other"]
ANSWER = {
    "format": "decision_token",
    "version": 1,
    "tokens": [{"label": "billing", "text": "b", "id": 98}, {"label": "other", "text": "o",
               "id": 111}],
}  # fmt: skip
CALIBRATION = {"method": "temperature", "temperature": 1.42, "fit_on": "validation"}
ESCALATION = {"threshold": 0.6, "labels": ["other"], "target_accuracy": 0.95}
LEXICON = {"format": "word_counts", "version": 1, "capitalize_first": True,
           "words": {"charged": 3, "twice": 2}}  # fmt: skip


def inspect(tmp_path: Path, labels: list[str] | None = LABELS, **extra: Any):
    make_peft_folder(tmp_path / "s" / "x" / "v1", labels=labels, extra=extra)
    return AdapterStore(tmp_path / "s", LIMITS).inspect("x", "v1")


def test_the_blocks_are_read(tmp_path: Path) -> None:
    found = inspect(tmp_path, answer=ANSWER, calibration=CALIBRATION, escalation=ESCALATION)
    assert found.answer == (DecisionToken("billing", "b", 98), DecisionToken("other", "o", 111))
    assert found.temperature == 1.42 and found.calibrated
    assert found.escalation == EscalationPolicy(0.6, frozenset({"other"}))


def test_the_lexicon_is_read(tmp_path: Path) -> None:
    found = inspect(tmp_path, lexicon=LEXICON)
    assert found.lexicon is not None
    assert found.lexicon.canonical("chraged twcie").text == "Charged twice"


def test_an_older_adapter_has_none(tmp_path: Path) -> None:
    found = inspect(tmp_path)
    assert (found.answer, found.temperature, found.escalation) == (None, None, None)
    assert found.lexicon is None
    assert not found.calibrated


def test_a_temperature_without_decision_tokens_is_not_calibrated(tmp_path: Path) -> None:
    assert not inspect(tmp_path, calibration=CALIBRATION).calibrated


def _tokens(*entries: dict) -> dict:
    return {**ANSWER, "tokens": list(entries)}


BILLING, OTHER = ANSWER["tokens"]


@pytest.mark.parametrize(
    ("labels", "blocks", "reason"),
    [
        (LABELS, {"answer": {**ANSWER, "format": "json"}}, "format 'decision_token'"),
        (LABELS, {"answer": {**ANSWER, "version": 2}}, "format 'decision_token'"),
        (None, {"answer": ANSWER}, "no labels"),
        (LABELS, {"answer": _tokens(BILLING)}, "one token per label"),
        (LABELS, {"answer": _tokens(OTHER, BILLING)}, "in label order"),
        (LABELS, {"answer": _tokens(BILLING, {**OTHER, "id": -1})}, "in label order"),
        (LABELS, {"answer": _tokens(BILLING, {**OTHER, "id": True})}, "in label order"),
        (LABELS, {"answer": _tokens(BILLING, {**OTHER, "text": 5})}, "in label order"),
        (LABELS, {"answer": _tokens(BILLING, {**OTHER, "id": 98})}, "repeat a token id"),
        (LABELS, {"calibration": {**CALIBRATION, "temperature": 0}}, "positive finite"),
        (LABELS, {"calibration": {**CALIBRATION, "temperature": math.inf}}, "positive finite"),
        (LABELS, {"calibration": {**CALIBRATION, "temperature": "2"}}, "positive finite"),
        (LABELS, {"calibration": {**CALIBRATION, "method": "platt"}}, "positive finite"),
        (LABELS, {"calibration": [1.4]}, "positive finite"),
        (LABELS, {"escalation": {**ESCALATION, "threshold": 1.5}}, r"threshold must be in \["),
        (LABELS, {"escalation": {**ESCALATION, "threshold": None}}, "threshold must be"),
        (LABELS, {"escalation": {**ESCALATION, "labels": "other"}}, "list of strings"),
        (LABELS, {"escalation": {**ESCALATION, "labels": ["weather"]}}, "not its labels"),
        (LABELS, {"escalation": "high"}, "threshold must be"),
        (LABELS, {"lexicon": {**LEXICON, "version": 2}}, "lexicon must be format"),
        (LABELS, {"lexicon": {**LEXICON, "capitalize_first": "yes"}}, "lexicon must be"),
        (LABELS, {"lexicon": {**LEXICON, "words": {"twice": 0}}}, "lexicon must be"),
        (LABELS, {"lexicon": {**LEXICON, "words": {"two words": 1}}}, "lexicon must be"),
        (LABELS, {"lexicon": {**LEXICON, "words": {"caf\u00e9": 1}}}, "lexicon must be"),
        (LABELS, {"lexicon": {**LEXICON, "words": ["charged"]}}, "lexicon must be"),
        (LABELS, {"lexicon": "words"}, "lexicon must be"),
    ],
)  # fmt: skip
def test_a_malformed_block_makes_the_version_invalid(
    tmp_path: Path, labels: list[str] | None, blocks: dict, reason: str
) -> None:
    with pytest.raises(AdapterInvalid, match=reason):
        inspect(tmp_path, labels=labels, **blocks)


def test_a_merged_model_classifies_with_the_merged_adapters_profile(tmp_path) -> None:
    import json

    from gateway.registry.store import merged_profile

    block = {"labels": ["billing", "login"], "system_prompt": "Sort it.", "schema": None}
    provenance = {"kind": "merged", "adapter": {"name": "acme", "version": "v2"},
                  "classify": block}  # fmt: skip
    (tmp_path / "provenance.json").write_text(json.dumps(provenance))
    profile = merged_profile(tmp_path)
    assert profile is not None
    assert (profile.name, profile.version, profile.labels) == ("acme", "v2", ("billing", "login"))
    assert profile.system_prompt == "Sort it." and profile.answer is None  # a legacy adapter
    quantized = {**provenance, "kind": "quantized"}  # adapters merge --quantize keeps it
    (tmp_path / "provenance.json").write_text(json.dumps(quantized))
    again = merged_profile(tmp_path)
    assert again is not None and (again.name, again.labels) == ("acme", ("billing", "login"))
    plain = {"kind": "quantized", "name": "SmolLM2"}  # a plain quantized base: no profile
    (tmp_path / "provenance.json").write_text(json.dumps(plain))
    assert merged_profile(tmp_path) is None
    assert merged_profile(tmp_path / "elsewhere") is None
