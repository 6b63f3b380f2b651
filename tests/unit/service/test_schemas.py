from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import errors
from gateway.service.schemas import SchemaRegistry, canonical_digest
from gateway.service.validation import Constraint, check_output
from schemas import intent_model

LABELS = ("billing", "other")


@pytest.fixture
def registry(tmp_path: Path) -> SchemaRegistry:
    (tmp_path / "ticket.json").write_text(json.dumps({"type": "object", "required": ["id"]}))
    return SchemaRegistry(labels=LABELS, schemas_dir=tmp_path, max_bytes=4096, max_depth=8)


def test_named_schemas_include_pydantic_and_files(registry: SchemaRegistry) -> None:
    assert registry.names == ["intent_classification", "ticket"]
    assert registry.named("intent_classification").model is not None


def test_repeated_schema_is_compiled_once(registry: SchemaRegistry) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    before = registry.num_compiles
    first = registry.resolve("s", schema)
    again = registry.resolve("s", json.loads(json.dumps(schema)))
    assert first is again
    assert registry.num_compiles == before + 1
    assert registry.num_cache_hits == 1


def test_digest_ignores_key_order() -> None:
    assert canonical_digest({"a": 1, "b": 2}) == canonical_digest({"b": 2, "a": 1})


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        ([1, 2], errors.SchemaInvalid),
        ({"type": "nonsense"}, errors.SchemaInvalid),
        ({"properties": {"a": {"$ref": "http://example.com/x"}}}, errors.SchemaUnsupported),
        ({"enum": ["x" * 5000]}, errors.SchemaTooLarge),
    ],
)
def test_bad_schemas_are_refused(registry: SchemaRegistry, schema: object, error: type) -> None:
    with pytest.raises(error):
        registry.resolve("bad", schema)


def test_deep_nesting_is_refused_without_recursion(registry: SchemaRegistry) -> None:
    schema: dict = {"type": "object"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    registry.max_bytes = 10**7
    with pytest.raises(errors.SchemaInvalid, match="deeper"):
        registry.resolve("deep", schema)


def test_unknown_named_schema(registry: SchemaRegistry) -> None:
    with pytest.raises(errors.SchemaNotFound):
        registry.named("nope")


def test_intent_model_fields_and_bounds() -> None:
    model = intent_model(LABELS)
    assert list(model.model_fields) == ["intent", "confidence", "requires_human_agent"]
    schema = model.model_json_schema()
    assert schema["properties"]["intent"]["enum"] == list(LABELS)
    assert schema["additionalProperties"] is False
    with pytest.raises(ValueError):
        intent_model(("a", "a"))


class TestCheckOutput:
    constraint = Constraint(
        schema=SchemaRegistry(labels=LABELS, schemas_dir=None, max_bytes=4096, max_depth=8).named(
            "intent_classification"
        )
    )

    def test_valid(self) -> None:
        text = '{"intent":"billing","confidence":0.5,"requires_human_agent":false}'
        assert check_output(text, "stop", self.constraint)["intent"] == "billing"

    @pytest.mark.parametrize(
        ("text", "finish", "error"),
        [
            ('{"intent":"billing","confidence":0.5', "length", errors.OutputTruncated),
            ('{"intent":"billing","confidence":10000000000000', "length", errors.OutputTruncated),
            ("not json", "stop", errors.OutputInvalid),
            ('{"intent":"weather","confidence":0.5,"requires_human_agent":false}', "stop",
             errors.OutputInvalid),
            ('{"intent":"billing","confidence":2,"requires_human_agent":false}', "stop",
             errors.OutputInvalid),
            ('{"intent":"billing","confidence":0.5,"requires_human_agent":"yes"}', "stop",
             errors.OutputInvalid),
        ],
    )  # fmt: skip
    def test_failures_are_typed(self, text: str, finish: str, error: type) -> None:
        with pytest.raises(error) as info:
            check_output(text, finish, self.constraint)
        assert info.value.raw_output == text

    def test_free_text_is_not_checked(self) -> None:
        assert check_output("anything", "length", None) is None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 2**64},
        {"enum": ["a", -(2**63) - 1]},
        {"type": "object", "properties": {"n": {"const": 2**1000}}},
    ],
)
def test_integers_the_engine_cannot_carry_are_refused(
    registry: SchemaRegistry, schema: dict
) -> None:
    with pytest.raises(errors.SchemaUnsupported, match="64-bit"):
        registry.resolve("big", schema)


def test_the_largest_integers_the_engine_carries_are_kept(registry: SchemaRegistry) -> None:
    registry.resolve("edge", {"enum": [2**64 - 1, -(2**63)], "maxLength": 2**63})
