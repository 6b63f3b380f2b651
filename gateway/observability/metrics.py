"""Prometheus metrics, recorded at the service boundary with bounded labels.

Label values are names an operator created (configured tenants, registered adapters,
named schemas) or fixed words (``open``, ``base``, ``inline``, ``unauthenticated``...),
never free client text: a client could otherwise take every slot, or send a value the
exposition cannot encode and break /metrics for everyone. ``LabelFolder`` enforces both
anyway: a value that is not a plain name becomes ``invalid``, and past the first
``max_values`` distinct values of a label the rest fold into ``other``.
Latency buckets span GPU milliseconds and CPU seconds, so one dashboard fits both.
"""

from __future__ import annotations

import re
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from gateway.observability.router_metrics import RouterMetrics

# 1 ms .. 2 min: GPU time to first token lives at the low end, CPU requests at the high end
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
    80.0, 120.0,
)  # fmt: skip
PER_TOKEN_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
REQUEST_LABELS = ("tenant", "adapter", "schema", "endpoint")
OTHER = "other"
INVALID = "invalid"
# What every name the gateway accepts looks like (adapters, tenants, schemas): printable
# ASCII, so encoding the page cannot fail and no value can break a line of it.
PLAIN_VALUE = re.compile(r"[A-Za-z0-9._-]{1,64}")
NOT_READY = (  # what /metrics says before the services exist, so alerts can fire
    b"# HELP gateway_ready 1 when the engine can generate.\n"
    b"# TYPE gateway_ready gauge\ngateway_ready 0.0\n"
)


class LabelFolder:
    """Keeps each label's values plain and bounded: new values past the limit become
    ``other``, values that are not plain names ``invalid`` (neither takes a slot)."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # the engine's stats thread records too

    def fold(self, label: str, value: str | None) -> str:
        value = value or "none"
        if PLAIN_VALUE.fullmatch(value) is None:
            return INVALID
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) < self.max_values:
                seen.add(value)
                return value
        return OTHER


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, max_label_values: int = 50):
        self.registry = registry or CollectorRegistry()
        self.labels = LabelFolder(max_label_values)
        self.router = RouterMetrics(self.registry)  # vLLM's names, for LoRA-aware routers
        r, req = self.registry, REQUEST_LABELS
        self.request_seconds = Histogram(
            "gateway_request_duration_seconds", "End-to-end request latency.",
            (*req, "outcome"), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft_seconds = Histogram(
            "gateway_time_to_first_token_seconds", "Time from admission to the first token.",
            req, buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot_seconds = Histogram(
            "gateway_time_per_output_token_seconds", "Decode time per token after the first.",
            req, buckets=PER_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_seconds = Histogram(
            "gateway_queue_time_seconds", "Time a request waited in the engine's queue.",
            ("tenant", "adapter"), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "gateway_requests", "Requests by outcome and error code.",
            (*req, "outcome", "code"), registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "gateway_prompt_tokens", "Prompt tokens processed.", ("tenant", "adapter"), registry=r
        )
        self.generated_tokens = Counter(
            "gateway_generated_tokens", "Tokens generated.", ("tenant", "adapter"), registry=r
        )
        self.output_failures = Counter(
            "gateway_structured_output_failures",
            "Structured outputs that failed validation (each attempt).",
            ("tenant", "adapter", "schema", "code"), registry=r,
        )  # fmt: skip
        self.output_retries = Counter(
            "gateway_structured_output_retries", "Retries after a failed structured output.",
            ("tenant", "adapter", "schema"), registry=r,
        )  # fmt: skip
        self.schema_compilations = Counter(
            "gateway_schema_compilations",
            "Schemas checked and compiled (cache misses).",
            registry=r,
        )
        self.schema_cache_hits = Counter(
            "gateway_schema_cache_hits", "Schemas served from the compile cache.", registry=r
        )
        self.adapter_events = Counter(
            "gateway_adapter_events", "Adapter loads, unloads and evictions in the engine.",
            ("adapter", "event"), registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused by a tenant limit.",
            ("tenant", "reason"), registry=r,
        )  # fmt: skip
        self.deadline_exceeded = Counter(
            "gateway_deadline_exceeded", "Requests stopped at their deadline (504).",
            ("tenant", "adapter"), registry=r,
        )  # fmt: skip
        self.slot_wait_seconds = Histogram(
            "gateway_slot_wait_seconds",
            "Time an admitted request waited in the gateway for an engine slot (fair order).",
            ("tenant",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.new_schema_first_token_seconds = Histogram(
            "gateway_new_schema_first_token_seconds",
            "From engine slot to first token for requests whose schema was new to this "
            "server: the engine's grammar compile plus prefill, an upper bound on the compile.",
            ("tenant",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests_running = Gauge(
            "gateway_requests_running", "Requests admitted and not finished.", ("tenant",),
            registry=r,
        )  # fmt: skip
        self.engine_requests = Gauge(
            "gateway_engine_requests", "Requests in the engine, by state.", ("state",), registry=r
        )
        self.adapters_resident = Gauge(
            "gateway_adapters_resident", "Adapter versions loaded, by where they live.",
            ("where",), registry=r,
        )  # fmt: skip
        self.kv_cache_usage = Gauge(
            "gateway_engine_kv_cache_usage_ratio", "Share of the engine's KV cache in use.",
            registry=r,
        )  # fmt: skip
        self.finetune_jobs = Gauge(
            "gateway_fine_tuning_jobs", "Fine-tuning jobs by status (all tenants).",
            ("status",), registry=r,
        )  # fmt: skip
        self.finetune_queue = Gauge(
            "gateway_fine_tuning_queue_length", "Fine-tuning jobs queued, waiting for a worker.",
            registry=r,
        )  # fmt: skip
        self.finetune_tokens_per_second = Gauge(
            "gateway_fine_tuning_tokens_per_second",
            "Training tokens per second of the running jobs together (0 when none runs).",
            registry=r,
        )  # fmt: skip
        self.finetune_paused = Gauge(
            "gateway_fine_tuning_paused",
            "1 while training workers are paused for serving (finetune_yield_to_serving).",
            registry=r,
        )  # fmt: skip
        self.finetune_paused_seconds = Gauge(
            "gateway_fine_tuning_paused_seconds",
            "Seconds training workers have been paused for serving since the gateway started.",
            registry=r,
        )  # fmt: skip
        self.finetune_storage_bytes = Gauge(
            "gateway_fine_tuning_storage_bytes",
            "Bytes a tenant's fine-tuning files and job folders take on disk.",
            ("tenant",), registry=r,
        )  # fmt: skip
        self.build = Info("gateway_build", "Version, base model and engine settings.", registry=r)
        self.ready = Gauge("gateway_ready", "1 when the engine can generate.", registry=r)
        self.lora_kernel_fallbacks = Counter(
            "gateway_lora_kernel_fallbacks",
            "Engine starts whose grouped LoRA path wanted the C decode kernel but serves "
            "with the slower torch ops (library not built at install, or not loadable).",
            registry=r,
        )  # fmt: skip
        # shared state (state_backend=postgres, rate_limit_backend=redis)
        self.state_connected = Gauge(
            "gateway_state_connected",
            "1 while this replica listens to the shared state database (0: serving from "
            "its cache).", registry=r,
        )  # fmt: skip
        self.state_syncs = Counter(
            "gateway_state_syncs", "Resyncs from the shared state database, by outcome.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.state_last_sync = Gauge(
            "gateway_state_last_sync_timestamp_seconds",
            "When this replica last adopted the shared state.", registry=r,
        )  # fmt: skip
        self.adapter_integrity_failures = Counter(
            "gateway_adapter_integrity_failures",
            "Adapter objects refused because their bytes did not match their SHA-256.",
            registry=r,
        )  # fmt: skip
        self.rate_limit_backend_errors = Counter(
            "gateway_rate_limit_backend_errors",
            "Admissions decided without the shared rate-limit store, by outcome (admitted: "
            "fail open; refused: fail closed).", ["outcome"], registry=r,
        )  # fmt: skip

    def request_labels(
        self, tenant: str | None, adapter: str | None, schema: str | None, endpoint: str
    ) -> dict[str, str]:
        return {
            "tenant": self.labels.fold("tenant", tenant or "open"),
            "adapter": self.labels.fold("adapter", adapter or "base"),
            "schema": self.labels.fold("schema", schema),
            "endpoint": endpoint,
        }
