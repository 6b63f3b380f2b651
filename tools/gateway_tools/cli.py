"""``gateway-tools bench | eval charts | console screenshots``: the tools beside the server.

Kept out of the ``gateway`` command so the product installs without their dependencies
(matplotlib, py-spy, playwright); ``gateway bench`` and ``gateway console`` say where the
verbs went. Mistakes print one line and exit 2, as ``gateway`` does.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.cli.inputs import require_file
from gateway.common.usage import UsageError
from gateway_tools.screenshots import add_console_commands


def bench_main(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).main(args))

    return run


def cmd_bench_consistency(args: argparse.Namespace) -> int:
    from gateway_tools.bench.consistency.main import run
    from gateway_tools.launch import require_ready

    if args.rescore:
        require_file(Path(args.rescore), "--rescore")
    else:
        require_file(args.data, "--data")
        require_file(args.train, "--train")
        if args.url:
            require_ready(args.url)
    run(args)
    return 0


def cmd_eval_charts(args: argparse.Namespace) -> int:
    from gateway_tools.evaluation.charts import draw_adapter_charts

    for name in draw_adapter_charts(Path(args.adapter_dir)):
        print(Path(args.adapter_dir) / name)
    return 0


B = "gateway_tools.bench."
BENCHES = (
    ("bases", "base variants (bf16, W4A16, W8A8): size, memory, speed, accuracy, ratios",
     B + "bases.main", bench_main(B + "bases.main")),
    ("classify", "/v1/classify with an adapter's versions side by side, rounds, ratios",
     B + "classify.main", bench_main(B + "classify.main")),
    ("consistency", "fine-tuned + constrained against prompt-only baselines",
     B + "consistency.main", cmd_bench_consistency),
    ("neighbours", "a flooding tenant next to a light one, fair share off and on",
     B + "neighbours", bench_main(B + "neighbours")),
    ("perf", "gateway vs bare AsyncLLM vs vllm serve, alternating rounds, ratios",
     B + "perf.main", bench_main(B + "perf.main")),
    ("lora-ops", "one linear layer's LoRA term: vLLM's ops, grouped, fused, and the base",
     B + "lora_ops", bench_main(B + "lora_ops")),
    ("training", "/v1/classify latency with and without a fine-tuning job training",
     B + "training_load", bench_main(B + "training_load")),
    ("runtime", "CPU runtime settings (LD_PRELOAD, thread binding) against each other",
     B + "perf.runtime", bench_main(B + "perf.runtime")),
    ("schemas", "JSONSchemaBench schemas through the gateway, per backend",
     B + "schemabench", bench_main(B + "schemabench")),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway-tools",
        description="Benchmarks, evaluation charts and console screenshots for the gateway.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a mistake, not one line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks that write JSON, Markdown and charts")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    for name, text, module, func in BENCHES:
        cmd = bench_sub.add_parser(name, help=text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(func=func)

    evaluation = sub.add_parser("eval", help="what `gateway eval` measured, drawn")
    eval_sub = evaluation.add_subparsers(dest="eval_command", required=True)
    charts = eval_sub.add_parser(
        "charts", help="reliability and coverage charts of an evaluated adapter; relinks report.md"
    )
    charts.add_argument("adapter_dir", help="the adapter version's folder, e.g. adapters/demo/v1")
    charts.set_defaults(func=cmd_eval_charts)

    add_console_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        if args.debug:
            raise
        print("gateway-tools: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
