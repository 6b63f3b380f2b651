"""``gateway bench classify``: the request mix, the summary and ratio math, the report from
saved results, option mistakes, and one run driven against an HTTP test double (no
gateway, no engine)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_tools.bench.bases.run import accuracy_sample
from gateway_tools.bench.classify.main import check, run
from gateway_tools.bench.classify.plan import Block, Plan, schedule, split
from gateway_tools.bench.classify.summary import answer_figures, summarise_run
from gateway_tools.bench.perf.loadgen import Record
from gateway_tools.bench.perf.stats import summarise
from gateway_tools.cli import build_parser, main
from gateway_tools.launch import LaunchError, RunningGateway

SAMPLE = accuracy_sample(6, 0)  # what a run with 6 texts sends
GOLD = {item.texts["original"]: item.gold for item in SAMPLE}
FAILS = SAMPLE[1].texts["original"]  # the text v2 of the test double fails on
LABELS = sorted({"card_arrival", *GOLD.values()})


def test_shares_differ_by_at_most_one_and_sum_to_the_total() -> None:
    assert split(10, 4) == [3, 3, 2, 2]
    assert split(2, 4) == [1, 1, 0, 0]
    assert split(8, 1) == [8]


def test_every_version_gets_the_same_texts_in_rounds_that_rotate_its_turn() -> None:
    plan = Plan(("v2", "v3"), 5, 3, 6, 2, seed=0)
    blocks = schedule(plan, num_texts=100)
    assert blocks == [
        Block(0, 1, ("v2", "v3"), (0, 0, 1, 1, 2, 2)),
        Block(0, 3, ("v2",), (0, 1, 2)),
        Block(0, 3, ("v3",), (0, 1, 2)),
        Block(1, 1, ("v3", "v2"), (3, 3, 4, 4)),
        Block(1, 3, ("v3",), (3, 4, 5)),
        Block(1, 3, ("v2",), (3, 4, 5)),
    ]
    asked: dict[tuple[str, str], list[int]] = {}
    for block in blocks:
        for i in range(len(block.items)):
            version, text = block.request(i)
            asked.setdefault((block.cell, version), []).append(text)
    assert asked[("c1", "v2")] == asked[("c1", "v3")] == [0, 1, 2, 3, 4]
    assert asked[("c3", "v2")] == asked[("c3", "v3")] == [0, 1, 2, 3, 4, 5]
    assert blocks[3].by_version() == {"v3": [0, 2], "v2": [1, 3]}


def test_texts_wrap_around_a_small_sample_and_empty_rounds_send_nothing() -> None:
    blocks = schedule(Plan(("a", "b", "c"), 1, 2, 4, 3, seed=0), num_texts=3)
    assert [(b.round, b.concurrency, b.versions) for b in blocks] == [
        (0, 1, ("a", "b", "c")), (0, 2, ("a",)), (0, 2, ("b",)), (0, 2, ("c",)),
        (1, 2, ("b",)), (1, 2, ("c",)), (1, 2, ("a",)),
        (2, 2, ("c",)), (2, 2, ("a",)), (2, 2, ("b",)),
    ]  # fmt: skip
    assert [b.items for b in blocks if b.versions == ("a",)] == [(0, 1), (2,), (0,)]


def _cell(latencies: list[float], wall: float, tokens: int) -> dict[str, Any]:
    return summarise([Record(True, s, output_tokens=tokens) for s in latencies], wall)


def _answer(item: int, gold: str, label: str | None, confidence: float | None,
            tokens: int) -> dict[str, Any]:  # fmt: skip
    if label is None:  # a failed request: no fields from the gateway
        return {"item": item, "variant": "original", "gold": gold, "raw": None,
                "error": "engine_failed", "is_json": False, "is_valid": False, "label": None,
                "latency_s": 1.0, "prompt_tokens": None}  # fmt: skip
    assert confidence is not None
    return {"item": item, "variant": "original", "gold": gold, "raw": "{}", "error": None,
            "is_json": True, "is_valid": True, "label": label, "latency_s": 1.0,
            "prompt_tokens": 60, "output_tokens": tokens, "confidence": confidence,
            "escalated": confidence < 0.5, "calibration": "uncalibrated", "threshold": 0.5,
            "version": "v"}  # fmt: skip


def saved_run() -> dict[str, Any]:
    """A run as ``results.json`` holds it, without its summary."""
    return {
        "command": "gateway bench classify --versions v2,v3",
        "machine": {"platform": "Linux", "cpus": 2},
        "adapter": "banking77",
        "reference": "v2",
        "cells": ["c1", "c16"],
        "plan": {"versions": ["v2", "v3"], "latency_requests": 3, "concurrency": 16,
                 "rounds": 2, "seed": 0, "throughput_requests": 8, "texts": 8,
                 "data": "data/banking77/test.csv"},
        "versions": {
            "v2": {
                "name": "banking77-v2", "source": "adapters/banking77/v2",
                "answer_format": "JSON under the grammar", "calibration": "uncalibrated",
                "cells": {"c1": [_cell([1.0, 3.0], 4.0, 25), _cell([2.0], 2.0, 25)],
                          "c16": [_cell([1.5] * 4, 2.0, 25), _cell([1.5] * 4, 2.0, 25)]},
                "answers": [_answer(0, "card_arrival", "card_arrival", 0.9, 25),
                            _answer(1, "top_up_failed", "lost_or_stolen_card", 0.4, 25),
                            _answer(2, "top_up_failed", None, None, 0),
                            _answer(0, "card_arrival", "card_arrival", 0.2, 25)],
            },
            "v3": {
                "name": "banking77-v3", "source": "adapters/banking77/v3",
                "answer_format": "decision tokens",
                "calibration": "calibrated; temperature=1.3",
                "cells": {"c1": [_cell([0.5, 0.5, 0.5], 1.5, 1)],
                          "c16": [_cell([0.25] * 8, 1.0, 1)]},
                "answers": [_answer(0, "card_arrival", "card_arrival", 0.8, 1),
                            _answer(1, "top_up_failed", "top_up_failed", 0.6, 1)],
            },
        },
    }  # fmt: skip


def test_answer_figures_count_every_answer_for_validity_and_each_text_once() -> None:
    v2 = answer_figures(saved_run()["versions"]["v2"]["answers"])
    assert v2["answers"] == 4 and v2["texts"] == 3
    assert v2["schema_valid_rate"] == 0.75  # the failed request is not a valid answer
    assert v2["errors"] == {"engine_failed": 1}
    assert v2["output_tokens_mean"] == 25  # over the answers the gateway gave
    assert v2["accuracy"] == round(1 / 3, 4)  # text 0 counted once, the failure as wrong
    assert v2["mean_confidence"] == 0.65  # 0.9 and 0.4: the repeat of text 0 left out
    assert v2["below_threshold_rate"] == 0.5 and v2["threshold"] == 0.5
    assert v2["escalation_rate"] == 0.5
    assert answer_figures([]) == {"answers": 0}


def test_ratios_are_after_over_before_from_pooled_rounds() -> None:
    summary = summarise_run(saved_run())["versions"]
    v2, v3 = summary["v2"], summary["v3"]
    assert v2["cells"]["c1"]["latency_p50_ms"] == 2000.0  # pooled over both rounds: 1, 2, 3 s
    assert v2["cells"]["c1"]["latency_p95_ms"] == 2900.0
    assert v2["cells"]["c16"]["requests_per_s"] == 2.0  # 8 requests over 4 s
    assert "samples" not in v2["cells"]["c16"]
    assert v3["cells"]["c16"]["requests_per_s"] == 8.0
    assert v3["vs_reference"] == {"requests_per_s": 4.0, "latency_p50_ms": 0.25,
                                  "latency_p95_ms": round(500 / 2900, 3),
                                  "throughput_p50_ms": round(250 / 1500, 3)}  # fmt: skip
    assert set(v2["vs_reference"].values()) == {1.0}


def test_the_report_is_rewritten_from_saved_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.json").write_text(json.dumps(saved_run()))
    assert main(["bench", "classify", "--report-only", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert text.splitlines()[2] == "Command: `gateway bench classify --versions v2,v3`"
    assert "| v3 | 500 | 0.250 | 500 | 0.172 | 8.00 | 4.000 | 250 | 0.167 | 1.0 | 0 |" in text
    assert "| v2 | 2000 | 1.000 | 2900 | 1.000 | 2.00 | 1.000 | 1500 | 1.000 | 25.0 | 0 |" in text
    assert (
        "| v2 | 75.0% | 33.3% | 0.500 | 0.650 | 0.450 | 0.650 | 0.50 | 50.0% | 50.0% | 1.000 "
        "| 0.085 |" in text
    )
    assert "**v3 / v2**: req/s at `c16` ×4.00, p50 at `c1` ×0.250." in text
    assert "**v2 / v2**" not in text
    assert "| v3 | `banking77-v3` (`adapters/banking77/v3`) | decision tokens " in text
    assert "## Failed" not in text
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "report.md" in capsys.readouterr().out


def _version(store: Path, version: str, **extra: Any) -> None:
    folder = store / "banking77" / version
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(version.encode())
    (folder / "eval_predictions.jsonl").write_text("not needed to serve\n")
    manifest = {"name": "banking77", "version": version, "labels": LABELS, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "adapters"
    _version(root, "v2")
    _version(root, "v3", answer={"format": "decision_token", "version": 1, "tokens": []})
    _version(root, "bare", labels=[])
    return root


def _args(store: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "classify", "--store", str(store), "--out", str(out), *extra]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--versions", "v2,v3,v2"], "--versions names v2 more than once"),
        (["--versions", " , "], "--versions names no version"),
        (["--concurrency", "1"], "--concurrency must be at least 2, got 1"),
        (["--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["--versions", "v2,v9"], "--versions v9: "),
        (["--versions", "v2,bare"], "has no label set to classify"),
        (["--versions", "v2," + "x" * 60], "is too long for an adapter name"),
    ],
)
def test_mistakes_are_told_before_anything_starts(
    extra: list[str],
    problem: str,
    store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (store / "banking77" / ("x" * 60)).mkdir()
    (store / "banking77" / ("x" * 60) / "manifest.json").write_text(json.dumps({"labels": ["a"]}))
    monkeypatch.setattr("gateway_tools.bench.classify.main.launch", _too_far)
    assert main(_args(store, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("gateway-tools: error: ") and err.count("\n") == 1, err
    assert problem in err
    assert not (tmp_path / "out").exists()


def _too_far(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went past the mistake")


def fake_gateway(seen: list[tuple[str, str]]) -> httpx.MockTransport:
    """v3 is always right and sure; v2 says card_arrival at 0.4, and fails on one text."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        version = body["adapter"].removeprefix("banking77-")
        seen.append((version, body["text"]))
        if version == "v2" and body["text"] == FAILS:
            return httpx.Response(503, json={"error": {"code": "engine_overloaded"}})
        gold = GOLD[body["text"]]
        intent, confidence = (gold, 0.95) if version == "v3" else ("card_arrival", 0.4)
        answer = {"intent": intent, "confidence": confidence,
                  "requires_human_agent": confidence < 0.5, "adapter": body["adapter"],
                  "escalation": {"reason": None, "threshold": 0.5},
                  "usage": {"prompt_tokens": 50, "completion_tokens": 1 if version == "v3" else 24,
                            "total_tokens": 0}}  # fmt: skip
        headers = {"X-Gateway-Adapter-Version": version, "X-Gateway-Confidence": "uncalibrated"}
        return httpx.Response(200, json=answer, headers=headers)

    return httpx.MockTransport(handle)


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``launch`` yielding this process as the gateway, HTTP answered by ``fake_gateway``,
    every save of results.json kept."""
    state: dict[str, Any] = {"launched": [], "seen": [], "saves": [], "fail": False}

    @contextmanager
    def launch(log: Path, **kwargs: Any) -> Iterator[RunningGateway]:
        staged = sorted(str(p.relative_to(kwargs["store"])) for p in kwargs["store"].rglob("*.*"))
        state["launched"].append({**kwargs, "staged": staged})
        if state["fail"]:
            raise LaunchError("gateway exited (1):\nno such base model")
        yield RunningGateway("http://gateway.test", log, os.getpid(), 2.0, False)

    real_client = httpx.AsyncClient
    transport = fake_gateway(state["seen"])
    monkeypatch.setattr("gateway_tools.bench.classify.main.launch", launch)
    monkeypatch.setattr(httpx, "AsyncClient", lambda **kw: real_client(transport=transport, **kw))

    def keep(path: Path, value: dict[str, Any]) -> None:
        state["saves"].append(json.loads(json.dumps(value)))
        path.write_text(json.dumps(value))

    monkeypatch.setattr("gateway_tools.bench.classify.main.write_json_atomic", keep)
    return state


def test_one_gateway_serves_both_versions_interleaved_and_saves_block_by_block(
    store: Path, tmp_path: Path, stubbed: dict[str, Any]
) -> None:
    argv = _args(store, tmp_path / "out", "--latency-requests", "4", "--throughput-requests",
                 "6", "--concurrency", "2", "--rounds", "2")  # fmt: skip
    results = run(build_parser().parse_args(argv), *check(build_parser().parse_args(argv)))

    [launched] = stubbed["launched"]
    assert launched["adapters"] == {"banking77-v2": "v2", "banking77-v3": "v3"}
    assert launched["env"]["GATEWAY_AUTH_MODE"] == "none"
    assert launched["staged"] == [  # the files the store reads, and no others
        f"banking77-{v}/{v}/{f}" for v in ("v2", "v3")
        for f in ("adapter_config.json", "adapter_model.safetensors", "manifest.json")
    ]  # fmt: skip
    texts = list(GOLD)
    seen = stubbed["seen"]
    assert seen[:2] == [("v2", texts[0]), ("v3", texts[0])]  # warm-up, one each
    assert seen[2:6] == [(v, t) for t in texts[:2] for v in ("v2", "v3")]  # text by text
    assert seen[12:16] == [(v, t) for t in texts[2:4] for v in ("v3", "v2")]  # v3 first now
    assert Counter(seen[6:12]) == Counter((v, t) for v in ("v2", "v3") for t in texts[:3])
    assert len(seen) == 2 + 2 * (4 + 6)

    v2, v3 = results["summary"]["versions"]["v2"], results["summary"]["versions"]["v3"]
    assert v2["cells"]["c1"]["requests"] == 4 and v2["cells"]["c2"]["requests"] == 6
    assert v2["errors"] == {"engine_overloaded": 2}  # its text once in each cell
    assert v2["cells"]["c1"]["error_codes"] == {"engine_overloaded": 1}
    assert v2["schema_valid_rate"] == 0.8 and v3["schema_valid_rate"] == 1.0
    assert v3["accuracy"] == 1.0 and v3["output_tokens_mean"] == 1
    assert v2["output_tokens_mean"] == 24 and v2["below_threshold_rate"] == 1.0
    assert v3["mean_confidence"] == 0.95 and v3["escalation_rate"] == 0.0
    assert results["versions"]["v3"]["answer_format"] == "decision tokens"
    assert results["versions"]["v2"]["answer_format"] == "JSON under the grammar"
    assert results["plan"]["texts"] == 6

    answered = [sum(len(v["answers"]) for v in s["versions"].values()) for s in stubbed["saves"]]
    assert answered == [0, 4, 7, 10, 14, 17, 20, 20]  # warm-up, then after every block
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert (tmp_path / "out" / "chart.png").exists()


def test_a_gateway_that_fails_to_start_is_reported(
    store: Path, tmp_path: Path, stubbed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    stubbed["fail"] = True
    assert main(_args(store, tmp_path / "out", "--latency-requests", "2")) == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed" in report and "no such base model" in report
    assert "| v3 | n/a | n/a |" in report  # nothing measured is n/a, never 0
    assert stubbed["seen"] == []
