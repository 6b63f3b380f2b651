"""Per-tenant limits shared by every gateway replica, with the state in Redis.

Why: ``Limiter`` keeps its token buckets and running counts in the replica's memory, so
N replicas behind a load balancer each admit a tenant's full limit, N times it in all.
``RedisLimiter`` gives the same limits (request rate, token rate, requests running at
once) and the same refusals, but counts in one place that every replica shares.

How, and why so:

* One Lua script per admission. Redis runs a script alone, start to end, so checking all
  three limits, then charging all of them (or, on a refusal, charging nothing) is one
  atomic step: two replicas can never both see the last free request and both take it.
  A release is a second script (end the lease, refund unused tokens), sent in the
  background because it is called from a ``finally:`` that must not wait.
* Redis's clock, not the replicas'. The script reads ``TIME`` itself, so replicas whose
  clocks disagree still refill the same bucket by the same amount.
* Buckets as in ``Limiter``: full when first used, capacity a minute's worth (a request
  bucket holds at least one), refilled continuously; the rate is stored beside the level
  and a bucket whose tenant's rate changed is remade full.
* Requests running: a sorted set per tenant of lease ids scored by their expiry
  (now + ``lease_ttl_s``). Expired ids are dropped before counting, so the slots of a
  replica that died mid-request come free after ``lease_ttl_s`` rather than never; set it
  above the longest a request may run (the request timeout) or a slow request's slot is
  freed while it still runs.
* Every key expires a while after its last use: a bucket once it would have refilled
  (a missing bucket is a full one, so nothing changes), the running set once its newest
  lease would have expired. Idle tenants leave nothing behind.
* Redis down or slow (``timeout_s``): ``on_error="open"`` admits without counting (the
  limits lapse, the service stays up), ``"closed"`` refuses with 503
  ``rate_limiter_unavailable``; ``on_backend_error`` is told which, for a metric. The
  client keeps no broken connection, so counting resumes by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Literal, NoReturn

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import errors
from gateway.tenancy.tenants import Tenant

log = logging.getLogger(__name__)

WARN_EVERY_S = 10.0  # at most one warning about the backend in this long
# Connections to Redis per replica; an admission that finds none free waits (up to
# ``timeout_s``) rather than opening without bound under a burst.
MAX_CONNECTIONS = 64
# Errors that mean "the backend did not answer as it should", never a refusal.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# Errors after which a script may have run all the same (sent, but no reply in time).
AMBIGUOUS_ERRORS: tuple[type[BaseException], ...] = (RedisTimeoutError, TimeoutError)

# Shared by both scripts: the time in µs (an integer, exact in a double), numbers written
# back in full (Redis before 7 turns a Lua number into 14 significant digits), and
# a bucket's level now. Capacities as in ``Limiter``: a minute's worth, and at least one
# request for a request bucket, or a rate under 1/min would never admit.
_LUA_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function fmt(x)
  return string.format('%.17g', x)
end

local function capacity_of(key_kind, rate)
  if key_kind == 'req' then return math.max(rate, 1) end
  return rate
end

-- The bucket's level now, or nil where it has no (or another) rate: then it is new.
local function level_of(key, rate_s)
  local v = redis.call('HMGET', key, 'rate', 'level', 'updated')
  if not v[1] or (rate_s and v[1] ~= rate_s) then return nil, v[1] end
  local rate = tonumber(v[1])
  local elapsed = math.max(0, now - tonumber(v[3])) / 1000000
  return tonumber(v[2]) + elapsed * rate / 60, v[1]
end

local function store(key, key_kind, rate_s, level)
  local rate = tonumber(rate_s)
  local capacity = capacity_of(key_kind, rate)
  redis.call('HSET', key, 'rate', rate_s, 'level', fmt(math.min(capacity, level)),
             'updated', fmt(now))
  -- full again after capacity / rate: from then on a missing key is the same bucket
  redis.call('PEXPIRE', key, fmt(math.ceil(capacity / rate * 60000) + 1000))
end
"""

# KEYS: 1 request bucket, 2 token bucket, 3 running leases (sorted set)
# ARGV: 1 requests per minute, 2 tokens per minute ('' = no such limit), 3 tokens wanted,
#       4 max running ('' = none), 5 lease id, 6 lease ttl in µs
# Reply: {'ok'} | {'concurrency', running} | {'requests', wait_s} | {'tokens', wait_s}
_ADMIT_LUA = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"  # Redis < 5
    + _LUA_COMMON
    + """
local SLACK = 1e-9  -- as in Limiter: a caller told "retry in 20 s" is admitted at 20 s
local req_rate_s, tok_rate_s = ARGV[1], ARGV[2]
local wanted, max_running = tonumber(ARGV[3]), ARGV[4]

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now))  -- leases of replicas that died
if max_running ~= '' then
  local running = redis.call('ZCARD', KEYS[3])
  if running >= tonumber(max_running) then return {'concurrency', tostring(running)} end
end

local function check(key, key_kind, rate_s, amount)
  if rate_s == '' then return nil, 0 end
  local rate = tonumber(rate_s)
  local capacity = capacity_of(key_kind, rate)
  local level = level_of(key, rate_s)
  if level == nil then level = capacity end  -- new, idle long enough, or its rate changed
  level = math.min(capacity, level)
  local missing = amount - level
  if missing <= SLACK then return level, 0 end
  return level, missing / (rate / 60)
end

local req_level, req_wait = check(KEYS[1], 'req', req_rate_s, 1)
if req_wait > 0 then return {'requests', fmt(req_wait)} end
local tok_level, tok_wait = check(KEYS[2], 'tok', tok_rate_s, wanted)
if tok_wait > 0 then return {'tokens', fmt(tok_wait)} end

-- every limit said yes: charge them all
if req_level then store(KEYS[1], 'req', req_rate_s, req_level - 1) end
if tok_level then store(KEYS[2], 'tok', tok_rate_s, tok_level - wanted) end
local expires = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[3], fmt(expires), ARGV[5])
redis.call('PEXPIRE', KEYS[3], fmt(math.ceil(tonumber(ARGV[6]) / 1000) + 1000))
return {'ok'}
"""
)

# KEYS: 1 request bucket, 2 token bucket, 3 running leases
# ARGV: 1 lease id, 2 tokens to refund, 3 requests to refund (1 only to undo an admission)
# Only a lease still held refunds, so an undo sent for an admission that may never have
# happened (its reply timed out) or a second release cannot refund what was never charged.
# Refunds go into the bucket as it is now, capped at its capacity (Bucket.give_back); a
# bucket that expired was full, so there is nothing to refund into.
# Reply: 1 if the lease was held, 0 if not (expired, or never admitted)
_RELEASE_LUA = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    + _LUA_COMMON
    + """
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local function refund(key, key_kind, amount)
  if amount <= 0 then return end
  local level, rate_s = level_of(key, nil)
  if level then store(key, key_kind, rate_s, level + amount) end
end
refund(KEYS[2], 'tok', tonumber(ARGV[2]))
refund(KEYS[1], 'req', tonumber(ARGV[3]))
return 1
"""
)


class RedisLease:
    """One admitted request; ``release`` ends it (idempotent, never waits) and refunds the
    unused part of the token reservation, as ``Lease`` does."""

    def __init__(
        self,
        limiter: RedisLimiter,
        tenant: str,
        reserved: int,
        *,
        lease_id: str,
        counted: bool,
        charged_tokens: bool,
    ) -> None:
        self._limiter = limiter
        self.tenant = tenant
        self.reserved = reserved
        self.lease_id = lease_id
        self.counted = counted  # False: admitted without Redis (no limits, or Redis down)
        self.charged_tokens = charged_tokens
        self._released = False

    def release(self, actual_tokens: int | None = None) -> None:
        if self._released:
            return
        self._released = True
        self._limiter._finish(self, actual_tokens)

    def __enter__(self) -> RedisLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RedisLimiter:
    """``Limiter``'s limits, counted in Redis for all replicas together.

    ``on_error`` says what an admission does when Redis cannot be reached (or answers too
    late, ``timeout_s``): ``"open"`` admits it uncounted, ``"closed"`` refuses it (503).
    ``lease_ttl_s`` bounds how long a lease holds a concurrency slot if its replica never
    releases it (it died); it must exceed the longest a request may run.
    ``on_backend_error`` is called with ``"admitted"`` or ``"refused"`` on each such
    admission (a metric's hook).
    """

    def __init__(
        self,
        url: str,
        *,
        on_error: Literal["open", "closed"],
        lease_ttl_s: float,
        key_prefix: str = "gw:rl:",
        timeout_s: float = 0.5,
        on_backend_error: Callable[[str], None] | None = None,
    ) -> None:
        if on_error not in ("open", "closed"):
            raise ValueError(f"on_error must be 'open' or 'closed', not {on_error!r}")
        if lease_ttl_s <= 0 or timeout_s <= 0:
            raise ValueError("lease_ttl_s and timeout_s must be positive")
        self.on_error = on_error
        self.lease_ttl_s = lease_ttl_s
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self.on_backend_error = on_backend_error
        # No retries: a retried script could charge twice, and a connection that broke is
        # dropped (and a fresh one opened) on the next use anyway. Short socket timeouts
        # so a Redis that hangs cannot hold requests.
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._redis = Redis(connection_pool=self._pool)
        self._admit_script = self._redis.register_script(_ADMIT_LUA)  # EVALSHA, reloaded
        self._release_script = self._redis.register_script(_RELEASE_LUA)  # after NOSCRIPT
        self._running: Counter[str] = Counter()  # this replica's leases
        self._tasks: set[asyncio.Task[object]] = set()  # background work, kept referenced
        self._closed = False
        self._last_warning = -math.inf
        self._unwarned = 0  # warnings held back since the last one
        self.rejections: Counter[tuple[str, str]] = Counter()  # (tenant, reason)
        # "admitted" / "refused": admissions while Redis failed; "release": releases lost
        # (their slots come free after lease_ttl_s, their refunds are lost)
        self.backend_errors: Counter[str] = Counter()

    def in_flight(self, tenant: str) -> int:
        """Requests this replica is running for ``tenant`` (other replicas' not counted)."""
        return self._running[tenant]

    async def admit(self, tenant: Tenant, estimated_tokens: int) -> RedisLease:
        """Admit one request or raise, as ``Limiter.admit``; a refusal charges nothing.

        ``estimated_tokens`` is an upper bound (prompt + max_tokens); ``release`` refunds
        what the request did not use.
        """
        if self._closed:
            raise RuntimeError("the rate limiter is closed")
        name = tenant.name
        rpm, tpm, most = (
            tenant.requests_per_minute,
            tenant.tokens_per_minute,
            tenant.max_concurrency,
        )
        lease_id = uuid.uuid4().hex
        if rpm is None and tpm is None and most is None:  # nothing to count: no round trip
            return self._start(name, estimated_tokens, lease_id, counted=False, tokens=False)
        if tpm is not None and estimated_tokens > tpm:  # waiting would never help
            raise errors.InvalidRequest(
                f"this request needs {estimated_tokens} tokens (prompt + max_tokens); the "
                f"tenant's token rate allows at most {tpm:g} per minute",
                param="max_tokens",
            )
        args = [
            _rate(rpm),
            _rate(tpm),
            str(int(estimated_tokens)),
            "" if most is None else str(most),
            lease_id,
            str(max(1, round(self.lease_ttl_s * 1_000_000))),
        ]
        keys = self._keys(name)
        call = self._spawn(self._admit_script(keys=keys, args=args))
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await asyncio.shield(call)  # its outcome is wanted even if we go
        except BaseException as exc:
            # Cancelled, timed out or failed: if the script ran (or runs yet) and admitted,
            # undo that, or the slot and the charges would be lost to a request never run.
            charged = estimated_tokens if tpm is not None else 0
            call.add_done_callback(lambda done: self._undo(done, keys, lease_id, charged))
            if not isinstance(exc, BACKEND_ERRORS):
                raise
            return self._backend_failed(name, estimated_tokens, lease_id, exc)
        match reply:
            case ["ok"]:
                return self._start(
                    name, estimated_tokens, lease_id, counted=True, tokens=tpm is not None
                )
            case ["concurrency", running]:
                self._refuse(name, "concurrency", f"tenant {name!r} has {running} requests "
                             f"running (limit {most})", 1.0)  # fmt: skip
            case ["requests", wait]:
                self._refuse(name, "requests", f"tenant {name!r} is over {rpm:g} requests "
                             "per minute", float(wait))  # fmt: skip
            case ["tokens", wait]:
                self._refuse(name, "tokens", f"tenant {name!r} is over {tpm:g} tokens per "
                             "minute", float(wait))  # fmt: skip
        raise RuntimeError(f"unexpected reply from the rate-limit script: {reply!r}")

    async def admit_async(self, tenant: Tenant, estimated_tokens: int) -> RedisLease:
        """``admit`` under ``Limiter.admit_async``'s name, so callers can use either."""
        return await self.admit(tenant, estimated_tokens)

    async def aclose(self) -> None:
        """Finish the releases still under way (briefly), then close the connections."""
        self._closed = True
        pending = set(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=2 * self.timeout_s + 1)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self._redis.aclose(close_connection_pool=True)

    def _keys(self, tenant: str) -> list[str]:
        # one hash tag per tenant: a Redis Cluster keeps a script's keys on one node
        base = f"{self.key_prefix}{{{tenant}}}"
        return [f"{base}:req", f"{base}:tok", f"{base}:run"]

    def _start(
        self, tenant: str, reserved: int, lease_id: str, *, counted: bool, tokens: bool
    ) -> RedisLease:
        self._running[tenant] += 1
        return RedisLease(
            self, tenant, reserved, lease_id=lease_id, counted=counted, charged_tokens=tokens
        )

    def _finish(self, lease: RedisLease, actual_tokens: int | None) -> None:
        self._running[lease.tenant] -= 1
        if not self._running[lease.tenant]:
            del self._running[lease.tenant]
        if not lease.counted:
            return
        refund = 0
        if lease.charged_tokens and actual_tokens is not None and actual_tokens < lease.reserved:
            refund = lease.reserved - actual_tokens
        self._release_later(self._keys(lease.tenant), lease.lease_id, refund, 0)

    def _undo(
        self, call: asyncio.Task[object], keys: list[str], lease_id: str, tokens: int
    ) -> None:
        """An admission nobody waited for: give back all it charged, if it was admitted, or
        may have been (its reply timed out; the release script refunds only a lease that
        Redis holds)."""
        if call.cancelled():
            return
        failure = call.exception()
        if failure is None and call.result() != ["ok"]:
            return  # refused: charged nothing
        if failure is not None and not isinstance(failure, AMBIGUOUS_ERRORS):
            return  # it never ran
        self._release_later(keys, lease_id, tokens, 1)

    def _release_later(self, keys: list[str], lease_id: str, tokens: int, requests: int) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop (shutting down): the slot expires by itself
            self.backend_errors["release"] += 1
            return
        if self._closed:  # likewise
            self.backend_errors["release"] += 1
            return
        self._spawn(self._release(keys, lease_id, tokens, requests))

    async def _release(self, keys: list[str], lease_id: str, tokens: int, requests: int) -> None:
        try:
            await self._release_script(keys=keys, args=[lease_id, str(tokens), str(requests)])
        except BACKEND_ERRORS as exc:
            self.backend_errors["release"] += 1
            self._warn("could not release a rate-limit lease in Redis (its slot comes free "
                       f"after {self.lease_ttl_s:g} s): {exc!r}")  # fmt: skip

    def _spawn(self, work: Coroutine[object, object, object]) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _backend_failed(
        self, tenant: str, estimated_tokens: int, lease_id: str, exc: BaseException
    ) -> RedisLease:
        outcome = "admitted" if self.on_error == "open" else "refused"
        self.backend_errors[outcome] += 1
        if self.on_backend_error is not None:
            self.on_backend_error(outcome)
        self._warn(f"the rate-limit store (Redis) failed, requests are {outcome} "
                   f"(on_error={self.on_error!r}): {exc!r}")  # fmt: skip
        if self.on_error == "closed":
            raise errors.RateLimiterUnavailable(
                "the rate limiter's store cannot be reached; retry shortly"
            ) from exc
        return self._start(tenant, estimated_tokens, lease_id, counted=False, tokens=False)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY_S:
            self._unwarned += 1
            return
        held, self._unwarned, self._last_warning = self._unwarned, 0, now
        log.warning("%s%s", message, f" ({held} more since the last warning)" if held else "")

    def _refuse(self, tenant: str, reason: str, message: str, wait: float) -> NoReturn:
        self.rejections[(tenant, reason)] += 1
        raise errors.RateLimited(message, retry_after=max(1.0, math.ceil(wait)), reason=reason)


def _rate(rate: float | None) -> str:
    """A rate as the script gets and stores it ('' = no limit); compared as text, so every
    replica must write a rate the same way: Python's shortest round-trip repr."""
    return "" if rate is None else repr(float(rate))
