"""What the model sees: the classify prompt and the one chat-template renderer.

Serving (``VllmEngine.encode_chat``), training (``recipe.encode``) and the bare-engine
benchmark all render through here, so an adapter is trained on exactly the prompt it
is served with, and learns to stop with the end-of-turn marker of the model's own
template (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for
Gemma, ``</s>`` for Mistral), never one written here.
"""

from __future__ import annotations

from typing import Any

# Stands in for an answer while reading the end marker off the template.
_PROBE = "ANSWER_PROBE_7f3c"


class ChatTemplateError(ValueError):
    """The model's chat template cannot produce what training and serving need."""


def default_system_prompt(labels: tuple[str, ...]) -> str:
    return (
        "You classify customer support messages. Reply with a JSON object with the keys "
        f"intent (one of: {', '.join(labels)}), confidence (a number from 0 to 1) and "
        "requires_human_agent (true when a person should take over)."
    )


def classify_messages(system_prompt: str, text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]


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
