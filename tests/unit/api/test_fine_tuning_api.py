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
ADMIN_KEY = "admin-key-0123456789abcdef"
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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never ended: {job}")


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
    deadline = time.monotonic() + 60
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


def folders(tmp_path: Path) -> list[str]:
    jobs = tmp_path / "finetune" / "jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []


def storage_bytes(client: TestClient, tenant: str) -> float | None:
    metrics = client.app.state.services.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value(
        "gateway_fine_tuning_storage_bytes", {"tenant": tenant}
    )


def test_the_create_and_cancel_loop_is_stopped_and_leaves_no_folders(
    gateways: Gateways, tmp_path: Path
) -> None:
    """Issue 33: 20 create-then-cancel rounds wrote about 1 GB of job folders in 8.6 s."""
    client = gateways.start(finetune_jobs_per_hour=3)
    file_id = upload(client, ACME).json()["id"]
    for _ in range(3):
        job = create(client, ACME, file_id, suffix="hang").json()
        cancel = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=auth(ACME))
        assert cancel.json()["status"] == "cancelled"
        assert job["id"] not in folders(tmp_path)  # its copies went with the cancel
    res = create(client, ACME, file_id, suffix="hang")
    assert res.status_code == 429 and res.json()["error"]["code"] == "rate_limited"
    assert int(res.headers["retry-after"]) > 60  # the oldest of the hour's jobs ages out
    assert folders(tmp_path) == []
    other = create(client, GLOBEX, upload(client, GLOBEX).json()["id"],
                   gateway={"adapter": "globex-intents"}, suffix="hang")  # fmt: skip
    assert other.status_code == 200, other.text  # per tenant


def test_job_folders_go_when_a_job_fails_and_after_the_retention_when_it_succeeds(
    gateways: Gateways, tmp_path: Path
) -> None:
    client = gateways.start(finetune_job_retention_hours=0)
    file_id = upload(client, ACME).json()["id"]
    failed = ended(client, ACME, create(client, ACME, file_id, suffix="crash").json()["id"])
    assert failed["status"] == "failed" and failed["id"] not in folders(tmp_path)
    done = ended(client, ACME, create(client, ACME, file_id, suffix="ok").json()["id"])
    assert done["status"] == "succeeded"
    create(client, ACME, file_id, suffix="hang")  # each creation sweeps what is due
    assert done["id"] not in folders(tmp_path)
    res = client.post("/v1/classify", json={"text": "refund", "adapter": done["fine_tuned_model"]},
                      headers=auth(ACME))  # fmt: skip
    assert res.status_code == 200, res.text  # the version stays


def test_storage_per_tenant_is_capped_and_measured(gateways: Gateways) -> None:
    client = gateways.start(finetune_max_files_per_tenant=2)
    first = upload(client, ACME).json()
    assert storage_bytes(client, "acme") == first["bytes"]
    upload(client, ACME)
    res = upload(client, ACME)
    assert res.status_code == 429 and res.json()["error"]["code"] == "quota_exceeded"
    assert res.json()["error"]["retryable"] is False
    assert upload(client, GLOBEX).status_code == 200
    client.delete(f"/v1/files/{first['id']}", headers=auth(ACME))
    assert storage_bytes(client, "acme") == first["bytes"]
    assert upload(client, ACME).status_code == 200


def test_a_hostile_upload_is_a_400_naming_the_line_and_leaves_nothing(
    gateways: Gateways, tmp_path: Path
) -> None:
    client = gateways.start()
    res = upload(client, ACME, ROWS + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_file"
    assert "train.jsonl:3" in res.json()["error"]["message"]
    assert [p for p in (tmp_path / "finetune" / "files").rglob("*") if p.is_file()] == []


def test_string_numbers_and_denormals_are_refused_naming_the_field(gateways: Gateways) -> None:
    client = gateways.start()
    file_id = upload(client, ACME).json()["id"]
    for field, value in (("n_epochs", "3"), ("learning_rate_multiplier", 1e-320)):
        res = create(client, ACME, file_id, hyperparameters={field: value})
        assert res.status_code == 400, res.text
        assert res.json()["error"]["param"] == f"hyperparameters.{field}"
    assert client.get("/v1/fine_tuning/jobs", headers=auth(ACME)).json()["data"] == []


def test_a_tenant_created_again_under_a_deleted_name_starts_empty(
    gateways: Gateways, tmp_path: Path
) -> None:
    """Issue 33: a tenant created under a deleted tenant's name listed and downloaded the
    old tenant's training file."""
    client = gateways.start(admin_key=ADMIN_KEY)
    admin = auth(ADMIN_KEY)
    body = {"allowed_adapters": ["acme-intents", "delta-own"], "default_adapter": "acme-intents"}
    first = client.put("/admin/tenants/delta", json=body, headers=admin).json()
    key, tenant_id = first["api_key"], first["tenant"]["id"]
    file_id = upload(client, key).json()["id"]
    made = ended(client, key, create(client, key, file_id, suffix="ok").json()["id"])
    assert made["status"] == "succeeded", made["error"]  # a private version of acme-intents
    own = create(client, key, file_id, suffix="ok", gateway={"adapter": "delta-own"}).json()
    assert ended(client, key, own["id"])["status"] == "succeeded"  # delta's own adapter
    create(client, key, file_id, suffix="hang")
    assert (tmp_path / "finetune" / "files" / tenant_id).is_dir()
    gone = client.delete("/admin/tenants/delta", headers=admin).json()
    assert gone["deleted"] is True and gone["removed"]["files"] == 1
    assert gone["removed"]["jobs"] == 3 and gone["removed"]["adapters"] == ["delta-own"]
    assert made["fine_tuned_model"] in gone["removed"]["versions"]  # its private version
    names = [a["name"] for a in client.get("/admin/adapters", headers=admin).json()["adapters"]]
    assert "delta-own" not in names and "acme-intents" in names
    assert not (tmp_path / "finetune" / "files" / tenant_id).exists() and folders(tmp_path) == []
    again = client.put("/admin/tenants/delta", json=body, headers=admin).json()
    assert again["created"] is True and again["tenant"]["id"] != tenant_id
    new_key = again["api_key"]
    assert client.get("/v1/files", headers=auth(new_key)).json()["data"] == []
    assert client.get(f"/v1/files/{file_id}/content", headers=auth(new_key)).status_code == 404
    assert client.get("/v1/fine_tuning/jobs", headers=auth(new_key)).json()["data"] == []
    pinned = {"text": "x", "adapter": made["fine_tuned_model"]}
    res = client.post("/v1/classify", json=pinned, headers=auth(new_key))
    assert res.status_code in (403, 404), res.text
