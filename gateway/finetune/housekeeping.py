"""What fine-tuning leaves on disk, kept in bounds: job folders removed when a job is
cancelled or fails and ``retention_s`` after it succeeds (its adapter version stays in the
store), leftovers no record names swept at start-up, and the bytes each tenant's files
and job folders take, as the gauge ``gateway_fine_tuning_storage_bytes{tenant}``.

Issue 33 found every job creation copying its training file into ``jobs/<id>/`` and
nothing ever removing it: 20 create-then-cancel rounds wrote about 1 GB in 8.6 s.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from gateway.finetune.files import FileStore
from gateway.finetune.jobs import JobStore
from gateway.observability.metrics import GatewayMetrics

log = logging.getLogger(__name__)
LOG_TAIL_BYTES = 4000  # of a failed worker's log, kept in the gateway's log


class Housekeeping:
    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        jobs_dir: Path,
        metrics: GatewayMetrics,
        *,
        retention_s: float,
        grace_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs = jobs
        self.files = files
        self.jobs_dir = jobs_dir
        self.metrics = metrics
        self.retention_s = retention_s
        self.grace_s = grace_s
        self.clock = clock
        self.labels: dict[str, str] = {}  # owner id -> the tenant label its gauge carries

    def job_ended(self, job_id: str) -> None:
        """A job reached its final status: a cancelled or failed one's folder goes now."""
        job = self.jobs.by_id(job_id)
        if job["status"] in ("cancelled", "failed"):
            self._remove(job_id, keep_log=job["status"] == "failed")
        self.record(job["organization_id"])

    def sweep(self) -> None:
        """Folders of ended jobs that are due: cancelled and failed ones (a crash came
        between the ending and the removal), succeeded ones past the retention."""
        due = self.clock() - self.retention_s
        owners = set()
        for job_id, owner, status, finished_at in self.jobs.ended():
            if (self.jobs_dir / job_id).is_dir() and (status != "succeeded" or finished_at <= due):
                self._remove(job_id, keep_log=False)
                owners.add(owner)
        for owner in owners:
            self.record(owner)

    def sweep_orphans(self) -> None:
        """At start-up: uploads without a record and job folders without a job, older
        than the grace period (younger ones may be another process's work in progress)."""
        self.files.sweep(self.grace_s, self.clock())
        known = self.jobs.ids()
        cutoff = self.clock() - self.grace_s
        for folder in self.jobs_dir.iterdir() if self.jobs_dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if folder.name not in known and folder.stat().st_mtime < cutoff:
                    log.warning("removed %s: a job folder no job names", folder)
                    if folder.is_dir():
                        shutil.rmtree(folder, ignore_errors=True)
                    else:
                        folder.unlink()

    def usage(self, owner: str) -> int:
        """Bytes of ``owner``'s files and of its jobs' folders."""
        total = self.files.used_bytes(owner)
        for job in self.jobs.of_owner(owner):
            total += folder_bytes(self.jobs_dir / job["id"])
        return total

    def record(self, owner: str, label: str | None = None) -> None:
        """Set ``owner``'s gauge; ``label``: its tenant's name (the last one seen if None)."""
        if label is not None:
            self.labels[owner] = label
        tenant = self.metrics.labels.fold("tenant", self.labels.get(owner, owner))
        self.metrics.finetune_storage_bytes.labels(tenant=tenant).set(self.usage(owner))

    def forget(self, owner: str) -> None:
        """A deleted tenant: its folders go and its gauge with them."""
        for job in self.jobs.of_owner(owner):
            self._remove(job["id"], keep_log=False)
        label = self.labels.pop(owner, owner)
        with contextlib.suppress(KeyError):
            self.metrics.finetune_storage_bytes.remove(self.metrics.labels.fold("tenant", label))

    def _remove(self, job_id: str, keep_log: bool) -> None:
        folder = self.jobs_dir / job_id
        if keep_log:  # the folder held the only copy of what the worker printed
            with contextlib.suppress(OSError):
                text = (folder / "worker.log").read_bytes()[-LOG_TAIL_BYTES:]
                if text.strip():
                    log.warning("fine-tuning job %s failed; the end of its worker log:\n%s",
                                job_id, text.decode(errors="replace"))  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total
