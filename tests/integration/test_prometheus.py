"""A real Prometheus server (Debian's ``prometheus``) scrapes the real gateway under load,
with the scrape config and alert rules from ``deploy/prometheus`` (its bearer token is the
gateway's metrics key, in the file the config names); the test asks it, over its HTTP
API, for what an on-call engineer would look at."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx
import pytest
import yaml

from gateway.config import REPO_ROOT
from gateway_tools.launch import free_port
from tests.integration.conftest import ADMIN_KEY, METRICS_KEY, TENANT_KEYS, Gateway

pytestmark = pytest.mark.integration
DEPLOY = REPO_ROOT / "deploy" / "prometheus"
SENT = {"alpha": 6, "beta": 4}
T = TypeVar("T")


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: scripts/test.sh installs Debian's package")
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"][0]["static_configs"] = [
        {"targets": [gateway.url.removeprefix("http://")]}
    ]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    key_file = work / config["scrape_configs"][0]["authorization"]["credentials_file"]
    key_file.parent.mkdir(parents=True)
    key_file.write_text(METRICS_KEY + "\n")  # Prometheus trims the newline
    shutil.copy(DEPLOY / "alerts.yml", work / "alerts.yml")
    url = f"http://127.0.0.1:{free_port()}"
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address={url[7:]}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            try:
                if httpx.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(prometheus: str, promql: str) -> list[dict]:
    res = httpx.get(prometheus + "/api/v1/query", params={"query": promql}, timeout=30)
    assert res.status_code == 200, res.text
    return res.json()["data"]["result"]


def by_tenant(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("tenant", ""): float(r["value"][1]) for r in result}


def wait_for(check: Callable[[], T], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_metrics_need_the_metrics_key(gateway: Gateway) -> None:
    """What Prometheus is given opens /metrics; a tenant's key, the admin key or none do not."""
    assert gateway.get("/metrics", key=METRICS_KEY).status_code == 200
    for key in (TENANT_KEYS["alpha"], ADMIN_KEY):
        assert gateway.get("/metrics", key=key).status_code == 401
    assert httpx.get(gateway.url + "/metrics").status_code == 401


def test_prometheus_sees_every_tenant_request(gateway: Gateway, prometheus: str) -> None:
    counted = "sum by (tenant) (gateway_requests_total)"
    assert wait_for(lambda: query(prometheus, 'up{job="lora-gateway"} == 1')), "no scrape"
    time.sleep(1.5)  # one more scrape, so "before" is the value the gateway holds now
    before = by_tenant(query(prometheus, counted))

    def send(tenant: str) -> int:
        body = {"text": "I was charged twice for my order", "adapter": "demo"}
        return gateway.post("/v1/classify", body, key=TENANT_KEYS[tenant]).status_code

    jobs = [t for t, n in SENT.items() for _ in range(n)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(send, jobs)) == [200] * len(jobs)

    def counts_arrived() -> dict[str, float]:
        now = by_tenant(query(prometheus, counted))
        grew = {t: now.get(t, 0) - before.get(t, 0) for t in SENT}
        return grew if grew == {t: float(n) for t, n in SENT.items()} else {}

    assert wait_for(counts_arrived), by_tenant(query(prometheus, counted))
    # The rate window spans the whole load, however long this machine took: a fixed 1m
    # window holds no request of a tenant whose requests all ended earlier (p95 = NaN).
    window = math.ceil(time.monotonic() - started) + 15
    p95 = by_tenant(
        query(
            prometheus,
            "histogram_quantile(0.95, sum by (tenant, le) "
            f"(rate(gateway_request_duration_seconds_bucket[{window}s])))",
        )
    )
    for tenant in SENT:
        assert tenant in p95 and math.isfinite(p95[tenant]) and p95[tenant] > 0, p95
    rules = httpx.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"GatewayEngineNotReady"}
    assert query(prometheus, "gateway_ready")[0]["value"][1] == "1"
    print(f"prometheus scrape test: sent {SENT}, p95 seconds {p95}")
