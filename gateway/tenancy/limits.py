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

from gateway import errors
from gateway.tenancy.tenants import Tenant


class Bucket:
    def __init__(self, rate_per_minute: float, clock: Callable[[], float]) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = rate_per_minute
        self.level = rate_per_minute
        self.clock = clock
        self.updated = clock()

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now). Charges nothing."""
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


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
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._running: Counter[str] = Counter()
        self._requests: dict[str, Bucket] = {}
        self._tokens: dict[str, Bucket] = {}
        self.rejections: Counter[tuple[str, str]] = Counter()  # (tenant, reason)

    def in_flight(self, tenant: str) -> int:
        return self._running[tenant]

    def admit(self, tenant: Tenant, estimated_tokens: int) -> Lease:
        name = tenant.name
        if tenant.max_concurrency is not None and self._running[name] >= tenant.max_concurrency:
            self._refuse(name, "concurrency", f"tenant {name!r} has {self._running[name]} "
                         f"requests running (limit {tenant.max_concurrency})", 1.0)  # fmt: skip
        requests = self._bucket(self._requests, name, tenant.requests_per_minute)
        tokens = self._bucket(self._tokens, name, tenant.tokens_per_minute)
        if tokens is not None and estimated_tokens > tokens.capacity:
            raise errors.InvalidRequest(
                f"this request reserves {estimated_tokens} tokens (prompt + max_tokens); the "
                f"tenant's token rate allows at most {tokens.capacity:.0f} per minute",
                param="max_tokens",
            )
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            self._refuse(name, "requests", f"tenant {name!r} is over "
                         f"{tenant.requests_per_minute:g} requests per minute", wait)  # fmt: skip
        if tokens is not None and (wait := tokens.wait_for(estimated_tokens)) > 0:
            self._refuse(name, "tokens", f"tenant {name!r} is over "
                         f"{tenant.tokens_per_minute:g} tokens per minute", wait)  # fmt: skip
        if requests is not None:
            requests.take(1)
        if tokens is not None:
            tokens.take(estimated_tokens)
        self._running[name] += 1
        return Lease(self, name, estimated_tokens)

    def _finish(self, lease: Lease, actual_tokens: int | None) -> None:
        self._running[lease.tenant] -= 1
        bucket = self._tokens.get(lease.tenant)
        if bucket is not None and actual_tokens is not None and actual_tokens < lease.reserved:
            bucket.give_back(lease.reserved - actual_tokens)

    def _bucket(self, buckets: dict[str, Bucket], name: str, rate: float | None) -> Bucket | None:
        if rate is None:
            return None
        bucket = buckets.get(name)
        if bucket is None or bucket.capacity != rate:  # new tenant, or its limit changed
            bucket = buckets[name] = Bucket(rate, self.clock)
        return bucket

    def _refuse(self, tenant: str, reason: str, message: str, wait: float) -> None:
        self.rejections[(tenant, reason)] += 1
        raise errors.RateLimited(message, retry_after=max(1.0, math.ceil(wait)))
