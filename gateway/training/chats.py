"""OpenAI fine-tuning rows, read as OpenAI documents them.

Chat rows hold ``messages``: system (or developer), user and assistant turns, as many as
the conversation has. Every assistant turn is trained on unless it carries ``weight: 0``
(``weight`` is 0 or 1, on assistant turns only); the turns after the last trained one
teach nothing and are dropped. Content may be a string or a list of text parts.
Prompt/completion rows are one user turn and its answer.

What cannot be trained here is refused with its line: tool calls and tool definitions,
image or audio parts, an empty or oversized field, a row with nothing to train on.
"""

from __future__ import annotations

from typing import Any

from gateway.common.usage import UsageError
from gateway.training.examples import Message

MAX_FIELD_CHARS = 32_000  # far past any context this recipe trains; a field over it is a mistake
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def field_text(value: Any, what: str, where: str) -> str:
    """A non-empty string of at most ``MAX_FIELD_CHARS`` characters."""
    if not isinstance(value, str):
        raise UsageError(f"{where}: {what} must be a string")
    if not value.strip():
        raise UsageError(f"{where}: {what} is empty")
    if len(value) > MAX_FIELD_CHARS:
        raise UsageError(
            f"{where}: {what} is {len(value):,} characters; the limit is {MAX_FIELD_CHARS:,}"
        )
    return value


def _content(message: dict[str, Any], what: str, where: str) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI's content parts
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise UsageError(f"{where}: {what}: only text content parts can be trained")
            texts.append(part.get("text"))
        if not all(isinstance(text, str) for text in texts):
            raise UsageError(f"{where}: {what}: a text part needs a string 'text'")
        content = "".join(texts)
    return field_text(content, f"{what} content", where)


def _message(raw: Any, number: int, where: str) -> Message:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: message {number} is not a JSON object")
    role = ROLES.get(raw.get("role")) if isinstance(raw.get("role"), str) else None
    if role is None:
        shown = str(raw.get("role"))[:20]
        raise UsageError(
            f"{where}: message {number}: role {shown!r} is not system, developer, user or "
            "assistant (tool calls cannot be trained here)"
        )
    what = f"message {number} ({role})"
    if raw.get("tool_calls") or raw.get("function_call"):
        raise UsageError(f"{where}: {what}: tool calls cannot be trained here")
    weight = raw.get("weight", 1 if role == "assistant" else None)
    if "weight" in raw and role != "assistant":
        raise UsageError(f"{where}: {what}: weight is for assistant messages only")
    if role == "assistant" and (type(weight) is not int or weight not in (0, 1)):
        raise UsageError(f"{where}: {what}: weight must be 0 or 1")
    return Message(role, _content(raw, what, where), weight if role == "assistant" else 0)


def chat_messages(raw: dict[str, Any], where: str) -> tuple[Message, ...]:
    """The conversation up to its last trained answer."""
    listed = raw["messages"]
    if not isinstance(listed, list) or not listed:
        raise UsageError(f"{where}: 'messages' must be a list, with at least one message")
    if raw.get("tools") or raw.get("functions"):
        raise UsageError(f"{where}: tool definitions cannot be trained here")
    messages = [_message(m, i + 1, where) for i, m in enumerate(listed)]
    trained = [i for i, m in enumerate(messages) if m.trained]
    if not trained:
        raise UsageError(f"{where}: no assistant message to train on (none, or all weight 0)")
    if not any(m.role == "user" for m in messages[: trained[0]]):
        raise UsageError(f"{where}: the first trained assistant message must follow a user one")
    return tuple(messages[: trained[-1] + 1])


def prompt_messages(raw: dict[str, Any], where: str) -> tuple[Message, ...]:
    """A prompt/completion pair as a one-turn conversation."""
    if not isinstance(raw["prompt"], str) or not isinstance(raw["completion"], str):
        raise UsageError(f"{where}: 'prompt' and 'completion' must be strings")
    prompt = field_text(raw["prompt"], "'prompt'", where)
    completion = field_text(raw["completion"], "'completion'", where)
    return Message("user", prompt), Message("assistant", completion, 1)
