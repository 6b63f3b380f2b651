"""The noisy-neighbour benchmark's phase plan and report arithmetic (nothing is run)."""

from __future__ import annotations

import jsonschema

from gateway_tools.bench.neighbours import (
    Phase,
    flood_schema,
    markdown,
    outcomes,
    plan,
    ratios,
    summarise,
)
from gateway_tools.bench.perf.loadgen import Record


def test_each_gateway_measures_b_alone_before_the_flood() -> None:
    assert plan() == [
        [Phase(fair_share=False, flood=False), Phase(fair_share=False, flood=True)],
        [Phase(fair_share=True, flood=False), Phase(fair_share=True, flood=True)],
    ]
    assert [p.name for p in plan()[1]] == ["fair/b_alone", "fair/b_with_a"]


def test_every_flood_request_has_a_new_valid_schema() -> None:
    schemas = [flood_schema(i) for i in range(50)]
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
    assert len({str(s) for s in schemas}) == 50


def test_b_percentiles_count_only_answered_requests() -> None:
    records = [Record(True, s) for s in (0.1, 0.2, 0.3, 0.4, 0.5)]
    records += [Record(False, 9.0, error="deadline_exceeded")]
    assert summarise(records) == {
        "requests": 6, "ok": 5, "p50_ms": 300.0, "p95_ms": 480.0,
        "errors": {"deadline_exceeded": 1},
    }  # fmt: skip


def test_a_outcomes_are_counted_by_code() -> None:
    records = [Record(True, 1.0), Record(False, 0.0, error="rate_limited"),
               Record(False, 0.0, error="schema_budget_exceeded"),
               Record(False, 0.0, error="rate_limited")]  # fmt: skip
    assert outcomes(records) == {
        "requests": 4,
        "codes": {"ok": 1, "rate_limited": 2, "schema_budget_exceeded": 1},
    }


def phase(fair: bool, flood: bool, p50: float | None, p95: float | None) -> dict:
    b = {"requests": 10, "ok": 10, "p50_ms": p50, "p95_ms": p95, "errors": {}}
    a = {"requests": 5, "codes": {"ok": 3, "rate_limited": 2}} if flood else None
    return {"phase": "x", "fair_share": fair, "flood": flood, "b": b, "a": a}


PHASES = [phase(False, False, 100.0, 200.0), phase(False, True, 250.0, 500.0),
          phase(True, False, 100.0, 200.0), phase(True, True, 120.0, 260.0)]  # fmt: skip


def test_ratios_compare_each_flood_with_b_alone_on_the_same_gateway() -> None:
    assert ratios(PHASES) == [
        {"fair_share": False, "p50_ratio": 2.5, "p95_ratio": 2.5, "goal_met": False},
        {"fair_share": True, "p50_ratio": 1.2, "p95_ratio": 1.3, "goal_met": True},
    ]


def test_a_phase_without_answers_has_no_ratio() -> None:
    phases = [phase(True, False, 100.0, 200.0), phase(True, True, None, None)]
    assert ratios(phases) == [
        {"fair_share": True, "p50_ratio": None, "p95_ratio": None, "goal_met": None}
    ]


def test_the_report_shows_each_phase_and_the_verdicts() -> None:
    result = {"b_requests": 10, "a_concurrency": 4, "a_max_tokens": 256, "phases": PHASES,
              "ratios": ratios(PHASES)}  # fmt: skip
    text = markdown(result)
    assert "| fair share | B with A flooding | 10/10 | 120 | 260 | - |" in text
    assert '{"ok": 3, "rate_limited": 2}' in text
    assert "- arrival order: p50 2.50x, p95 2.50x (missed)" in text
    assert "- fair share: p50 1.20x, p95 1.30x (met)" in text
