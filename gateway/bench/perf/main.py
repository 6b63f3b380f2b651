"""``gateway bench perf``: run the sides in alternating rounds, pool, compare, report.

Writes ``perf.json`` (updated after every cell, so a cut-off run keeps what it did),
``perf.md`` and ``perf.png`` under ``--out``, and prints the final JSON. ``--report-only
DIR`` rewrites ``DIR/perf.md`` and ``DIR/perf.png`` from ``DIR/perf.json``, running nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.bench.perf import profile, report
from gateway.bench.perf.sides import (
    SIDES,
    TENANT_KEY,
    Bench,
    gateway_serve,
    prepare_store,
    run_bare,
    run_http,
    vllm_serve,
)
from gateway.bench.perf.stats import merge
from gateway.bench.perf.workload import build_workload, cell_matrix
from gateway.config import REPO_ROOT, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "perf"))
    parser.add_argument("--rounds", type=int, default=2, help="A B C repeated this many times")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[2.0], help="open-loop req/s, largest adapter mix"
    )
    parser.add_argument("--waves", type=int, default=2, help="closed loop: requests = waves x c")
    parser.add_argument("--min-requests", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--swaps", type=int, default=10, help="hot-swaps (gateway, round 1)")
    parser.add_argument("--schema-repeats", type=int, default=8)
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
    env = runtime_env(settings.cpu_preload, settings.cpu_threads_bind) if is_cpu_build() else {}
    env.pop("GATEWAY_CPU_PRELOAD_MISSING", None)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    result: dict[str, Any] = {
        "command": "gateway bench perf " + " ".join(_argv(args)),
        "machine": {"platform": platform.platform(), "cpus": _cpus()},
        "engine": {},
        "runtime_env": env,
        "workload": {
            "prompts": len(workload.prompts),
            "adapters": list(workload.adapter_names),
            "max_tokens": workload.max_tokens,
            "cells": [c.as_dict() for c in cells],
        },
        "starts": [],
        "extras": {},
    }
    started = time.perf_counter()
    bar = tqdm(total=args.rounds * len(args.sides) * len(cells), desc="perf", unit="cell")

    with tempfile.TemporaryDirectory(prefix="perf-") as tmp:
        work = Path(tmp)
        prepare_store(work / "store", workload.adapter_names)
        options, _ = engine_options(settings)
        result["engine"] = {k: v for k, v in vars(options).items() if k != "model_path"}
        bench = Bench(work, workload, work / "store", options, env)

        def save() -> None:
            result["raw"] = raw
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            (out / "perf.json").write_text(json.dumps(result, indent=1) + "\n")

        for round_no in range(1, args.rounds + 1):
            for side in args.sides:
                side_started = time.perf_counter()

                def progress(key: str, summary: dict[str, Any], side: str = side) -> None:
                    raw[side][key].append(summary)
                    bar.update()
                    save()

                if side == "bare":
                    info = run_bare(bench, cells, f"r{round_no}", progress)
                elif side == "vllm":
                    with vllm_serve(bench, work / f"vllm-r{round_no}.log") as (url, pid):
                        info = {"ready_s": round(time.perf_counter() - side_started, 1)}
                        run_http(url, pid, bench, cells, "vllm", progress)
                else:
                    spy = out / f"gateway-r{round_no}.pyspy.txt"
                    wrap = profile.wrapper(spy) if args.profile else None
                    log = work / f"gateway-r{round_no}.log"
                    with gateway_serve(bench, log, wrap) as (url, pid):
                        info = {"ready_s": round(time.perf_counter() - side_started, 1)}
                        headers = {"Authorization": f"Bearer {TENANT_KEY}"}
                        run_http(url, pid, bench, cells, "gateway", progress, headers)
                        if round_no == 1:
                            _gateway_extras(url, bench, args, result["extras"])
                    if args.profile:
                        requests = sum(c.requests for c in cells) + len(workload.adapter_names)
                        result.setdefault("profile", {})[f"r{round_no}"] = profile.summarise(
                            spy, profile.RATE, requests
                        )
                info["wall_s"] = round(time.perf_counter() - side_started, 1)
                result["starts"].append({"round": round_no, "side": side, **info})
                save()
    bar.close()
    pooled = {
        side: {key: merge(runs) for key, runs in cells_.items()} for side, cells_ in raw.items()
    }
    result["pooled"] = pooled
    result["comparisons"] = report.comparisons(pooled)
    result["targets"] = report.targets(
        pooled, result["extras"], max(args.adapters), max(args.concurrency)
    )
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    (out / "perf.json").write_text(json.dumps(result, indent=1) + "\n")
    write_report(result, out)
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    (out / "perf.md").write_text(report.markdown(result))
    report.chart(result, out / "perf.png")


def _gateway_extras(url: str, bench: Bench, args: argparse.Namespace, extras: dict) -> None:
    from gateway.bench.perf import extras as measure

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


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


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
    print(json.dumps(summary, indent=2))
    return 0
