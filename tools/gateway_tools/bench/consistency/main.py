"""Entry point: choose the data and arms, start (or reach) a gateway, run, report.

gateway-tools bench consistency --per-class 1   (BANKING77 from data/banking77 by default)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from gateway.config import REPO_ROOT, Settings
from gateway_tools.bench.consistency.arms import ARM_NAMES, build_arms
from gateway_tools.bench.consistency.perturb import PERTURBATIONS, UNSEEN_TYPES
from gateway_tools.bench.consistency.report import render, table
from gateway_tools.bench.consistency.run import load_items, load_rows, run_all
from gateway_tools.bench.consistency.score import parse_answer, parse_decision, score_arm
from gateway_tools.bench.data import BANKING77, shown
from schemas import intent_model

DEFAULT_PERTURBATIONS = (
    "lower", "extra_spaces", "no_punctuation", "more_punctuation", "typo", "polite", "filler",
    "contractions", "sms",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BANKING77 / "test.csv",
                        help="labelled CSV (text,category) to test on")  # fmt: skip
    parser.add_argument("--train", type=Path, default=BANKING77 / "train.csv",
                        help="labelled CSV the few-shot examples come from")  # fmt: skip
    parser.add_argument("--adapter", default="banking77", help="adapter name in the store")
    parser.add_argument("--version", default="v4", help="adapter version in the store")
    parser.add_argument("--per-class", type=int, default=1, help="test items per label")
    parser.add_argument("--k", type=int, default=5, help="few-shot examples")
    parser.add_argument("--max-items", type=int, help="keep the first N sampled items (smoke runs)")
    parser.add_argument("--perturbations", default=",".join(DEFAULT_PERTURBATIONS),
                        help=f"comma-separated, from: {','.join(PERTURBATIONS)}")  # fmt: skip
    parser.add_argument("--arms", default=",".join(ARM_NAMES), help="comma-separated arms")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="a running gateway; default: start one for the run")
    parser.add_argument("--key", help="tenant key for --url (or none in open mode)")
    parser.add_argument("--out", default="bench-results/consistency")
    parser.add_argument(
        "--rescore", metavar="RESULTS_JSON", help="re-score saved answers, rewrite the report"
    )


def decision_token_map(manifest: dict[str, Any]) -> dict[str, str] | None:
    """token text -> label for a decision-token adapter; None for a JSON-answer one."""
    answer = manifest.get("answer")
    return {t["text"]: t["label"] for t in answer["tokens"]} if answer else None


def rescore(path: Path) -> dict[str, Any]:
    """Apply the current parser and scorer to a saved run, then rewrite its report."""
    results = json.loads(path.read_text())
    labels = tuple(results["meta"]["labels"])
    schema = intent_model(labels).model_json_schema()
    tokens = results["meta"].get("decision_tokens")
    for arm, answers in results["answers"].items():
        for answer in answers:
            parsed = (
                parse_decision(answer["raw"], tokens)
                if arm == "adapter" and tokens
                else parse_answer(answer["raw"], schema, frozenset(labels))
            )
            answer.update(is_json=parsed.is_json, is_valid=parsed.is_valid, label=parsed.label)
        results["arms"][arm] = score_arm(answers, results["arms"][arm]["wall_seconds"])
    path.write_text(json.dumps(results, indent=1) + "\n")
    render(results, path.parent)
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway_tools.launch import launch

    if args.rescore:
        results = rescore(Path(args.rescore))
        print(table(results))
        return results

    store = REPO_ROOT / "adapters"
    manifest = json.loads((store / args.adapter / args.version / "manifest.json").read_text())
    labels = tuple(manifest["labels"])
    tokens = decision_token_map(manifest)
    perturbations = tuple(p for p in args.perturbations.split(",") if p)
    items = load_items(args.data, args.per_class, args.seed, perturbations)
    items = items[: args.max_items] if args.max_items else items
    train = load_rows(args.train)
    arms = build_arms(labels, args.adapter, manifest["system_prompt"], train, args.k, args.seed,
                      tuple(a for a in args.arms.split(",") if a), tokens)  # fmt: skip
    schema = intent_model(labels).model_json_schema()
    out = Path(args.out)
    meta = {
        "command": " ".join(["gateway", *sys.argv[1:]]),
        "data": shown(args.data), "items": len(items), "per_class": args.per_class,
        "seed": args.seed, "perturbations": list(perturbations), "variants": len(perturbations) + 1,
        "requests_per_arm": len(items) * (len(perturbations) + 1), "adapter":
        f"{args.adapter}/{args.version}", "k": args.k, "base_model": manifest["base_model"]["name"],
        "labels": list(labels), "unseen_types": sorted(UNSEEN_TYPES & set(perturbations)),
        "decision_tokens": tokens,
    }  # fmt: skip
    with ExitStack() as stack:
        url = args.url
        if url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            gateway = stack.enter_context(
                launch(
                    tmp / "gateway.log",
                    adapters={args.adapter: args.version},
                    store=store,
                    env={"GATEWAY_REGISTRY_FILE": str(tmp / "registry.json")},
                )
            )
            url = gateway.url
            # the launched gateway reads the same environment
            meta["input_correction"] = Settings().classify_input_correction
        meta["gateway"] = url
        results = asyncio.run(
            run_all(url, args.key, arms, items, schema, labels, args.concurrency, out, meta)
        )
    report = render(results, out)
    print(table(results))
    print(f"\nwrote {out / 'results.json'}, {report} and charts", flush=True)
    return results
