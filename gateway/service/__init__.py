"""Service layer: tenancy, schema resolution, adapter choice, validation. No FastAPI here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from gateway.engine.types import EngineClient, EngineStats
from gateway.models import ModelInfo
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.registry.state import RegistryState
from gateway.registry.store import AdapterStore, merged_profile, store_limits
from gateway.service.chat import ChatService
from gateway.service.classify import ClassifyService
from gateway.service.schemas import SchemaRegistry
from gateway.tenancy import Limiter, TenantDirectory, hash_key


@dataclass
class Services:
    """Everything a request handler may use, built once at start-up."""

    settings: Settings
    engine: EngineClient
    adapters: AdapterRegistry
    schemas: SchemaRegistry
    chat: ChatService
    classify: ClassifyService
    base_model: ModelInfo
    tenants: TenantDirectory
    limiter: Limiter
    admin_key_hash: str | None
    metrics: GatewayMetrics
    base_quantization: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    # which LoRA path and decode kernel the engine process runs ("pending" until it started)
    lora_path: dict[str, str] = field(
        default_factory=lambda: {"path": "pending", "kernel": "pending"}
    )
    shared: Any = None  # gateway.cluster.shared.SharedMode with state_backend=postgres

    @property
    def is_open(self) -> bool:
        """No keys at all: local development (start-up refuses it off loopback)."""
        return self.settings.auth_mode == "none"

    @classmethod
    def build(cls, settings: Settings, engine: EngineClient, base_model: ModelInfo) -> Services:
        store = AdapterStore(settings.adapter_store, store_limits(settings, base_model))
        admin_hash = hash_key(settings.admin_key.get_secret_value()) if settings.admin_key else None
        if settings.shared_state:
            from gateway.cluster.pg_tenants import PgTenantDirectory
            from gateway.cluster.shared import SharedMode

            state, url = SharedMode.build_state(settings)
            adapters = AdapterRegistry(store, state, engine, settings.max_cpu_loras)
            tenants: TenantDirectory = PgTenantDirectory(url, admin_hash)
        else:
            adapters = AdapterRegistry(
                store, RegistryState.load(settings.registry_path), engine, settings.max_cpu_loras
            )
            tenants = TenantDirectory.load(
                settings.tenants_file if settings.auth_mode == "tenants" else None, admin_hash
            )
        schemas = SchemaRegistry(
            labels=tuple(settings.intent_labels),
            schemas_dir=settings.schemas_dir,
            max_bytes=settings.max_schema_bytes,
            max_depth=settings.max_schema_depth,
        )
        metrics = GatewayMetrics()
        limiter = build_limiter(settings, metrics)
        schemas.on_event = lambda event: (
            metrics.schema_cache_hits if event == "hit" else metrics.schema_compilations
        ).inc()
        adapters.residency.on_event = lambda name, event: metrics.adapter_events.labels(
            adapter=metrics.labels.fold("adapter", name), event=event
        ).inc()
        chat = ChatService(engine, adapters, schemas, settings, limiter, metrics)
        engine.on_stats = lambda stats: record_engine_stats(metrics, chat, stats)
        classify = ClassifyService(
            chat, tuple(settings.intent_labels), settings.classify_max_tokens,
            base_profile=merged_profile(base_model.path),
        )  # fmt: skip
        services = cls(
            settings, engine, adapters, schemas, chat, classify, base_model, tenants, limiter,
            admin_hash, metrics,
        )  # fmt: skip
        services.describe_base(None)
        if settings.shared_state:
            services.shared = SharedMode(settings, adapters, tenants, metrics)  # type: ignore[arg-type]
        return services

    def describe_base(
        self, quantization: dict[str, Any] | None, lora_path: dict[str, Any] | None = None
    ) -> None:
        """Publish what the engine reports of the base model (``None`` until it started):
        the build-info metric and ``/v1/models`` say what is really quantized, and the
        metric and ``/ready`` which LoRA path and decode kernel the engine process runs
        (``plugin.status``); a start whose kernel fell back to the torch ops is counted."""
        self.base_quantization = {"variant": self.base_model.variant, **(quantization or {})}
        self.base_quantization.setdefault("method", "pending" if quantization is None else "none")
        q = self.base_quantization
        if lora_path is not None:
            self.lora_path = {
                "path": "grouped" if lora_path.get("grouped") else "vllm",
                "kernel": str(lora_path.get("kernel") or "none"),
            }
            if self.lora_path["kernel"] == "torch-fallback":
                self.metrics.lora_kernel_fallbacks.inc()
        self.metrics.build.info({
            "version": _version(), "base_model": self.base_model.name,
            "base_variant": str(q["variant"]), "quantization": str(q["method"]),
            "weight_bits": str(q.get("weight_bits") or ""),
            "group_size": str(q.get("group_size") or ""),
            "quantized_layers": str(q.get("quantized_layers", "")),
            "structured_backend": self.settings.structured_backend,
            "lora_path": self.lora_path["path"], "lora_kernel": self.lora_path["kernel"],
        })  # fmt: skip

    def refresh_gauges(self) -> None:
        """Gauges read from live state just before a scrape."""
        self.metrics.ready.set(1 if self.engine.is_ready else 0)
        self.metrics.adapters_resident.labels(where="loaded").set(
            self.adapters.residency.num_loaded
        )


def build_limiter(settings: Settings, metrics: GatewayMetrics) -> Any:
    """In-process buckets, or Redis-held ones that every replica counts against."""
    if settings.rate_limit_backend != "redis":
        return Limiter()
    from gateway.tenancy.redis_limits import RedisLimiter

    return RedisLimiter(
        settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
        on_error=settings.rate_limit_on_redis_error,
        lease_ttl_s=settings.request_timeout_s + 60,
        on_backend_error=lambda outcome: metrics.rate_limit_backend_errors.labels(
            outcome=outcome
        ).inc(),
    )


def record_engine_stats(metrics: GatewayMetrics, chat: ChatService, stats: EngineStats) -> None:
    metrics.engine_requests.labels(state="running").set(stats.num_running)
    metrics.engine_requests.labels(state="waiting").set(stats.num_waiting)
    metrics.kv_cache_usage.set(stats.kv_cache_usage)
    metrics.adapters_resident.labels(where="active").set(stats.num_active_adapters)
    settings, aliases = chat.settings, chat.adapters.state.aliases

    def public_name(lora_name: str) -> str:
        name, _, version = lora_name.partition("@")
        alias = aliases.get(name)
        return name if alias is not None and alias.current == version else lora_name

    metrics.router.record(
        settings.served_model_name, running=stats.num_running, waiting=stats.num_waiting,
        kv_cache_usage=stats.kv_cache_usage, max_lora=settings.max_loras,
        running_adapters=stats.running_adapters, waiting_adapters=stats.waiting_adapters,
        public_name=public_name,
    )  # fmt: skip
    for request_id, seconds in stats.queued:
        labels = chat.admission.recent_labels.get(request_id.partition("-retry")[0])
        short = {k: labels[k] for k in ("tenant", "adapter")} if labels else {}
        metrics.queue_seconds.labels(**(short or {"tenant": "other", "adapter": "other"})).observe(
            seconds
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lora-gateway")
    except PackageNotFoundError:
        return "unknown"
