"""The runner with the stand-in worker (``stand_in_worker``, a test double) and the real
registry on the engine test double: one job at a time, registration without promotion
unless earned, every other ending leaving nothing behind, cancel and shutdown."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.finetune.files import FileStore
from gateway.finetune.housekeeping import Housekeeping
from gateway.finetune.jobs import ENDED, JobStore
from gateway.finetune.runner import JobRunner, RunnerSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.registry.state import RegistryState
from gateway.registry.store import AdapterStore
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.finetune.jobs_setup import job
from tests.unit.registry.test_store import LIMITS

STAND_IN = (sys.executable, "-m", "tests.unit.finetune.stand_in_worker")


class Setup:
    def __init__(self, root: Path, **config: Any) -> None:
        self.store = root / "store"
        make_peft_folder(self.store / "acme-intents" / "v1", labels=["billing", "other"])
        self.registry = AdapterRegistry(
            AdapterStore(self.store, LIMITS), RegistryState.load(None), FakeEngine(), 4
        )
        self.registry.ensure("acme-intents", "v1")
        self.jobs = JobStore(root / "jobs.sqlite")
        self.metrics = GatewayMetrics()
        settings = RunnerSettings(
            jobs_dir=root / "jobs", store=self.store, runtime={"threads": 1}, nice=19,
            sched_idle=True, grace_s=5, tokens_per_day=10**6, max_running=1, command=STAND_IN,
            poll_s=0.02,
        )  # fmt: skip
        self.runner = JobRunner(self.jobs, self.registry, replace(settings, **config), self.metrics)

    def submit(self, suffix: str, validation: str | None = None, **gateway: Any) -> dict[str, Any]:
        record = self.jobs.insert(job(suffix=suffix, **gateway))
        folder = self.runner.config.jobs_dir / record["id"]
        folder.mkdir(parents=True)
        if validation is not None:  # the job's copy of its validation file
            (folder / "validation.jsonl").write_text(validation)
        train = {"name": "acme-intents", "version": record["gateway"]["version"],
                 "out_root": str(self.store)}  # fmt: skip
        (folder / "train.json").write_text(json.dumps(train))
        self.jobs.move(record["id"], "queued")
        self.runner.wake()
        return record

    async def ended(self, record: dict[str, Any]) -> dict[str, Any]:
        return await self.until(record, lambda j: j["status"] in ENDED)

    async def until(self, record: dict[str, Any], condition: Any) -> dict[str, Any]:
        """Polls the store; the limit only stops a hung test."""
        for _ in range(2000):
            found = self.jobs.by_id(record["id"])
            if condition(found):
                return found
            await asyncio.sleep(0.005)
        raise AssertionError(f"job never got there: {self.jobs.by_id(record['id'])}")

    async def stepped(self, record: dict[str, Any]) -> None:
        """Until the worker's first step is recorded (it is then surely running)."""
        for _ in range(2000):
            events = self.jobs.events(record["id"], None, 100)["data"]
            if any(e["type"] == "metrics" for e in events):
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the worker never reported a step")

    def messages(self, record: dict[str, Any]) -> list[str]:
        return [e["message"] for e in self.jobs.events(record["id"], None, 100)["data"]]

    def leftovers(self, record: dict[str, Any]) -> list[str]:
        version = record["gateway"]["version"]
        return [p.name for p in self.store.rglob("*") if version in p.name]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    found = Setup(tmp_path)
    found.runner.start()
    yield found
    await found.runner.stop()


async def test_a_job_is_registered_but_not_promoted(setup: Setup) -> None:
    record = setup.submit("ok")
    done = await setup.ended(record)
    version = record["gateway"]["version"]
    assert done["status"] == "succeeded", done["error"]
    assert done["fine_tuned_model"] == f"acme-intents@{version}"
    assert done["trained_tokens"] == 120 and done["hyperparameters"]["n_epochs"] == 1
    assert setup.registry.version("acme-intents", version).version == version
    assert setup.registry.current("acme-intents").version == "v1"  # the tenant's alias stays
    assert "niceness 19 threads 1 idle True" in setup.messages(record)  # its priority
    (checkpoint,) = setup.jobs.checkpoints(record["id"], None, 10)["data"]
    assert checkpoint["fine_tuned_model_checkpoint"] == f"acme-intents@{version}:step-1"
    assert setup.metrics.finetune_jobs.labels(status="succeeded")._value.get() == 1


@pytest.mark.parametrize(("suffix", "promoted"), [("good", True), ("ok", False)])
async def test_promotion_only_when_the_evaluation_meets_the_bar(
    setup: Setup, suffix: str, promoted: bool
) -> None:
    record = setup.submit(suffix, validation="held-out rows", promote_if={"min_accuracy": 0.8})
    # the tenant's own adapter, its current version scored 0.7 on the same held-out file
    aliases = setup.registry.state.snapshot()
    score = setup.runner.endings.score(record, {"evaluation": {"valid_accuracy": 0.7}})
    aliases["acme-intents"].owner, aliases["acme-intents"].scores["v1"] = "acme", score
    setup.registry.state.commit(aliases)
    done = await setup.ended(record)
    assert done["gateway"]["promoted"] is promoted
    current = setup.registry.current("acme-intents").version
    assert (current == record["gateway"]["version"]) is promoted
    assert any(m.startswith("Promoted" if promoted else "Not promoted")
               for m in setup.messages(record))  # fmt: skip


async def test_failed_data_checks_fail_the_job_with_the_findings(setup: Setup) -> None:
    record = setup.submit("checks")
    done = await setup.ended(record)
    assert done["status"] == "failed" and done["error"]["code"] == "data_check_failed"
    assert "exact duplicates          FAIL" in done["error"]["message"]
    assert done["error"]["findings"][1]["status"] == "FAIL"
    assert done["fine_tuned_model"] is None and setup.leftovers(record) == []


async def test_a_crashed_worker_fails_the_job(setup: Setup) -> None:
    done = await setup.ended(setup.submit("crash"))
    assert done["error"]["code"] == "training_error" and "status 3" in done["error"]["message"]


async def test_cancel_stops_the_worker_and_leaves_nothing(setup: Setup) -> None:
    record = setup.submit("hang")
    await setup.stepped(record)
    waiting = setup.submit("ok")  # one job at a time: this one waits
    assert setup.jobs.by_id(waiting["id"])["status"] == "queued"
    await setup.runner.cancel(record["id"])
    done = setup.jobs.by_id(record["id"])
    assert done["status"] == "cancelled" and done["trained_tokens"] == 10
    assert setup.leftovers(record) == [] and not setup.runner.running.get(record["id"])
    assert (await setup.ended(waiting))["status"] == "succeeded"  # the queue goes on


async def test_a_worker_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    setup = Setup(tmp_path, grace_s=0.2)
    setup.runner.start()
    record = setup.submit("stubborn")
    await setup.stepped(record)
    await setup.runner.cancel(record["id"])
    assert setup.jobs.by_id(record["id"])["status"] == "cancelled"
    assert setup.leftovers(record) == []
    await setup.runner.stop()


async def test_a_queued_job_is_cancelled_without_running(setup: Setup) -> None:
    first = setup.submit("hang")
    second = setup.submit("ok")
    await setup.runner.cancel(second["id"])
    assert setup.jobs.by_id(second["id"])["status"] == "cancelled"
    await setup.runner.cancel(first["id"])
    assert "niceness" not in " ".join(setup.messages(second))  # its worker never started


async def test_the_daily_token_budget_stops_a_job(tmp_path: Path) -> None:
    setup = Setup(tmp_path, tokens_per_day=1000)
    setup.runner.start()
    done = await setup.ended(setup.submit("greedy"))
    assert done["error"]["code"] == "training_token_budget_exceeded"
    await setup.runner.stop()


async def test_shutdown_fails_the_running_job_as_interrupted(setup: Setup) -> None:
    record = setup.submit("hang")
    await setup.stepped(record)
    await setup.runner.stop()
    done = setup.jobs.by_id(record["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "interrupted"
    assert setup.leftovers(record) == []


async def test_a_job_running_when_the_gateway_died_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """What a start after a crash finds: the job still ``running`` in the store, the
    staging folder its worker (killed with the gateway) left in the adapter store."""
    from gateway.finetune.service import FineTuning

    setup = Setup(tmp_path)
    record = setup.jobs.insert(job(suffix="hang"))
    setup.jobs.move(record["id"], "queued")
    setup.jobs.move(record["id"], "running")
    version = record["gateway"]["version"]
    leftover = setup.store / "acme-intents" / f".staging-{version}-1234"
    leftover.mkdir(parents=True)
    files = FileStore(tmp_path / "files", 4096)
    housekeeping = Housekeeping(setup.jobs, files, setup.runner.config.jobs_dir, setup.metrics,
                                retention_s=3600, grace_s=3600)  # fmt: skip
    folder = setup.runner.config.jobs_dir / record["id"]
    folder.mkdir(parents=True)
    service = FineTuning(None, files, setup.jobs, setup.runner, housekeeping)  # type: ignore[arg-type]
    service.start()
    try:
        found = setup.jobs.by_id(record["id"])
        assert found["status"] == "failed" and found["error"]["code"] == "interrupted"
        assert not folder.exists()  # a failed job's folder goes (issue 33)
        assert not leftover.exists()
        assert (setup.store / "acme-intents" / "v1").is_dir()  # the registered version stays
    finally:
        await setup.runner.stop()
