"""``RedisLimiter`` against a real ``redis-server``: two limiters on one Redis stand for two
gateway replicas, and together they must admit what one ``Limiter`` would.

Redis's own clock drives the buckets, so nothing here fakes time: the rates are chosen so
that the refill during a test (well under a request or a refusal's margin) changes no
outcome. Only the lease-expiry test waits, polling until the slot comes free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import pytest
from redis.asyncio import Redis

from gateway import errors
from gateway.tenancy import Tenant, hash_key
from gateway.tenancy.redis_limits import RedisLease, RedisLimiter
from tests.servers.redis_server import RedisServer, redis_server, redis_server_fixture

server = redis_server_fixture()  # one redis-server for the module, emptied for each test

Make = Callable[..., RedisLimiter]


def tenant(name: str = "acme", **limits: Any) -> Tenant:
    return Tenant(name=name, key_hashes=[hash_key(f"k-{name}")], **limits)


async def settled(*limiters: RedisLimiter) -> None:
    """Wait for the releases sent in the background (``release`` never waits)."""
    for limiter in limiters:
        while limiter._tasks:
            await asyncio.gather(*limiter._tasks, return_exceptions=True)


async def refused(admission: Awaitable[RedisLease], reason: str) -> errors.RateLimited:
    with pytest.raises(errors.RateLimited) as caught:
        await admission
    assert caught.value.reason == reason
    assert caught.value.status_code == 429
    return caught.value


@pytest.fixture
async def make(server: RedisServer) -> AsyncIterator[Make]:
    """Limiters ("replicas") on the module's Redis, emptied first; all closed afterwards."""
    server.flushall()
    made: list[RedisLimiter] = []

    def _make(url: str = server.url, **options: Any) -> RedisLimiter:
        options.setdefault("on_error", "closed")
        options.setdefault("lease_ttl_s", 60.0)
        made.append(RedisLimiter(url, **options))
        return made[-1]

    yield _make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, to look at what the limiters left in Redis."""
    client = Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_two_replicas_together_admit_the_request_rate_once(make: Make) -> None:
    a, b = make(), make()
    acme = tenant(requests_per_minute=5)
    for limiter in (a, b, a, b, a):
        (await limiter.admit(acme, 10)).release()
    for limiter in (a, b):
        refusal = await refused(limiter.admit(acme, 10), "requests")
        assert "over 5 requests per minute" in refusal.message
        assert 1 <= refusal.retry_after <= 12  # one request per 12 s
        assert refusal.retry_after == int(refusal.retry_after)  # whole seconds, as Limiter
    assert a.rejections == {("acme", "requests"): 1}
    assert b.rejections == {("acme", "requests"): 1}
    (await b.admit(tenant("beta", requests_per_minute=5), 10)).release()  # per tenant
    await settled(a, b)


async def test_token_bucket_is_shared_and_refunds_reach_the_other_replica(
    make: Make, store: Redis
) -> None:
    a, b = make(), make()
    acme = tenant(tokens_per_minute=1000)
    with pytest.raises(errors.InvalidRequest, match=r"needs 1001 tokens.*at most 1000") as big:
        await a.admit(acme, 1001)  # waiting would never help
    assert big.value.param == "max_tokens"
    assert await store.keys("*") == []  # decided without Redis
    lease = await a.admit(acme, 800)
    refusal = await refused(b.admit(acme, 300), "tokens")  # ~200 left
    assert "over 1000 tokens per minute" in refusal.message
    assert refusal.retry_after in (5, 6)  # 100 short at 1000/60 per second
    lease.release(actual_tokens=100)  # 700 come back
    lease.release(actual_tokens=0)  # idempotent: no second refund
    await settled(a)
    second = await b.admit(acme, 850)  # only with the refund: ~900 there
    await refused(a.admit(acme, 200), "tokens")  # ~50 left: the 2nd release refunded nothing
    second.release(actual_tokens=900)  # used more than reserved: no refund, no charge
    await settled(b)
    await refused(a.admit(acme, 200), "tokens")
    (await a.admit(acme, 30)).release()  # no actual count: nothing refunded
    await settled(a)
    level = float(await store.hget("gw:rl:{acme}:tok", "level") or "nan")
    assert 0 <= level < 100  # 1000 - 800 + 700 - 850 - 30, plus the refill meanwhile
    assert a.rejections == {("acme", "tokens"): 2} and b.rejections == {("acme", "tokens"): 1}


async def test_concurrency_cap_is_shared_and_released(make: Make, store: Redis) -> None:
    a, b = make(), make()
    acme = tenant(max_concurrency=2)
    first, second = await a.admit(acme, 10), await b.admit(acme, 10)
    assert a.in_flight("acme") == 1 and b.in_flight("acme") == 1  # each its own
    for limiter in (a, b):
        refusal = await refused(limiter.admit(acme, 10), "concurrency")
        assert "has 2 requests running (limit 2)" in refusal.message
        assert refusal.retry_after == 1
    first.release()
    first.release()  # idempotent
    assert a.in_flight("acme") == 0
    await settled(a)
    with await b.admit(acme, 10):  # the slot a freed
        assert b.in_flight("acme") == 2
        await refused(a.admit(acme, 10), "concurrency")
    second.release()
    await settled(b)
    assert await store.zcard("gw:rl:{acme}:run") == 0
    assert a.rejections == {("acme", "concurrency"): 2}


async def test_a_lease_never_released_frees_its_slot_after_the_lease_ttl(
    make: Make, store: Redis
) -> None:
    crashed, survivor = make(lease_ttl_s=1.0), make(lease_ttl_s=1.0)
    acme = tenant(max_concurrency=1)
    await crashed.admit(acme, 10)  # its replica dies mid-request: never released
    await crashed.aclose()
    await refused(survivor.admit(acme, 10), "concurrency")
    deadline = time.monotonic() + 10
    while True:
        try:
            lease = await survivor.admit(acme, 10)
            break
        except errors.RateLimited:
            assert time.monotonic() < deadline, "the dead replica's slot never came free"
            await asyncio.sleep(0.1)
    lease.release()
    await settled(survivor)
    assert await store.zcard("gw:rl:{acme}:run") == 0


async def test_keys_expire_after_use(make: Make, store: Redis) -> None:
    a = make(lease_ttl_s=30.0)
    lease = await a.admit(tenant(requests_per_minute=2, tokens_per_minute=600), 10)
    for key, refill_s in (("req", 60), ("tok", 60), ("run", 30)):
        ttl_ms = await store.pttl(f"gw:rl:{{acme}}:{key}")
        assert 0 < ttl_ms <= (refill_s + 1) * 1000  # gone once it would be full (or empty)
    lease.release()
    await settled(a)


async def test_a_refusal_charges_nothing(make: Make) -> None:
    a, b = make(), make()
    acme = tenant(max_concurrency=1, requests_per_minute=3, tokens_per_minute=1000)
    lease = await a.admit(acme, 900)  # request 1 of 3
    for _ in range(3):  # concurrency refusals: no request, no tokens taken
        await refused(b.admit(acme, 50), "concurrency")
    lease.release()  # no actual count: the 900 stay spent
    await settled(a)
    for _ in range(3):  # token refusals: no request taken
        await refused(b.admit(acme, 200), "tokens")
    (await b.admit(acme, 50)).release()  # request 2 of 3
    await settled(b)
    (await a.admit(acme, 40)).release()  # request 3 of 3: the six refusals took none
    await settled(a)
    await refused(b.admit(acme, 1), "requests")
    assert b.rejections == {("acme", "concurrency"): 3, ("acme", "tokens"): 3,
                            ("acme", "requests"): 1}  # fmt: skip


async def test_a_changed_rate_remakes_the_bucket_full(make: Make, store: Redis) -> None:
    a, b = make(), make()
    acme = tenant(requests_per_minute=2)
    for _ in range(2):
        (await a.admit(acme, 1)).release()
    await refused(b.admit(acme, 1), "requests")
    raised = acme.model_copy(update={"requests_per_minute": 3.0})  # an operator's edit
    for _ in range(3):  # a full bucket of the new size
        (await b.admit(raised, 1)).release()
    await refused(a.admit(raised, 1), "requests")
    assert await store.hget("gw:rl:{acme}:req", "rate") == "3.0"
    await settled(a, b)


async def test_many_concurrent_admissions_admit_exactly_the_rate(make: Make) -> None:
    a, b = make(), make()
    acme = tenant(requests_per_minute=20)
    outcomes = await asyncio.gather(
        *(limiter.admit(acme, 1) for _ in range(25) for limiter in (a, b)),
        return_exceptions=True,
    )
    admitted = [o for o in outcomes if isinstance(o, RedisLease)]
    refusals = [o for o in outcomes if isinstance(o, errors.RateLimited)]
    assert len(admitted) == 20 and len(refusals) == 30, outcomes
    assert {r.reason for r in refusals} == {"requests"}
    assert a.in_flight("acme") + b.in_flight("acme") == 20
    for lease in admitted:
        lease.release()
    await settled(a, b)
    assert a.in_flight("acme") == b.in_flight("acme") == 0


async def test_tenants_without_limits_never_reach_redis(make: Make, store: Redis) -> None:
    dead = make("redis://127.0.0.1:1/0")  # nothing listens there
    with await dead.admit(tenant(), 10_000):
        assert dead.in_flight("acme") == 1
    assert dead.backend_errors == {}
    assert await store.keys("*") == []


async def test_redis_down_fails_open_or_closed_then_counts_again_once_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: dict[str, list[str]] = {"open": [], "closed": []}

    def limiter(url: str, mode: Literal["open", "closed"]) -> RedisLimiter:
        return RedisLimiter(url, on_error=mode, lease_ttl_s=60.0, timeout_s=0.5,
                            on_backend_error=outcomes[mode].append)  # fmt: skip

    acme = tenant(requests_per_minute=2)
    with redis_server() as own:  # stopped and restarted here: not the module's server
        fail_open, fail_closed = limiter(own.url, "open"), limiter(own.url, "closed")
        try:
            held = await fail_open.admit(acme, 1)  # counted: request 1 of 2
            own.stop()
            lease = await fail_open.admit(acme, 1)  # admitted uncounted
            assert not lease.counted and fail_open.in_flight("acme") == 2
            lease.release()  # nothing to do in Redis
            with pytest.raises(errors.RateLimiterUnavailable) as unavailable:
                await fail_closed.admit(acme, 1)
            assert unavailable.value.status_code == 503
            assert unavailable.value.code == "rate_limiter_unavailable"
            held.release()  # its release fails in the background, quietly
            await settled(fail_open, fail_closed)
            assert outcomes == {"open": ["admitted"], "closed": ["refused"]}
            assert fail_open.backend_errors == {"admitted": 1, "release": 1}
            assert fail_closed.backend_errors == {"refused": 1}
            assert fail_open.rejections == fail_closed.rejections == {}
            warned = [r for r in caplog.records if r.name == "gateway.tenancy.redis_limits"]
            assert len(warned) == 2  # one per limiter: at most one per 10 s each

            own.start()  # same port, empty (and without the scripts loaded)
            for replica in (fail_open, fail_closed):  # counting again, together
                (await replica.admit(acme, 1)).release()
            for replica in (fail_open, fail_closed):
                await refused(replica.admit(acme, 1), "requests")
            await settled(fail_open, fail_closed)
            assert outcomes == {"open": ["admitted"], "closed": ["refused"]}  # no new errors
        finally:
            await fail_open.aclose()
            await fail_closed.aclose()


async def test_a_hung_redis_cannot_hold_requests_and_an_abandoned_admission_is_undone() -> None:
    hung, acme = tenant("hung", requests_per_minute=1), tenant(requests_per_minute=1)
    with redis_server() as own:
        fail_open = RedisLimiter(own.url, on_error="open", lease_ttl_s=60.0, timeout_s=0.3)
        fail_closed = RedisLimiter(own.url, on_error="closed", lease_ttl_s=60.0, timeout_s=0.3)
        patient = RedisLimiter(own.url, on_error="closed", lease_ttl_s=60.0, timeout_s=30.0)
        try:
            (await fail_open.admit(tenant("warm", max_concurrency=9), 1)).release()
            await settled(fail_open)  # one connection open before Redis hangs
            own.pause()  # takes connections, never answers
            try:
                # bounded by timeout_s (wait_for only keeps a bug from hanging the run)
                lease = await asyncio.wait_for(fail_open.admit(hung, 1), 10)
                assert not lease.counted
                lease.release()
                with pytest.raises(errors.RateLimiterUnavailable):
                    await asyncio.wait_for(fail_closed.admit(hung, 1), 10)
                # A request cancelled (its client left) while its admission waits on Redis:
                # the script still runs once Redis answers, and must then be undone.
                waiting = asyncio.ensure_future(patient.admit(acme, 1))
                while not patient._tasks:  # the script call has started
                    await asyncio.sleep(0.01)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            finally:
                own.resume()
            await settled(patient, fail_open, fail_closed)
            # The undo gave the request back: the tenant's one a minute is still there.
            with await patient.admit(acme, 1):
                await refused(patient.admit(acme, 1), "requests")
            # The short-timeout replicas count again (a tenant of their own: whether their
            # timed-out admissions for "hung" ever ran is not knowable).
            fresh = tenant("fresh", requests_per_minute=1)
            lease = await fail_open.admit(fresh, 1)
            assert lease.counted
            lease.release()
            await refused(fail_closed.admit(fresh, 1), "requests")
            await settled(patient, fail_open, fail_closed)
            assert patient.backend_errors == {}
        finally:
            for replica in (fail_open, fail_closed, patient):
                await replica.aclose()


async def test_extreme_rates_keep_working(make: Make, store: Redis) -> None:
    """A rate far under one a minute: the bucket's expiry (years) is still a valid PEXPIRE."""
    a = make(lease_ttl_s=10_000_000.0)
    slow = tenant(requests_per_minute=1e-12, tokens_per_minute=1e12)
    (await a.admit(slow, 10)).release()
    refusal = await refused(a.admit(slow, 10), "requests")
    assert refusal.retry_after == 60 * 10**12
    assert await store.pttl("gw:rl:{acme}:req") > 10**16
    await settled(a)
