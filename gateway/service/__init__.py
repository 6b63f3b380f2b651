"""Service layer: tenancy, schema resolution, adapter choice, validation. No FastAPI here."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Settings
from gateway.engine.types import EngineClient
from gateway.models import ModelInfo
from gateway.service.adapters import AdapterCatalog
from gateway.service.chat import ChatService
from gateway.service.classify import ClassifyService
from gateway.service.schemas import SchemaRegistry


@dataclass
class Services:
    """Everything a request handler may use, built once at start-up."""

    settings: Settings
    engine: EngineClient
    adapters: AdapterCatalog
    schemas: SchemaRegistry
    chat: ChatService
    classify: ClassifyService
    base_model: ModelInfo

    @classmethod
    def build(cls, settings: Settings, engine: EngineClient, base_model: ModelInfo) -> Services:
        adapters = AdapterCatalog(
            settings.served_model_name, settings.max_lora_rank, base_model.fingerprint
        )
        schemas = SchemaRegistry(
            labels=tuple(settings.intent_labels),
            schemas_dir=settings.schemas_dir,
            max_bytes=settings.max_schema_bytes,
            max_depth=settings.max_schema_depth,
        )
        chat = ChatService(engine, adapters, schemas, settings)
        classify = ClassifyService(
            chat, tuple(settings.intent_labels), settings.classify_max_tokens
        )
        return cls(settings, engine, adapters, schemas, chat, classify, base_model)
