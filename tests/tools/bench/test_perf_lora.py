"""Issue 17 in the performance harness: base-model (``a0``) and prefill cells, the
grouped LoRA path's on / off arms and the environment each side gets, the LoRA / base and
on / off tables, and the paired overhead phase's summary. Nothing here starts an engine."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.common.usage import UsageError
from gateway.engine.vllm_engine import EngineOptions
from gateway_tools.bench.data import banking77_texts
from gateway_tools.bench.perf import main, report, sections
from gateway_tools.bench.perf.loadgen import Record
from gateway_tools.bench.perf.paired import overhead_cell, summarise_pairs
from gateway_tools.bench.perf.sides import Bench, Side, bare_env, gateway_env, plan_sides
from gateway_tools.bench.perf.vllm_side import vllm_env
from gateway_tools.bench.perf.workload import (
    BASE_MODEL,
    LONG_PROMPT_CHARS,
    Cell,
    Workload,
    cell_matrix,
    long_passages,
)

ENV = "GATEWAY_GROUPED_LORA"
WORKLOAD = Workload(
    prompts=("p0", "p1"), adapter_names=("t0", "t1"), system_prompt="sys",
    schema={"type": "object"}, max_tokens=8, long_prompts=("a\nb", "c\nd", "e\nf"),
)  # fmt: skip


def test_base_cells_send_no_adapter_on_any_side() -> None:
    base = Cell(0, True, 4, 8)
    assert base.key == "schema-a0-c4"
    assert [WORKLOAD.request(base, i)[0] for i in range(3)] == [None, None, None]  # bare side
    assert {WORKLOAD.chat_body(base, i)["model"] for i in range(4)} == {BASE_MODEL}  # HTTP
    assert WORKLOAD.chat_body(Cell(1, True, 4, 8), 1)["model"] == "t0"  # adapters unchanged


def test_default_matrix_has_base_cells_and_a_prefill_cell_per_adapter_count() -> None:
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args([])
    assert 0 in args.adapters and args.grouped_lora == ["on", "off"]
    cells = cell_matrix(args.adapters, args.concurrency, args.rates, args.waves, 6)
    keys = {c.key for c in cells}
    assert {"schema-a0-c1", "schema-a0-c16", "free-a0-c1-t1-long", "free-a1-c1-t1-long"} <= keys


def test_long_prompts_are_banking77_text_and_never_share_a_prefix() -> None:
    passages = long_passages(2, LONG_PROMPT_CHARS)
    messages = set(banking77_texts(10_000))
    for passage in passages:
        assert len(passage) > LONG_PROMPT_CHARS
        assert set(passage.splitlines()) <= messages  # real messages, one a line
    with pytest.raises(ValueError, match="too little text"):
        long_passages(1000, LONG_PROMPT_CHARS)
    cell = Cell(0, False, 1, 8, max_tokens=1, long_prompt=True)
    texts = [WORKLOAD.request(cell, i)[1] for i in range(8)]
    twin = [WORKLOAD.request(Cell(1, False, 1, 8, max_tokens=1, long_prompt=True), i)[1]
            for i in range(8)]  # fmt: skip
    firsts = {t.splitlines()[0] for t in texts + twin}
    assert len(firsts) == 16  # each request opens with its own line: no cached prefix
    assert texts[0].endswith("a\nb") and texts[3].endswith("a\nb")
    assert WORKLOAD.chat_body(cell, 0)["max_tokens"] == 1
    with pytest.raises(ValueError, match="needs long prompts"):
        Workload(("p",), ("t0",), "sys", {}, 8).request(cell, 0)


def test_warmup_prefills_a_prompt_no_measured_request_has() -> None:
    warm = [c for c in WORKLOAD.warmup() if c.long_prompt]
    measured = {c.key for c in cell_matrix([0, 1, 2], [1, 16], [2.0], 2, 6)}
    assert warm and not {c.key for c in warm} & measured
    assert {c.adapters for c in WORKLOAD.warmup()} == {0, 2}  # the base and every adapter


def bench(tmp_path: Path) -> Bench:
    options = EngineOptions(
        model_path="/m", quantization=None, dtype="bfloat16", max_model_len=2048,
        gpu_memory_utilization=0.3, max_num_seqs=32, max_loras=8, max_cpu_loras=16,
        max_lora_rank=16, structured_backend="xgrammar", disable_any_whitespace=True,
        enforce_eager=False, seed=0, grouped_lora=True,
    )  # fmt: skip
    return Bench(tmp_path, WORKLOAD, tmp_path / "store", options, {"LD_PRELOAD": "/x.so"})


def test_each_side_gets_its_lora_path_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "1")  # what the caller's shell says must not leak into a side
    sides = plan_sides(["bare", "vllm", "gateway"], ["off", "on"])
    assert sides == [
        Side("bare", "bare", False),  # the first arm's path
        Side("vllm", "vllm", False),
        Side("gateway-off", "gateway", False),
        Side("gateway-on", "gateway", True),
    ]
    b = bench(tmp_path)
    assert gateway_env(b, True)[ENV] == "1" and gateway_env(b, False)[ENV] == "0"
    assert gateway_env(b, True)["GATEWAY_SERVED_MODEL_NAME"] == BASE_MODEL
    assert vllm_env(b)[ENV] == "0" and vllm_env(b)["LD_PRELOAD"] == "/x.so"
    assert bare_env(b, sides[0].grouped_lora)[ENV] == "0"
    assert plan_sides(["bare"], ["on", "off"]) == [Side("bare", "bare", True)]
    with pytest.raises(UsageError):
        plan_sides(["gateway"], ["on", "on"])


def pooled() -> dict:
    def side(rps: dict[str, float], ttft: dict[str, float]) -> dict:
        cells = {k: {"requests_per_s": v, "output_tokens_per_s": 40 * v} for k, v in rps.items()}
        for key, ms in ttft.items():
            cells[key] = {"ttft_p50_ms": ms, "mean_prompt_tokens": 1049.0}
        return cells

    base = {"schema-a0-c1": 1.0, "schema-a0-c16": 4.0}
    ttft = {"free-a0-c1-t1-long": 500.0}
    return {
        "bare": side({**base, "schema-a1-c1": 0.9, "schema-a1-c16": 3.6},
                     {**ttft, "free-a1-c1-t1-long": 550.0}),
        "gateway-on": side({**base, "schema-a1-c1": 0.9, "schema-a1-c16": 3.4},
                           {**ttft, "free-a1-c1-t1-long": 550.0}),
        "gateway-off": side({**base, "schema-a1-c1": 0.5, "schema-a1-c16": 1.7},
                            {**ttft, "free-a1-c1-t1-long": 1000.0}),
    }  # fmt: skip


CELLS = [Cell(n, True, c, 8) for n in (0, 1) for c in (1, 4, 16)] + [
    Cell(n, False, 1, 8, max_tokens=1, long_prompt=True) for n in (0, 1)
]


def test_lora_over_base_per_side_at_the_ends_of_the_concurrency_range() -> None:
    rows = sections.lora_vs_base(pooled(), CELLS)
    by = {(r["cell"], r["measure"]): r["ratios"] for r in rows}
    assert set(by) == {("schema-a1-c1", "req/s"), ("schema-a1-c1", "output tok/s"),
                       ("schema-a1-c16", "req/s"), ("schema-a1-c16", "output tok/s"),
                       ("free-a1-c1-t1-long", "TTFT p50")}  # fmt: skip
    assert by[("schema-a1-c16", "req/s")] == {"bare": 0.9, "gateway-on": 0.85, "gateway-off": 0.425}
    assert by[("free-a1-c1-t1-long", "TTFT p50")]["gateway-off"] == 2.0
    on_off = {r["cell"]: r for r in sections.on_vs_off(pooled())}
    assert on_off["schema-a1-c16"]["req/s"] == 2.0 and on_off["schema-a0-c1"]["req/s"] == 1.0
    assert on_off["free-a1-c1-t1-long"]["TTFT p50"] == 0.55
    assert sections.on_vs_off({"gateway-on": {}}) == []  # one arm: nothing to compare


def test_issue_targets_use_the_first_gateway_arm() -> None:
    targets = {t["target"]: t for t in report.targets(pooled(), {}, 1, 16, None)}
    tps = targets["gateway-on LoRA / base output tokens/s, schema-a1-c16"]
    assert tps["measured"] == 0.85 and tps["met"] is True
    ttft = targets["gateway-on time to first token, 1 adapter / base, ~1,000-token prompt at c1"]
    assert ttft["measured"] == 1.1 and ttft["met"] is True


def test_report_explains_the_arms_and_prints_the_overhead_interval() -> None:
    diffs = [2.0, 3.0, 4.0]
    overhead = {**summarise_pairs(*records([0.17 + d / 1000 for d in diffs], [0.17] * 3)),
                "grouped_lora": True, "kv_cache_gib": 2}  # fmt: skip
    result = {"pooled": pooled(), "overhead": overhead,
              "workload": {"cells": [c.as_dict() for c in CELLS]}}  # fmt: skip
    text = "\n".join(sections.markdown(result))
    assert "## LoRA / base" in text and "1049 prompt tokens" in text
    assert "| schema-a1-c16 | schema-a0-c16 | req/s | 0.900 | 0.850 | 0.425 |" in text
    assert "`GATEWAY_GROUPED_LORA=1`" in text and "its own gateway process" in text
    assert "| schema-a1-c16 | 2.000 | 2.000 | n/a |" in text
    assert "3 pairs" in text and "**met**" in text
    assert "stole" not in text  # reports from before the steal share was recorded
    share = {"busy": 0.6, "idle": 0.1, "steal": 0.3}
    stolen = {**result, "overhead": {**overhead, "cpu_share": share}}
    assert "the hypervisor stole 30% of the CPU time (60% busy, 10% idle)" in "\n".join(
        sections.markdown(stolen)
    )
    old = {"pooled": {"gateway": {}}, "workload": {"cells": [Cell(1, True, 1, 6).as_dict()]}}
    assert "no base-model cells" in "\n".join(sections.markdown(old))
    failed = {**result, "overhead": {"error": "gateway exited (1):\nlog tail", "verdict": None}}
    assert "The paired phase failed: gateway exited (1):" in "\n".join(sections.markdown(failed))


def records(gateway: list[float], bare: list[float]) -> tuple[list[Record], list[Record]]:
    return [Record(True, s) for s in gateway], [Record(True, s) for s in bare]


def test_paired_summary_drops_failed_pairs_and_decides() -> None:
    gateway, bare = records([0.172, 0.171, 0.9, 0.174], [0.170, 0.170, 0.17, 0.171])
    gateway[2] = Record(False, 0.9, error="timeout")  # its pair is left out, not its half
    summary = summarise_pairs(gateway, bare)
    assert summary["pairs"] == 3 and summary["failed_pairs"] == 1
    assert summary["diffs_ms"] == pytest.approx([2.0, 1.0, 3.0])
    assert summary["median_ms"] == 2.0 and summary["verdict"] == "met"
    slow = summarise_pairs(*records([0.18] * 5, [0.17] * 5))
    assert slow["verdict"] == "not met" and slow["ci_low_ms"] == pytest.approx(10.0)
    none = summarise_pairs(*records([], []))
    assert none["verdict"] is None and none["pairs"] == 0
    assert overhead_cell(600) == Cell(1, False, 1, 600, max_tokens=1)
