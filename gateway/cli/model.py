"""``gateway model pull | quantize``: the base model, provisioned or quantized."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli.inputs import base_model, load_settings, mistakes


def cmd_model_pull(args: argparse.Namespace) -> int:
    """The configured base model in its configured variant, made if need be, as JSON."""
    print(json.dumps(base_model(load_settings()).describe()))
    return 0


def cmd_model_quantize(args: argparse.Namespace) -> int:
    from gateway.models import ModelError
    from gateway.models.quantize import prepare, quantize
    from gateway.models.toolenv import tool_env

    cache_dir = load_settings().model_cache_dir
    with mistakes(ModelError):
        job = prepare(
            args.source, cache_dir, scheme=args.scheme, group_size=args.group_size,
            calibration=args.calibration, samples=args.samples, seed=args.seed, out=args.out,
        )  # fmt: skip
        info = quantize(job, tool_env(cache_dir))
    print(json.dumps(info.describe()))
    return 0


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    from gateway.models.quantize import DEFAULT_GROUP_SIZE, SCHEMES
    from gateway.models.resolve import DEFAULT_CALIBRATION, DEFAULT_SAMPLES, DEFAULT_SEED

    model = sub.add_parser("model", help="base models: provision, quantize")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    pull = model_sub.add_parser(
        "pull", help="provision and verify the configured base model (and base_variant)"
    )
    pull.set_defaults(func=cmd_model_pull)
    quant = model_sub.add_parser(
        "quantize", help="write a compressed-tensors checkpoint with a provenance manifest"
    )
    quant.add_argument("--scheme", required=True, choices=sorted(SCHEMES))
    quant.add_argument(
        "--group-size",
        type=int,
        help=f"w4a16 only: weights per scale (default {DEFAULT_GROUP_SIZE})",
    )
    quant.add_argument(
        "--source", type=Path, help="unquantized model folder (default: the embedded model)"
    )
    quant.add_argument(
        "--out", type=Path, help="new folder (default: model_cache_dir/<source>-<variant>)"
    )
    quant.add_argument(
        "--calibration", type=Path, default=DEFAULT_CALIBRATION,
        help="a .csv or .jsonl file with a 'text' column (default: BANKING77 train)",
    )  # fmt: skip
    quant.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration texts")
    quant.add_argument("--seed", type=int, default=DEFAULT_SEED, help="draws the texts")
    quant.set_defaults(func=cmd_model_quantize)
