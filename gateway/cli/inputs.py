"""What the user gives a command (settings, files, a port, a server), checked before any
model loads; each mistake is a ``UsageError`` worded for the user, not a traceback."""

from __future__ import annotations

import argparse
import json
import os
import socket
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from gateway.common.usage import UsageError, describe
from gateway.config import BaseVariant, Settings

if TYPE_CHECKING:
    from gateway.models import ModelInfo
    from gateway.training.config import TrainConfig


@contextmanager
def mistakes(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of ``kinds`` raised inside are the user's mistakes, already worded for them."""
    try:
        yield
    except kinds as exc:
        raise UsageError(str(exc)) from exc


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")


def load_settings(**overrides: Any) -> Settings:
    """Settings from ``overrides``, the GATEWAY_* variables and GATEWAY_CONFIG; a bad value
    in any of them is the user's to fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise UsageError(f"settings: {describe(exc, Settings.model_fields)}") from exc
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"settings file {os.environ['GATEWAY_CONFIG']}: {exc}") from exc
    except ValueError as exc:  # GATEWAY_CONFIG names no file; a GATEWAY_* value is not JSON
        raise UsageError(f"settings: {exc}") from exc


def serve_settings(args: argparse.Namespace) -> Settings:
    """The settings with ``gateway serve``'s flags over them."""
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    named: dict[str, str] = {}
    for spec in args.adapter or []:
        name, _, version = spec.partition("=")
        if not name or not version:
            raise UsageError(
                f"--adapter expects NAME=VERSION (a folder adapters/NAME/VERSION), got {spec!r}"
            )
        named[name] = version
    if named:  # --adapter adds to, not replaces, configured ones
        overrides["adapters"] = {**load_settings(**overrides).adapters, **named}
    return load_settings(**overrides)


def check_before_serving(settings: Settings) -> None:
    """Mistakes told in a second, not after the engine has spent its start finding them:
    the port (uvicorn binds only once the engine is loading), the memory the engine
    reserves, the model folder, the tenants file and the adapters named for start-up."""
    from gateway.engine.cpu_runtime import is_cpu_build
    from gateway.engine.preflight import check_engine_room, port_holder
    from gateway.models import ModelError, require_model_dir

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family) as probe:  # bound as uvicorn binds, then let go
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((settings.host, settings.port))
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        holder = port_holder(settings.port)
        held = f", held by {holder}" if holder else ""
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}{held}") from exc
    if is_cpu_build():  # room for the engine's memory (a crashed engine left holding it?)
        check_engine_room(settings.kv_cache_gib, settings.gpu_memory_utilization)
    if settings.model_dir is not None:
        with mistakes(ModelError):
            require_model_dir(settings.model_dir)
    _check_quantization(settings)
    if settings.auth_mode == "tenants" and settings.tenants_file is not None:
        require_file(settings.tenants_file, "tenants_file")
    for name, version in settings.adapters.items():
        if not (settings.adapter_store / name / version).is_dir():
            raise UsageError(f"adapter {name}={version} is not in {settings.adapter_store}")


def _check_quantization(settings: Settings) -> None:
    """An online method on a checkpoint that is already quantized: vLLM would refuse it
    only after loading, with a mismatch message that names neither setting."""
    if settings.quantization is None:
        return
    if settings.model_dir is None:
        quantized = settings.base_variant != "bf16"
        what = f"base_variant {settings.base_variant}"
    else:
        config = json.loads((settings.model_dir / "config.json").read_text())
        quantized = isinstance(config.get("quantization_config"), dict)
        what = f"the checkpoint in {settings.model_dir}"
    if quantized:
        raise UsageError(
            f"quantization {settings.quantization!r} is an online method, but {what} is "
            "already quantized (vLLM reads its method from config.json); set quantization: "
            "none, or serve an unquantized model (base_variant: bf16)"
        )


def base_model(settings: Settings, variant: BaseVariant | None = None) -> ModelInfo:
    """The configured base model; ``variant`` overrides ``base_variant`` (training asks
    for bf16, the weights it trains on, so no quantized variant is made for nothing)."""
    from gateway.models import ModelError, resolve_model

    with mistakes(ModelError):
        return resolve_model(
            settings.model_dir, settings.model_cache_dir, variant or settings.base_variant
        )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config with its input files read once: a missing file or a bad row is
    told in a second, before a base model loads."""
    from gateway.training.config import load_config
    from gateway.training.data import load_splits

    cfg = load_config(Path(args.config) if args.config else None, args.overrides)
    cfg.label_set()
    load_splits(cfg)
    return cfg
