"""``gateway serve | model pull | schemas export``: the operator's entry points."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    for spec in getattr(args, "adapter", None) or []:
        name, _, version = spec.partition("=")
        if not name or not version:
            sys.exit(
                f"--adapter expects NAME=VERSION (a folder adapters/NAME/VERSION), got {spec!r}"
            )
        overrides.setdefault("adapters", {})[name] = version
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
    _apply_cpu_runtime(settings)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests finish up to the grace period.
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
    )
    # Non-zero after a failed start or a dead engine, so an orchestrator restarts us.
    return 1 if app.state.startup_error else 0


def _apply_cpu_runtime(settings: Settings) -> None:
    """Re-exec once with the CPU runtime's LD_PRELOAD: a preload only takes effect when a
    process starts, and the front-end process (detokenising, validating) gains from the
    allocator as much as the engine core it spawns."""
    import logging
    import os

    from gateway.engine.cpu_runtime import is_cpu_build, runtime_env

    if not is_cpu_build():
        return
    env = runtime_env(settings.cpu_preload, settings.cpu_threads_bind)
    log = logging.getLogger("gateway.cli")
    if missing := env.pop("GATEWAY_CPU_PRELOAD_MISSING", None):
        log.warning("cpu_preload=%s: not installed here: %s", settings.cpu_preload, missing)
    if "LD_PRELOAD" in env and not os.environ.get("GATEWAY_CPU_RUNTIME_APPLIED"):
        log.info("re-executing with LD_PRELOAD=%s", env["LD_PRELOAD"])
        env = {**os.environ, **env, "GATEWAY_CPU_RUNTIME_APPLIED": "1"}
        os.execve(sys.executable, [sys.executable, "-m", "gateway.cli", *sys.argv[1:]], env)
    os.environ.update({k: v for k, v in env.items() if k != "LD_PRELOAD"})


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


def cmd_config_docs(args: argparse.Namespace) -> int:
    from gateway.config_docs import render

    Path(args.out).write_text(render(), encoding="utf-8")
    print(args.out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.errors import AdapterInvalid, AdapterVersionExists
    from gateway.models import resolve_model
    from gateway.registry.store import store_limits
    from gateway.training.config import load_config
    from gateway.training.recipe import DataCheckFailed, train

    cfg = load_config(Path(args.config) if args.config else None, args.overrides)
    print("launch:", " ".join(["gateway", *sys.argv[1:]]), flush=True)
    settings = Settings()
    base = resolve_model(settings.model_dir, settings.model_cache_dir)
    try:
        out = train(cfg, base, store_limits(settings, base))
    except (DataCheckFailed, AdapterInvalid, AdapterVersionExists) as exc:
        sys.exit(f"train: {exc}")
    print(f"adapter written to {out}", flush=True)
    if cfg.evaluate:
        from gateway.evaluation import evaluate_adapter

        evaluate_adapter(out, cfg, settings)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from gateway.evaluation import evaluate_adapter
    from gateway.training.config import load_config

    cfg = load_config(Path(args.config) if args.config else None, args.overrides)
    evaluate_adapter(cfg.out_dir, cfg, Settings())
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A fresh key for a tenant (or the admin): show the key once, store only the hash."""
    from gateway.tenancy import generate_key, hash_key

    key = generate_key()
    print(json.dumps({"api_key": key, "key_hash": hash_key(key)}))
    return 0


def cmd_keys_hash(args: argparse.Namespace) -> int:
    """Read a key from stdin (not argv, which shells keep in history) and print its hash."""
    from gateway.tenancy import hash_key

    key = sys.stdin.readline().strip()
    if not key:
        sys.exit("keys hash: pass the key on standard input")
    print(hash_key(key))
    return 0


def cmd_bench_consistency(args: argparse.Namespace) -> int:
    from gateway.bench.consistency.main import run

    run(args)
    return 0


def _bench_main(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).main(args))

    return run


BENCHES = (
    ("consistency", "fine-tuned + constrained against prompt-only baselines",
     "gateway.bench.consistency.main", cmd_bench_consistency),
    ("perf", "gateway vs bare AsyncLLM vs vllm serve, alternating rounds, ratios",
     "gateway.bench.perf.main", _bench_main("gateway.bench.perf.main")),
    ("runtime", "CPU runtime settings (LD_PRELOAD, thread binding) against each other",
     "gateway.bench.perf.runtime", _bench_main("gateway.bench.perf.runtime")),
    ("schemas", "JSONSchemaBench schemas through the gateway, per backend",
     "gateway.bench.schemabench", _bench_main("gateway.bench.schemabench")),
)  # fmt: skip


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

    model = sub.add_parser("model", help="base-model provisioning")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    pull = model_sub.add_parser("pull", help="provision and verify the configured base model")
    pull.set_defaults(func=cmd_model_pull)

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
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
