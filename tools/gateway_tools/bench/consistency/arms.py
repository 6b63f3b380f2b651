"""The five arms: the same items, the same gateway, different help for the model.

1. ``prompt_zero_shot``: base model; schema and labels described in the prompt.
2. ``prompt_few_shot``: the same plus k labelled examples from the training split.
3. ``constrained``: base model; the schema (with the label enum) enforced.
4. ``adapter``: the fine-tuned adapter with its recorded prompt, no constraint. A
   decision-token adapter is asked for its one answer token, mapped back to the label
   through its manifest (a client of the chat endpoint would do the same).
5. ``adapter_constrained``: the product's default, ``/v1/classify`` with the adapter.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

ARM_NAMES = (
    "prompt_zero_shot", "prompt_few_shot", "constrained", "adapter", "adapter_constrained",
)  # fmt: skip
UNCONSTRAINED_MAX_TOKENS = 64  # a weak model rambles; the answer fits in ~30 tokens


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # "base" or the adapter's name
    system_prompt: str
    constrained: bool
    shots: tuple[tuple[str, str], ...] = ()  # (user text, assistant answer)
    classify_endpoint: bool = False
    decision_tokens: dict[str, str] | None = None  # token text -> label: a one-token answer


def describe_task(labels: tuple[str, ...]) -> str:
    return (
        "You classify messages from customers of a bank. Reply with only a JSON object with "
        f"the keys intent (one of: {', '.join(labels)}), confidence (a number from 0 to 1) "
        "and requires_human_agent (true or false)."
    )


def answer(label: str) -> str:
    return json.dumps(
        {"intent": label, "confidence": 0.9, "requires_human_agent": False}, separators=(",", ":")
    )


def build_arms(
    labels: tuple[str, ...],
    adapter: str,
    adapter_prompt: str,
    train: list[tuple[str, str]],
    k: int,
    seed: int,
    names: tuple[str, ...] = ARM_NAMES,
    decision_tokens: dict[str, str] | None = None,
) -> list[Arm]:
    """``train``: (text, label) pairs the few-shot examples come from, one per label;
    ``decision_tokens``: the adapter's (token text -> label), when it answers with them."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for text, label in train:
        by_label.setdefault(label, []).append(text)
    shot_labels = rng.sample(sorted(by_label), min(k, len(by_label)))
    shots = tuple((rng.choice(by_label[lab]), answer(lab)) for lab in shot_labels)
    prompt = describe_task(labels)
    arms = {
        "prompt_zero_shot": Arm("prompt_zero_shot", "base", prompt, False),
        "prompt_few_shot": Arm("prompt_few_shot", "base", prompt, False, shots),
        "constrained": Arm("constrained", "base", prompt, True),
        "adapter": Arm("adapter", adapter, adapter_prompt, False, decision_tokens=decision_tokens),
        "adapter_constrained": Arm(
            "adapter_constrained", adapter, adapter_prompt, True, classify_endpoint=True
        ),
    }
    unknown = [n for n in names if n not in arms]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {list(arms)}")
    return [arms[n] for n in names]


def request(arm: Arm, text: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The HTTP path and body a client would send for ``text`` in this arm."""
    if arm.classify_endpoint:
        return "/v1/classify", {"text": text, "adapter": arm.model}
    messages = [{"role": "system", "content": arm.system_prompt}]
    for shot_text, shot_answer in arm.shots:
        messages += [
            {"role": "user", "content": shot_text},
            {"role": "assistant", "content": shot_answer},
        ]
    messages.append({"role": "user", "content": text})
    body: dict[str, Any] = {"model": arm.model, "messages": messages, "temperature": 0}
    if arm.constrained:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "intent_classification", "schema": schema, "strict": True},
        }
        body["max_tokens"] = 96
    elif arm.decision_tokens:
        body["max_tokens"] = 1
    else:
        body["max_tokens"] = UNCONSTRAINED_MAX_TOKENS
    return "/v1/chat/completions", body
