"""Adapters as a managed resource on the real gateway: hot-swap under load, bad uploads."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.conftest import TENANT_KEYS, Gateway

pytestmark = pytest.mark.integration

NUM_CLIENTS = 8
NUM_SWAPS = 20
ANSWER_WAIT_S = 300  # a bound for a hung engine, not a speed requirement
TEXTS = [
    "I was charged twice this month",
    "How do I reset my password?",
    "The app crashes when I upload a file",
    "What are your opening hours?",
]


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int
    version: str | None
    body: str


@dataclass(frozen=True)
class Swap:
    started: float
    finished: float
    version: str


def _add_version(gateway: Gateway, name: str, source: str, version: str) -> None:
    """A new version folder in the store (a copy of an existing one, renamed)."""
    target = gateway.store / name / version
    if not target.exists():
        shutil.copytree(gateway.store / name / source, target)
        manifest = json.loads((target / "manifest.json").read_text())
        (target / "manifest.json").write_text(json.dumps({**manifest, "version": version}))


def _possible_versions(answer: Answer, swaps: list[Swap], initial: str) -> set[str]:
    """Alias values that could have been current at some moment while the request ran."""
    before = [s for s in swaps if s.finished < answer.sent]
    possible = {before[-1].version if before else initial}
    possible |= {
        s.version for s in swaps if s.finished >= answer.sent and s.started <= answer.received
    }
    return possible


def test_hot_swap_under_load_fails_nothing(gateway: Gateway) -> None:
    _add_version(gateway, "demo", "v1", "v2")
    res = gateway.admin("POST", "/admin/adapters", {"path": "demo/v2"})
    assert res.status_code == 200, res.text
    assert gateway.admin("GET", "/admin/adapters").status_code == 200
    answers: list[Answer] = []
    swaps: list[Swap] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(i: int) -> None:
        key = TENANT_KEYS["alpha" if i % 2 else "beta"]
        with httpx.Client(timeout=300) as http:
            n = 0
            while not stop.is_set():
                body = {"text": TEXTS[(i + n) % len(TEXTS)], "adapter": "demo"}
                sent = time.monotonic()
                res = http.post(
                    gateway.url + "/v1/classify",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
                answer = Answer(
                    sent, time.monotonic(), res.status_code,
                    res.headers.get("x-gateway-adapter-version"), res.text,
                )  # fmt: skip
                with lock:
                    answers.append(answer)
                n += 1

    def answered_since(moment: float) -> None:
        """Wait until a request sent after ``moment`` is answered: paced by the engine's
        answers, not the wall clock, so a slow machine slows the test, never fails it."""
        deadline = time.monotonic() + ANSWER_WAIT_S
        while True:
            with lock:
                if any(a.sent > moment for a in answers):
                    return
            assert time.monotonic() < deadline, f"no answer in {ANSWER_WAIT_S} s"
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(NUM_CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        answered_since(0.0)
        for n in range(NUM_SWAPS):
            started = time.monotonic()
            if n % 2 == 0:
                res = gateway.admin("POST", "/admin/adapters/demo/promote", {"version": "v2"})
            else:
                res = gateway.admin("POST", "/admin/adapters/demo/rollback")
            assert res.status_code == 200, res.text
            swaps.append(Swap(started, time.monotonic(), res.json()["current"]))
            answered_since(swaps[-1].finished)  # each version serves between swaps
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    failed = [a for a in answers if a.status != 200]
    assert not failed, failed[:3]
    for answer in answers:
        assert answer.version in _possible_versions(answer, swaps, "v1"), answer
    served = {a.version for a in answers}
    assert served == {"v1", "v2"}  # both versions really served during the test
    assert gateway.admin("GET", "/admin/adapters").json()["adapters"]
    print(f"hot-swap test: {len(answers)} requests, {NUM_SWAPS} swaps, 0 failed")


def test_corrupt_and_foreign_adapters_are_refused_and_change_nothing(gateway: Gateway) -> None:
    before = gateway.admin("GET", "/admin/adapters").json()["adapters"]
    _add_version(gateway, "tenant-a", "v1", "corrupt")
    weights = gateway.store / "tenant-a" / "corrupt" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    res = gateway.admin("POST", "/admin/adapters", {"path": "tenant-a/corrupt"})
    assert res.status_code == 400 and res.json()["error"]["code"] == "adapter_invalid"

    _add_version(gateway, "tenant-a", "v1", "foreign")
    manifest_file = gateway.store / "tenant-a" / "foreign" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["base_model"] = {"name": "Llama-3.1-8B", "fingerprint": "0" * 64}
    manifest_file.write_text(json.dumps(manifest))
    res = gateway.admin("POST", "/admin/adapters", {"path": "tenant-a/foreign"})
    assert res.status_code == 400 and "another base model" in res.json()["error"]["message"]

    for path in ("../../etc/passwd", "/etc/passwd", "tenant-a/..", "%2e%2e/v1"):
        res = gateway.admin("POST", "/admin/adapters", {"path": path})
        assert res.status_code == 400, path
    assert gateway.admin("GET", "/admin/adapters").json()["adapters"] == before
    res = gateway.post("/v1/classify", {"text": "hello", "adapter": "tenant-a"})
    assert res.status_code == 200, res.text


def test_unload_frees_the_engine_slot_and_the_next_request_reloads(gateway: Gateway) -> None:
    res = gateway.admin("POST", "/admin/adapters/tenant-b/unload")
    assert res.status_code == 200, res.text
    listed = {a["name"]: a for a in gateway.admin("GET", "/admin/adapters").json()["adapters"]}
    assert listed["tenant-b"]["versions"][0]["loaded"] is False
    res = gateway.post("/v1/classify", {"text": "hello", "adapter": "tenant-b"})
    assert res.status_code == 200, res.text
    listed = {a["name"]: a for a in gateway.admin("GET", "/admin/adapters").json()["adapters"]}
    assert listed["tenant-b"]["versions"][0]["loaded"] is True


def test_tenant_errors_on_the_real_gateway(gateway: Gateway) -> None:
    res = httpx.post(gateway.url + "/v1/classify", json={"text": "hi"}, timeout=60)
    assert res.status_code == 401
    res = gateway.post(
        "/v1/classify", {"text": "hi", "adapter": "banking77"}, key=TENANT_KEYS["beta"]
    )
    assert res.status_code == 403 and res.json()["error"]["code"] == "adapter_forbidden"
    res = gateway.post("/v1/classify", {"text": "hi"}, key=TENANT_KEYS["beta"])
    assert res.status_code == 200 and res.headers["x-gateway-adapter"] == "demo"
