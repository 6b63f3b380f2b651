"""Only owners change what others are served (issue 33, finding 4), over HTTP with the
stand-in worker (a test double: validation accuracy 0.5 for suffix ``ok``, 0.9 for
``good``) and the engine test double.

A tenant's ``promote_if`` on a shared adapter (the operator's) is a 403 at job creation;
on its own adapter a job promotes only a version at least as good as the current one
on the same held-out file, whatever threshold the tenant chose."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway import errors
from gateway.finetune.requests import JobRequest, check_ownership
from tests.unit.api.test_fine_tuning_api import (  # gateways: the fixture
    ACME,
    GLOBEX,
    ROWS,
    Gateways,
    create,
    ended,
    gateways,  # noqa: F401
    upload,
)
from tests.unit.tenancy_setup import auth

HELD_OUT = b'{"text": "charged twice", "intent": "billing"}\n{"text": "hey", "intent": "other"}\n'


def test_promote_if_on_a_shared_adapter_is_refused_at_creation(
    gateways: Gateways,  # noqa: F811
) -> None:
    client = gateways.start()
    file_id = upload(client, ACME).json()["id"]
    res = create(client, ACME, file_id, suffix="good",
                 gateway={"promote_if": {"min_accuracy": 0}})  # fmt: skip
    assert res.status_code == 403, res.text
    assert res.json()["error"]["code"] == "adapter_forbidden"
    assert res.json()["error"]["param"] == "gateway.promote_if"
    assert client.get("/v1/fine_tuning/jobs", headers=auth(ACME)).json()["data"] == []
    private = create(client, ACME, file_id, suffix="good")  # a version for acme alone: fine
    assert ended(client, ACME, private.json()["id"])["status"] == "succeeded"
    res = client.post("/v1/classify", json={"text": "refund"}, headers=auth(ACME))
    assert res.headers["x-gateway-adapter-version"] == "v1"  # everyone's answers stay


def _job(client: TestClient, suffix: str, held_out: str, minimum: float) -> dict:
    train = upload(client, GLOBEX).json()["id"]
    body = {
        "suffix": suffix,
        "validation_file": held_out,
        "gateway": {"adapter": "globex-intents", "promote_if": {"min_accuracy": minimum}},
    }
    res = create(client, GLOBEX, train, **body)  # fmt: skip
    assert res.status_code == 200, res.text
    return ended(client, GLOBEX, res.json()["id"])


def _current(client: TestClient) -> str:
    res = client.post("/v1/classify", json={"text": "x", "adapter": "globex-intents"},
                      headers=auth(GLOBEX))  # fmt: skip
    assert res.status_code == 200, res.text
    return res.headers["x-gateway-adapter-version"]


def test_a_job_promotes_only_over_a_worse_version_on_the_same_held_out_data(
    gateways: Gateways,  # noqa: F811
) -> None:
    client = gateways.start()
    held_out = upload(client, GLOBEX, HELD_OUT).json()["id"]
    first = _job(client, "ok", held_out, 0.1)  # a new name: globex's own, current at once
    assert first["status"] == "succeeded" and first["gateway"]["promoted"] is True
    better = _job(client, "good", held_out, 0.1)  # 0.9 >= 0.5 on the same file
    assert better["gateway"]["promoted"] is True
    assert _current(client) == better["fine_tuned_model"].split("@")[1]
    worse = _job(client, "ok", held_out, 0.1)  # over the tenant's 0.1, below 0.9: stays
    assert worse["status"] == "succeeded" and worse["gateway"]["promoted"] is False
    assert _current(client) == better["fine_tuned_model"].split("@")[1]
    events = client.get(f"/v1/fine_tuning/jobs/{worse['id']}/events?limit=100",
                        headers=auth(GLOBEX)).json()["data"]  # fmt: skip
    assert any("below the current version" in e["message"] for e in events)
    other_file = upload(client, GLOBEX, HELD_OUT + ROWS).json()["id"]
    elsewhere = _job(client, "good", other_file, 0.1)  # not comparable: other held-out data
    assert elsewhere["gateway"]["promoted"] is False


def test_a_tenant_never_writes_into_another_tenants_adapter() -> None:
    request = JobRequest(model="base", training_file="file-x")
    with pytest.raises(errors.AdapterForbidden, match="another tenant"):
        check_ownership(request, "acme", "globex-intents", (True, "globex"))
    check_ownership(request, "globex", "globex-intents", (True, "globex"))
    check_ownership(request, "acme", "new-name", (False, None))  # becomes acme's
    promoting = JobRequest(model="base", training_file="file-x",
                           gateway={"promote_if": {"min_accuracy": 0.5}})  # fmt: skip
    check_ownership(promoting, None, "acme-intents", (True, None))  # no keys: the operator
    with pytest.raises(errors.AdapterForbidden, match="shared adapter"):
        check_ownership(promoting, "acme", "acme-intents", (True, None))
