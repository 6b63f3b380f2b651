"""The job store: OpenAI's statuses in order, durable across a restart, scoped to owners."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import errors
from gateway.finetune.jobs import DAY_S, JobStore
from tests.unit.finetune.jobs_setup import job, queued


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def jobs(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite")


def test_statuses_move_only_forward(jobs: JobStore) -> None:
    record = queued(jobs)
    assert jobs.move(record["id"], "running")["status"] == "running"
    done = jobs.move(record["id"], "succeeded", fine_tuned_model="acme-intents@ft-x")
    assert done["finished_at"] is not None and done["fine_tuned_model"] == "acme-intents@ft-x"
    with pytest.raises(errors.JobNotCancellable):
        jobs.move(record["id"], "cancelled")
    with pytest.raises(errors.Conflict):
        jobs.move(record["id"], "running")
    with pytest.raises(errors.Conflict):
        jobs.move(queued(jobs)["id"], "succeeded")  # never without running


def test_another_owner_does_not_find_the_job(jobs: JobStore) -> None:
    record = queued(jobs)
    assert jobs.get("acme", record["id"])["id"] == record["id"]
    with pytest.raises(errors.JobNotFound):
        jobs.get("globex", record["id"])
    assert jobs.listing("globex", None, 10)["data"] == []


def test_jobs_list_newest_first_in_pages(jobs: JobStore) -> None:
    ids = [queued(jobs)["id"] for _ in range(3)]
    first = jobs.listing("acme", None, 2)
    assert [j["id"] for j in first["data"]] == ids[:0:-1] and first["has_more"]
    assert [j["id"] for j in jobs.listing("acme", ids[1], 2)["data"]] == [ids[0]]


def test_the_queue_survives_a_restart_and_running_jobs_fail_as_interrupted(
    tmp_path: Path,
) -> None:
    jobs = JobStore(tmp_path / "jobs.sqlite")
    first, second = queued(jobs), queued(jobs)
    jobs.move(first["id"], "running")
    jobs.close()
    reopened = JobStore(tmp_path / "jobs.sqlite")
    assert reopened.recover() == [first["id"]]
    failed = reopened.get("acme", first["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "interrupted"
    assert reopened.next_queued()["id"] == second["id"]  # type: ignore[index]
    messages = [e["message"] for e in reopened.events(first["id"], None, 10)["data"]]
    assert "the gateway stopped" in messages[0]


def test_active_jobs_and_tokens_of_the_last_day_are_counted_per_owner(tmp_path: Path) -> None:
    clock = Clock()
    jobs = JobStore(tmp_path / "jobs.sqlite", clock=clock)
    ended, running = queued(jobs), queued(jobs)
    jobs.insert(job(owner="globex"))
    assert jobs.active("acme") == 2 and jobs.active("globex") == 1
    for record in (ended, running):
        jobs.move(record["id"], "running")
    jobs.count_tokens(ended["id"], 300)
    jobs.move(ended["id"], "failed")
    jobs.count_tokens(running["id"], 50)
    assert jobs.tokens_today("acme") == (350, int(clock.now) + DAY_S)
    assert jobs.tokens_today("globex") == (0, None)
    clock.now += DAY_S + 1  # the ended job leaves the window; the running one counts on
    assert jobs.tokens_today("acme") == (50, None)
    assert jobs.counts()["running"] == 1 and jobs.counts()["failed"] == 1


def test_events_and_checkpoints_page_newest_first(jobs: JobStore) -> None:
    record = queued(jobs)
    for n in range(3):
        jobs.add_event(record["id"], f"event {n}")
    page = jobs.events(record["id"], None, 2)
    assert [e["message"] for e in page["data"]] == ["event 2", "event 1"] and page["has_more"]
    assert page["data"][0]["object"] == "fine_tuning.job.event"
    jobs.add_checkpoint(record["id"], 4, {"step": 4, "train_loss": 0.5}, "acme-intents@v:step-4")
    (checkpoint,) = jobs.checkpoints(record["id"], None, 10)["data"]
    assert checkpoint["step_number"] == 4 and checkpoint["fine_tuning_job_id"] == record["id"]


def test_a_version_names_the_owner_of_the_job_that_made_it(jobs: JobStore) -> None:
    mine = queued(jobs, owner="acme")
    queued(jobs, owner="other")
    version = mine["gateway"]["version"]
    assert jobs.version_owner("acme-intents", version) == "acme"
    assert jobs.version_owner("acme-intents", "v1") is None
    assert jobs.version_owner("other-adapter", version) is None
