"""Whole hostile requests, endpoint by endpoint: valid requests of several shapes with
hostile values put into their fields, paths, query strings and headers (values from
``tests.hostile``). The same strategies run against the engine test double and the
real engine; ``Target`` says what the gateway under test has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hypothesis import strategies as st

from tests.hostile import (
    KEY,
    WIRE_VALUE,
    Case,
    Shapes,
    encode,
    header_value,
    mutated_body,
    segment,
    sweep,
    text_value,
)

ANSWER = '{"intent":"billing_inquiry","confidence":0.9,"requires_human_agent":false}'
INLINE_NAME = "fuzz-schema"  # a client-chosen schema name: never a metric label


@dataclass(frozen=True)
class Target:
    tenant_key: str  # the attacker's key: it may use every adapter
    admin_key: str
    metrics_key: str
    adapter: str  # an adapter the attacker may use
    archive: bytes  # a valid adapter upload (tar.gz of a PEFT folder)
    wire: bool  # only what HTTP/1.1 can carry: the gateway is a real server


def response_format(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name} if schema is None else {"name": name, "schema": schema}
    return {"type": "json_schema", "json_schema": spec}


def chat_shapes(adapter: str) -> Shapes:
    """Chat bodies by shape, each with the fields to make hostile ("text" or "number")."""
    message = {"role": "user", "content": "hi"}
    base = {"model": adapter, "messages": [message], "max_tokens": 8, "stop": [], "metadata": {}}
    fields = {
        ("model",): "text", ("messages", 0, "content"): "text", ("messages", 0, "role"): "text",
        ("messages", 0, "name"): "text", ("messages", 0, KEY): "text", ("seed",): "number",
        ("max_tokens",): "number", ("max_completion_tokens",): "number",
        ("temperature",): "number", ("top_p",): "number", ("n",): "number", ("stop",): "text",
        ("stop", 0): "text", ("user",): "text", ("metadata", KEY): "text",
        ("metadata", "k"): "text", (KEY,): "text",
    }  # fmt: skip
    part = ("messages", 0, "content", 0)
    parts = {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    intent = {"type": "string", "enum": ["billing_inquiry"]}
    schema = {"type": "object", "title": "t", "properties": {"intent": intent}}
    inline = {**base, "response_format": response_format(INLINE_NAME, schema)}
    rf = ("response_format", "json_schema")
    at = (*rf, "schema", "properties", "intent")
    inline_fields = {
        ("response_format", "type"): "text", (*rf, "name"): "text", (*rf, "strict"): "number",
        (*at, "enum", 0): "text", (*at, "pattern"): "text", (*at, "format"): "text",
        (*at, "description"): "text", (*at, "$ref"): "text", (*at, "type"): "text",
        (*at, "maxLength"): "number", (*at, "enum", 1): "number",
        (*rf, "schema", "title"): "text", (*rf, "schema", "properties", KEY): "text",
        ("messages", 0, "content"): "text", ("stop", 0): "text", ("seed",): "number",
    }  # fmt: skip
    named = {**base, "response_format": response_format("intent_classification")}
    named_fields = {(*rf, "name"): "text", ("response_format", "type"): "text", (*rf, KEY): "text"}
    stream = {**inline, "stream": True, "stream_options": {"include_usage": True}}
    stream_fields = {
        (*rf, "name"): "text", ("messages", 0, "content"): "text", ("stream",): "number",
        ("stream_options", "include_usage"): "number", ("stream_options", KEY): "text",
        ("max_tokens",): "number",
    }  # fmt: skip
    return {
        "plain": (base, fields),
        "parts": (parts, {(*part, "text"): "text", (*part, "type"): "text", (*part, KEY): "text"}),
        "inline": (inline, inline_fields),
        "named": (named, named_fields),
        "stream": (stream, stream_fields),
    }


def classify_shapes(adapter: str) -> Shapes:
    fields = {("text",): "text", ("adapter",): "text", (KEY,): "text"}
    return {
        "adapter": ({"text": "refund me", "adapter": adapter}, fields),
        "default": ({"text": "refund me"}, {("text",): "text", (KEY,): "text"}),
    }


def _auth(target: Target) -> st.SearchStrategy[tuple[str, bytes | None]]:
    key = f"Bearer {target.tenant_key}".encode()
    return st.sampled_from([("alpha", key)] * 3 + [("wrong", b"Bearer wrong-0123456789abcdef"),
                                                   ("none", None)])  # fmt: skip


def _case(
    method: str, url: str, drawn: tuple[bytes, frozenset[str], str], auth: tuple, chunked: bool
) -> Case:
    content, texts, note = drawn
    headers = [("Content-Type", b"application/json")]
    if auth[1] is not None:
        headers.append(("Authorization", auth[1]))
    note = f"{note}; key={auth[0]}; chunked={chunked}"
    return Case(method, url, content, tuple(headers), texts, note,
                authorized=auth[0] == "alpha", chunked=chunked)  # fmt: skip


@st.composite
def _body_requests(draw: st.DrawFn, url: str, shapes: Shapes, target: Target) -> Case:
    body = draw(mutated_body(shapes))
    return _case("POST", url, body, draw(_auth(target)), chunked=draw(st.booleans()))


def chat_requests(target: Target) -> st.SearchStrategy[Case]:
    return _body_requests("/v1/chat/completions", chat_shapes(target.adapter), target)


def classify_requests(target: Target) -> st.SearchStrategy[Case]:
    return _body_requests("/v1/classify", classify_shapes(target.adapter), target)


def issue_requests(target: Target) -> list[Case]:
    """The outside probe's reproductions (issue 21, findings 1, 2 and 6)."""
    key = ("alpha", f"Bearer {target.tenant_key}".encode())
    enum_ok, anything = {"type": "string", "enum": ["ok"]}, {"type": "object"}
    surrogate = {"role": "user", "content": "\ud800"}

    def chat(note: str, name: str | None, schema: dict | None, **extra: Any) -> Case:
        body = {"model": target.adapter, "messages": [{"role": "user", "content": "hi"}], **extra}
        if name is not None:
            body["response_format"] = response_format(name, schema)
        texts = frozenset({name} if name else ())
        return _case("POST", "/v1/chat/completions", (encode(body, True), texts, note), key, False)

    return [
        chat("finding 1: lone surrogate schema name", "\ud800", enum_ok),
        chat("finding 2: non-latin-1 schema name", "日本", anything),
        chat("finding 2: non-latin-1 name, streaming", "日本", anything, stream=True),
        chat("finding 2: newline in the schema name", "a\nb", anything),
        chat("finding 2: CRLF in the schema name", "a\r\nX-Evil: 1", anything),
        chat("finding 6: empty stop", None, None, stop=[""]),
        chat("finding 6: surrogate stop", None, None, stop=["\ud800"]),
        chat("finding 6: seed 2**64", None, None, seed=2**64),
        chat("finding 6: lone surrogate content", None, None, messages=[surrogate]),
    ]


def admin_issue_requests(target: Target) -> list[Case]:
    """The probe's upload reproductions (issue 21, findings 5 and 6)."""
    headers = (("Authorization", f"Bearer {target.admin_key}".encode()),)

    def upload(note: str, name: str, version: str, content: bytes) -> Case:
        url = f"/admin/adapters/upload?name={name}&version={version}"
        names = (unquote(name), unquote(version))
        return Case("POST", url, content, headers, frozenset(), note, names)

    archive = target.archive
    return [
        upload("finding 5: newline after the version", "fuzz-new", "v3%0A", archive),
        upload("finding 5: newline after the name", "fuzz-new%0A", "v1", archive),
        upload("finding 6: the registry's file name", "registry.json", "v1", archive),
        upload("finding 6: a truncated archive", "fuzz-new", "v2", archive[: len(archive) // 2]),
    ]


def sweep_requests(target: Target) -> list[Case]:
    """``tests.hostile.sweep`` of the chat and classify bodies, with the attacker's key."""
    auth = ("alpha", f"Bearer {target.tenant_key}".encode())
    return [
        _case("POST", url, body, auth, chunked=False)
        for url, shapes in (
            ("/v1/chat/completions", chat_shapes),
            ("/v1/classify", classify_shapes),
        )
        for body in sweep(shapes(target.adapter))
    ]


ADMIN_ROUTES = (  # (method, path with {0} {1} for hostile pieces, body kind)
    ("POST", "/admin/adapters/upload?name={0}&version={1}", "upload"),
    ("POST", "/admin/adapters/{0}/promote", "version"),
    ("POST", "/admin/adapters/{0}/load", "version"),
    ("POST", "/admin/adapters/{0}/unload", "none"),
    ("DELETE", "/admin/adapters/{0}/{1}", "none"),
    ("POST", "/admin/adapters", "path"),
    ("PUT", "/admin/tenants/{0}", "tenant"),
    ("POST", "/admin/tenants/{0}/keys", "none"),
    ("DELETE", "/admin/tenants/{0}", "none"),
    ("GET", "/admin/adapters?{0}={1}", "none"),
)


@st.composite
def admin_requests(draw: st.DrawFn, target: Target) -> Case:
    method, template, kind = draw(st.sampled_from(ADMIN_ROUTES))
    (first, first_text), (second, second_text) = draw(segment()), draw(segment())
    archive = target.archive
    bodies = {
        "upload": st.sampled_from([b"", b"not a tar", archive[: len(archive) // 2], archive]),
        "version": text_value().map(lambda v: encode({"version": v}, ascii_only=True)),
        "path": text_value().map(lambda v: encode({"path": v}, ascii_only=True)),
        "tenant": st.just(b"{}"),
        "none": st.none(),
    }
    content = draw(bodies[kind])
    key = draw(st.sampled_from([target.admin_key] * 4 + [target.tenant_key]))
    headers = (("Authorization", f"Bearer {key}".encode()), ("Content-Type", b"application/json"))
    pieces = (first_text, second_text) if "{1}" in template else (first_text,)
    names = pieces if kind in ("upload", "tenant") else ()
    note = f"admin {pieces!r:.200}; tenant key={key == target.tenant_key}"
    texts = frozenset(t for t in pieces if t)
    return Case(method, template.format(first, second), content, headers, texts, note, names)


HEADER_NAMES = ("X-Request-Id", "X-Forwarded-For", "X-Gateway-Schema", "X-Gateway-Adapter",
                "X-Tenant", "Content-Type", "Accept", "User-Agent", "Accept-Encoding")  # fmt: skip


@st.composite
def header_requests(draw: st.DrawFn, target: Target) -> Case:
    message = {"role": "user", "content": "hi"}
    named = {"model": target.adapter, "messages": [message], "max_tokens": 8,
             "response_format": response_format("intent_classification")}  # fmt: skip
    method, url, body = draw(st.sampled_from([
        ("POST", "/v1/chat/completions", encode(named, ascii_only=True)),
        ("POST", "/v1/classify", encode({"text": "refund me"}, ascii_only=True)),
        ("GET", "/v1/models", None), ("GET", "/admin/adapters", None), ("GET", "/ready", None),
        ("GET", "/metrics", None),
    ]))  # fmt: skip
    keys = (target.tenant_key, target.admin_key, target.metrics_key)
    valid = [f"Bearer {key}".encode() for key in keys]
    prefixes = [b"Bearer ", b"bearer ", b"Basic ", b"", b"Bearer  ", b"Bearer\t", *valid]
    value = header_value(target.wire)
    auth = st.sampled_from(valid) | st.builds(bytes.__add__, st.sampled_from(prefixes), value)
    if target.wire:
        auth = auth.filter(WIRE_VALUE.fullmatch)
    headers = {"Content-Type": b"application/json", "Authorization": draw(auth)}
    headers |= draw(st.dictionaries(st.sampled_from(HEADER_NAMES), value, max_size=3))
    return Case(method, url, body, tuple(headers.items()), frozenset(), "headers")
