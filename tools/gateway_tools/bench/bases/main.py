"""Entry point of ``gateway-tools bench bases``: check the options, measure each variant in
turn, write ``results.json`` (after every cell), then ``report.md`` and ``chart.png``
under ``--out``, and print the summary. ``--report-only DIR`` rewrites ``DIR/report.md``
and ``DIR/chart.png`` from ``DIR/results.json``, running nothing.
"""

from __future__ import annotations

import argparse
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

from gateway.cli.inputs import load_settings
from gateway.common.usage import UsageError
from gateway.config import REPO_ROOT, Settings
from gateway.fileio import write_json_atomic
from gateway_tools.bench.bases import report
from gateway_tools.bench.bases.run import (
    ADAPTER,
    ADAPTER_VERSION,
    ARMS,
    TEST_SPLIT,
    Plan,
    accuracy_sample,
    cell_key,
    label_count,
    measure,
)
from gateway_tools.bench.data import shown
from gateway_tools.bench.saved import rewrite_report, write_report

DEFAULT_VARIANTS = ("bf16", "w4a16", "w8a8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        metavar="VARIANT",
        help="base variants (values of the base_variant setting), one engine at a time; the "
        f"first is the reference for ratios (default: {' '.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=48, help="requests per cell")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--prompts", type=int, default=64, help="distinct BANKING77 test messages per cell"
    )
    parser.add_argument(
        "--accuracy-items",
        type=int,
        default=400,
        help="seeded sample of the BANKING77 test split, the same for every variant; 0 = none",
    )
    parser.add_argument("--accuracy-concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks" / "bases")
    parser.add_argument(
        "--report-only",
        metavar="DIR",
        type=Path,
        help="rewrite DIR's report.md and chart.png from its results.json",
    )


def check(args: argparse.Namespace) -> Settings:
    """The user's mistakes, told before any checkpoint is read or engine started. A
    variant is valid when the ``base_variant`` setting accepts it."""
    twice = sorted(v for v, n in Counter(args.variants).items() if n > 1)
    if twice:
        raise UsageError(f"--variants names {', '.join(twice)} more than once")
    floors = [("--requests", args.requests, 1), ("--max-tokens", args.max_tokens, 1),
              ("--prompts", args.prompts, 1), ("--accuracy-items", args.accuracy_items, 0),
              ("--accuracy-concurrency", args.accuracy_concurrency, 1),
              *(("--concurrency", c, 1) for c in args.concurrency)]  # fmt: skip
    for flag, value, floor in floors:
        if value < floor:
            raise UsageError(f"{flag} must be at least {floor}, got {value}")
    settings = load_settings()
    if settings.model_dir is not None:
        raise UsageError(
            "gateway-tools bench bases compares the variants of the embedded default model; "
            f"model_dir is set ({settings.model_dir}): unset it for this run"
        )
    for variant in args.variants:
        try:
            load_settings(base_variant=variant)
        except UsageError as exc:
            raise UsageError(f"--variants {variant}: {exc}") from exc
    return settings


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    plan = Plan(tuple(args.concurrency), args.requests, args.max_tokens, args.prompts,
                args.accuracy_items, args.accuracy_concurrency, args.seed)  # fmt: skip
    items = accuracy_sample(plan.accuracy_items, plan.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["gateway", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0))},
        "reference": args.variants[0],
        "cells": [cell_key(arm, c) for arm in ARMS for c in plan.concurrency],
        "workload": {
            "schema": f"{label_count()}-label intent", "prompts": plan.prompts,
            "adapter": f"{ADAPTER}/{ADAPTER_VERSION}", "max_tokens": plan.max_tokens,
            "requests": plan.requests, "concurrency": list(plan.concurrency),
        },
        "accuracy_sample": {"data": shown(TEST_SPLIT), "items": len(items), "seed": plan.seed,
                            "concurrency": plan.accuracy_concurrency},
        "variants": {},
    }  # fmt: skip
    started = time.perf_counter()

    def save() -> None:
        results["elapsed_s"] = round(time.perf_counter() - started, 1)
        write_json_atomic(out / "results.json", results)

    steps = len(args.variants) * (len(results["cells"]) + bool(items))
    bar = tqdm(total=steps, desc="bases", unit="step")
    with tempfile.TemporaryDirectory(prefix="bases-") as tmp:
        for variant in args.variants:
            entry = results["variants"].setdefault(variant, {})
            measure(variant, plan, settings, items, Path(tmp), entry, save, bar)
    bar.close()
    save()
    write_report(results, out, report.markdown, report.chart)
    return results


def main(args: argparse.Namespace) -> int:
    """Exit status 1 when a variant could not be measured (its error is in the report)."""
    if args.report_only:
        return rewrite_report(args.report_only, report.markdown, report.chart)
    results = run(args, check(args))
    print(json.dumps(report.summary(results), indent=2))
    print(f"wrote {args.out / 'results.json'}, report.md and chart.png")
    return 1 if any(entry.get("error") for entry in results["variants"].values()) else 0
