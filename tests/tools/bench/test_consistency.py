"""Consistency benchmark pieces: perturbations, parsing and scoring, arms, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway_tools.bench.consistency.arms import build_arms, request
from gateway_tools.bench.consistency.perturb import PERTURBATIONS, UNSEEN_TYPES, variants
from gateway_tools.bench.consistency.report import render
from gateway_tools.bench.consistency.score import (
    first_json_object,
    parse_answer,
    parse_decision,
    score_arm,
)
from schemas import intent_model

LABELS = ("card_arrival", "lost_or_stolen_card", "top_up_failed")
SCHEMA = intent_model(LABELS).model_json_schema()
TEXTS = [
    "I still have not received my new card, it has been two weeks.",
    "Why did my top-up fail yesterday?",
    "My card was stolen at the station",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_perturbations_are_deterministic() -> None:
    for text in TEXTS:
        assert variants(text) == variants(text)
    assert variants(TEXTS[0])["typo"] != TEXTS[0]
    assert variants(TEXTS[0], ())["original"] == TEXTS[0] and len(variants(TEXTS[0], ())) == 1


@pytest.mark.parametrize("text", TEXTS)
def test_perturbations_keep_the_meaning(text: str) -> None:
    """Same words in the same order, but for one typo or a polite/filler addition."""
    words = _words(text)
    for name, changed in variants(text).items():
        got = _words(changed)
        if name in {"original", "lower", "upper", "extra_spaces", "no_punctuation",
                    "more_punctuation"}:  # fmt: skip
            assert got == words, name
        elif name == "typo":
            diffs = [(a, b) for a, b in zip(got, words, strict=True) if a != b]
            assert len(diffs) == 1 and sorted(diffs[0][0]) == sorted(diffs[0][1])
        elif name == "polite":  # a greeting before, thanks after, the message intact between
            assert " ".join(words) in " ".join(got) and len(got) > len(words)
        elif name == "filler":  # a clause after the first word, the rest intact
            assert got[0] == words[0] and got[-(len(words) - 1) :] == words[1:]
            assert len(got) > len(words)
        else:  # contractions, sms: checked word for word below
            assert name in UNSEEN_TYPES
    assert set(variants(text)) == {"original", *PERTURBATIONS}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("contractions", "I am sure it is not here, I do not know why.",
         "I'm sure it's not here, I don't know why."),
        ("contractions", "I don\u2019t see it and I'm worried", "I do not see it and I am worried"),
        ("contractions", "Why did my top-up fail?", "Why did my top-up fail?"),
        ("sms", "Please tell me why, thank you. Are you sure?", "Pls tell me why, ty. R u sure?"),
        ("sms", "Before your message, I paid with cash", "B4 ur msg, I paid w/ cash"),
    ],
)  # fmt: skip
def test_unseen_variant_types(name: str, text: str, expected: str) -> None:
    assert PERTURBATIONS[name](text) == expected


@pytest.mark.parametrize(
    ("text", "is_json", "is_valid", "label"),
    [
        ('{"intent":"card_arrival","confidence":0.9,"requires_human_agent":false}', 1, 1,
         "card_arrival"),
        ('```json\n{"intent": "top_up_failed", "confidence": 1, "requires_human_agent": true}```',
         1, 1, "top_up_failed"),
        ('Here: {"intent": "lost_or_stolen_card"} hope that helps', 1, 0, "lost_or_stolen_card"),
        ('{"intent": "weather", "confidence": 0.5, "requires_human_agent": false}', 1, 0, None),
        ('{"intent": 7, "confidence": "high", "requires_human_agent": "no"}', 1, 0, None),
        ('["card_arrival"]', 1, 0, None),
        ('{"intent": "card_arrival", "confidence": 10000000000000', 0, 0, None),
        ("The intent is card_arrival.", 0, 0, None),
        (None, 0, 0, None),
    ],
)  # fmt: skip
def test_parser_handles_invalid_json_wrong_types_and_unknown_labels(
    text: str | None, is_json: int, is_valid: int, label: str | None
) -> None:
    parsed = parse_answer(text, SCHEMA, frozenset(LABELS))
    assert (parsed.is_json, parsed.is_valid, parsed.label) == (bool(is_json), bool(is_valid), label)


def test_first_json_object_skips_braces_inside_strings() -> None:
    assert first_json_object('x {"a": "}{", "b": {"c": 1}} y') == {"a": "}{", "b": {"c": 1}}


def _answer(item: int, variant: str, gold: str, label: str | None, valid: bool = True) -> dict:
    return {"item": item, "variant": variant, "gold": gold, "label": label, "is_json": valid,
            "is_valid": valid, "error": None if valid else "output_invalid",
            "prompt_tokens": 50 if valid else None, "latency_s": 1.0}  # fmt: skip


def test_scoring_of_one_arm() -> None:
    answers = [
        _answer(0, "original", "a", "a"), _answer(0, "lower", "a", "a"),  # consistent, right
        _answer(1, "original", "b", "b"), _answer(1, "lower", "b", "a"),  # inconsistent
        _answer(2, "original", "a", "b"), _answer(2, "lower", "a", None, valid=False),
    ]  # fmt: skip
    m = score_arm(answers, wall_seconds=3.0)
    assert m["requests"] == 6
    assert m["json_parse_rate"] == m["schema_valid_rate"] == round(5 / 6, 4)
    assert m["accuracy"] == round(2 / 3, 4)
    assert m["consistency"] == round(1 / 3, 4)
    assert m["prompt_tokens_mean"] == 50 and m["throughput_rps"] == 2.0
    assert m["errors"] == {"output_invalid": 1}
    assert m["top_confusions"] == [{"gold": "a", "predicted": "b", "count": 1}]
    assert m["consistency_seen"] == m["consistency"] and m["consistency_unseen"] is None
    assert m["mean_confidence"] is None and m["escalation_rate"] is None  # no /v1/classify


def test_consistency_is_split_by_variant_type_and_confidence_is_scored() -> None:
    def rated(item: int, variant: str, gold: str, label: str, confidence: float) -> dict:
        header = "calibrated; temperature=1.2"
        return {**_answer(item, variant, gold, label), "confidence": confidence,
                "escalated": confidence < 0.5, "calibration": header}  # fmt: skip

    answers = [
        rated(0, "original", "a", "a", 0.9), rated(0, "lower", "a", "a", 0.9),
        rated(0, "sms", "a", "b", 0.3),  # item 0: seen-consistent, unseen-inconsistent
        rated(1, "original", "b", "a", 0.4), rated(1, "lower", "b", "a", 0.6),
        rated(1, "sms", "b", "a", 0.6),  # item 1: consistent (and wrong)
    ]  # fmt: skip
    m = score_arm(answers, wall_seconds=1.0)
    assert (m["consistency"], m["consistency_seen"], m["consistency_unseen"]) == (0.5, 1.0, 0.5)
    assert m["mean_confidence"] == 0.65  # originals: 0.9 and 0.4
    assert (m["mean_confidence_consistent"], m["mean_confidence_inconsistent"]) == (0.4, 0.9)
    assert m["top_label_brier"] == round(((0.9 - 1) ** 2 + 0.4**2) / 2, 4)
    assert m["auroc"] == 1.0  # the right answer is the more confident one
    assert m["escalation_rate"] == 0.5 and m["calibration"] == "calibrated; temperature=1.2"


def test_a_decision_token_reply_maps_back_to_its_label() -> None:
    tokens = {"AA": "card_arrival", "AB": "top_up_failed"}
    assert parse_decision(" AB", tokens).label == "top_up_failed"
    assert parse_decision("AC", tokens) == parse_decision(None, tokens)
    assert not parse_decision("AC", tokens).is_valid


def test_arms_send_what_clients_send() -> None:
    train = [("card is late", "card_arrival"), ("stolen card", "lost_or_stolen_card")]
    arms = {a.name: a for a in build_arms(LABELS, "banking77", "Classify.", train, k=2, seed=0)}
    path, body = request(arms["prompt_zero_shot"], "hi", SCHEMA)
    assert path == "/v1/chat/completions" and "response_format" not in body
    assert body["model"] == "base" and "card_arrival" in body["messages"][0]["content"]
    _, few = request(arms["prompt_few_shot"], "hi", SCHEMA)
    assert len(few["messages"]) == 2 + 2 * 2
    _, constrained = request(arms["constrained"], "hi", SCHEMA)
    assert constrained["response_format"]["json_schema"]["schema"] == SCHEMA
    _, adapter = request(arms["adapter"], "hi", SCHEMA)
    assert adapter["model"] == "banking77" and adapter["messages"][0]["content"] == "Classify."
    assert request(arms["adapter_constrained"], "hi", SCHEMA) == (
        "/v1/classify", {"text": "hi", "adapter": "banking77"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown arms"):
        build_arms(LABELS, "x", "y", train, 1, 0, ("nope",))
    tokens = {"AA": "card_arrival"}
    decision = build_arms(LABELS, "b", "p", train, 0, 0, ("adapter",), tokens)[0]
    _, body = request(decision, "hi", SCHEMA)
    assert body["max_tokens"] == 1 and decision.decision_tokens == tokens


def test_report_and_charts_are_written(tmp_path: Path) -> None:
    answers = [_answer(0, "original", "a", "a"), _answer(0, "lower", "a", "b")]
    results = {
        "meta": {"command": "gateway bench consistency", "items": 1, "per_class": 1, "seed": 0,
                 "data": "x.csv", "variants": 2, "perturbations": ["lower"],
                 "requests_per_arm": 2, "adapter": "b/v1", "k": 0, "gateway": "http://x"},
        "arms": {"adapter": score_arm(answers, 1.0)},
        "answers": {"adapter": answers},
    }  # fmt: skip
    report = render(results, tmp_path)
    text = report.read_text()
    assert "| adapter | 100.0% | 100.0% | 100.0% |" in text
    for png in ("arms.png", "latency_vs_prompt.png", "confusion.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    json.dumps(results)  # what run_all writes is plain JSON


def test_a_saved_run_can_be_rescored(tmp_path: Path) -> None:
    from gateway_tools.bench.consistency.main import rescore

    answers = [
        {**_answer(0, "original", "card_arrival", None, valid=False), "error": None,
         "raw": '{"intent": "card_arrival", "confidence": 1, "requires_human_agent": false}'},
        {**_answer(0, "lower", "card_arrival", None, valid=False), "raw": None},
    ]  # fmt: skip
    results = {
        "meta": {"command": "c", "items": 1, "per_class": 1, "seed": 0, "data": "x.csv",
                 "variants": 2, "perturbations": ["lower"], "requests_per_arm": 2,
                 "adapter": "b/v1", "k": 0, "gateway": "g", "labels": list(LABELS)},
        "arms": {"adapter": score_arm(answers, 2.0)},
        "answers": {"adapter": answers},
    }  # fmt: skip
    assert results["arms"]["adapter"]["accuracy"] == 0.0  # as first scored (stale parse)
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(results))
    fresh = rescore(saved)["arms"]["adapter"]
    assert fresh["accuracy"] == 1.0 and fresh["schema_valid_rate"] == 0.5
    assert fresh["throughput_rps"] == 1.0
    assert json.loads(saved.read_text())["arms"]["adapter"] == fresh
    assert (tmp_path / "report.md").exists()


async def test_a_failed_request_is_recorded_not_fatal() -> None:
    """HTTP test double (httpx.MockTransport), no engine: dropped connections and
    non-JSON error bodies become per-request errors; the rest of the arm is scored."""
    import httpx

    from gateway_tools.bench.consistency.run import Item, run_arm

    good = {"intent": "card_arrival", "confidence": 0.9, "requires_human_agent": False}

    def respond(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["text"]
        if text == "drop":
            raise httpx.ConnectError("reset")
        if text == "html":
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(
            200,
            json={**good, "usage": {"prompt_tokens": 9}},
            headers={"X-Gateway-Confidence": "uncalibrated"},
        )

    arm = build_arms(LABELS, "b", "p", [("x", "card_arrival")], 0, 0, ("adapter_constrained",))[0]
    items = [Item(0, "card_arrival", {"original": "ok", "a": "drop", "b": "html"})]
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond), base_url="http://t") as c:
        answers, _ = await run_arm(c, arm, items, SCHEMA, frozenset(LABELS), concurrency=2)
    by_variant = {a["variant"]: a for a in answers}
    assert by_variant["original"]["label"] == "card_arrival"
    assert by_variant["original"]["confidence"] == 0.9
    assert by_variant["original"]["escalated"] is False
    assert by_variant["original"]["calibration"] == "uncalibrated"
    assert by_variant["a"]["error"] == "transport: ConnectError"
    assert by_variant["b"]["error"] == "http_502" and not by_variant["b"]["is_valid"]
