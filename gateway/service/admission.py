"""Admission: what happens between a checked request and the engine, and after it.

A request is charged to its tenant's limits, pinned to the adapter version current at
that moment (a lease the registry honours across promotions and evictions), and measured;
all three are undone or recorded exactly once when it ends, however it ends.

The outcome of every request that reaches admission is recorded here and nowhere else,
whether it is turned away at the door or ends inside. What is refused earlier (a bad
key, a malformed body, a forbidden adapter) is recorded by the HTTP layer, where it is
refused: where an error is raised decides who counts it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from gateway import errors
from gateway.engine.types import GenerationParams
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.service.recording import RequestRecorder
from gateway.service.schema_names import INLINE
from gateway.service.types import PreparedChat
from gateway.service.validation import Constraint
from gateway.tenancy import Limiter

RECENT_REQUESTS = 10_000  # engine stats name requests by id after they finish


def schema_label(constraint: Constraint | None) -> str | None:
    """A named schema's name (an operator created it); ``inline`` for any client's own."""
    if constraint is None:
        return None
    if constraint.schema is None:
        return constraint.name  # json_object
    return INLINE if constraint.schema.inline else constraint.schema.name


@dataclass
class Admission:
    params: GenerationParams  # with the pinned adapter version
    recorder: RequestRecorder
    num_tokens: int | None = None  # used tokens, refunded against the reservation


class AdmissionControl:
    def __init__(
        self,
        limiter: Limiter,
        adapters: AdapterRegistry,
        metrics: GatewayMetrics,
        capacity: int | None = None,
    ):
        self.limiter = limiter
        self.adapters = adapters
        self.metrics = metrics
        # Requests admitted at once, gateway-wide (engine batch + queue). Past it, new
        # requests are refused at once: a queue without bound only turns overload into
        # timeouts for everyone and memory growth.
        self.capacity = capacity
        self.in_flight = 0
        self.recent_labels: OrderedDict[str, dict[str, str]] = OrderedDict()  # for queue time

    @asynccontextmanager
    async def admitted(self, prepared: PreparedChat) -> AsyncIterator[Admission]:
        """Charge the tenant's limits and pin the adapter version for one request.

        Both are released when the request ends, however it ends; unused tokens of the
        reservation (prompt + max_tokens) go back to the tenant's token budget.
        """
        params, tenant = prepared.params, prepared.tenant
        labels = self.metrics.request_labels(
            tenant.name if tenant else None,
            prepared.adapter_name,
            schema_label(prepared.constraint),
            prepared.endpoint,
        )
        recorder = RequestRecorder(self.metrics, labels)
        self.recent_labels[params.request_id] = labels
        while len(self.recent_labels) > RECENT_REQUESTS:
            self.recent_labels.popitem(last=False)
        if self.capacity is not None and self.in_flight >= self.capacity:
            recorder.rejected("overloaded", code="overloaded")
            raise errors.Overloaded(
                f"the gateway is at capacity ({self.capacity} requests in flight); retry shortly"
            )
        reserve = len(params.prompt_token_ids) + params.max_tokens
        try:
            lease = self.limiter.admit(tenant, reserve) if tenant else None
        except errors.RateLimited as exc:
            recorder.rejected(exc.reason)
            raise
        admission = Admission(params, recorder)
        running = self.metrics.requests_running.labels(tenant=labels["tenant"])
        running.inc()
        self.in_flight += 1
        code: str | None = "internal_error"
        try:
            if prepared.adapter is None:
                yield admission
            else:
                async with self.adapters.lease(prepared.adapter) as lora:
                    admission.params = replace(params, lora=lora)
                    yield admission
            code = None
        except errors.GatewayError as exc:
            code = exc.code
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            running.dec()
            recorder.finish(code)
            if lease is not None:
                lease.release(admission.num_tokens)
