"""Two gateway replicas with real engines sharing Postgres, Redis and S3-compatible storage.

Everything is real and on loopback: PostgreSQL and Redis from Debian's packages, moto's S3
server, two ``gateway serve`` processes with the real vLLM engine (small KV caches, so
both fit beside the session's gateway). A small round-robin client stands in for the
load balancer and retries a request on the other replica when one cannot be reached, as
a Kubernetes Service or nginx upstream would. Measured numbers (promotion propagation,
the canary share) are printed and written to ``replicas.json`` in the test's temp folder,
and to ``$GATEWAY_REPLICAS_REPORT`` when set (docs/benchmarks/replicas/replicas.json).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import statistics
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.cluster import db
from gateway.cluster.pg_state import read_all
from gateway.cluster.pg_tenants import PgTenantDirectory
from gateway.config import REPO_ROOT
from gateway.tenancy import Tenant, hash_key
from gateway_tools.launch import LaunchError, RunningGateway, launch
from tests.servers.postgres_server import PostgresServer, postgres_server
from tests.servers.redis_server import RedisServer, redis_server
from tests.servers.s3_server import S3Server, s3_server

pytestmark = pytest.mark.integration

ADMIN_KEY = "replicas-admin-key-0123456789abcdef"
METRICS_KEY = "replicas-metrics-key-0123456789abcdef"
KEYS = {"alpha": "replicas-alpha-key-0123456789", "limited": "replicas-limited-key-012345",
        "metered": "replicas-metered-key-012345"}  # fmt: skip
LIMIT_PER_MINUTE = 4  # the limited tenant's requests per minute, across all replicas
RESYNC_S = 5.0  # the backstop: a replica that missed a notification catches up by then
PROMOTIONS = 20
CANARY_WEIGHT = 0.25
CANARY_REQUESTS = 200
DEMO = REPO_ROOT / "adapters" / "demo" / "v1"


@dataclass
class Cluster:
    a: RunningGateway
    b: RunningGateway
    postgres: PostgresServer
    redis: RedisServer
    s3: S3Server
    database_url: str
    work: Path
    results: dict

    def admin(self, replica: RunningGateway, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, replica.url + path, headers=headers, timeout=120, **kwargs)

    def metrics(self, replica: RunningGateway) -> str:
        headers = {"Authorization": f"Bearer {METRICS_KEY}"}
        return httpx.get(replica.url + "/metrics", headers=headers, timeout=30).text

    def record(self, key: str, value: object) -> None:
        self.results[key] = value
        body = json.dumps(self.results, indent=2) + "\n"
        (self.work / "replicas.json").write_text(body)
        if os.environ.get("GATEWAY_REPLICAS_REPORT"):  # docs/benchmarks/replicas/replicas.json
            report = Path(os.environ["GATEWAY_REPLICAS_REPORT"])
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(body)
        print(f"replicas: {key} = {json.dumps(value)}")


def chat(url: str, tenant: str = "alpha", model: str = "base") -> httpx.Response:
    body = {"model": model, "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "user", "content": "Say yes."}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=120)


class RoundRobin:
    """The load balancer: alternate replicas; a replica that cannot be reached (refused,
    reset) is skipped and the request goes to the next, as nginx's ``proxy_next_upstream
    error`` does. HTTP answers, errors included, are returned as they are."""

    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self._next = itertools.cycle(range(len(urls)))
        self._lock = threading.Lock()

    def chat(self, **kwargs: str) -> tuple[httpx.Response, int]:
        with self._lock:
            first = next(self._next)
        last: Exception | None = None
        for tries in range(len(self.urls)):
            url = self.urls[(first + tries) % len(self.urls)]
            try:
                return chat(url, **kwargs), tries
            except httpx.TransportError as exc:
                last = exc
        raise AssertionError(f"no replica answered: {last}")


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _tenants(url: str) -> None:
    directory = PgTenantDirectory(url, None)
    for name, key in KEYS.items():
        rpm = {"limited": LIMIT_PER_MINUTE, "metered": 10_000}.get(name)
        directory.upsert(Tenant(name=name, key_hashes=[hash_key(key)], requests_per_minute=rpm,
                                allowed_adapters=["*"]))  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        s3 = stack.enter_context(s3_server())
        url = pg.create_database("gateway")
        db.migrate(url)
        _tenants(url)
        shutil.copytree(DEMO, work / "store-a" / "demo" / "v1")
        common = {
            "GATEWAY_STATE_BACKEND": "postgres", "GATEWAY_STATE_DATABASE_URL": url,
            "GATEWAY_STATE_RESYNC_S": str(RESYNC_S),
            "GATEWAY_OBJECT_STORE_URL": "s3://gateway-adapters/adapters",
            "GATEWAY_OBJECT_STORE_ENDPOINT": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region,
            "GATEWAY_RATE_LIMIT_BACKEND": "redis", "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_AUTH_MODE": "tenants", "GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "GATEWAY_METRICS_KEY": METRICS_KEY,
            "GATEWAY_MAX_MODEL_LEN": "1024", "GATEWAY_MAX_TOKENS_CAP": "512",
            "GATEWAY_MAX_NUM_SEQS": "8", "GATEWAY_KV_CACHE_GIB": "0.5",
        }  # fmt: skip
        # A fails open when Redis is down, B fails closed: one run shows both behaviours.
        env_a = {**common, "GATEWAY_REPLICA_ID": "a", "GATEWAY_RATE_LIMIT_ON_REDIS_ERROR": "open"}
        env_b = {**common, "GATEWAY_REPLICA_ID": "b",
                 "GATEWAY_RATE_LIMIT_ON_REDIS_ERROR": "closed"}  # fmt: skip
        started: dict[str, RunningGateway] = {}

        def start(name: str, adapters: dict[str, str], env: dict[str, str]) -> None:
            cm = launch(work / f"{name}.log", adapters=adapters, store=work / f"store-{name}",
                        env=env)  # fmt: skip
            started[name] = cm.__enter__()
            stack.callback(cm.__exit__, None, None, None)

        try:  # A seeds demo/v1 from its store; B's store starts empty and fetches from S3
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(start, "a", {"demo": "v1"}, env_a),
                               pool.submit(start, "b", {}, env_b)]:  # fmt: skip
                    future.result()
        except LaunchError as exc:
            pytest.fail(str(exc))
        yield Cluster(started["a"], started["b"], pg, redis, s3, url, work, {})


def _current_on(cluster: Cluster, replica: RunningGateway) -> str | None:
    for adapter in cluster.admin(replica, "GET", "/admin/adapters").json()["adapters"]:
        if adapter["name"] == "demo":
            return adapter["current"]
    return None


def test_a_version_uploaded_to_one_replica_is_served_by_the_other(cluster: Cluster) -> None:
    deadline = time.monotonic() + RESYNC_S * 3
    while _current_on(cluster, cluster.b) != "v1":  # B adopts what A seeded
        assert time.monotonic() < deadline, "B never adopted demo/v1"
        time.sleep(0.2)
    res = cluster.admin(cluster.a, "POST", "/admin/adapters/upload",
                        params={"name": "demo", "version": "v2"}, content=_tar(DEMO))  # fmt: skip
    assert res.status_code == 200, res.text
    deadline = time.monotonic() + RESYNC_S * 3
    while True:
        versions = [v["version"] for a in cluster.admin(cluster.b, "GET", "/admin/adapters")
                    .json()["adapters"] if a["name"] == "demo" for v in a["versions"]]  # fmt: skip
        if "v2" in versions:
            break
        assert time.monotonic() < deadline, "B never registered demo/v2"
        time.sleep(0.2)
    pinned = chat(cluster.b.url, model="demo@v2")  # B fetched the files from S3 and serves them
    assert pinned.status_code == 200, pinned.text
    assert pinned.headers["x-gateway-adapter-version"] == "v2"
    assert (cluster.work / "store-b" / "demo" / "v2" / "adapter_model.safetensors").is_file()


def test_a_promotion_through_one_replica_is_served_by_the_other(cluster: Cluster) -> None:
    seconds = []
    for i in range(PROMOTIONS):
        target = "v2" if i % 2 == 0 else "v1"
        res = cluster.admin(cluster.a, "POST", "/admin/adapters/demo/promote",
                            json={"version": target})  # fmt: skip
        assert res.status_code == 200, res.text
        promoted = time.perf_counter()
        while _current_on(cluster, cluster.b) != target:
            assert time.perf_counter() - promoted < RESYNC_S * 3, f"promotion {i} never reached B"
            time.sleep(0.01)
        seconds.append(time.perf_counter() - promoted)
        served = chat(cluster.b.url, model="demo")
        assert served.status_code == 200, served.text
        assert served.headers["x-gateway-adapter-version"] == target
    seconds.sort()
    p95 = seconds[int(0.95 * (len(seconds) - 1))]
    cluster.record("promotion_propagation_s", {
        "n": len(seconds), "p50": statistics.median(seconds), "p95": p95, "max": seconds[-1],
    })  # fmt: skip
    assert p95 < RESYNC_S, "notifications should beat the periodic resync"
    events = cluster.admin(cluster.b, "GET", "/admin/adapters/demo/history").json()["events"]
    assert sum(e["action"] == "promote" and e["replica"] == "a" for e in events) == PROMOTIONS


def test_a_tenant_limit_holds_across_both_replicas_together(cluster: Cluster) -> None:
    balancer = RoundRobin(cluster.a.url, cluster.b.url)
    attempts = 3 * LIMIT_PER_MINUTE
    with ThreadPoolExecutor(attempts) as pool:
        answers = list(pool.map(lambda _: balancer.chat(tenant="limited")[0], range(attempts)))
    codes = sorted(r.status_code for r in answers)
    cluster.record("rate_limit", {"limit_per_minute": LIMIT_PER_MINUTE, "attempts": attempts,
                                  "admitted": codes.count(200)})  # fmt: skip
    assert codes == [200] * LIMIT_PER_MINUTE + [429] * (attempts - LIMIT_PER_MINUTE), codes
    assert all(r.headers.get("retry-after") for r in answers if r.status_code == 429)


def test_a_canary_gets_its_share_of_traffic_on_both_replicas(cluster: Cluster) -> None:
    res = cluster.admin(cluster.a, "POST", "/admin/adapters/demo/promote", json={"version": "v1"})
    assert res.status_code == 200, res.text
    res = cluster.admin(cluster.a, "POST", "/admin/adapters/demo/canary",
                        json={"version": "v2", "weight": CANARY_WEIGHT})  # fmt: skip
    assert res.status_code == 200, res.text
    deadline = time.monotonic() + RESYNC_S * 3
    while not any(a.get("canary") == "v2" for a in cluster.admin(
            cluster.b, "GET", "/admin/adapters").json()["adapters"]):  # fmt: skip
        assert time.monotonic() < deadline, "B never adopted the canary"
        time.sleep(0.1)
    balancer = RoundRobin(cluster.a.url, cluster.b.url)
    versions = []
    for _ in range(CANARY_REQUESTS):
        answer, _ = balancer.chat(model="demo")
        assert answer.status_code == 200, answer.text
        versions.append(answer.headers["x-gateway-adapter-version"])
    share = versions.count("v2") / len(versions)
    sd = (CANARY_WEIGHT * (1 - CANARY_WEIGHT) / CANARY_REQUESTS) ** 0.5
    cluster.record("canary", {"weight": CANARY_WEIGHT, "requests": CANARY_REQUESTS,
                              "share": share, "tolerance_4sd": 4 * sd})  # fmt: skip
    assert set(versions) <= {"v1", "v2"}
    assert abs(share - CANARY_WEIGHT) <= 4 * sd, share  # a false alarm: ~1 run in 15,000
    res = cluster.admin(cluster.b, "DELETE", "/admin/adapters/demo/canary")
    assert res.status_code == 200, res.text


def test_a_postgres_restart_does_not_stop_serving(cluster: Cluster) -> None:
    cluster.postgres.stop()
    try:
        for replica in (cluster.a, cluster.b):
            assert chat(replica.url, model="demo").status_code == 200  # served from the cache
        refused = cluster.admin(cluster.a, "POST", "/admin/adapters/demo/promote",
                                json={"version": "v2"})  # fmt: skip
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "state_unavailable"
        assert _current_on(cluster, cluster.a) == "v1"  # nothing changed
    finally:
        cluster.postgres.start()
    back = time.monotonic()
    reconnected = {}
    for name, replica in (("a", cluster.a), ("b", cluster.b)):  # both reconnect by themselves
        while not cluster.admin(replica, "GET", "/admin/state").json()["connected"]:
            assert time.monotonic() - back < 30, f"replica {name} never reconnected"
            time.sleep(0.05)
        reconnected[name] = round(time.monotonic() - back, 2)
    res = cluster.admin(cluster.a, "POST", "/admin/adapters/demo/promote", json={"version": "v2"})
    assert res.status_code == 200, res.text
    deadline = time.monotonic() + RESYNC_S * 3
    while _current_on(cluster, cluster.b) != "v2":
        assert time.monotonic() < deadline, "B missed the promotion after the restart"
        time.sleep(0.1)
    cluster.record("postgres_restart", {
        "served_while_down": True, "change_while_down": "503 state_unavailable",
        "reconnected_after_s": reconnected,
    })  # fmt: skip


def _counted(page: str, outcome: str) -> float:
    prefix = f'gateway_rate_limit_backend_errors_total{{outcome="{outcome}"}} '
    return sum(float(line[len(prefix) :]) for line in page.splitlines() if line.startswith(prefix))


def test_redis_down_fails_open_or_closed_as_configured_and_is_counted(cluster: Cluster) -> None:
    cluster.redis.stop()
    try:
        opened = chat(cluster.a.url, tenant="metered")  # A: fail open
        closed = chat(cluster.b.url, tenant="metered")  # B: fail closed
        assert opened.status_code == 200, opened.text
        assert closed.status_code == 503, closed.text
        assert closed.json()["error"]["code"] == "rate_limiter_unavailable"
        admitted = _counted(cluster.metrics(cluster.a), "admitted")
        refused = _counted(cluster.metrics(cluster.b), "refused")
        assert admitted >= 1 and refused >= 1
        assert chat(cluster.b.url, tenant="alpha").status_code == 200  # no limits: no Redis
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 30
    while (res := chat(cluster.b.url, tenant="metered")).status_code != 200:
        assert time.monotonic() < deadline, f"B never counted again: {res.text}"
        time.sleep(0.5)
    cluster.record("redis_down", {
        "a_fail_open": opened.status_code, "b_fail_closed": closed.status_code,
        "counted_admitted": admitted, "counted_refused": refused, "counting_again": True,
    })  # fmt: skip


def test_killing_a_replica_mid_load_loses_nothing(cluster: Cluster) -> None:
    before = read_all(cluster.database_url)
    balancer = RoundRobin(cluster.a.url, cluster.b.url)
    tree = psutil.Process(cluster.b.pid)
    victims = [tree, *tree.children(recursive=True)]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(balancer.chat, model="demo") for _ in range(60)]
        time.sleep(1.0)
        for process in victims:  # the replica and its engine, without a chance to clean up
            process.kill()
        answers = [f.result() for f in futures]
    retried = sum(tries > 0 for _, tries in answers)
    failed = [r.text for r, _ in answers if r.status_code != 200]
    cluster.record("replica_killed", {"requests": len(answers), "retried_elsewhere": retried,
                                      "failed": len(failed)})  # fmt: skip
    assert failed == [], failed  # each request in flight on B was retried on A
    assert retried >= 1, "no request reached B after the kill: kill earlier"
    after = read_all(cluster.database_url)
    assert after.aliases == before.aliases and after.records == before.records
    assert _current_on(cluster, cluster.a) == before.aliases["demo"].current
