"""JSONSchemaBench harness: loading, outcome classification, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_tools.bench import schemabench as sb

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


def test_load_spreads_over_the_upstream_listing_not_the_shipped_files(tmp_path: Path) -> None:
    names = [f"{i:02d}.json" for i in range(10)]
    (tmp_path / "index.json").write_text(json.dumps({"s": names}))
    (tmp_path / "s").mkdir()
    for name in ("00.json", "03.json", "06.json"):  # only the sample is shipped
        (tmp_path / "s" / name).write_text(json.dumps({"title": name}))
    picked = sb.load("s", 3, data=tmp_path)
    assert picked == [(n, {"title": n}) for n in ("00.json", "03.json", "06.json")]


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


def saved_run(backend: str, per_subset: int = 30) -> dict:
    rows = [{"subset": "a", "outcome": "served", "code": ""},
            {"subset": "a", "outcome": "failed", "code": "output_truncated"}]  # fmt: skip
    return {"command": "gateway bench schemas", "per_subset": per_subset, "max_tokens": 256,
            "rows": {backend: rows}, "summary": {}}  # fmt: skip


def test_the_report_is_rewritten_from_saved_runs_default_backend_first(tmp_path: Path) -> None:
    for backend in ("auto", "xgrammar"):  # one file per backend, as in schemas-240
        (tmp_path / f"results-{backend}.json").write_text(json.dumps(saved_run(backend)))
    report = sb.write_report(tmp_path).read_text()
    assert report.index("| xgrammar | all | 2 | 1 (50.0%) | 0 | 1 | 0 |") < report.index(
        "| auto | all | 2 | 1 (50.0%) | 0 | 1 | 0 |"
    )
    assert "30 per subset" in report and "`data/jsonschemabench`" in report
    assert f"--report-only {tmp_path}`" in report


def test_runs_of_different_samples_are_not_merged_into_one_report(tmp_path: Path) -> None:
    runs = [saved_run("auto", 30), saved_run("xgrammar", 80)]
    with pytest.raises(ValueError, match="different samples"):
        sb.markdown(runs, tmp_path)
