"""``gateway serve | train | eval | model | adapters | state | keys | schemas | config``.

Benchmarks, evaluation charts and console screenshots are ``gateway-tools`` verbs (the
tools package in ``tools/``, not part of the server's install); ``gateway bench`` and
``gateway console`` say so in one line.

A mistake of the user (a missing file, a bad row or value, an occupied port, a server
that does not answer) raises ``UsageError`` where it is found, before any model loads;
``main`` prints it as one line and exits 2. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from gateway.cli.adapters import add_adapters_commands
from gateway.cli.commands import (
    cmd_config_docs,
    cmd_eval,
    cmd_keys_hash,
    cmd_keys_new,
    cmd_moved_to_tools,
    cmd_schemas_export,
    cmd_serve,
    cmd_train,
)
from gateway.cli.model import add_model_commands
from gateway.cli.state import add_state_commands
from gateway.common.usage import UsageError


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

    for name in ("bench", "console"):  # verbs of the tools package now; say where they went
        moved = sub.add_parser(name, help=f"moved: `gateway-tools {name} ...` (tools/)")
        moved.add_argument("rest", nargs=argparse.REMAINDER)
        moved.set_defaults(func=cmd_moved_to_tools)

    add_model_commands(sub)

    add_adapters_commands(sub)
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
