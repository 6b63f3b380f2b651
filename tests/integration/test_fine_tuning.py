"""Fine-tuning over the API with the official ``openai`` SDK against the real gateway:
upload, a few-step job on the embedded base model, the new version answering classify
and a schema-constrained chat; cancel, a failing data check, another tenant refused,
and a restart with a job still queued.

This module starts its own gateway (it restarts it), on a store and data folder of its
own, with two tenants that each own one adapter name.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
import yaml
from pydantic import BaseModel

from gateway.config import REPO_ROOT
from gateway.tenancy import hash_key
from gateway_tools.launch import LaunchError, launch

pytestmark = pytest.mark.integration

ADMIN_KEY = "finetune-admin-key-0123456789"
ACME, GLOBEX = "acme-key-0123456789abcdef", "globex-key-0123456789abcdef"
LABELS = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed")
JOB_LIMIT_S = 900  # a hung job stops the test; a few-step job takes a minute or two


class Intent(BaseModel):
    intent: Literal["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]


class FineTuningGateway:
    """One gateway at a time on the same folders; ``restart`` stops it and starts anew."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.stack = ExitStack()
        self.url = ""
        tenants = [
            {"name": "acme", "key_hashes": [hash_key(ACME)], "allowed_adapters": ["acme-intents"],
             "default_adapter": "acme-intents"},
            {"name": "globex", "key_hashes": [hash_key(GLOBEX)],
             "allowed_adapters": ["globex-intents"]},
        ]  # fmt: skip
        (work / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}))

    def start(self) -> None:
        env = {
            "GATEWAY_MAX_TOKENS_CAP": "256", "GATEWAY_MAX_MODEL_LEN": "1024",
            "GATEWAY_ADMIN_KEY": ADMIN_KEY, "GATEWAY_AUTH_MODE": "tenants",
            "GATEWAY_TENANTS_FILE": str(self.work / "tenants.yaml"),
            "GATEWAY_FINETUNE_DIR": str(self.work / "finetune"),
            "GATEWAY_FINETUNE_MAX_ACTIVE_JOBS": "4",
        }  # fmt: skip
        log = self.work / f"gateway-{time.time_ns()}.log"
        try:
            running = self.stack.enter_context(
                launch(log, adapters={}, store=self.work / "store", env=env)
            )
        except LaunchError as exc:
            pytest.fail(str(exc))
        self.url = running.url

    def restart(self) -> None:
        self.stack.close()
        self.start()

    def client(self, key: str = ACME) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, timeout=120, max_retries=0)

    def admin(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.get(self.url + path, headers=headers, timeout=30).json()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FineTuningGateway]:
    found = FineTuningGateway(tmp_path_factory.mktemp("fine-tuning"))
    found.start()
    yield found
    found.stack.close()


@pytest.fixture(scope="module")
def sdk(gateway: FineTuningGateway) -> Iterator[openai.OpenAI]:
    with gateway.client() as client:
        yield client


def banking_rows(per_label: int, skip: int = 0) -> list[dict[str, str]]:
    """``per_label`` rows of each of ``LABELS`` from banking77's training split."""
    taken: dict[str, list[dict[str, str]]] = {label: [] for label in LABELS}
    with (REPO_ROOT / "data" / "banking77" / "train.csv").open(newline="") as source:
        for row in csv.DictReader(source):
            rows = taken.get(row["category"])
            if rows is not None and len(rows) < per_label + skip:
                rows.append({"text": row["text"], "label": row["category"]})
    return [row for rows in taken.values() for row in rows[skip:]]


def upload(client: openai.OpenAI, tmp_path: Path, name: str, rows: list[dict]) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return client.files.create(file=path, purpose="fine-tune").id


def conflicting(client: openai.OpenAI, tmp_path: Path) -> dict[str, str]:
    """A training file whose first text also appears with another label (a data check
    fails on it), and a validation file, so no split can separate the two."""
    rows = banking_rows(3)
    rows.append({"text": rows[0]["text"], "label": LABELS[1]})
    return {
        "training_file": upload(client, tmp_path, "conflict.jsonl", rows),
        "validation_file": upload(client, tmp_path, "conflict-val.jsonl", banking_rows(1, 3)),
    }


ENDED = ("succeeded", "failed", "cancelled")


def wait(client: openai.OpenAI, job_id: str, statuses: tuple[str, ...]) -> Any:
    deadline = time.monotonic() + JOB_LIMIT_S
    while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.status}"
        time.sleep(2)
    return job


def event_types(client: openai.OpenAI, job_id: str) -> list[str | None]:
    return [e.type for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]


def test_a_job_becomes_a_model_the_tenant_calls(
    gateway: FineTuningGateway, sdk: openai.OpenAI, tmp_path: Path
) -> None:
    train = upload(sdk, tmp_path, "train.jsonl", banking_rows(10))
    validation = upload(sdk, tmp_path, "val.jsonl", banking_rows(3, skip=10))
    assert sdk.files.retrieve(train).purpose == "fine-tune"
    job = sdk.fine_tuning.jobs.create(
        model="base", training_file=train, validation_file=validation, suffix="flow", seed=1,
        hyperparameters={"n_epochs": 2, "batch_size": 8},
        extra_body={"gateway": {"labels": list(LABELS)}},
    )  # fmt: skip
    assert job.status == "queued" and job.object == "fine_tuning.job"
    job = wait(sdk, job.id, ENDED)
    assert job.status == "succeeded", job.error
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("acme-intents@ft-flow-")
    assert "metrics" in event_types(sdk, job.id)
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(checkpoints) == 2 and checkpoints[0].metrics.valid_loss is not None

    res = httpx.post(gateway.url + "/v1/classify", timeout=120,
                     json={"text": "My card has not arrived yet", "adapter": job.fine_tuned_model},
                     headers={"Authorization": f"Bearer {ACME}"})  # fmt: skip
    assert res.status_code == 200, res.text
    assert res.json()["intent"] in LABELS
    assert res.headers["x-gateway-adapter-version"] == job.fine_tuned_model.split("@")[1]
    answer = sdk.chat.completions.parse(
        model=job.fine_tuned_model, response_format=Intent, max_tokens=32, temperature=0,
        messages=[{"role": "user", "content": "Which intent: I lost my card yesterday"}],
    )  # fmt: skip
    assert isinstance(answer.choices[0].message.parsed, Intent)

    with gateway.client(GLOBEX) as other:  # another tenant sees none of it
        with pytest.raises(openai.NotFoundError):
            other.files.retrieve(train)
        with pytest.raises(openai.NotFoundError):
            other.fine_tuning.jobs.retrieve(job.id)
        assert other.fine_tuning.jobs.list().data == []
        with pytest.raises(openai.PermissionDeniedError):
            other.chat.completions.create(
                model=job.fine_tuned_model, max_tokens=4,
                messages=[{"role": "user", "content": "hi"}],
            )  # fmt: skip


def test_a_failing_data_check_fails_the_job_before_training(
    sdk: openai.OpenAI, tmp_path: Path
) -> None:
    job = sdk.fine_tuning.jobs.create(
        model="base", **conflicting(sdk, tmp_path),
        extra_body={"gateway": {"labels": list(LABELS)}},
    )  # fmt: skip
    job = wait(sdk, job.id, ENDED)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "data_check_failed" and "FAIL" in job.error.message
    assert "metrics" not in event_types(sdk, job.id)  # not one training step


def test_cancel_stops_a_running_job_and_registers_nothing(
    gateway: FineTuningGateway, sdk: openai.OpenAI, tmp_path: Path
) -> None:
    job = sdk.fine_tuning.jobs.create(
        model="base", training_file=upload(sdk, tmp_path, "long.jsonl", banking_rows(20)),
        hyperparameters={"n_epochs": 20}, suffix="cancel",
    )  # fmt: skip
    assert wait(sdk, job.id, ("running", *ENDED)).status == "running"
    cancelled = sdk.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    version = cancelled.model_extra["gateway"]["version"]  # type: ignore[index]
    assert not (gateway.work / "store" / "acme-intents" / version).exists()
    listed = json.dumps(gateway.admin("/admin/adapters"))
    assert version not in listed


def test_a_queued_job_runs_after_a_restart(
    gateway: FineTuningGateway, sdk: openai.OpenAI, tmp_path: Path
) -> None:
    long = sdk.fine_tuning.jobs.create(
        model="base", training_file=upload(sdk, tmp_path, "long.jsonl", banking_rows(20)),
        hyperparameters={"n_epochs": 20},
    )  # fmt: skip
    queued = sdk.fine_tuning.jobs.create(model="base", **conflicting(sdk, tmp_path))  # quick
    assert wait(sdk, long.id, ("running", *ENDED)).status == "running"
    assert sdk.fine_tuning.jobs.retrieve(queued.id).status == "queued"
    gateway.restart()
    with gateway.client() as client:
        interrupted = client.fine_tuning.jobs.retrieve(long.id)
        assert interrupted.status == "failed" and interrupted.error is not None
        assert interrupted.error.code == "interrupted"
        ran = wait(client, queued.id, ENDED)
        assert ran.error is not None and ran.error.code == "data_check_failed"
