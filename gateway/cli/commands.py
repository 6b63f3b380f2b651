"""One function per ``gateway`` command; ``gateway.cli`` maps the command line onto them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from gateway.cli.inputs import (
    base_model,
    check_before_serving,
    load_settings,
    mistakes,
    require_file,
    serve_settings,
    train_config,
)
from gateway.common.usage import UsageError
from gateway.config import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.cli.listeners import run
    from gateway.logs import setup_logging
    from gateway.server import create_app

    settings = serve_settings(args)
    check_before_serving(settings)
    setup_logging()
    _apply_cpu_runtime(settings)
    app = create_app(settings)
    run(app, settings)  # uvicorn's h11, with deadlines and connection caps
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


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from schemas import NAMED_MODELS

    settings = load_settings()
    out = Path(args.out)
    with mistakes(OSError):  # --out names a file, or a folder we may not write
        out.mkdir(parents=True, exist_ok=True)
        for name, factory in NAMED_MODELS.items():
            schema = factory(tuple(settings.intent_labels)).model_json_schema()
            (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
            print(out / f"{name}.schema.json")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    from gateway.config_docs import render

    with mistakes(OSError):
        Path(args.out).write_text(render(), encoding="utf-8")
    print(args.out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.errors import AdapterInvalid, AdapterVersionExists
    from gateway.models import ModelError
    from gateway.registry.store import store_limits
    from gateway.training.recipe import DataCheckFailed, train

    cfg = train_config(args)
    print("launch:", " ".join(["gateway", *sys.argv[1:]]), flush=True)
    settings = load_settings()
    base = base_model(settings, "bf16")  # evaluation then serves the configured variant
    with mistakes(DataCheckFailed, AdapterInvalid, AdapterVersionExists, ModelError):
        out = train(cfg, base, store_limits(settings, base))
    print(f"adapter written to {out}", flush=True)
    if not cfg.evaluate:
        return 0
    answer = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["training"]["answer"]
    if answer in ("structured", "text"):  # `gateway eval` scores classification adapters
        served = "constrained to its schema" if answer == "structured" else "without a schema"
        print(f"not evaluated: {cfg.name}/{cfg.version} is a {answer} adapter; chat requests "
              f"to it are served {served}", flush=True)  # fmt: skip
        return 0
    # Evaluation starts the engine in a fresh process: torch keeps the memory training
    # freed, and the engine's reservation (gpu_memory_utilization) would not fit beside it.
    config = ["--config", str(args.config)] if args.config else []
    command = [sys.executable, "-m", "gateway.cli", "eval", *config, *args.overrides]
    return subprocess.run(command, check=False).returncode


def cmd_eval(args: argparse.Namespace) -> int:
    from gateway.evaluation import evaluate_adapter

    cfg = train_config(args)
    require_file(cfg.out_dir / "manifest.json", f"adapter {cfg.name}/{cfg.version}: manifest")
    manifest = json.loads((cfg.out_dir / "manifest.json").read_text(encoding="utf-8"))
    answer = (manifest.get("training") or {}).get("answer")
    if answer in ("structured", "text"):
        raise UsageError(f"adapter {cfg.name}/{cfg.version} is a {answer} adapter; "
                         "`gateway eval` scores classification adapters")  # fmt: skip
    evaluate_adapter(cfg.out_dir, cfg, load_settings())
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
        raise UsageError("keys hash: pass the key on standard input")
    print(hash_key(key))
    return 0


def cmd_moved_to_tools(args: argparse.Namespace) -> int:
    """``gateway bench`` and ``gateway console`` became ``gateway-tools`` verbs: the tools
    and their dependencies are not part of the server's install."""
    verb = " ".join([args.command, *args.rest])
    raise UsageError(
        f"`gateway {verb}` moved to the tools package: run `gateway-tools {verb}` "
        "(pip install -e tools, or scripts/setup.sh --dev)"
    )
