"""Request and response bodies of the public API (OpenAI-compatible where it exists).

Unknown request fields are refused, not ignored, at every level (inside messages too):
a client that sends vLLM's removed ``guided_json``, a tool call or a typo must learn that
nothing enforced it. Every client string must be text: JSON can carry a lone UTF-16
surrogate (``"\\ud800"``), which Python keeps but which no tokenizer, header or
metrics page can encode, so it is refused here, before anything else sees it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    field_validator,
)

from gateway.service.chat import MAX_SEED

_LEGACY_HINT = "use response_format={'type': 'json_schema', ...} instead"
MAX_NAME_CHARS = 256  # adapter names have at most 64; this bounds what an error echoes


def text_only(value: Any) -> Any:
    """Refuses a string that is not text; any other value is left to the field's type."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"not valid Unicode text: a lone surrogate at character {exc.start}"
            ) from None
    return value


def json_text_only(value: Any) -> Any:
    """``text_only`` for every string in a JSON value, keys included; iterative, as the
    nesting is the client's."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            text_only(item)
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


def _content_kind(content: Any) -> str:
    return "parts" if isinstance(content, list) else "string"


# Before the type's own checks, so every such string gets the same answer.
Text = Annotated[str, BeforeValidator(text_only)]
Name = Annotated[Text, Field(min_length=1, max_length=MAX_NAME_CHARS)]
JsonObject = Annotated[dict[str, Any], BeforeValidator(json_text_only)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: Text


# Tagged, so an error names the form the client sent ("parts"), not every form it did not.
Content = Annotated[
    Annotated[str, Tag("string")] | Annotated[list[TextPart], Tag("parts")],
    Discriminator(_content_kind),
    BeforeValidator(text_only),  # here, not in the union: the error names ``content``
]


class ChatMessage(BaseModel):
    """OpenAI's message fields for these roles, less ``tool_calls``, ``function_call`` and
    ``audio`` (refused: nothing here could honour them). ``name`` is accepted and ignored;
    ``refusal`` is accepted only as null, as this gateway's own answers carry it, so an
    SDK that sends an earlier answer back works."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Content | None = None
    name: Text | None = None
    refusal: None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Name
    messages: list[ChatMessage] = Field(min_length=1)
    response_format: JsonObject | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # vLLM's extension: no end of sequence before this many tokens (a fixed-length
    # generation, as benchmarks use); at most max_tokens
    min_tokens: int = Field(default=0, ge=0)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: JsonObject | None = None
    # Accepted for SDK compatibility; they change nothing about generation.
    user: Text | None = None
    metadata: dict[Text, Text] | None = None
    store: bool | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if "" in stops:
            raise ValueError("a stop sequence must not be empty")
        for text in stops:
            text_only(text)
        return stop

    def stop_tuple(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[Text, Field(min_length=1, max_length=8000)]
    adapter: Name | None = None
    # The k most likely labels with their probabilities (at most the label count);
    # strict, so `true` is a 422 rather than top_k=1.
    top_k: StrictInt | None = Field(default=None, ge=1)


class LabelProbability(BaseModel):
    intent: str
    probability: float


class Escalation(BaseModel):
    """Why ``requires_human_agent`` is true (null: it is not), and the threshold applied."""

    # "model": a legacy JSON adapter set the flag itself (it was trained on flagged rows)
    reason: Literal["low_confidence", "escalation_label", "model"] | None
    threshold: float


class ClassifyResponse(BaseModel):
    """The validated classification plus where it came from. ``confidence`` is the
    gateway's probability of ``intent`` over the label set, not text the model wrote."""

    intent: str
    confidence: float
    requires_human_agent: bool
    top_k: list[LabelProbability] | None = None  # only when asked for, most likely first
    escalation: Escalation
    adapter: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lora-gateway"
    root: str | None = None
    parent: str | None = None
    # Base model only: what the engine really quantized (method, bits, layer counts).
    quantization: dict[str, Any] | None = None
    # Whether /v1/classify confidences are temperature-calibrated for this model.
    calibrated: bool = False


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str
    retryable: bool
    hint: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


LEGACY_FIELDS = {
    "guided_json": _LEGACY_HINT,
    "guided_regex": _LEGACY_HINT,
    "guided_choice": _LEGACY_HINT,
    "guided_grammar": _LEGACY_HINT,
}
