"""Training run configuration: a YAML file plus ``key=value`` overrides on the command line.

gateway train --config adapters/demo/train.yaml epochs=3 learning_rate=5e-4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import schemas
from gateway.common.lora import ALL_LINEAR
from gateway.common.names import NAME_PATTERN
from gateway.common.usage import UsageError, describe
from schemas import NAMED_MODELS

SCHEMAS_DIR = Path(schemas.__file__).resolve().parent / "json"


def named_schemas() -> list[str]:
    """What ``schema_name`` may be: the Pydantic models of ``schemas`` and the JSON Schema
    files beside them (the named schemas a gateway serves by default)."""
    files = sorted(p.stem for p in SCHEMAS_DIR.glob("*.json")) if SCHEMAS_DIR.is_dir() else []
    return sorted(NAMED_MODELS) + files


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(default="v1", pattern=NAME_PATTERN)
    data: Path
    validation: Path | None = None
    test: Path | None = None
    labels: list[str] = Field(default_factory=list)
    labels_file: Path | None = None
    # Rows of ``text`` plus these fields (e.g. SNIPS's intent and slots): the answer is
    # the JSON object of the fields, the message is the text. Empty: rows as they are.
    answer_fields: list[str] = Field(default_factory=list)
    # The answer's schema, at most one of the three (none: see ``gateway.training.task``):
    # a named one (``intent_classification`` or a file of schemas/json), a JSON Schema
    # file, or a Pydantic model as ``module:Class``.
    schema_name: str | None = None
    schema_file: Path | None = None
    schema_model: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    system_prompt: str | None = None
    # "decision_token": the model answers one token per label and the loss is over the
    # labels alone; "json": the legacy recipe, the whole JSON answer is the target;
    # "structured": any JSON answer a schema describes; "text": a plain chat adapter;
    # "auto": what the data is (``gateway.training.task``).
    answer: Literal["auto", "decision_token", "json", "structured", "text"] = "auto"
    per_class: int | None = Field(default=None, ge=1)
    val_share: float = Field(default=0.2, ge=0, lt=1)
    rank: int = Field(default=16, ge=1, le=256)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_LINEAR))
    epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    warmup_share: float = Field(default=0.03, ge=0, lt=1)
    warmup_steps: int | None = Field(default=None, ge=0)  # a fixed count wins over the share
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    early_stopping_patience: int = Field(default=2, ge=0)
    max_train_minutes: float = Field(default=55, gt=0)
    augment: float = Field(default=0.5, ge=0, le=1)
    max_length: int = Field(default=256, ge=16)
    confidence: float = Field(default=0.9, ge=0, le=1)  # answer=json only
    escalation_target_accuracy: float = Field(default=0.95, gt=0, le=1)
    escalation_labels: list[str] = Field(default_factory=list)
    bf16: bool = True
    share_prefix: bool = True
    qlora: bool = False
    seed: int = 0
    out_root: Path = Path("adapters")
    evaluate: bool = True

    @field_validator("epochs", "batch_size", mode="plain")
    @classmethod
    def _count_or_auto(cls, value: Any) -> int | str:
        """One message for both halves of the union (pydantic would give one per half)."""
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("Input should be a valid integer, or auto")
        if value < 1:
            raise ValueError("Input should be at least 1, or auto")
        return value

    @field_validator("schema_name")
    @classmethod
    def _known_schema(cls, name: str | None) -> str | None:
        known = named_schemas()
        if name is not None and name not in known:
            raise ValueError(f"schema_name must be one of {known}")
        return name

    @model_validator(mode="after")
    def _one_source_each(self) -> TrainConfig:
        if self.labels and self.labels_file:
            raise ValueError("give labels or labels_file, not both")
        given = [k for k in ("schema_name", "schema_file", "schema_model") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of schema_name, schema_file, schema_model, not {given}")
        return self

    def label_set(self) -> tuple[str, ...]:
        if self.labels_file is None:
            return tuple(self.labels)
        try:
            labels = json.loads(self.labels_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UsageError(f"labels_file {self.labels_file} does not exist") from exc
        except (OSError, ValueError) as exc:  # a folder, unreadable, not UTF-8, not JSON
            raise UsageError(f"labels_file {self.labels_file} is not a JSON file: {exc}") from exc
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise UsageError(f"labels_file {self.labels_file} must hold a JSON list of strings")
        return tuple(labels)

    @property
    def out_dir(self) -> Path:
        return self.out_root / self.name / self.version


def _coerce(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} does not exist") from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:  # a folder, not UTF-8, not YAML
        raise UsageError(f"config file {path} is not readable YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise UsageError(f"config file {path}: the top level must be a mapping")
    return loaded


def load_config(path: Path | None, overrides: list[str]) -> TrainConfig:
    """The YAML file, then each ``key=value`` over it; every mistake is a ``UsageError``."""
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"override {item!r} is not key=value")
        data[key.strip()] = _coerce(value)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"training config: {describe(exc, TrainConfig.model_fields)}") from exc
