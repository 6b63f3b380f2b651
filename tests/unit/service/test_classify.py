"""The classify service with the engine test double: confidence from log-probabilities,
calibration, top_k, escalation and the refusals, through ``ClassifyService`` itself."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway import errors
from gateway.calibration import EscalationPolicy, label_probs
from gateway.common.prompts import label_system_prompt
from gateway.service import Services
from gateway.tenancy import Tenant
from schemas import intent_model
from tests.adapter_factory import FAKE_BASE
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.classify_setup import LABELS, SHARED, TEMPERATURE, THRESHOLD, classify_settings

HASH = "sha256:" + "0" * 64
LEGACY = '{"intent":"billing_inquiry","confidence":0.9,"requires_human_agent":true}'


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def services(tmp_path: Path, engine: FakeEngine) -> Services:
    settings = classify_settings(tmp_path)
    built = Services.build(settings, engine, FAKE_BASE)
    for name, version in settings.adapters.items():
        built.adapters.ensure(name, version)
    return built


def tenant(**escalation: dict) -> Tenant:
    return Tenant(name="t", key_hashes=[HASH], allowed_adapters=["*"], escalation=escalation)


async def test_one_engine_step_scores_every_label(services: Services, engine: FakeEngine) -> None:
    engine.label_logprobs = [[-3.0, -0.5, -2.0, -4.0]]
    found = await services.classify.classify("I was charged twice", None)
    params = engine.calls[-1]
    assert params.max_tokens == 1 and params.json_schema is None and params.temperature == 0
    assert params.logprob_token_ids == tuple(ord(label[0]) for label in LABELS)
    assert found.label_logprobs == (-3.0, -0.5, -2.0, -4.0)
    assert found.probabilities == pytest.approx(label_probs([-3.0, -0.5, -2.0, -4.0]))
    assert found.result.intent == "billing_inquiry"
    assert found.confidence == found.probabilities[1]
    assert not found.calibrated and found.escalation_reason is None


async def test_the_base_prompt_lists_the_labels(services: Services, engine: FakeEngine) -> None:
    await services.classify.classify("  I  was\n charged ", None)
    tokens = engine.decision_tokens(tuple(LABELS))
    messages = [
        {"role": "system", "content": label_system_prompt(LABELS, tokens)},
        {"role": "user", "content": "I was charged"},
    ]
    assert engine.calls[-1].prompt_token_ids == engine.encode_chat(messages)


async def test_confidence_is_a_probability_that_changes_with_the_input(
    services: Services,
) -> None:
    """No script: the double's log-probabilities depend on the prompt, as a model's do."""
    first = await services.classify.classify("I forgot my password", None)
    second = await services.classify.classify("Where is your office?", None)
    for found in (first, second):
        assert 0 < found.confidence <= 1
        assert found.confidence == max(found.probabilities)
    assert first.confidence != second.confidence


async def test_top_k_all_sums_to_one(services: Services, engine: FakeEngine) -> None:
    engine.label_logprobs = [[-1.25, -7.5, -0.3, -2.0], [-1.0, -1.0, -5.0, -5.0]]
    found = await services.classify.classify("anything", None, top_k=len(LABELS))
    assert abs(math.fsum(p for _, p in found.top_k) - 1) < 1e-9
    assert [label for label, _ in found.top_k] == [LABELS[2], LABELS[0], LABELS[3], LABELS[1]]
    tied = await services.classify.classify("anything", None, top_k=2)
    assert [label for label, _ in tied.top_k] == LABELS[:2]  # a tie keeps label order
    assert tied.result.intent == LABELS[0]


@pytest.mark.parametrize("adapter", [None, "coded", "calibrated"])
async def test_the_assembled_object_validates_for_every_label(
    services: Services, engine: FakeEngine, adapter: str | None
) -> None:
    labels = SHARED if adapter == "coded" else LABELS
    for winner in range(len(labels)):
        engine.label_logprobs = [[-0.1 if i == winner else -6.0 for i in range(len(labels))]]
        found = await services.classify.classify("text", adapter)
        assert found.result.intent == labels[winner]
        again = intent_model(tuple(labels)).model_validate_json(found.result.model_dump_json())
        assert again == found.result


async def test_codes_are_the_tokens_of_labels_that_share_a_first_token(
    services: Services, engine: FakeEngine
) -> None:
    await services.classify.classify("text", "coded")
    assert engine.calls[-1].logprob_token_ids == (1000, 1001, 1002)  # AA, AB, AC


async def test_the_manifest_temperature_is_applied(services: Services, engine: FakeEngine) -> None:
    raw = [-0.2, -2.0, -3.0, -3.5]
    engine.label_logprobs = [raw]
    found = await services.classify.classify("text", "calibrated")
    assert found.calibrated and found.temperature == TEMPERATURE
    assert found.label_logprobs == tuple(raw)
    assert found.probabilities == pytest.approx(label_probs(raw, TEMPERATURE))
    assert found.confidence < label_probs(raw)[0]  # T > 1 softens


async def test_the_manifest_escalation_rule(services: Services, engine: FakeEngine) -> None:
    engine.label_logprobs = [
        [-5.0, -0.01, -6.0, -6.0],  # billing_inquiry, confident
        [-1.0, -0.9, -1.1, -1.0],  # billing_inquiry, unsure
        [-0.01, -6.0, -6.0, -6.0],  # password_reset: on the escalation list
    ]
    sure, unsure, listed = [await services.classify.classify("t", "calibrated") for _ in "abc"]
    assert sure.confidence >= THRESHOLD and not sure.result.requires_human_agent
    assert unsure.confidence < THRESHOLD and unsure.result.requires_human_agent
    assert (sure.escalation_reason, unsure.escalation_reason) == (None, "low_confidence")
    assert listed.escalation_reason == "escalation_label"
    assert listed.result.requires_human_agent


async def test_tenant_overrides_take_precedence(services: Services, engine: FakeEngine) -> None:
    manifest = EscalationPolicy(THRESHOLD, frozenset({"password_reset"}))
    cases = [
        (tenant(), "calibrated", manifest),
        (tenant(**{"*": {"threshold": 0.9}}), "calibrated", EscalationPolicy(0.9, manifest.labels)),
        (
            tenant(**{"*": {"threshold": 0.9}, "calibrated": {"threshold": 0.2, "labels": []}}),
            "calibrated",
            EscalationPolicy(0.2, frozenset()),
        ),
        (tenant(**{"other": {"threshold": 0.9}}), "calibrated", manifest),
        (tenant(), None, EscalationPolicy()),
        (tenant(base={"labels": ["general_question"]}), None,
         EscalationPolicy(0.0, frozenset({"general_question"}))),
    ]  # fmt: skip
    for who, adapter, expected in cases:
        found = await services.classify.classify("t", adapter, who)
        assert found.escalation == expected, (who.escalation, adapter)


async def test_legacy_confidence_is_the_sampled_label_probability(
    services: Services, engine: FakeEngine
) -> None:
    """Pieces of 3 characters: '{"i' 'nte' 'nt"' ':"b' 'ill' ... ; 'b' alone tells
    billing_inquiry apart, so only the piece ':"b' counts."""
    logprobs = [-0.5, -0.4, -0.3, -0.25, -2.0, -2.0] + [-3.0] * 30
    engine.outputs = [ScriptedOutput(LEGACY, token_logprobs=logprobs)]
    found = await services.classify.classify("text", "legacy")
    assert engine.calls[-1].logprobs == 0 and engine.calls[-1].json_schema is not None
    assert found.result.intent == "billing_inquiry"
    assert found.confidence == pytest.approx(math.exp(-0.25))
    assert found.probabilities is None and found.label_logprobs is None
    assert not found.calibrated
    # a legacy adapter learned the flag from flagged training rows: it is kept
    assert found.result.requires_human_agent is True and found.escalation_reason == "model"


async def test_a_legacy_adapters_unflagged_answer_stays_unflagged(
    services: Services, engine: FakeEngine
) -> None:
    engine.outputs = [ScriptedOutput(LEGACY.replace("true", "false"))]
    found = await services.classify.classify("text", "legacy")
    assert found.result.requires_human_agent is False and found.escalation_reason is None


async def test_a_label_set_without_decision_tokens_is_classified_in_json(
    tmp_path: Path, engine: FakeEngine
) -> None:
    """Over 128 labels have no decision tokens: the base model answers under the JSON
    grammar as before, rather than failing every request."""
    labels = [f"label_{i}" for i in range(129)]
    settings = classify_settings(tmp_path).model_copy(update={"intent_labels": labels})
    services = Services.build(settings, engine, FAKE_BASE)
    engine.max_model_len = 8192  # the double's tokens are characters; the list is long
    engine.outputs = [ScriptedOutput('{"intent":"label_7","confidence":0.5,'
                                     '"requires_human_agent":false}')]  # fmt: skip
    found = await services.classify.classify("text", None)
    assert found.result.intent == "label_7" and engine.calls[-1].json_schema is not None


@pytest.mark.parametrize(
    ("text", "adapter", "top_k", "error", "param"),
    [
        ("   \n\t", None, None, errors.InvalidRequest, "text"),
        ("hi", None, 0, errors.InvalidRequest, "top_k"),
        ("hi", None, 5, errors.InvalidRequest, "top_k"),
        ("hi", "coded", 4, errors.InvalidRequest, "top_k"),
        ("hi", "legacy", 2, errors.InvalidRequest, "top_k"),
        ("hi", "plain", None, errors.AdapterHasNoLabels, "adapter"),
        ("hi", "forged", None, errors.AdapterInvalid, "adapter"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_the_engine(
    services: Services, engine: FakeEngine, text: str, adapter: str | None,
    top_k: int | None, error: type[errors.GatewayError], param: str,
) -> None:  # fmt: skip
    with pytest.raises(error) as caught:
        services.classify.prepare(text, adapter, None, top_k)
    assert caught.value.param == param and type(caught.value) is error
    assert engine.calls == []


async def test_legacy_top_1_is_allowed(services: Services, engine: FakeEngine) -> None:
    engine.outputs = [ScriptedOutput(LEGACY)]
    found = await services.classify.classify("text", "legacy", top_k=1)
    assert found.top_k == (("billing_inquiry", found.confidence),)


async def test_missing_logprobs_are_an_engine_failure(
    services: Services, engine: FakeEngine
) -> None:
    engine.label_logprobs = [[-1.0, -math.inf, -math.inf, -math.inf]]
    found = await services.classify.classify("t", None)
    assert found.probabilities == (1.0, 0.0, 0.0, 0.0)
    engine.label_logprobs = [[-math.inf] * 4]
    with pytest.raises(errors.EngineFailed, match="log-probabilities"):
        await services.classify.classify("t", None)
