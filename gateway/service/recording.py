"""One request's measurements, written to the metrics once, when the request ends.

Kept apart from the chat service so that generation logic and bookkeeping do not mix;
the service calls ``on_chunk`` as tokens arrive and ``finish`` exactly once. Requests
refused before admission have nothing to measure: ``record_refusal`` counts them.
"""

from __future__ import annotations

import time

from gateway.engine.types import GenerationChunk
from gateway.observability.metrics import GatewayMetrics


class RequestRecorder:
    def __init__(self, metrics: GatewayMetrics, labels: dict[str, str]) -> None:
        self.metrics = metrics
        self.labels = labels
        self.started = time.perf_counter()
        self.slot_at: float | None = None  # when it got an engine slot
        self.is_new_schema = False  # its schema was new to the server: the engine compiles it
        self.first_token_at: float | None = None
        self.num_prompt_tokens = 0
        self.num_output_tokens = 0  # over all attempts

    def slot_taken(self, is_new_schema: bool) -> None:
        self.slot_at = time.perf_counter()
        self.is_new_schema = is_new_schema
        tenant = self.labels["tenant"]
        self.metrics.slot_wait_seconds.labels(tenant=tenant).observe(self.slot_at - self.started)

    def on_chunk(self, chunk: GenerationChunk, previous_output_tokens: int = 0) -> None:
        if self.first_token_at is None and chunk.num_output_tokens > 0:
            self.first_token_at = time.perf_counter()
        self.num_prompt_tokens = chunk.num_prompt_tokens
        self.num_output_tokens = previous_output_tokens + chunk.num_output_tokens

    def output_failed(self, code: str, retrying: bool) -> None:
        schema = {k: self.labels[k] for k in ("tenant", "adapter", "schema")}
        self.metrics.output_failures.labels(**schema, code=code).inc()
        if retrying:
            self.metrics.output_retries.labels(**schema).inc()

    def rejected(self, reason: str, code: str = "rate_limited") -> None:
        self.metrics.rate_limited.labels(tenant=self.labels["tenant"], reason=reason).inc()
        self.metrics.requests.labels(**self.labels, outcome="rejected", code=code).inc()

    def finish(self, code: str | None) -> None:
        m, labels, now = self.metrics, self.labels, time.perf_counter()
        outcome = "success" if code is None else "error"
        m.requests.labels(**labels, outcome=outcome, code=code or "").inc()
        m.request_seconds.labels(**labels, outcome=outcome).observe(now - self.started)
        short = {"tenant": labels["tenant"], "adapter": labels["adapter"]}
        m.prompt_tokens.labels(**short).inc(self.num_prompt_tokens)
        m.generated_tokens.labels(**short).inc(self.num_output_tokens)
        if self.first_token_at is not None:
            m.ttft_seconds.labels(**labels).observe(self.first_token_at - self.started)
            if self.is_new_schema and self.slot_at is not None:
                m.new_schema_first_token_seconds.labels(tenant=labels["tenant"]).observe(
                    self.first_token_at - self.slot_at
                )
            if self.num_output_tokens > 1:
                per_token = (now - self.first_token_at) / (self.num_output_tokens - 1)
                m.tpot_seconds.labels(**labels).observe(per_token)


def record_refusal(metrics: GatewayMetrics, tenant: str, endpoint: str, code: str) -> None:
    """A request refused before admission: a bad key, body or parameter, or access."""
    labels = metrics.request_labels(tenant, "unresolved", None, endpoint)
    metrics.requests.labels(**labels, outcome="error", code=code).inc()
