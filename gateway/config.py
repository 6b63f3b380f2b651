"""One typed settings object for the whole gateway.

Values come from (highest first): keyword arguments, ``GATEWAY_*`` environment
variables, the YAML/TOML file named by ``GATEWAY_CONFIG``, then the defaults below.
Nested values use ``__`` in env vars (``GATEWAY_ADAPTERS='{"demo": "adapters/demo/v1"}'``
also works, as JSON).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schemas.intent import DEMO_LABELS

REPO_ROOT = Path(__file__).resolve().parent.parent
StructuredBackend = Literal["xgrammar", "guidance", "outlines"]


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
    enforce_eager: bool = False
    seed: int = 0

    # LoRA
    adapters: dict[str, Path] = Field(
        default_factory=lambda: {"demo": REPO_ROOT / "adapters" / "demo" / "v1"}
    )
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
        if self.max_cpu_loras < self.max_loras:
            raise ValueError("max_cpu_loras must be >= max_loras")
        return self
