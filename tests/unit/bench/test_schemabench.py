"""JSONSchemaBench harness: loading, outcome classification, summaries."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.bench import schemabench as sb

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}},
          "required": ["n"]}  # fmt: skip


def ok(content: str) -> dict:
    return {"choices": [{"message": {"content": content}}]}


def test_a_200_that_fails_the_schema_is_a_bug_never_served() -> None:
    assert sb.classify(200, ok('{"n": 2}'), SCHEMA)[0] == "served"
    assert sb.classify(200, ok('{"n": 7}'), SCHEMA)[:2] == ("bug", "schema_mismatch")
    assert sb.classify(200, ok('{"n": '), SCHEMA)[:2] == ("bug", "not_json")
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema", **SCHEMA}
    assert sb.classify(200, ok('{"n": 7}'), draft4)[0] == "bug"


def test_errors_are_rejected_or_failed_with_their_code() -> None:
    body = {"error": {"code": "schema_unsupported", "message": "no remote $ref"}}
    assert sb.classify(400, body, SCHEMA) == ("rejected", "schema_unsupported", "no remote $ref")
    trunc = {"error": {"code": "output_truncated", "message": "hit max_tokens"}}
    assert sb.classify(502, trunc, SCHEMA)[:2] == ("failed", "output_truncated")
    assert sb.classify(500, None, SCHEMA)[:2] == ("failed", "500")


def test_load_spreads_over_the_subset(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / "s" / f"{i:02d}.json").parent.mkdir(exist_ok=True)
        (tmp_path / "s" / f"{i:02d}.json").write_text(json.dumps({"title": str(i)}))
    picked = sb.load("s", 3, data=tmp_path)
    assert [name for name, _ in picked] == ["00.json", "03.json", "06.json"]
    assert len(sb.load("s", None, data=tmp_path)) == 10


def test_summary_counts_per_subset_and_overall() -> None:
    rows = [
        {"subset": "a", "outcome": "served", "code": ""},
        {"subset": "a", "outcome": "rejected", "code": "schema_unsupported"},
        {"subset": "b", "outcome": "failed", "code": "output_truncated"},
    ]
    summary = sb.summarise(rows)
    assert summary["a"]["served"] == 1 and summary["a"]["served_rate"] == 0.5
    assert summary["all"]["schemas"] == 3 and summary["all"]["bug"] == 0
    assert summary["all"]["codes"]["failed:output_truncated"] == 1
    assert "| x | all | 3 | 1 (33.3%) | 1 | 1 | 0 |" in sb.markdown({"x": summary})
