"""Fair share end to end, with the real engine: a tenant's backlog does not become
another tenant's wait.

Its own gateway with two engine slots (``max_num_seqs`` 2) and fair share on (the
default). Tenant alpha queues eight long generations; tenant beta then sends one. In
arrival order beta would wait for all of alpha's backlog; in fair order it takes the
next free slot. Only the order in which answers complete is asserted, never a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from gateway.tenancy import hash_key
from gateway_tools.launch import LaunchError, RunningGateway, launch

pytestmark = pytest.mark.integration

KEYS = {"alpha": "fair-alpha-key-0123456789abcdef", "beta": "fair-beta-key-0123456789abcdef"}
METRICS_KEY = "fair-metrics-key-0123456789abcdef"
BACKLOG = 8  # alpha's requests: two run, six wait for a slot


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    work = tmp_path_factory.mktemp("fair-share")
    tenants = [{"name": name, "key_hashes": [hash_key(key)]} for name, key in KEYS.items()]
    (work / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}))
    env = {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": str(work / "tenants.yaml"),
           "GATEWAY_MAX_NUM_SEQS": "2", "GATEWAY_MAX_MODEL_LEN": "1024",
           "GATEWAY_MAX_TOKENS_CAP": "256", "GATEWAY_METRICS_KEY": METRICS_KEY}  # fmt: skip
    try:
        with launch(work / "gateway.log", adapters={}, store=work / "store", env=env) as running:
            yield running
    except LaunchError as exc:
        pytest.fail(str(exc))


def generate(url: str, tenant: str, done: list[str], tag: str) -> None:
    body = {"model": "base", "max_tokens": 48, "temperature": 0,
            "messages": [{"role": "user", "content": f"Count from 1 to 200, {tag}."}]}  # fmt: skip
    res = httpx.post(url + "/v1/chat/completions", json=body, timeout=300,
                     headers={"Authorization": f"Bearer {KEYS[tenant]}"})  # fmt: skip
    done.append(
        tag if res.status_code == 200 else f"{tag}: HTTP {res.status_code} {res.text[:200]}"
    )


def waiting(url: str, tenant: str) -> float:
    """The tenant's requests admitted and not finished (running or waiting for a slot)."""
    headers = {"Authorization": f"Bearer {METRICS_KEY}"}
    page = httpx.get(url + "/metrics", headers=headers, timeout=30).text
    prefix = f'gateway_requests_running{{tenant="{tenant}"}} '
    return next((float(line[len(prefix):]) for line in page.splitlines()
                 if line.startswith(prefix)), 0.0)  # fmt: skip


def test_a_tenants_backlog_does_not_hold_back_another_tenants_request(
    gateway: RunningGateway,
) -> None:
    done: list[str] = []
    alpha = [threading.Thread(target=generate, args=(gateway.url, "alpha", done, f"a{i}"))
             for i in range(BACKLOG)]  # fmt: skip
    for thread in alpha:
        thread.start()
    deadline = time.monotonic() + 60
    while waiting(gateway.url, "alpha") < BACKLOG:  # all of alpha's backlog is admitted
        assert time.monotonic() < deadline, "alpha's requests were never all admitted"
        time.sleep(0.05)
    generate(gateway.url, "beta", done, "b")
    for thread in alpha:
        thread.join(timeout=300)
    assert sorted(done) == sorted([*(f"a{i}" for i in range(BACKLOG)), "b"])
    after_beta = len(done) - 1 - done.index("b")
    # Fair order: beta takes the next free slot, ahead of alpha's six waiting requests,
    # so most of them finish after it (5 or 6 in our runs). Arrival order leaves none
    # after it (0 with fair_share off), or one that ran beside it.
    assert after_beta >= 2, done
