"""The training-load benchmark's arithmetic and report, without a gateway."""

from __future__ import annotations

from gateway_tools.bench.training_load import (
    LABELS,
    markdown,
    training_during,
    training_rows,
    with_ratios,
)


def phase(name: str, p50: float, p95: float, rate: float) -> dict:
    serving = {"requests": 10, "ok": 10, "p50_ms": p50, "p95_ms": p95, "errors": {},
               "requests_per_s": rate}  # fmt: skip
    return {"phase": name, "seconds": 10.0, "serving": serving}


def test_ratios_are_to_serving_alone_on_the_same_gateway() -> None:
    phases = [phase("alone", 100, 200, 8.0), phase("training", 150, 300, 6.0),
              phase("alone_after", 100, 220, 8.0)]  # fmt: skip
    with_ratios(phases)
    assert phases[0]["ratio"] == {"p50_ms": 1.0, "p95_ms": 1.0, "requests_per_s": 1.0}
    assert phases[1]["ratio"] == {"p50_ms": 1.5, "p95_ms": 1.5, "requests_per_s": 0.75}
    assert phases[2]["ratio"]["p95_ms"] == 1.1


def test_only_the_steps_made_during_the_phase_count() -> None:
    before = [{"step": 1, "tokens_per_second": 50.0}]
    after = [
        *before,
        {"step": 2, "tokens_per_second": 40.0},
        {"step": 3, "tokens_per_second": 20.0},
    ]
    assert training_during(before, after, 30.0) == {
        "steps": 2, "steps_per_minute": 4.0, "tokens_per_second": 30.0}  # fmt: skip
    assert training_during(after, after, 30.0)["tokens_per_second"] is None


def test_the_job_trains_on_its_labels_without_overlap() -> None:
    train, validation = training_rows(40), training_rows(5, skip=40)
    assert len(train) == 40 * len(LABELS) and len(validation) == 5 * len(LABELS)
    assert not {r["text"] for r in train} & {r["text"] for r in validation}


def test_the_report_has_a_row_per_phase() -> None:
    phases = [phase("alone", 100, 200, 8.0), phase("training", 150, 300, 6.0)]
    phases[1]["training"] = {"steps": 3, "steps_per_minute": 6.0, "tokens_per_second": 30.0}
    with_ratios(phases)
    result = {"command": "gateway bench training", "requests": 10, "concurrency": 4,
              "worker_threads": 1, "runs": [{"worker": "idle", "phases": phases}]}  # fmt: skip
    text = markdown(result)
    assert (
        "| idle | training | 10/10 | 150 | 300 | 6.00 | 1.50x | 1.50x | 0.75x | 3 (6.0) | 30 |"
        in text
    )
