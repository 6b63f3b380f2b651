"""POST /v1/classify over HTTP with the engine test double: the response's new fields,
the confidence header, /v1/models' calibrated flag and the refusals with their codes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.classify_setup import LABELS, TEMPERATURE, THRESHOLD, classify_settings
from tests.unit.conftest import started_client


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(tmp_path: Path, engine: FakeEngine) -> Iterator[TestClient]:
    yield from started_client(classify_settings(tmp_path), engine)


def classify(client: TestClient, **body: object):
    return client.post("/v1/classify", json={"text": "I was charged twice", **body})


def test_the_answer_carries_top_k_and_escalation(client: TestClient, engine: FakeEngine) -> None:
    engine.label_logprobs = [[-4.0, -0.1, -3.0, -5.0], [-4.0, -0.1, -3.0, -5.0]]
    plain = classify(client, adapter="calibrated")
    assert plain.status_code == 200, plain.text
    body = plain.json()
    assert body["intent"] == "billing_inquiry" and body["top_k"] is None
    assert body["escalation"] == {"reason": None, "threshold": THRESHOLD}
    assert body["requires_human_agent"] is False
    assert plain.headers["x-gateway-confidence"] == f"calibrated; temperature={TEMPERATURE:g}"
    ranked = classify(client, adapter="calibrated", top_k=3).json()["top_k"]
    assert [r["intent"] for r in ranked] == [LABELS[1], LABELS[2], LABELS[0]]
    assert ranked[0]["probability"] == body["confidence"]


def test_a_typo_is_read_as_the_training_spelling_and_counted(
    tmp_path: Path, client: TestClient, engine: FakeEngine
) -> None:
    clean = classify(client, adapter="lexical")
    prompt = engine.calls[-1].prompt_token_ids
    typed = classify(client, adapter="lexical", text="i was chraged  twcie")
    assert typed.status_code == 200, typed.text
    assert engine.calls[-1].prompt_token_ids == prompt  # the model read the same message
    assert typed.json()["intent"] == clean.json()["intent"]
    assert typed.headers["x-gateway-input-corrections"] == "3"  # I, charged, twice
    assert clean.headers["x-gateway-input-corrections"] == "0"
    assert classify(client, adapter="calibrated").headers["x-gateway-input-corrections"] == "0"


def test_input_correction_can_be_turned_off(tmp_path: Path, engine: FakeEngine) -> None:
    settings = classify_settings(tmp_path).model_copy(update={"classify_input_correction": False})
    for client in started_client(settings, engine):
        classify(client, adapter="lexical")
        prompt = engine.calls[-1].prompt_token_ids
        typed = classify(client, adapter="lexical", text="I was chraged twice")
        assert engine.calls[-1].prompt_token_ids != prompt
        assert typed.headers["x-gateway-input-corrections"] == "0"


def test_top_k_all_sums_to_one_over_http(client: TestClient, engine: FakeEngine) -> None:
    ranked = classify(client, top_k=len(LABELS)).json()["top_k"]
    assert abs(math.fsum(r["probability"] for r in ranked) - 1) < 1e-9
    assert sorted(r["intent"] for r in ranked) == sorted(LABELS)


def test_escalation_reason_and_flag_agree(client: TestClient, engine: FakeEngine) -> None:
    engine.label_logprobs = [[-0.01, -6.0, -6.0, -6.0], [-1.1, -1.0, -1.2, -1.3]]
    listed = classify(client, adapter="calibrated").json()
    unsure = classify(client, adapter="calibrated").json()
    assert listed["escalation"]["reason"] == "escalation_label"
    assert unsure["escalation"]["reason"] == "low_confidence"
    assert listed["requires_human_agent"] and unsure["requires_human_agent"]


def test_uncalibrated_models_say_so(client: TestClient, engine: FakeEngine) -> None:
    engine.outputs = [
        ScriptedOutput('{"intent":"password_reset","confidence":0.9,"requires_human_agent":true}')
    ]
    for adapter in (None, "coded", "legacy"):
        res = classify(client, **({"adapter": adapter} if adapter else {}))
        assert res.status_code == 200, res.text
        assert res.headers["x-gateway-confidence"] == "uncalibrated"
    cards = {card["id"]: card["calibrated"] for card in client.get("/v1/models").json()["data"]}
    assert cards == {
        "base": False, "plain": False, "legacy": False, "coded": False, "calibrated": True,
        "forged": False, "lexical": False,
    }  # fmt: skip


def test_a_legacy_adapter_still_answers_under_its_schema(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.outputs = [
        ScriptedOutput('{"intent":"password_reset","confidence":0.8,"requires_human_agent":true}')
    ]
    res = classify(client, adapter="legacy")
    assert res.status_code == 200, res.text
    assert res.json()["intent"] == "password_reset"
    assert res.json()["confidence"] != 0.8  # computed, not the model's text
    assert engine.calls[-1].json_schema["properties"]["intent"]["enum"] == LABELS
    engine.outputs = [
        ScriptedOutput('{"intent":"weather","confidence":0.8,"requires_human_agent":false}')
    ]
    res = classify(client, adapter="legacy")
    assert res.status_code == 502
    assert res.json()["error"]["code"] == "output_invalid"


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"text": ""}, 400, "invalid_request", "text"),
        ({"text": " \n\t "}, 400, "invalid_request", "text"),
        ({"text": "x" * 8001}, 400, "invalid_request", "text"),
        ({"top_k": 0}, 400, "invalid_request", "top_k"),
        ({"top_k": 5}, 400, "invalid_request", "top_k"),
        ({"top_k": 10**30}, 400, "invalid_request", "top_k"),
        ({"top_k": True}, 400, "invalid_request", "top_k"),  # not 1
        ({"top_k": "3"}, 400, "invalid_request", "top_k"),
        ({"top_k": 2, "adapter": "legacy"}, 400, "invalid_request", "top_k"),
        ({"adapter": "plain"}, 400, "adapter_has_no_labels", "adapter"),
        ({"adapter": "forged"}, 400, "adapter_invalid", "adapter"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_reason_and_a_code(
    client: TestClient, engine: FakeEngine, body: dict, status: int, code: str, param: str
) -> None:
    res = client.post("/v1/classify", json={"text": "hi", **body})
    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"]
    assert engine.calls == []
