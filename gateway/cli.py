"""``gateway serve | model pull | schemas export``: the operator's entry points."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    for spec in getattr(args, "adapter", None) or []:
        name, _, path = spec.partition("=")
        if not name or not path:
            sys.exit(f"--adapter expects NAME=PATH, got {spec!r}")
        overrides.setdefault("adapters", {})[name] = Path(path)
    settings = Settings(**overrides)
    if "adapters" in overrides:  # --adapter adds to, not replaces, configured ones
        merged = {**Settings().adapters, **overrides["adapters"]}
        settings = settings.model_copy(update={"adapters": merged})
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.logs import setup_logging
    from gateway.server import create_app

    setup_logging()
    settings = _settings(args)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)
    return 1 if app.state.startup_error else 0


def cmd_model_pull(args: argparse.Namespace) -> int:
    from gateway.models import resolve_model

    settings = Settings()
    info = resolve_model(settings.model_dir, settings.model_cache_dir)
    print(json.dumps({"name": info.name, "path": str(info.path), "fingerprint": info.fingerprint}))
    return 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from schemas import NAMED_MODELS

    settings = Settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, factory in NAMED_MODELS.items():
        schema = factory(tuple(settings.intent_labels)).model_json_schema()
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(out / f"{name}.schema.json")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.models import resolve_model
    from gateway.training.recipe import TrainConfig, train

    settings = Settings()
    info = resolve_model(settings.model_dir, settings.model_cache_dir)
    out = Path(args.out) if args.out else Path("adapters") / args.name / args.version
    if (out / "adapter_model.safetensors").exists() and not args.force:
        sys.exit(f"{out} already holds an adapter; pass --force to overwrite")
    labels = tuple(x for x in (args.labels or "").split(",") if x)
    cfg = TrainConfig(
        data=Path(args.data),
        out_dir=out,
        model_dir=info.path,
        labels=labels,
        rank=args.rank,
        alpha=2 * args.rank,
        epochs=args.epochs,
        learning_rate=args.lr,
        seed=args.seed,
    )
    print("launch:", " ".join(["gateway", *sys.argv[1:]]) if sys.argv else "gateway train")
    print(train(cfg))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Structured-output LLM gateway with per-request LoRA adapters. "
        "Settings come from GATEWAY_* env vars and the file in GATEWAY_CONFIG.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP gateway and the vLLM engine")
    serve.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from settings: 8000)")
    serve.add_argument(
        "--adapter", action="append", metavar="NAME=PATH", help="serve a PEFT adapter; repeatable"
    )
    serve.set_defaults(func=cmd_serve)

    tr = sub.add_parser("train", help="train a LoRA intent-classification adapter")
    tr.add_argument("--data", required=True, help="JSONL (text, intent) or CSV (text, label)")
    tr.add_argument("--name", default="demo")
    tr.add_argument("--version", default="v1")
    tr.add_argument("--out", help="output folder (default adapters/NAME/VERSION)")
    tr.add_argument("--labels", help="comma-separated label set (default: labels in the data)")
    tr.add_argument("--epochs", type=int, default=8)
    tr.add_argument("--rank", type=int, default=8)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--force", action="store_true")
    tr.set_defaults(func=cmd_train)

    model = sub.add_parser("model", help="base-model provisioning")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    pull = model_sub.add_parser("pull", help="provision and verify the configured base model")
    pull.set_defaults(func=cmd_model_pull)

    schemas = sub.add_parser("schemas", help="output contracts")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write the named schemas as JSON Schema files")
    export.add_argument("--out", default="schemas/generated")
    export.set_defaults(func=cmd_schemas_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
