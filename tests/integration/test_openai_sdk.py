"""The official ``openai`` SDK, unchanged, against the real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from tests.integration.conftest import TENANT_KEYS, Gateway

pytestmark = pytest.mark.integration


class Ticket(BaseModel):
    category: Literal["billing", "login", "bug", "other"]
    urgent: bool
    confidence: float = Field(ge=0, le=1)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, timeout=300) as sdk:
        yield sdk


MESSAGES = [{"role": "user", "content": "I cannot log in to my account. Triage this ticket."}]


def test_models_list(client: openai.OpenAI) -> None:
    # The base, then the adapters in the order the session gateway registered them.
    ids = [m.id for m in client.models.list()]
    assert ids == ["base", "tenant-a", "tenant-b", "demo", "banking77"]


def test_create(client: openai.OpenAI) -> None:
    res = client.chat.completions.create(
        model="tenant-a", messages=MESSAGES, max_tokens=12, temperature=0
    )
    assert res.choices[0].message.content
    assert res.usage is not None and res.usage.completion_tokens <= 12


@pytest.mark.parametrize("model", ["base", "tenant-b"])
def test_parse_with_pydantic_model(client: openai.OpenAI, model: str) -> None:
    res = client.chat.completions.parse(
        model=model, messages=MESSAGES, response_format=Ticket, max_tokens=64, temperature=0
    )
    parsed = res.choices[0].message.parsed
    assert isinstance(parsed, Ticket)
    assert 0 <= parsed.confidence <= 1


def test_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="base", messages=MESSAGES, max_tokens=20, temperature=0, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 3 and "".join(pieces)


def test_stream_structured_error_raises(client: openai.OpenAI) -> None:
    story = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "story", "schema": story}}
    stream = client.chat.completions.create(
        model="base", messages=MESSAGES, max_tokens=4, stream=True, response_format=fmt
    )
    with pytest.raises(openai.APIError, match="max_tokens"):
        for _ in stream:
            pass


def test_typed_errors_reach_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="ghost", messages=MESSAGES)
    assert info.value.code == "adapter_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="base", messages=MESSAGES, max_tokens=100000)
    assert bad.value.code == "max_tokens_exceeded"


def test_key_errors_reach_the_sdk_typed(gateway: Gateway) -> None:
    def sdk(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)

    with sdk("not-a-key-0123456789") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    with sdk(TENANT_KEYS["beta"]) as beta:
        with pytest.raises(openai.PermissionDeniedError) as info:
            beta.chat.completions.create(model="banking77", messages=MESSAGES)
        assert info.value.code == "adapter_forbidden"
        assert [m.id for m in beta.models.list()] == ["base", "tenant-b", "demo"]
