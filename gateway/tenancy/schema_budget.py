"""Each tenant's budget of new schemas per minute.

The engine compiles a grammar the first time it sees a schema (XGrammar: seconds for
a complex real-world one), inside the engine that every tenant shares; later requests
with the same schema reuse it. So a tenant sending a stream of distinct schemas could
stall everyone. A schema this server has already seen, from any tenant, costs nothing;
a new one costs one unit of its tenant's budget, counted over a sliding minute.
Like ``Limiter``: check first, charge after every other limit said yes, one thread.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from gateway import errors
from gateway.tenancy.tenants import Tenant

WINDOW_S = 60.0
MAX_SEEN = 10_000  # digests remembered; past it the least recently used is charged again


class SchemaBudget:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_seen: int = MAX_SEEN,
    ) -> None:
        self.per_minute = per_minute  # the server's default; a tenant may have its own
        self.clock = clock
        self.max_seen = max_seen
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._charged: dict[str, deque[float]] = {}  # tenant -> times of its new schemas

    def is_new(self, digest: str) -> bool:
        return digest not in self._seen

    def check(self, tenant: Tenant, digest: str) -> None:
        """Raise ``SchemaBudgetExceeded`` if ``digest`` is new and the tenant's budget
        for this minute is spent; charges nothing."""
        if not self.is_new(digest):
            return
        own = tenant.schema_compile_budget_per_minute
        limit = self.per_minute if own is None else own
        times = self._window(tenant.name)
        if len(times) >= limit:
            wait = times[0] + WINDOW_S - self.clock()
            raise errors.SchemaBudgetExceeded(
                f"tenant {tenant.name!r} sent {len(times)} new schemas in the last minute "
                f"(budget {limit}); a schema this server has seen before costs nothing",
                retry_after=max(1.0, math.ceil(wait)),
                reason="schema_budget",
                hint="reuse schemas (a named schema, or the same inline schema), or retry "
                "after Retry-After",
            )

    def see(self, digest: str, tenant: str | None) -> None:
        """Remember ``digest``; charge ``tenant`` (None: nobody, open mode or an
        operator's schema) when it was new."""
        if self.is_new(digest) and tenant is not None:
            self._window(tenant).append(self.clock())
        self._seen[digest] = None
        self._seen.move_to_end(digest)
        while len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)

    def _window(self, tenant: str) -> deque[float]:
        times = self._charged.setdefault(tenant, deque())
        now = self.clock()
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        return times
