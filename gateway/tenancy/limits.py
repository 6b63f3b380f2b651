"""Per-tenant limits: requests running at once, request rate and token rate.

Rates are token buckets refilled continuously (a minute's worth of capacity). A
request is checked against every limit before anything is charged, so a refusal costs
the tenant nothing. All calls come from the one event-loop thread, so no locks.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import NoReturn

from gateway import errors
from gateway.tenancy.tenants import Tenant

# Float refill can land a hair short of a whole request after exactly the advertised wait;
# a caller told "retry in 20 s" must be admitted at 20 s.
_SLACK = 1e-9


class Bucket:
    """A continuously refilled budget; it starts full so a fresh tenant is not held back."""

    def __init__(
        self,
        rate_per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_minute = rate_per_minute
        self.rate = rate_per_minute / 60.0  # per second
        self.capacity = rate_per_minute if capacity is None else capacity
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now). Charges nothing, so a
        caller can check several buckets before charging any."""
        self._refill()
        missing = amount - self.level
        return 0.0 if missing <= _SLACK else missing / self.rate

    def take(self, amount: float) -> float:
        """Charge ``amount`` and return 0.0, or charge nothing and return the wait."""
        wait = self.wait_for(amount)
        if wait == 0.0:
            self.level -= amount
        return wait

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now


class Lease:
    """One admitted request; ``release`` ends it (idempotent) and refunds unused tokens."""

    def __init__(self, limiter: Limiter, tenant: str, reserved: int) -> None:
        self._limiter = limiter
        self.tenant = tenant
        self.reserved = reserved
        self._released = False

    def release(self, actual_tokens: int | None = None) -> None:
        if self._released:
            return
        self._released = True
        self._limiter._finish(self, actual_tokens)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Limiter:
    """Every tenant's limits in one place; buckets are made on first use and remade
    (full) when an operator changes the tenant's rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._running: Counter[str] = Counter()
        self._requests: dict[str, Bucket] = {}
        self._tokens: dict[str, Bucket] = {}
        self.rejections: Counter[tuple[str, str]] = Counter()  # (tenant, reason)

    def in_flight(self, tenant: str) -> int:
        return self._running[tenant]

    def admit(self, tenant: Tenant, estimated_tokens: int) -> Lease:
        """Admit one request or raise; a refusal charges nothing.

        ``estimated_tokens`` is an upper bound (prompt + max_tokens); ``Lease.release``
        refunds what the request did not use.
        """
        name = tenant.name
        tokens = self._bucket(self._tokens, name, tenant.tokens_per_minute)
        if tokens is not None and estimated_tokens > tokens.capacity:  # waiting would never help
            raise errors.InvalidRequest(
                f"this request needs {estimated_tokens} tokens (prompt + max_tokens); the "
                f"tenant's token rate allows at most {tokens.capacity:g} per minute",
                param="max_tokens",
            )
        if tenant.max_concurrency is not None and self._running[name] >= tenant.max_concurrency:
            self._refuse(name, "concurrency", f"tenant {name!r} has {self._running[name]} "
                         f"requests running (limit {tenant.max_concurrency})", 1.0)  # fmt: skip
        requests = self._bucket(self._requests, name, tenant.requests_per_minute)
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            self._refuse(name, "requests", f"tenant {name!r} is over "
                         f"{tenant.requests_per_minute:g} requests per minute", wait)  # fmt: skip
        if tokens is not None and (wait := tokens.wait_for(estimated_tokens)) > 0:
            self._refuse(name, "tokens", f"tenant {name!r} is over "
                         f"{tenant.tokens_per_minute:g} tokens per minute", wait)  # fmt: skip
        # both buckets said yes and a monotonic clock only refills them, so neither refuses
        if requests is not None:
            requests.take(1)
        if tokens is not None:
            tokens.take(estimated_tokens)
        self._running[name] += 1
        return Lease(self, name, estimated_tokens)

    async def admit_async(self, tenant: Tenant, estimated_tokens: int) -> Lease:
        """``admit``, awaitable like ``RedisLimiter.admit``, so callers can use either."""
        return self.admit(tenant, estimated_tokens)

    def _finish(self, lease: Lease, actual_tokens: int | None) -> None:
        self._running[lease.tenant] -= 1
        bucket = self._tokens.get(lease.tenant)
        if bucket is not None and actual_tokens is not None and actual_tokens < lease.reserved:
            bucket.give_back(lease.reserved - actual_tokens)

    def _bucket(self, buckets: dict[str, Bucket], name: str, rate: float | None) -> Bucket | None:
        if rate is None:
            return None
        bucket = buckets.get(name)
        if bucket is None or bucket.rate_per_minute != rate:  # new tenant, or its limit changed
            # a request bucket holds at least one request, or a rate under 1/min never admits
            capacity = max(rate, 1.0) if buckets is self._requests else rate
            bucket = buckets[name] = Bucket(rate, capacity, self.clock)
        return bucket

    def _refuse(self, tenant: str, reason: str, message: str, wait: float) -> NoReturn:
        self.rejections[(tenant, reason)] += 1
        raise errors.RateLimited(message, retry_after=max(1.0, math.ceil(wait)), reason=reason)
