"""Job folders and leftovers kept in bounds, and the storage gauge (issue 33: job folders
were never removed; 20 create-then-cancel rounds wrote about 1 GB)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.finetune.files import FileStore
from gateway.finetune.housekeeping import Housekeeping
from gateway.finetune.jobs import JobStore
from gateway.finetune.upload_check import count_rows
from gateway.observability.metrics import GatewayMetrics
from tests.unit.finetune.jobs_setup import queued

ROW = b'{"text": "I was billed twice", "intent": "billing"}\n'
DAY = 86_400


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Housekeeping, JobStore, Clock]:
    clock = Clock()
    jobs = JobStore(tmp_path / "jobs.sqlite", clock=clock)
    files = FileStore(tmp_path / "files", 10_000, check=count_rows)
    keeping = Housekeeping(jobs, files, tmp_path / "jobs", GatewayMetrics(), retention_s=DAY,
                           grace_s=3600, clock=clock)  # fmt: skip
    return keeping, jobs, clock


def folder(keeping: Housekeeping, job_id: str, size: int = 100) -> Path:
    path = keeping.jobs_dir / job_id
    path.mkdir(parents=True)
    (path / "train.jsonl").write_bytes(b"x" * size)
    return path


def test_a_job_that_ends_badly_loses_its_folder_at_once(setup) -> None:
    keeping, jobs, _ = setup
    cancelled, failed, running = (queued(jobs)["id"] for _ in range(3))
    paths = [folder(keeping, job_id) for job_id in (cancelled, failed, running)]
    jobs.move(cancelled, "cancelled")
    jobs.move(failed, "running")
    jobs.move(failed, "failed", error={"code": "x"})
    jobs.move(running, "running")
    for job_id in (cancelled, failed, running):
        keeping.job_ended(job_id)
    assert [p.exists() for p in paths] == [False, False, True]


def test_a_succeeded_jobs_folder_stays_for_the_retention(setup) -> None:
    keeping, jobs, clock = setup
    job_id = queued(jobs)["id"]
    path = folder(keeping, job_id)
    jobs.move(job_id, "running")
    jobs.move(job_id, "succeeded")
    keeping.job_ended(job_id)
    clock.now += DAY - 1
    keeping.sweep()
    assert path.exists()
    clock.now += 2
    keeping.sweep()
    assert not path.exists()


def test_folders_no_job_names_go_after_the_grace_period(setup) -> None:
    keeping, jobs, clock = setup
    known = folder(keeping, queued(jobs)["id"])
    old, young = folder(keeping, "ftjob-old"), folder(keeping, "ftjob-young")
    os.utime(old, (clock.now - 7200, clock.now - 7200))
    os.utime(young, (clock.now - 60, clock.now - 60))
    os.utime(known, (clock.now - 7200, clock.now - 7200))
    keeping.sweep_orphans()
    assert (known.exists(), old.exists(), young.exists()) == (True, False, True)


def test_the_gauge_counts_files_and_job_folders_per_tenant(setup) -> None:
    keeping, jobs, _ = setup
    keeping.files.create("tn-acme", "a.jsonl", "fine-tune", ROW)
    folder(keeping, queued(jobs, owner="tn-acme")["id"], size=1000)
    keeping.record("tn-acme", "acme")
    sample = keeping.metrics.registry.get_sample_value
    assert sample("gateway_fine_tuning_storage_bytes", {"tenant": "acme"}) == len(ROW) + 1000
    keeping.forget("tn-acme")
    assert sample("gateway_fine_tuning_storage_bytes", {"tenant": "acme"}) is None
    assert list(keeping.jobs_dir.iterdir()) == []
