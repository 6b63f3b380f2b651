"""What the model sees: the classify prompt and the one chat-template renderer.

Serving (``VllmEngine.encode_chat``), training (``recipe.encode``) and the bare-engine
benchmark all render through here, so an adapter is trained on exactly the prompt it
is served with, and learns to stop with the end-of-turn marker of the model's own
template (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for
Gemma, ``</s>`` for Mistral), never one written here.
"""

from __future__ import annotations

import itertools
import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# Stands in for an answer while reading the end marker off the template.
_PROBE = "ANSWER_PROBE_7f3c"
# vLLM caps ``SamplingParams.logprob_token_ids`` at 128 ids (MAX_LOGPROB_TOKEN_IDS); one
# request must read every label's logprob, so a label set may not be larger.
MAX_DECISION_LABELS = 128
# Words too common to stand for a label: taken only when a label has no other word left.
# Words shorter than three letters are never taken.
_FUNCTION_WORDS = frozenset({
    "about", "after", "and", "are", "for", "from", "get", "has", "have", "how", "into", "not",
    "the", "via", "was", "what", "why", "with", "you", "your",
})  # fmt: skip


class ChatTemplateError(ValueError):
    """The model's chat template cannot produce what training and serving need."""


def default_system_prompt(labels: tuple[str, ...]) -> str:
    return (
        "You classify customer support messages. Reply with a JSON object with the keys "
        f"intent (one of: {', '.join(labels)}), confidence (a number from 0 to 1) and "
        "requires_human_agent (true when a person should take over)."
    )


def classify_messages(system_prompt: str, text: str) -> list[dict[str, str]]:
    """The classify conversation. The text's whitespace is normalised (stripped, runs
    collapsed to one space) so training and serving see the same tokens for messages that
    differ only in spacing."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": normalise_text(text)},
    ]


def normalise_text(text: str) -> str:
    return " ".join(text.split())


class DecisionTokenError(ValueError):
    """The label set cannot be told apart by one token each under this tokenizer."""


@dataclass(frozen=True)
class DecisionToken:
    """The one token whose probability stands for ``label``: the model answers with it."""

    label: str
    text: str
    token_id: int


def decision_tokens(tokenizer: Any, labels: Sequence[str]) -> tuple[DecisionToken, ...]:
    """One distinct single token per label, in label order.

    Tried in this order, the first that gives every label its own token wins:

    1. each label's first token, when those are pairwise distinct (small label sets);
    2. a word of the label's own name (``card_arrival`` -> `` arrival``), its most
       distinctive one first: the model already places such words near messages about
       them, so training starts from the meaning. Two-letter codes carry none, and on
       BANKING77 an adapter trained on codes learned nothing in its first ~200 steps,
       while word tokens reached a validation NLL of 1.0 in 134;
    3. two-letter codes AA, AB, ..., keeping only codes that are one token and decode
       back to themselves (labels with no usable words, such as ids).

    Every ``text`` encodes to exactly ``[token_id]``, which is what the registry checks
    against the served tokenizer.
    """
    if not labels:
        raise DecisionTokenError("there are no labels to give decision tokens")
    if len(set(labels)) != len(labels):
        raise DecisionTokenError("the labels are not distinct")
    if len(labels) > MAX_DECISION_LABELS:
        raise DecisionTokenError(
            f"{len(labels)} labels: at most {MAX_DECISION_LABELS} can be scored in one request"
        )
    firsts = [first for label in labels if (first := _first_token(tokenizer, label))]
    if len(firsts) == len(labels) and len({token_id for _, token_id in firsts}) == len(labels):
        return tuple(
            DecisionToken(label, text, token_id)
            for label, (text, token_id) in zip(labels, firsts, strict=True)
        )
    words = _word_tokens(tokenizer, labels)
    if words is not None:
        return words
    codes = itertools.islice(_single_token_codes(tokenizer), len(labels))
    tokens = tuple(
        DecisionToken(label, text, token_id)
        for label, (text, token_id) in zip(labels, codes, strict=False)
    )
    if len(tokens) < len(labels):
        raise DecisionTokenError(
            f"{len(labels)} labels share first tokens and the tokenizer has only "
            f"{len(tokens)} two-letter codes that are one token each"
        )
    return tokens


def _first_token(tokenizer: Any, label: str) -> tuple[str, int] | None:
    """The label's first token, or None when its text does not encode back to it alone."""
    ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    if not ids:
        raise DecisionTokenError(f"label {label!r} encodes to no tokens")
    text = tokenizer.decode(ids[:1])
    return (text, ids[0]) if _single_token(tokenizer, text) == ids[0] else None


def _word_tokens(tokenizer: Any, labels: Sequence[str]) -> tuple[DecisionToken, ...] | None:
    """A distinct one-token word of each label's name, or None if some label has none.

    A label's candidates are its words of three letters or more, function words last,
    then the rarer across the label set first, then the longer; each as `` word``,
    ``word``, `` Word``, ``Word``, whichever are one token that decodes back. Labels with
    the fewest candidates choose first, each its first candidate not yet taken.
    """
    names = {label: [w for w in re.split(r"[^A-Za-z]+", label) if len(w) >= 3] for label in labels}
    spread = Counter(word.lower() for label in labels for word in set(names[label]))

    def rank(word: str) -> tuple[bool, int, int]:
        return word.lower() in _FUNCTION_WORDS, spread[word.lower()], -len(word)

    candidates: dict[str, list[tuple[str, int]]] = {}
    for label in labels:
        found: list[tuple[str, int]] = []
        for word in sorted(dict.fromkeys(names[label]), key=rank):
            lower, title = word.lower(), word.capitalize()
            for text in (" " + lower, lower, " " + title, title):
                token_id = _single_token(tokenizer, text)
                if token_id is not None and tokenizer.decode([token_id]) == text:
                    found.append((text, token_id))
        candidates[label] = found
    taken: set[int] = set()
    chosen: dict[str, DecisionToken] = {}
    for label in sorted(labels, key=lambda label: len(candidates[label])):
        free = [(text, token_id) for text, token_id in candidates[label] if token_id not in taken]
        if not free:
            return None
        text, token_id = free[0]
        taken.add(token_id)
        chosen[label] = DecisionToken(label, text, token_id)
    return tuple(chosen[label] for label in labels)


def _single_token_codes(tokenizer: Any) -> Iterator[tuple[str, int]]:
    for first, second in itertools.product(string.ascii_uppercase, repeat=2):
        code = first + second
        token_id = _single_token(tokenizer, code)
        if token_id is not None and tokenizer.decode([token_id]) == code:
            yield code, token_id


def _single_token(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else None


def label_system_prompt(labels: Sequence[str], tokens: Sequence[DecisionToken]) -> str:
    """The default classify prompt for decision-token answers.

    With first tokens the labels are listed and the model starts writing the label; with
    words or codes each token is listed with the label it stands for, so it keeps the
    label's meaning for the model.
    """
    if [token.label for token in tokens] != list(labels):
        raise DecisionTokenError("the decision tokens are not the labels', in label order")
    if all(label.startswith(token.text) for label, token in zip(labels, tokens, strict=True)):
        return (
            "Classify the customer's message into one of these intents: "
            f"{', '.join(labels)}. Reply with the intent."
        )
    listing = "\n".join(f"{token.text.strip()}: {token.label}" for token in tokens)
    return (
        "Classify the customer's message into one of these intents. "
        f"Reply with the intent's key word.\n{listing}"
    )


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` in the model's chat template, ready for the answer."""
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def end_of_turn(tokenizer: Any) -> str:
    """The text the template puts after an assistant message, e.g. ``<|im_end|>``.

    Read off a rendered one-turn conversation: whatever follows the answer, trailing
    whitespace dropped. Only a template that closes assistant turns with nothing falls
    back to the tokenizer's end-of-sequence token.
    """
    conversation = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}],
        add_generation_prompt=False,
        tokenize=False,
    )
    if _PROBE not in conversation:
        raise ChatTemplateError("the chat template does not render assistant messages")
    marker = conversation.rsplit(_PROBE, 1)[1].strip()
    if marker:
        return marker
    if tokenizer.eos_token:
        return str(tokenizer.eos_token)
    raise ChatTemplateError(
        "the chat template ends assistant turns with nothing and the tokenizer has no "
        "eos_token: there is no end-of-turn token for an adapter to learn"
    )


def render_answer(tokenizer: Any, text: str) -> list[int]:
    """Token ids the model should generate after ``render_prompt``: the answer, then the
    end-of-turn marker, so a trained adapter stops where the template says a turn ends."""
    answer = tokenizer(text, add_special_tokens=False)["input_ids"]
    marker = tokenizer(end_of_turn(tokenizer), add_special_tokens=False)["input_ids"]
    return list(answer) + list(marker)
