"""Entry point of ``gateway-tools bench classify``: check the options, stage the versions, start
one gateway, send the planned blocks, write ``results.json`` (after every block, so a run
cut short keeps what it measured), then ``report.md`` and ``chart.png`` under ``--out``.
``--report-only DIR`` rewrites ``DIR/report.md`` and ``DIR/chart.png`` from
``DIR/results.json``, running nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.common.usage import UsageError
from gateway.config import REPO_ROOT
from gateway.fileio import write_json_atomic
from gateway_tools.bench.bases.run import TEST_SPLIT, accuracy_sample
from gateway_tools.bench.classify import report
from gateway_tools.bench.classify.drive import Target, drive, load_target, stage_store
from gateway_tools.bench.classify.plan import Plan, schedule
from gateway_tools.bench.classify.summary import summarise_run
from gateway_tools.bench.consistency.run import load_rows
from gateway_tools.bench.data import shown
from gateway_tools.bench.saved import rewrite_report, write_report
from gateway_tools.launch import LaunchError, launch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="banking77", help="adapter name in --store")
    parser.add_argument(
        "--versions",
        default="v2,v3",
        help="comma-separated versions of --adapter, served side by side; the first is the "
        "reference (before) of the ratios (default: v2,v3)",
    )
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "adapters",
                        help="adapter store the versions are copied from")  # fmt: skip
    parser.add_argument("--latency-requests", type=int, default=100,
                        help="requests per version at concurrency 1")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=16, help="of the throughput cell")
    parser.add_argument("--throughput-requests", type=int, default=320,
                        help="requests per version at --concurrency")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=4, help="the work is split into rounds")
    parser.add_argument("--seed", type=int, default=0, help="of the BANKING77 text sample")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "classify")
    parser.add_argument(
        "--report-only",
        metavar="DIR",
        type=Path,
        help="rewrite DIR's report.md and chart.png from its results.json",
    )


def check(args: argparse.Namespace) -> tuple[Plan, list[Target]]:
    """The user's mistakes, told before anything is copied or started."""
    versions = tuple(v.strip() for v in args.versions.split(",") if v.strip())
    if not versions:
        raise UsageError("--versions names no version")
    twice = sorted(v for v, n in Counter(versions).items() if n > 1)
    if twice:
        raise UsageError(f"--versions names {', '.join(twice)} more than once")
    floors = (("--latency-requests", args.latency_requests, 1), ("--concurrency",
              args.concurrency, 2), ("--throughput-requests", args.throughput_requests, 1),
              ("--rounds", args.rounds, 1))  # fmt: skip
    for flag, value, floor in floors:
        if value < floor:
            raise UsageError(f"{flag} must be at least {floor}, got {value}")
    targets = [load_target(args.store, args.adapter, version) for version in versions]
    plan = Plan(versions, args.latency_requests, args.concurrency, args.throughput_requests,
                args.rounds, args.seed)  # fmt: skip
    return plan, targets


def gateway_env(work: Path) -> dict[str, str]:
    """Open auth on loopback and a scratch registry, whatever the operator's settings."""
    return {"GATEWAY_AUTH_MODE": "none", "GATEWAY_REGISTRY_FILE": str(work / "registry.json")}


def run(args: argparse.Namespace, plan: Plan, targets: list[Target]) -> dict[str, Any]:
    wanted = max(plan.latency_requests, plan.throughput_requests)
    items = accuracy_sample(min(wanted, len(load_rows(TEST_SPLIT))), plan.seed)
    blocks = schedule(plan, len(items))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["gateway", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0))},
        "adapter": args.adapter,
        "reference": plan.versions[0],
        "cells": list(plan.cells),
        "plan": {"versions": list(plan.versions), "latency_requests": plan.latency_requests,
                 "concurrency": plan.concurrency, "rounds": plan.rounds, "seed": plan.seed,
                 "throughput_requests": plan.throughput_requests, "texts": len(items),
                 "data": shown(TEST_SPLIT)},
        "versions": {t.version: {"name": t.name, "source": shown(t.source),
                                 "answer_format": t.answer_format, "cells": {}, "answers": []}
                     for t in targets},
    }  # fmt: skip
    started = time.perf_counter()

    def save() -> None:
        results["elapsed_s"] = round(time.perf_counter() - started, 1)
        results["summary"] = summarise_run(results)
        write_json_atomic(out / "results.json", results)

    bar = tqdm(total=sum(len(block.items) for block in blocks), desc="classify", unit="req")
    with tempfile.TemporaryDirectory(prefix="bench-classify-") as tmp:
        work = Path(tmp)
        adapters = stage_store(targets, work / "store")
        try:
            with launch(work / "gateway.log", adapters=adapters, store=work / "store",
                        env=gateway_env(work)) as gateway:  # fmt: skip
                results["ready_s"] = round(gateway.seconds_to_ready, 1)
                bar.write(f"gateway ready in {results['ready_s']} s, serving {adapters}")
                by_version = {t.version: t for t in targets}
                asyncio.run(drive(gateway.url, by_version, blocks, items, results["versions"],
                                  save, bar))  # fmt: skip
        except LaunchError as exc:
            results["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
            bar.write(f"failed: {results['error'][:200]}")
    bar.close()
    save()
    write_report(results, out, report.markdown, report.chart)
    return results


def main(args: argparse.Namespace) -> int:
    """Exit status 1 when the gateway failed (its error is in the report)."""
    if args.report_only:
        return rewrite_report(args.report_only, report.markdown, report.chart)
    results = run(args, *check(args))
    print(json.dumps({"command": results["command"], **results["summary"]}, indent=2))
    print(f"wrote {args.out / 'results.json'}, report.md and chart.png")
    return 1 if results.get("error") else 0
