"""/v1/files and /v1/fine_tuning over HTTP, tenant by tenant: the stand-in worker
(``tests/unit/finetune/stand_in_worker.py``, a test double) trains, the engine test
double answers, everything else is the gateway's own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.tenancy import hash_key
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.conftest import script, started_client
from tests.unit.finetune.test_runner import STAND_IN
from tests.unit.tenancy_setup import auth

ACME, GLOBEX = "acme-key-0123456789abcdef", "globex-key-0123456789abcdef"
INITECH = "initech-key-0123456789abcdef"
ROWS = b'{"text": "I was billed twice", "intent": "billing"}\n{"text": "hi", "intent": "other"}\n'
ANSWER = '{"intent":"billing","confidence":0.9,"requires_human_agent":false}'


class Gateways:
    """``start(**settings)`` starts a gateway with fine-tuning on; ``stop()`` stops the
    last one (its lifespan ends: the runner stops), so the next start is a restart."""

    def __init__(self, launch: Callable[..., Iterator[TestClient]]) -> None:
        self.launch = launch
        self.running: list[Iterator[TestClient]] = []

    def start(self, **settings: Any) -> TestClient:
        self.running.append(self.launch(**settings))
        return next(self.running[-1])

    def stop(self) -> None:
        next(self.running.pop(), None)


@pytest.fixture
def gateways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateways]:
    monkeypatch.setattr("gateway.finetune.runner.WORKER", STAND_IN)
    store = tmp_path / "store"
    make_peft_folder(store / "acme-intents" / "v1", labels=["billing", "other"])
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"tenants": [
        {"name": "acme", "key_hashes": [hash_key(ACME)], "allowed_adapters": ["acme-intents"],
         "default_adapter": "acme-intents"},
        {"name": "globex", "key_hashes": [hash_key(GLOBEX)],
         "allowed_adapters": ["globex-intents"]},
        {"name": "initech", "key_hashes": [hash_key(INITECH)], "allowed_adapters": ["*"]},
    ]}))  # fmt: skip

    def launch(**extra: Any) -> Iterator[TestClient]:
        settings = Settings(
            adapter_store=store, adapters={"acme-intents": "v1"}, auth_mode="tenants",
            tenants_file=tenants, max_model_len=1024, max_tokens_cap=100, default_max_tokens=50,
            finetune_dir=tmp_path / "finetune", **extra,
        )  # fmt: skip
        engine = FakeEngine()
        script(engine, ANSWER)
        return started_client(settings, engine)

    found = Gateways(launch)
    yield found
    while found.running:
        found.stop()


def upload(client: TestClient, key: str, content: bytes = ROWS) -> Any:
    files = {"file": ("train.jsonl", content, "application/jsonl")}
    return client.post("/v1/files", files=files, data={"purpose": "fine-tune"}, headers=auth(key))


def create(client: TestClient, key: str, file_id: str, **fields: Any) -> Any:
    body = {"model": "base", "training_file": file_id, **fields}
    return client.post("/v1/fine_tuning/jobs", json=body, headers=auth(key))


def ended(client: TestClient, key: str, job_id: str) -> dict[str, Any]:
    """Polls like an SDK user; the limit only stops a hung test."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never ended")


def test_files_are_the_tenants_own(gateways: Gateways) -> None:
    client = gateways.start()
    record = upload(client, ACME).json()
    assert record["purpose"] == "fine-tune" and record["rows"] == 2
    assert client.get("/v1/files", headers=auth(ACME)).json()["data"] == [record]
    content = client.get(f"/v1/files/{record['id']}/content", headers=auth(ACME))
    assert content.content == ROWS
    for method, path in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        res = client.request(method, f"/v1/files/{record['id']}{path}", headers=auth(GLOBEX))
        assert res.status_code == 404 and res.json()["error"]["code"] == "file_not_found"
    assert client.get("/v1/files", headers=auth(GLOBEX)).json()["data"] == []
    assert client.get("/v1/files").status_code == 401
    res = client.delete(f"/v1/files/{record['id']}", headers=auth(ACME))
    assert res.json()["deleted"] is True


def test_uploads_training_cannot_read_are_refused(gateways: Gateways) -> None:
    client = gateways.start(finetune_max_file_bytes=2048)
    res = upload(client, ACME, b'{"text": "no label"}\n')
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_file"
    res = upload(client, ACME, ROWS * 40)
    assert res.status_code == 413 and res.json()["error"]["code"] == "file_too_large"


def test_a_job_ends_as_a_version_only_its_tenant_can_call(gateways: Gateways) -> None:
    client = gateways.start()
    file_id = upload(client, ACME).json()["id"]
    created = create(client, ACME, file_id, suffix="ok", hyperparameters={"n_epochs": 1})
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "queued"
    job = ended(client, ACME, created.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    model = job["fine_tuned_model"]
    assert model.startswith("acme-intents@ft-ok-")
    res = client.post("/v1/classify", json={"text": "refund", "adapter": model}, headers=auth(ACME))
    assert res.status_code == 200, res.text
    assert res.headers["x-gateway-adapter-version"] == model.split("@")[1]
    assert res.json()["intent"] == "billing"
    res = client.post("/v1/classify", json={"text": "refund"}, headers=auth(ACME))
    assert res.headers["x-gateway-adapter-version"] == "v1"  # not promoted: not asked to be
    other = client.post("/v1/classify", json={"text": "x", "adapter": model}, headers=auth(GLOBEX))
    assert other.status_code == 403 and other.json()["error"]["code"] == "adapter_forbidden"
    for path in ("", "/events", "/checkpoints"):
        res = client.get(f"/v1/fine_tuning/jobs/{job['id']}{path}", headers=auth(GLOBEX))
        assert res.status_code == 404, path
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=100",
                        headers=auth(ACME)).json()  # fmt: skip
    assert events["data"][-1]["message"].startswith("Validating training file")
    assert client.get("/v1/fine_tuning/jobs", headers=auth(GLOBEX)).json()["data"] == []


def test_a_job_needs_the_tenants_own_file_and_adapter(gateways: Gateways) -> None:
    client = gateways.start()
    file_id = upload(client, ACME).json()["id"]
    res = create(client, GLOBEX, file_id, gateway={"adapter": "acme-intents"})
    assert res.status_code == 404 and res.json()["error"]["code"] == "file_not_found"
    own = upload(client, INITECH).json()["id"]
    res = create(client, INITECH, own, gateway={"adapter": "acme-intents"})
    assert res.status_code == 403  # "*" lets initech call adapters, not add versions to them


def test_limits_and_cancel(gateways: Gateways) -> None:
    client = gateways.start(finetune_max_active_jobs=1)
    file_id = upload(client, ACME).json()["id"]
    running = create(client, ACME, file_id, suffix="hang").json()
    res = create(client, ACME, file_id, suffix="ok")
    assert res.status_code == 429 and res.json()["error"]["code"] == "fine_tuning_job_limit"
    assert int(res.headers["retry-after"]) >= 1
    res = client.post(f"/v1/fine_tuning/jobs/{running['id']}/cancel", headers=auth(ACME))
    assert res.status_code == 200 and res.json()["status"] == "cancelled"
    res = client.post(f"/v1/fine_tuning/jobs/{running['id']}/cancel", headers=auth(ACME))
    assert res.status_code == 409 and res.json()["error"]["code"] == "job_not_cancellable"


def test_a_queued_job_survives_a_restart(gateways: Gateways, tmp_path: Path) -> None:
    client = gateways.start()
    file_id = upload(client, ACME).json()["id"]
    running = create(client, ACME, file_id, suffix="hang").json()
    queued = create(client, ACME, file_id, suffix="ok").json()
    events = tmp_path / "finetune" / "jobs" / running["id"] / "events.jsonl"
    deadline = time.monotonic() + 10
    while not (events.exists() and "metrics" in events.read_text()):
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.01)
    gateways.stop()
    client = gateways.start()
    first = client.get(f"/v1/fine_tuning/jobs/{running['id']}", headers=auth(ACME)).json()
    assert first["status"] == "failed" and first["error"]["code"] == "interrupted"
    assert ended(client, ACME, queued["id"])["status"] == "succeeded"


def test_the_api_is_off_without_a_folder(client: TestClient) -> None:
    res = client.get("/v1/files")
    assert res.status_code == 404 and res.json()["error"]["code"] == "fine_tuning_disabled"
    assert json.loads(res.text)["error"]["hint"]
