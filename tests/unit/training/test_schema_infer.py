"""The inference rules ``docs/training.md`` states, one value kind at a time."""

from __future__ import annotations

import json

import jsonschema

from gateway.training.schema_infer import MAX_ENUM, infer_schema

SNIPS_LIKE = [
    {"intent": "GetWeather", "slots": [{"type": "city", "value": "Boston"}]},
    {"intent": "GetWeather", "slots": [{"type": "city", "value": "Paris"},
                                       {"type": "timeRange", "value": "tomorrow"}]},
    {"intent": "PlayMusic", "slots": [{"type": "artist", "value": "Nina Simone"}]},
    {"intent": "PlayMusic", "slots": []},
]  # fmt: skip


def test_arrays_of_objects_and_label_fields() -> None:
    schema = infer_schema(SNIPS_LIKE)
    assert schema["properties"]["intent"] == {"type": "string", "enum": ["GetWeather", "PlayMusic"]}
    item = schema["properties"]["slots"]["items"]
    assert item["properties"]["value"] == {"type": "string"}  # four values, each seen once
    assert item["required"] == ["type", "value"]
    for answer in SNIPS_LIKE:
        jsonschema.validate(answer, schema)


def test_numbers_nulls_and_mixed_kinds() -> None:
    values = [{"n": 1, "x": None, "m": "a"}, {"n": 2.5, "x": True, "m": 3}]
    props = infer_schema(values)["properties"]
    assert props["n"] == {"type": "number"}
    assert props["x"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
    assert props["m"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert infer_schema([{"k": 1}, {"k": 2}])["properties"]["k"] == {"type": "integer"}


def test_an_enum_needs_repeats_and_a_bounded_set() -> None:
    repeated = [{"c": f"v{i % 3}"} for i in range(6)]
    assert infer_schema(repeated)["properties"]["c"]["enum"] == ["v0", "v1", "v2"]
    once_each = [{"c": f"v{i}"} for i in range(6)]
    assert infer_schema(once_each)["properties"]["c"] == {"type": "string"}
    too_many = [{"c": f"v{i % (MAX_ENUM + 1)}"} for i in range(4 * (MAX_ENUM + 1))]
    assert infer_schema(too_many)["properties"]["c"] == {"type": "string"}


def test_required_is_what_every_answer_has() -> None:
    schema = infer_schema([{"a": 1, "b": 2}, {"a": 3}])
    assert schema["required"] == ["a"] and schema["additionalProperties"] is False
    assert json.dumps(schema) == json.dumps(infer_schema([{"a": 1, "b": 2}, {"a": 3}]))
