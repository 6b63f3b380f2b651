"""``gateway serve | train | eval | bench | model | adapters | console | state | keys | schemas
| config``.

A mistake of the user (a missing file, a bad row or value, an occupied port, a server
that does not answer) raises ``UsageError`` where it is found, before any model loads;
``main`` prints it as one line and exits 2. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway.cli.adapters import add_adapters_commands
from gateway.cli.commands import (
    bench_main,
    cmd_bench_consistency,
    cmd_config_docs,
    cmd_eval,
    cmd_keys_hash,
    cmd_keys_new,
    cmd_schemas_export,
    cmd_serve,
    cmd_train,
)
from gateway.cli.console import add_console_commands
from gateway.cli.model import add_model_commands
from gateway.cli.state import add_state_commands
from gateway.common.usage import UsageError

BENCHES = (
    ("bases", "base variants (bf16, W4A16, W8A8): size, memory, speed, accuracy, ratios",
     "gateway.bench.bases.main", bench_main("gateway.bench.bases.main")),
    ("classify", "/v1/classify with an adapter's versions side by side, rounds, ratios",
     "gateway.bench.classify.main", bench_main("gateway.bench.classify.main")),
    ("consistency", "fine-tuned + constrained against prompt-only baselines",
     "gateway.bench.consistency.main", cmd_bench_consistency),
    ("neighbours", "a flooding tenant next to a light one, fair share off and on",
     "gateway.bench.neighbours", bench_main("gateway.bench.neighbours")),
    ("perf", "gateway vs bare AsyncLLM vs vllm serve, alternating rounds, ratios",
     "gateway.bench.perf.main", bench_main("gateway.bench.perf.main")),
    ("lora-ops", "one linear layer's LoRA term: vLLM's ops, grouped, fused, and the base",
     "gateway.bench.lora_ops", bench_main("gateway.bench.lora_ops")),
    ("training", "/v1/classify latency with and without a fine-tuning job training",
     "gateway.bench.training_load", bench_main("gateway.bench.training_load")),
    ("runtime", "CPU runtime settings (LD_PRELOAD, thread binding) against each other",
     "gateway.bench.perf.runtime", bench_main("gateway.bench.perf.runtime")),
    ("schemas", "JSONSchemaBench schemas through the gateway, per backend",
     "gateway.bench.schemabench", bench_main("gateway.bench.schemabench")),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Structured-output LLM gateway with per-request LoRA adapters. "
        "Settings come from GATEWAY_* env vars and the file in GATEWAY_CONFIG.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a mistake, not one line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP gateway and the vLLM engine")
    serve.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from settings: 8000)")
    serve.add_argument(
        "--adapter",
        action="append",
        metavar="NAME=VERSION",
        help="register adapter_store/NAME/VERSION at start (current if NAME is new); repeatable",
    )
    serve.set_defaults(func=cmd_serve)

    for name, func, text in (
        ("train", cmd_train, "train a LoRA adapter (checks, training, evaluation, manifest)"),
        ("eval", cmd_eval, "evaluate a trained adapter through the engine, update its manifest"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", help="YAML training config (see adapters/*/train.yaml)")
        cmd.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config keys")
        cmd.set_defaults(func=func)

    bench = sub.add_parser("bench", help="benchmarks that write JSON, Markdown and charts")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    for name, text, module, func in BENCHES:
        cmd = bench_sub.add_parser(name, help=text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(func=func)

    add_model_commands(sub)

    add_adapters_commands(sub)

    add_console_commands(sub)
    add_state_commands(sub)

    keys = sub.add_parser("keys", help="API keys for tenants.yaml (only hashes are stored)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new", help="print a new key and its hash").set_defaults(func=cmd_keys_new)
    keys_sub.add_parser("hash", help="hash a key read from stdin").set_defaults(func=cmd_keys_hash)

    schemas = sub.add_parser("schemas", help="output contracts")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write the named schemas as JSON Schema files")
    export.add_argument("--out", default="schemas/generated")
    export.set_defaults(func=cmd_schemas_export)

    config = sub.add_parser("config", help="settings")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    docs = config_sub.add_parser("docs", help="render the settings reference page")
    docs.add_argument("--out", default="docs/configuration.md")
    docs.set_defaults(func=cmd_config_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        if args.debug:
            raise
        print("gateway: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
