"""``/v1/classify``: one support message in, one validated intent object out.

The model decides only the label; the gateway computes the confidence from token
log-probabilities, applies the escalation policy and assembles the object, which is
validated against ``intent_model(labels)`` as before. An adapter whose manifest has an
``answer`` block (and the base model) answers with one decision token per label: one
engine step, every label's probability. A legacy adapter still writes the JSON object
under the grammar; its confidence is the sampled label's probability under the mask.
The prompt builder lives in ``gateway.common.prompts``, shared with training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from gateway import errors
from gateway.calibration import EscalationPolicy, label_probs
from gateway.common.prompts import (
    DecisionToken,
    DecisionTokenError,
    classify_messages,
    default_system_prompt,
    label_system_prompt,
)
from gateway.registry.store import AdapterVersion
from gateway.service.chat import ChatService
from gateway.service.confidence import decision_logprobs, legacy_confidence, ranked
from gateway.service.types import ChatResult, ChatTask, PreparedChat
from gateway.service.validation import Constraint
from gateway.tenancy import Tenant
from schemas import intent_model

SCHEMA_NAME = "intent_classification"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Classification:
    """The validated answer and what it was computed from."""

    result: BaseModel  # intent, confidence, requires_human_agent
    adapter: str | None
    version: str | None
    labels: tuple[str, ...]
    num_prompt_tokens: int
    num_output_tokens: int
    attempts: int
    probabilities: tuple[float, ...] | None  # calibrated, label order; None: legacy adapter
    label_logprobs: tuple[float, ...] | None  # raw, label order (to fit a temperature)
    temperature: float | None  # the one applied; None: uncalibrated
    escalation: EscalationPolicy  # the policy applied (tenant overrides included)
    escalation_reason: str | None  # "escalation_label", "low_confidence" or None
    top_k: tuple[tuple[str, float], ...] | None  # asked for: (label, probability), best first
    input_corrections: int = 0  # words of the message rewritten to the adapter's spelling

    @property
    def calibrated(self) -> bool:
        return self.temperature is not None

    @property
    def confidence(self) -> float:
        return float(self.result.confidence)  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, Any]:
        return self.result.model_dump(mode="json")


@dataclass(frozen=True)
class PreparedClassify:
    """A checked classification: the engine request and how to read its answer."""

    chat: PreparedChat
    model: type[BaseModel]
    labels: tuple[str, ...]
    tokens: tuple[DecisionToken, ...] | None  # None: a legacy adapter's JSON answer
    temperature: float | None
    escalation: EscalationPolicy
    top_k: int | None
    input_corrections: int  # words of the message rewritten to the adapter's spelling


class ClassifyService:
    def __init__(
        self,
        chat: ChatService,
        default_labels: tuple[str, ...],
        max_tokens: int,
        base_profile: AdapterVersion | None = None,
    ):
        """``base_profile``: how the base model itself classifies when it is a merged
        adapter (its labels, prompt, tokens, temperature), served with no LoRA."""
        self.chat = chat
        self.default_labels = base_profile.labels if base_profile else default_labels
        self.max_tokens = max_tokens
        self.base_profile = base_profile
        self._checked: dict[tuple[Any, ...], tuple[DecisionToken, ...]] = {}
        self._json_only: set[tuple[str, ...]] = set()  # label sets told once in the log

    def labels_for(self, adapter: AdapterVersion | None) -> tuple[str, ...]:
        if adapter is None:
            return self.default_labels
        if not adapter.labels:
            raise errors.AdapterHasNoLabels(
                f"adapter {adapter.name!r} has no label set in its manifest, so it cannot "
                "classify; use it through /v1/chat/completions",
                param="adapter",
            )
        return adapter.labels

    def prepare(
        self,
        text: str,
        adapter_name: str | None,
        tenant: Tenant | None = None,
        top_k: int | None = None,
        timeout_s: float | None = None,
    ) -> PreparedClassify:
        """Every check that can refuse the request, done before it is admitted.
        ``timeout_s``: the client's deadline (admission clamps it to the server's)."""
        if not text.strip():
            raise errors.InvalidRequest("text is empty or only whitespace", param="text")
        adapter = self.chat.resolve_adapter(adapter_name, tenant)
        profile = adapter or self.base_profile  # what answers: the LoRA's or the merged one's
        text, corrections = self._canonical(profile, text)
        labels = self.labels_for(profile)
        tokens = self._decision_tokens(profile, labels)
        _check_top_k(top_k, len(labels), legacy=tokens is None)
        escalation = self._escalation(profile, tenant, is_base=adapter is None)
        model = intent_model(labels)
        prompt = profile.system_prompt if profile else None
        if tokens is None:  # legacy: the JSON object under the grammar, sampled logprobs
            schema = self.chat.schemas.for_model(model, SCHEMA_NAME)
            task = ChatTask(
                messages=classify_messages(prompt or default_system_prompt(labels), text),
                budget=self.max_tokens,
                timeout_s=timeout_s,
            )
            chat = self.chat.prepare_resolved(
                task, adapter, Constraint(schema=schema), tenant, endpoint="classify"
            )
            chat = replace(chat, params=replace(chat.params, logprobs=0))
            return PreparedClassify(chat, model, labels, None, None, escalation, top_k, corrections)
        task = ChatTask(
            messages=classify_messages(prompt or label_system_prompt(labels, tokens), text),
            max_tokens=1,
            timeout_s=timeout_s,
        )
        chat = self.chat.prepare_resolved(task, adapter, None, tenant, endpoint="classify")
        ids = tuple(token.token_id for token in tokens)
        chat = replace(chat, params=replace(chat.params, logprob_token_ids=ids))
        temperature = profile.temperature if profile else None
        return PreparedClassify(
            chat, model, labels, tokens, temperature, escalation, top_k, corrections
        )

    async def run(self, prepared: PreparedClassify) -> Classification:
        result = await self.chat.complete(prepared.chat)
        try:
            if prepared.tokens is None:
                label = result.parsed["intent"]
                confidence = legacy_confidence(prepared.labels, label, result.logprobs or [])
                raw = probabilities = None
                best = [(label, confidence)]
            else:
                raw = decision_logprobs(prepared.tokens, result.logprobs or [])
                probabilities = tuple(label_probs(raw, prepared.temperature or 1.0))
                best = ranked(prepared.labels, probabilities)
                label, confidence = best[0]
        except ValueError as exc:  # MissingLogprobs, or no finite logprob at all
            raise errors.traced(
                errors.EngineFailed, "the engine's log-probabilities cannot be read", log, exc
            ) from exc
        reason = prepared.escalation.reason(label, confidence)
        if reason is None and prepared.tokens is None and result.parsed.get("requires_human_agent"):
            reason = "model"  # a legacy adapter learned the flag from its data; keep it
        answer = {"intent": label, "confidence": confidence, "requires_human_agent": bool(reason)}
        return self._classification(
            prepared, result, prepared.model.model_validate(answer), raw, probabilities,
            reason, tuple(best[: prepared.top_k]) if prepared.top_k else None,
        )  # fmt: skip

    async def classify(
        self,
        text: str,
        adapter_name: str | None,
        tenant: Tenant | None = None,
        top_k: int | None = None,
    ) -> Classification:
        """``prepare`` then ``run``, for callers that count no refusals (evaluation)."""
        return await self.run(self.prepare(text, adapter_name, tenant, top_k))

    # internals ------------------------------------------------------------------------
    def _canonical(self, profile: AdapterVersion | None, text: str) -> tuple[str, int]:
        """The text in its adapter's training spelling (``gateway.common.lexicon``), and
        how many words that changed; as sent where correction is off or no lexicon."""
        lexicon = profile.lexicon if profile else None
        if lexicon is None or not self.chat.settings.classify_input_correction:
            return text, 0
        canonical = lexicon.canonical(text)
        return canonical.text, canonical.corrections

    def _decision_tokens(
        self, adapter: AdapterVersion | None, labels: tuple[str, ...]
    ) -> tuple[DecisionToken, ...] | None:
        """The base model's from the served tokenizer; an adapter's from its manifest,
        checked once against the served tokenizer (each text must be its id alone)."""
        engine = self.chat.engine
        if adapter is None:
            try:
                return engine.decision_tokens(labels)
            except DecisionTokenError as exc:  # e.g. over 128 labels: the JSON grammar path
                if labels not in self._json_only:
                    self._json_only.add(labels)
                    log.warning("intent_labels have no decision tokens (%s); the base "
                                "model answers them in JSON under the grammar", exc)  # fmt: skip
                return None
        if adapter.answer is None:
            return None
        key = (adapter.name, adapter.version, adapter.answer)  # a re-uploaded version differs
        if key not in self._checked:
            for token in adapter.answer:
                if engine.encode_text(token.text) != [token.token_id]:
                    raise errors.AdapterInvalid(
                        f"adapter {adapter.name}/{adapter.version}: the decision token "
                        f"{token.text!r} of label {token.label!r} is not token id "
                        f"{token.token_id} under the served tokenizer; retrain it",
                        param="adapter",
                    )
            self._checked[key] = adapter.answer
        return self._checked[key]

    def _escalation(
        self, adapter: AdapterVersion | None, tenant: Tenant | None, is_base: bool = False
    ) -> EscalationPolicy:
        policy = (adapter.escalation if adapter else None) or EscalationPolicy()
        if tenant is None:
            return policy
        name = self.chat.settings.served_model_name if is_base or not adapter else adapter.name
        return tenant.escalation_policy(name, policy)

    @staticmethod
    def _classification(
        prepared: PreparedClassify, result: ChatResult, answer: BaseModel,
        raw: tuple[float, ...] | None, probabilities: tuple[float, ...] | None,
        reason: str | None, top_k: tuple[tuple[str, float], ...] | None,
    ) -> Classification:  # fmt: skip
        return Classification(
            result=answer,
            adapter=prepared.chat.adapter_name,
            version=prepared.chat.adapter_version,
            labels=prepared.labels,
            num_prompt_tokens=result.num_prompt_tokens,
            num_output_tokens=result.num_output_tokens,
            attempts=result.attempts,
            probabilities=probabilities,
            label_logprobs=raw,
            temperature=prepared.temperature,
            escalation=prepared.escalation,
            escalation_reason=reason,
            top_k=top_k,
            input_corrections=prepared.input_corrections,
        )


def _check_top_k(top_k: int | None, num_labels: int, legacy: bool) -> None:
    if top_k is None:
        return
    if not 1 <= top_k <= num_labels:
        raise errors.InvalidRequest(
            f"top_k must be between 1 and {num_labels}, the number of labels",
            param="top_k",
        )
    if legacy and top_k > 1:
        raise errors.InvalidRequest(
            "top_k above 1 needs an adapter that answers with decision tokens; this one "
            "writes its answer as JSON and scores only the label it chose",
            param="top_k",
            hint="retrain it with the current gateway train, or ask for top_k=1",
        )
