"""``gateway adapters merge``: one adapter folded into its base, optionally quantized."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli.inputs import load_settings, mistakes
from gateway.common.usage import UsageError


def cmd_adapters_merge(args: argparse.Namespace) -> int:
    """The names and every output folder are checked before the base model is resolved
    (which may provision it); the store then validates the version as a gateway would
    serve it. With ``--quantize`` the merged folder is kept: it is the quantized
    checkpoint's source, as the bf16 default is its variants'."""
    from gateway.errors import AdapterInvalid, AdapterNotFound
    from gateway.models import ModelError, resolve_model
    from gateway.registry.store import check_name
    from gateway.training.merge import MergeRefused, merge_adapter, require_free

    out: Path = args.out
    with mistakes(AdapterInvalid, MergeRefused, ModelError):
        check_name(args.name, "name")
        check_name(args.version, "version")
        require_free(out)
        if args.quantize:
            require_free(quantized_path(out, args.quantize))
    settings = load_settings()
    with mistakes(ModelError):  # the family's unquantized weights; no variant is made for this
        base = resolve_model(settings.model_dir, settings.model_cache_dir, "bf16")
    with mistakes(AdapterInvalid, AdapterNotFound, MergeRefused, ModelError):
        merged = merge_adapter(settings, base, args.name, args.version, out)
    served = merged.path
    if args.quantize:
        served = _quantize(merged.path, args.quantize, settings.model_cache_dir)
    print(
        json.dumps(
            {
                "merged": str(merged.path),
                "fingerprint": merged.fingerprint,
                "quantized": str(served) if args.quantize else None,
                "serve": f"GATEWAY_MODEL_DIR={served} GATEWAY_ADAPTERS='{{}}' gateway serve",
            }
        )
    )
    return 0


def quantized_path(merged: Path, scheme: str) -> Path:
    """Beside the merged folder, named by variant as the embedded default's are."""
    from gateway.models.quantize import target_quantization

    return merged.with_name(f"{merged.name}-{target_quantization(scheme, None).variant}")


def _quantize(merged: Path, scheme: str, cache_dir: Path) -> Path:
    """``gateway model quantize`` with the embedded default's calibration (BANKING77
    questions, drawn with its seed)."""
    from gateway.models import ModelError
    from gateway.models.quantize import prepare, quantize
    from gateway.models.resolve import DEFAULT_CALIBRATION, DEFAULT_SAMPLES, DEFAULT_SEED
    from gateway.models.toolenv import tool_env

    try:
        job = prepare(
            merged, cache_dir, scheme=scheme, group_size=None, calibration=DEFAULT_CALIBRATION,
            samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED, out=quantized_path(merged, scheme),
        )  # fmt: skip
        return quantize(job, tool_env(cache_dir)).path
    except ModelError as exc:
        raise UsageError(
            f"{exc}. The merged model {merged} is complete; quantize it with `gateway model "
            f"quantize --source {merged} --scheme {scheme}`"
        ) from exc


def add_adapters_commands(sub: argparse._SubParsersAction) -> None:
    from gateway.models.quantize import SCHEMES

    adapters = sub.add_parser("adapters", help="adapter store tools")
    adapters_sub = adapters.add_subparsers(dest="adapters_command", required=True)
    merge = adapters_sub.add_parser(
        "merge", help="merge a LoRA version into its base: a new base model, served without LoRA"
    )
    merge.add_argument("name", help="adapter name in adapter_store")
    merge.add_argument("version", help="adapter version")
    merge.add_argument("--out", type=Path, required=True, help="new folder for the merged model")
    merge.add_argument(
        "--quantize",
        choices=sorted(SCHEMES),
        help="also write a quantized checkpoint of it beside --out (OUT-<variant>)",
    )
    merge.set_defaults(func=cmd_adapters_merge)
