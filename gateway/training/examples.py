"""One training example in the shape every accepted file format becomes.

A labelled row (``text`` + label) is a classify message and its label. An OpenAI chat
or prompt/completion row keeps its whole conversation: the ``messages`` up to its last
trained answer, each assistant turn with its ``weight`` (1: the adapter learns to write
it; 0: context only, as OpenAI documents it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant" (OpenAI's "developer" is read as "system")
    content: str
    weight: int = 0  # assistant turns: 1 when trained on; every other turn: 0

    @property
    def trained(self) -> bool:
        return self.role == "assistant" and self.weight == 1

    def as_dict(self) -> dict[str, str]:
        """What the chat template renders (and what a client sends)."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Example:
    """One training pair: the user text, the answer, and where it came from.

    ``text`` is the last user message before the answer (what the checks compare and
    augmentation rewrites); ``completion`` is the last trained answer.
    """

    text: str
    completion: str
    label: str | None
    system_prompt: str | None = None
    source: str = ""
    messages: tuple[Message, ...] | None = None  # chat and prompt/completion rows only

    @property
    def answers(self) -> list[str]:
        """Every answer the adapter learns from this row (the trained assistant turns)."""
        if self.messages is None:
            return [self.completion]
        return [m.content for m in self.messages if m.trained]
