"""``gateway-tools bench perf``: run the sides in alternating rounds, pool, compare, report.

The gateway runs once per ``--grouped-lora`` arm (its own process each); after the
rounds, the paired phase (``perf/paired.py``) decides the serving-overhead target.
Writes ``perf.json`` (updated after every cell, so a cut-off run keeps what it did),
``perf.md`` and ``perf.png`` under ``--out``, and prints the final JSON. ``--report-only
DIR`` rewrites ``DIR/perf.md`` and ``DIR/perf.png`` from ``DIR/perf.json``, running nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.config import REPO_ROOT, Settings
from gateway_tools.bench import provenance
from gateway_tools.bench.perf import paired, profile, report, sections
from gateway_tools.bench.perf.sides import (
    ARMS,
    SIDES,
    TENANT_KEY,
    Bench,
    Progress,
    Side,
    gateway_serve,
    plan_sides,
    prepare_store,
    run_bare,
    run_http,
)
from gateway_tools.bench.perf.stats import merge
from gateway_tools.bench.perf.vllm_side import vllm_serve
from gateway_tools.bench.perf.workload import Cell, build_workload, cell_matrix
from gateway_tools.launch import LaunchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "perf"))
    parser.add_argument(
        "--rounds", type=int, default=2, help="every side (and gateway arm) once per round"
    )
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument(
        "--grouped-lora", nargs="+", choices=ARMS, default=list(ARMS),
        help="gateway arms, each its own gateway process: the grouped CPU LoRA path on "
        "(GATEWAY_GROUPED_LORA=1) and/or off (0: vLLM's own path). The first arm is the one "
        "compared with bare and vllm serve, and the bare engine's path; vllm serve always "
        "runs vLLM's own path (default: on off)",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--adapters", type=int, nargs="+", default=[0, 1, 2, 8],
        help="adapter mixes (round-robin over N adapters); 0 = the base model, no adapter, "
        "for the LoRA / base ratios (default: 0 1 2 8)",
    )  # fmt: skip
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[2.0], help="open-loop req/s, largest adapter mix"
    )
    parser.add_argument("--waves", type=int, default=2, help="closed loop: requests = waves x c")
    parser.add_argument("--min-requests", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--swaps", type=int, default=10, help="hot-swaps (gateway, round 1)")
    parser.add_argument("--schema-repeats", type=int, default=8)
    parser.add_argument(
        "--overhead-pairs", type=int, default=paired.PAIRS,
        help="paired, interleaved 1-token requests to the gateway and the bare engine "
        "(side by side) that decide the 5 ms overhead target by a bootstrap interval; "
        f"needs sides bare and gateway; 0 = skip (default: {paired.PAIRS})",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true", help="run the gateway under py-spy (skews its timings)"
    )
    parser.add_argument(
        "--report-only", metavar="DIR", type=Path, help="rewrite DIR's report from its perf.json"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.engine.cpu_runtime import is_cpu_build, runtime_env
    from gateway.engine.factory import engine_options

    settings = Settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workload = build_workload(max(args.adapters), args.max_tokens)
    cells = cell_matrix(args.adapters, args.concurrency, args.rates, args.waves, args.min_requests)
    sides = plan_sides(args.sides, args.grouped_lora)
    env = runtime_env(settings.cpu_preload, settings.cpu_threads_bind) if is_cpu_build() else {}
    env.pop("GATEWAY_CPU_PRELOAD_MISSING", None)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    result: dict[str, Any] = {
        "command": "gateway-tools bench perf " + " ".join(_argv(args)),
        "machine": provenance.machine(),
        "engine": {},
        "sides": {s.name: {"kind": s.kind, "grouped_lora": s.grouped_lora} for s in sides},
        "runtime_env": env,
        "workload": {
            "prompts": len(workload.prompts),
            "long_prompts": len(workload.long_prompts),
            "adapters": list(workload.adapter_names),
            "max_tokens": workload.max_tokens,
            "cells": [c.as_dict() for c in cells],
        },
        "starts": [],
        "extras": {},
    }
    started = time.perf_counter()
    cpu_start = provenance.CpuTimes.read()
    bar = tqdm(total=args.rounds * len(sides) * len(cells), desc="perf", unit="cell")

    with tempfile.TemporaryDirectory(prefix="perf-") as tmp:
        work = Path(tmp)
        prepare_store(work / "store", workload.adapter_names)
        options, _ = engine_options(settings)
        result["engine"] = {
            k: v for k, v in vars(options).items() if k not in ("model_path", "grouped_lora")
        }
        bench = Bench(work, workload, work / "store", options, env)

        def save() -> None:
            result["raw"] = raw
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            result["machine"]["cpu_share"] = provenance.share_from(cpu_start)
            (out / "perf.json").write_text(json.dumps(result, indent=1) + "\n")

        for round_no in range(1, args.rounds + 1):
            for side in sides:

                def progress(key: str, summary: dict[str, Any], side: Side = side) -> None:
                    raw[side.name][key].append(summary)
                    bar.update()
                    save()

                info = _run_side(side, round_no, bench, cells, args, result, progress)
                result["starts"].append({"round": round_no, "side": side.name, **info})
                save()
        bar.close()
        arm = next((s for s in sides if s.kind == "gateway"), None)
        if args.overhead_pairs and arm and "bare" in args.sides:
            try:
                result["overhead"] = paired.measure(bench, args.overhead_pairs, arm.grouped_lora)
            except LaunchError as exc:  # the matrix stands; the report says what failed
                result["overhead"] = {"error": str(exc), "verdict": None}
    pooled = {
        side: {key: merge(runs) for key, runs in cells_.items()} for side, cells_ in raw.items()
    }
    result["pooled"] = pooled
    result["comparisons"] = report.comparisons(pooled)
    result["lora_vs_base"] = sections.lora_vs_base(pooled, cells)
    result["on_vs_off"] = sections.on_vs_off(pooled)
    result["targets"] = report.targets(
        pooled, result["extras"], max(args.adapters), max(args.concurrency),
        result.get("overhead"),
    )  # fmt: skip
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["cpu_share"] = provenance.share_from(cpu_start)  # paired phase too
    (out / "perf.json").write_text(json.dumps(result, indent=1) + "\n")
    write_report(result, out)
    return result


def _run_side(
    side: Side,
    round_no: int,
    bench: Bench,
    cells: list[Cell],
    args: argparse.Namespace,
    result: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    """One side's fresh process through every cell; the first gateway arm also takes the
    gateway-only extras in round 1. Returns its start-up and wall times."""
    started = time.perf_counter()
    if side.kind == "bare":
        return run_bare(bench, cells, f"r{round_no}", progress, side.grouped_lora)
    if side.kind == "vllm":
        with vllm_serve(bench, bench.work / f"vllm-r{round_no}.log") as (url, pid):
            info = {"ready_s": round(time.perf_counter() - started, 1)}
            run_http(url, pid, bench, cells, "vllm", progress)
    else:
        tag = f"{side.name}-r{round_no}"
        spy = Path(args.out) / f"{tag}.pyspy.txt"
        wrap = profile.wrapper(spy) if args.profile else None
        log = bench.work / f"{tag}.log"
        with gateway_serve(bench, log, side.grouped_lora, wrap) as (url, pid):
            info = {"ready_s": round(time.perf_counter() - started, 1)}
            headers = {"Authorization": f"Bearer {TENANT_KEY}"}
            run_http(url, pid, bench, cells, side.name, progress, headers)
            if round_no == 1 and side.name == f"gateway-{args.grouped_lora[0]}":
                _gateway_extras(url, bench, args, result["extras"])
        if args.profile:
            requests = sum(c.requests for c in cells) + len(bench.workload.adapter_names)
            result.setdefault("profile", {})[tag] = profile.summarise(spy, profile.RATE, requests)
    info["wall_s"] = round(time.perf_counter() - started, 1)
    return info


def write_report(result: dict[str, Any], out: Path) -> None:
    (out / "perf.md").write_text(report.markdown(result, sections.markdown(result)))
    report.chart(result, out / "perf.png")


def _gateway_extras(url: str, bench: Bench, args: argparse.Namespace, extras: dict) -> None:
    from gateway_tools.bench.perf import extras as measure

    if args.swaps:
        extras["hot_swap"] = measure.hot_swap(url, bench.store, bench.workload.adapter_names[0],
                                              args.swaps)  # fmt: skip
    if args.schema_repeats:
        extras["schema_cache"] = measure.schema_cache(url, bench.workload, args.schema_repeats)


def _argv(args: argparse.Namespace) -> list[str]:
    parts = []
    for key, value in vars(args).items():
        if key in ("func", "command", "bench_command", "out") or value is False or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return parts


def main(args: argparse.Namespace) -> int:
    if args.report_only:
        result = json.loads((args.report_only / "perf.json").read_text())
        write_report(result, args.report_only)
        print(f"wrote {args.report_only / 'perf.md'} and perf.png")
        return 0
    result = run(args)
    keys = ("command", "targets", "extras", "starts", "elapsed_s", "profile")
    summary = {k: result[k] for k in keys if k in result}
    summary["comparisons"] = result["comparisons"]
    if "overhead" in result:
        summary["overhead"] = {k: v for k, v in result["overhead"].items() if k != "diffs_ms"}
    print(json.dumps(summary, indent=2))
    return 0
