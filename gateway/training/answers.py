"""What an adapter learns to answer, and the loss that teaches it.

``decision_token`` (the default): the answer is one token per label (``decision_tokens``
in ``gateway.common.prompts``, the rule serving uses too) and the loss is cross-entropy
over the label set's logits at the last prompt position: exactly the distribution
``/v1/classify`` renormalises, with no loss spent on JSON syntax the gateway assembles.

``json``: the legacy recipe, cross-entropy over every token of the whole JSON answer and
the end-of-turn marker. Adapters trained this way are served by constrained decoding.

Structured and plain-text tasks (``ChatAnswer``): the row's own conversation, with the
loss on the tokens of its trained assistant turns (weight 1) and their end-of-turn
markers only; the shared-prefix batching applies to them unchanged.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from gateway.common.prompts import (
    ChatTemplateError,
    DecisionToken,
    DecisionTokenError,
    classify_messages,
    decision_tokens,
    default_system_prompt,
    label_system_prompt,
    render_answer,
    render_prompt,
)
from gateway.training.batching import IGNORE, batch_loss, batches, label_logits
from gateway.training.config import TrainConfig
from gateway.training.examples import Example, Message
from gateway.training.task import Task

ANSWER_VERSION = 1
UNKNOWN_LABEL = -1  # a row whose label is outside the set; the data checks fail on it


@dataclass(frozen=True)
class Validation:
    nll: float  # mean loss per item (json: per answer token)
    logits: list[list[float]] | None  # per item, label order (decision tokens only)


class Answer(ABC):
    """One answer format: how a row is encoded, scored and recorded in the manifest."""

    def __init__(self, tokenizer: Any, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt

    def prompt(self, example: Example, text: str) -> list[int]:
        messages = classify_messages(example.system_prompt or self.system_prompt, text)
        return render_prompt(self.tokenizer, messages)

    @abstractmethod
    def encode(self, example: Example, text: str) -> tuple[list[int], Any]:
        """``example`` with ``text`` as its message (an augmented copy, or its own)."""

    @abstractmethod
    def loss(self, model: Any, rows: list, chunk: list[int], pad: int, share: bool) -> Any:
        """The mean loss of ``chunk`` (a tensor) and the prompt+answer tokens it covers."""

    @abstractmethod
    def validate(self, model: Any, rows: list, size: int, pad: int, share: bool) -> Validation:
        """Run under ``torch.no_grad`` with the model in eval mode."""

    @abstractmethod
    def manifest_block(self) -> dict[str, Any] | None: ...


class JsonAnswer(Answer):
    def encode(self, example: Example, text: str) -> tuple[list[int], list[int]]:
        """The prompt masked out of the loss, then the answer and the template's own
        end-of-turn token, so the adapter learns to stop."""
        prompt = self.prompt(example, text)
        answer = render_answer(self.tokenizer, example.completion)
        return prompt + answer, [IGNORE] * len(prompt) + answer

    def loss(self, model: Any, rows: list, chunk: list[int], pad: int, share: bool) -> Any:
        return batch_loss(model, rows, chunk, pad, share)

    def validate(self, model: Any, rows: list, size: int, pad: int, share: bool) -> Validation:
        total = 0.0
        for chunk in batches(rows, size, random.Random(0)):
            loss, _ = batch_loss(model, rows, chunk, pad, share)
            total += float(loss) * len(chunk)
        return Validation(total / len(rows), None)

    def manifest_block(self) -> None:
        return None  # no block: the gateway serves the adapter as a legacy JSON one


class ChatAnswer(JsonAnswer):
    """Structured and plain-text tasks: the conversation as a client sends it, the loss on
    every trained assistant turn (its tokens and the end-of-turn marker) and on nothing
    else. ``system_prompt`` (when configured) opens the rows that have none."""

    def conversation(self, example: Example, text: str) -> list[Message]:
        """The row's turns, ``text`` as the user message its last answer replies to."""
        messages = list(example.messages or (
            Message("user", example.text), Message("assistant", example.completion, 1),
        ))  # fmt: skip
        if text != example.text:
            last_user = max(i for i, m in enumerate(messages) if m.role == "user")
            messages[last_user] = Message("user", text)
        if self.system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", self.system_prompt))
        return messages

    def encode(self, example: Example, text: str) -> tuple[list[int], list[int]]:
        """The last trained turn rendered as serving renders a request (prompt, then the
        answer and end-of-turn marker the model generates); each earlier trained turn is
        found at the place the template put it and labelled there."""
        messages = self.conversation(example, text)
        turns = [m.as_dict() for m in messages]
        trained = [i for i, m in enumerate(messages) if m.trained]
        prompt = render_prompt(self.tokenizer, turns[: trained[-1]])
        ids = prompt + render_answer(self.tokenizer, messages[trained[-1]].content)
        labels = [IGNORE] * len(prompt) + ids[len(prompt) :]
        for i in trained[:-1]:
            before = render_prompt(self.tokenizer, turns[:i])
            answer = render_answer(self.tokenizer, messages[i].content)
            start, end = len(before), len(before) + len(answer)
            if ids[:start] != before or ids[start:end] != answer:
                raise ChatTemplateError(
                    f"{example.source}: the chat template renders assistant message {i + 1} "
                    "differently inside the conversation than as an answer, so its tokens "
                    "cannot be trained; give earlier assistant messages weight 0"
                )
            labels[start:end] = answer
        return ids, labels


class DecisionTokenAnswer(Answer):
    def __init__(self, tokenizer: Any, system_prompt: str, tokens: tuple[DecisionToken, ...]):
        super().__init__(tokenizer, system_prompt)
        self.tokens = tokens
        self.index = {token.label: i for i, token in enumerate(tokens)}
        self.ids = [token.token_id for token in tokens]

    def encode(self, example: Example, text: str) -> tuple[list[int], int]:
        return self.prompt(example, text), self.index.get(example.label or "", UNKNOWN_LABEL)

    def _logits_and_gold(
        self, model: Any, rows: list, chunk: list[int], pad: int, share: bool
    ) -> tuple[Any, Any, int]:
        import torch

        logits, num_tokens = label_logits(model, rows, chunk, pad, self.ids, share)
        gold = torch.tensor([rows[i][1] for i in chunk], device=logits.device)
        return logits.float(), gold, num_tokens

    def loss(self, model: Any, rows: list, chunk: list[int], pad: int, share: bool) -> Any:
        import torch

        logits, gold, num_tokens = self._logits_and_gold(model, rows, chunk, pad, share)
        return torch.nn.functional.cross_entropy(logits, gold), num_tokens

    def validate(self, model: Any, rows: list, size: int, pad: int, share: bool) -> Validation:
        import torch

        total, out = 0.0, [[0.0]] * len(rows)
        for chunk in batches(rows, size, random.Random(0)):
            logits, gold, _ = self._logits_and_gold(model, rows, chunk, pad, share)
            total += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
            for i, row in zip(chunk, logits.tolist(), strict=True):
                out[i] = row
        return Validation(total / len(rows), out)

    def manifest_block(self) -> dict[str, Any]:
        tokens = [{"label": t.label, "text": t.text, "id": t.token_id} for t in self.tokens]
        return {"format": "decision_token", "version": ANSWER_VERSION, "tokens": tokens}


def make_answer(cfg: TrainConfig, tokenizer: Any, labels: tuple[str, ...], task: Task) -> Answer:
    """The task's format; raises ``DecisionTokenError`` for a label set that cannot have
    one distinct token per label, or a token the model would not emit as one."""
    if task.kind != "classification":
        return ChatAnswer(tokenizer, cfg.system_prompt)
    if cfg.answer == "json":
        return JsonAnswer(tokenizer, cfg.system_prompt or default_system_prompt(labels))
    tokens = decision_tokens(tokenizer, labels)
    for token in tokens:
        if render_answer(tokenizer, token.text)[0] != token.token_id:
            raise DecisionTokenError(
                f"label {token.label!r}: its answer {token.text!r} does not start with "
                f"token {token.token_id} when rendered as an answer"
            )
    prompt = cfg.system_prompt or label_system_prompt(labels, tokens)
    return DecisionTokenAnswer(tokenizer, prompt, tokens)
