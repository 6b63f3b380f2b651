"""Admission: what happens between a checked request and the engine, and after it.

A request is charged to its tenant's limits (its schema, if new, to the tenant's
compile budget; under outlines a client's schema is then built once in a sandbox, see
``grammar_guard``), waits for an engine slot in fair order, is pinned to the adapter
version current at that moment (a lease the registry honours across promotions and
evictions), and measured; all of it is undone or recorded exactly once when it ends,
however it ends. Its deadline starts here and bounds the wait and the engine work.

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
from typing import Protocol

from gateway import errors
from gateway.engine.types import GenerationParams
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.service.deadline import Deadline
from gateway.service.fair_queue import FairQueue
from gateway.service.grammar_guard import OutlinesGuard
from gateway.service.recording import RequestRecorder
from gateway.service.schema_names import INLINE
from gateway.service.types import PreparedChat
from gateway.service.validation import Constraint
from gateway.tenancy import Limiter, SchemaBudget, Tenant

RECENT_REQUESTS = 10_000  # engine stats name requests by id after they finish
FAILED_COMPILES = 4096  # schemas whose grammar the engine could not build, remembered


def schema_label(constraint: Constraint | None) -> str | None:
    """A named schema's name (an operator created it); ``inline`` for any client's own."""
    if constraint is None:
        return None
    if constraint.schema is None:
        return constraint.name  # json_object
    return INLINE if constraint.schema.inline else constraint.schema.name


class LoadListener(Protocol):
    def started(self) -> None: ...

    def finished(self) -> None: ...


@dataclass
class Admission:
    params: GenerationParams  # with the pinned adapter version
    recorder: RequestRecorder
    deadline: Deadline  # bounds every wait on the engine
    num_tokens: int | None = None  # used tokens, refunded against the reservation


class AdmissionControl:
    def __init__(
        self,
        limiter: Limiter,
        adapters: AdapterRegistry,
        metrics: GatewayMetrics,
        slots: FairQueue,
        schema_budget: SchemaBudget,
        request_timeout_s: float,
        capacity: int | None = None,
        grammar_guard: OutlinesGuard | None = None,
    ):
        self.limiter = limiter
        self.adapters = adapters
        self.metrics = metrics
        self.slots = slots
        self.schema_budget = schema_budget
        self.request_timeout_s = request_timeout_s  # the longest deadline a request gets
        # Requests admitted at once, gateway-wide (engine slots + those waiting for one).
        # Past it, new requests are refused at once: a queue without bound only turns
        # overload into timeouts for everyone and memory growth.
        self.capacity = capacity
        self.grammar_guard = grammar_guard  # only where the engine runs outlines
        # Told when a request is admitted and when it ends (fine-tuning pauses for it).
        self.load_listener: LoadListener | None = None
        self.in_flight = 0
        self.recent_labels: OrderedDict[str, dict[str, str]] = OrderedDict()  # for queue time
        # digest -> the error: a schema the engine failed to compile is not sent again
        # (each try costs a compile timeout, and a timed-out build keeps running).
        self.failed_compiles: OrderedDict[str, errors.SchemaCompileFailed] = OrderedDict()

    @asynccontextmanager
    async def admitted(self, prepared: PreparedChat) -> AsyncIterator[Admission]:
        """Charge the tenant's limits, wait for an engine slot and pin the adapter version
        for one request, under its deadline (``timeout_s``, at most the server's).

        All are released when the request ends, however it ends; unused tokens of the
        reservation (prompt + max_tokens) go back to the tenant's token budget.
        """
        asked, longest = prepared.timeout_s, self.request_timeout_s
        deadline = Deadline.after(longest if asked is None else min(asked, longest))
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
        schema = prepared.constraint.schema if prepared.constraint else None
        failed = self.failed_compiles.get(schema.digest) if schema is not None else None
        if failed is not None:
            recorder.finish(failed.code)
            raise errors.SchemaCompileFailed(
                f"{failed.message} (an earlier request with this schema)",
                param=failed.param, hint=failed.hint,
            )  # fmt: skip
        is_new_schema = schema is not None and self.schema_budget.is_new(schema.digest)
        payer = tenant if schema is not None and schema.inline else None  # the client's own
        try:
            if payer is not None and schema is not None:
                self.schema_budget.check(payer, schema.digest)
            lease = await self.limiter.admit_async(tenant, reserve) if tenant else None
        except errors.RateLimited as exc:
            recorder.rejected(exc.reason, code=exc.code)
            raise
        if schema is not None:  # every limit said yes: charge the compile
            self.schema_budget.see(schema.digest, payer.name if payer else None)
        admission = Admission(params, recorder, deadline)
        running = self.metrics.requests_running.labels(tenant=labels["tenant"])
        running.inc()
        self.in_flight += 1
        if self.load_listener is not None:
            self.load_listener.started()
        code: str | None = "internal_error"
        try:
            if self.grammar_guard is not None and schema is not None:
                await deadline.bound(self.grammar_guard.check(schema))
            async with self._slot(tenant, deadline):
                recorder.slot_taken(is_new_schema)
                if prepared.adapter is None:
                    yield admission
                else:
                    async with self.adapters.lease(prepared.adapter) as lora:
                        admission.params = replace(params, lora=lora)
                        yield admission
            code = None
        except errors.GatewayError as exc:
            code = exc.code
            if isinstance(exc, errors.SchemaCompileFailed) and schema is not None:
                self.failed_compiles[schema.digest] = exc
                while len(self.failed_compiles) > FAILED_COMPILES:
                    self.failed_compiles.popitem(last=False)
            if isinstance(exc, errors.DeadlineExceeded):
                short = {k: labels[k] for k in ("tenant", "adapter")}
                self.metrics.deadline_exceeded.labels(**short).inc()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            if self.load_listener is not None:
                self.load_listener.finished()
            running.dec()
            recorder.finish(code)
            if lease is not None:
                lease.release(admission.num_tokens)

    @asynccontextmanager
    async def _slot(self, tenant: Tenant | None, deadline: Deadline) -> AsyncIterator[None]:
        """One of the engine's slots, waited for in fair order until the deadline."""
        name, weight = (tenant.name, tenant.weight) if tenant else ("open", 1.0)
        await deadline.bound(self.slots.acquire(name, weight))
        try:
            yield
        finally:
            self.slots.release()
