"""What the HTTP routes call: files and jobs of one owner (the tenant's name, ``open``
without keys), with the per-tenant limits checked before a job is accepted.

A job is accepted in ``validating_files``: its files must be the tenant's own uploads,
which were read by the training readers when they came in; they are copied into the
job's folder (so deleting an upload later does not change a queued job), the training
options are validated, and the job moves to ``queued``. The full data checks need the
tokenizer and run first thing in the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gateway import errors
from gateway.config import Settings
from gateway.finetune import runner as runner_module
from gateway.finetune.endings import OPEN_OWNER, Registrar
from gateway.finetune.files import FileStore
from gateway.finetune.housekeeping import Housekeeping
from gateway.finetune.jobs import ACTIVE, JobStore, new_id
from gateway.finetune.requests import (
    JobRequest,
    check_ownership,
    target_adapter,
    train_options,
    version_name,
)
from gateway.finetune.runner import JobRunner, RunnerSettings
from gateway.finetune.serving_first import ServingFirst
from gateway.models import ModelInfo
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.store import check_name, store_limits
from gateway.tenancy import Tenant
from gateway.training.config import TrainConfig

log = logging.getLogger(__name__)
HOUR_S = 3600


def owner_of(tenant: Tenant | None) -> str:
    """Files and jobs are keyed by the tenant's id: a later tenant of the same name gets
    another id, so it never sees what a deleted one left (issue 33)."""
    return tenant.owner_id if tenant is not None else OPEN_OWNER


def label_of(tenant: Tenant | None) -> str:
    return tenant.name if tenant is not None else OPEN_OWNER


class VersionDeleter(Protocol):
    """What deleting a tenant needs of the adapter registry."""

    def adapter_owner(self, name: str) -> tuple[bool, str | None]: ...

    async def delete(self, name: str, version: str) -> dict[str, Any]: ...

    async def delete_adapter(self, name: str) -> dict[str, Any]: ...


@dataclass
class FineTuning:
    settings: Settings
    files: FileStore
    jobs: JobStore
    runner: JobRunner
    housekeeping: Housekeeping

    @classmethod
    def build(
        cls,
        settings: Settings,
        root: Path,
        base: ModelInfo,
        registrar: Registrar,
        metrics: GatewayMetrics,
    ) -> FineTuning:
        """``base``: the served model; training reads its unquantized source."""
        limits = store_limits(settings, base)
        source = base.unquantized()
        runtime = {
            "base": {"name": source.name, "path": str(source.path),
                     "fingerprint": source.fingerprint, "variant": source.variant},
            "limits": {"base_fingerprint": limits.base_fingerprint, "max_rank": limits.max_rank,
                       "target_modules": sorted(limits.target_modules),
                       "max_bytes": limits.max_bytes},
            "threads": settings.finetune_worker_threads,
        }  # fmt: skip
        config = RunnerSettings(
            jobs_dir=root / "jobs", store=settings.adapter_store, runtime=runtime,
            nice=settings.finetune_worker_nice, sched_idle=settings.finetune_worker_sched_idle,
            grace_s=settings.finetune_cancel_grace_s,
            tokens_per_day=settings.finetune_tokens_per_day,
            max_running=settings.finetune_max_running_jobs, command=runner_module.WORKER,
        )  # fmt: skip
        jobs = JobStore(root / "jobs.sqlite")
        files = FileStore(
            root / "files", settings.finetune_max_file_bytes,
            max_files=settings.finetune_max_files_per_tenant,
            max_total_bytes=settings.finetune_max_bytes_per_tenant,
            check_timeout_s=settings.finetune_upload_check_timeout_s,
        )  # fmt: skip
        serving = (
            ServingFirst(settings.finetune_resume_after_idle_s, settings.finetune_min_share)
            if settings.finetune_yield_to_serving else None
        )  # fmt: skip
        runner = JobRunner(jobs, registrar, config, metrics, serving)
        housekeeping = Housekeeping(
            jobs, files, config.jobs_dir, metrics,
            retention_s=settings.finetune_job_retention_hours * 3600,
            grace_s=settings.finetune_orphan_grace_s,
        )  # fmt: skip
        runner.on_end = housekeeping.job_ended
        return cls(settings, files, jobs, runner, housekeeping)

    def start(self) -> None:
        """Recover from the last run (jobs that were running fail), then start training."""
        self.runner.endings.recover()  # the registry's state says how each one ended
        self.housekeeping.sweep_orphans()  # after recovery: it reads the jobs' folders
        self.housekeeping.sweep()
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        self.jobs.close()

    # files -------------------------------------------------------------------------------
    def upload(
        self, tenant: Tenant | None, filename: str, purpose: str, source: BinaryIO | bytes
    ) -> dict[str, Any]:
        """Blocking (streams to disk, then a child process reads it): run in a thread."""
        record = self.files.create(owner_of(tenant), filename, purpose, source)
        self.housekeeping.record(owner_of(tenant), label_of(tenant))
        return record

    def delete_file(self, tenant: Tenant | None, file_id: str) -> dict[str, Any]:
        deleted = self.files.delete(owner_of(tenant), file_id)
        self.housekeeping.record(owner_of(tenant), label_of(tenant))
        return deleted

    async def forget(self, tenant: Tenant, registry: VersionDeleter) -> dict[str, Any]:
        """A deleted tenant's jobs (running ones cancelled), files, job folders, the
        adapters it owns (made by its jobs) and the versions its jobs added to others'
        adapters. A version another adapter's alias serves now is everyone's and stays."""
        owner = tenant.owner_id
        for job in sorted(self.jobs.of_owner(owner), key=lambda j: j["status"] == "running"):
            if job["status"] in ACTIVE:  # queued ones first: none starts meanwhile
                with contextlib.suppress(errors.JobNotCancellable):
                    await self.runner.cancel(job["id"])
        made = [j for j in self.jobs.of_owner(owner) if j["status"] == "succeeded"]
        names = {j["gateway"]["adapter"] for j in made}
        own = sorted(n for n in names if registry.adapter_owner(n) == (True, owner))
        adapters, removed, kept = [], [], []
        for name in own:
            try:
                await registry.delete_adapter(name)
                adapters.append(name)
            except errors.GatewayError as exc:  # requests running on it: the operator's call
                log.warning("tenant %s deleted; its adapter %s stays: %s", tenant.name, name, exc)
        for job in made:
            name, version = job["gateway"]["adapter"], job["gateway"]["version"]
            if name in adapters:
                removed.append(f"{name}@{version}")
                continue
            try:
                await registry.delete(name, version)
                removed.append(f"{name}@{version}")
            except errors.AdapterNotFound:
                pass  # already deleted by the operator
            except errors.GatewayError as exc:  # the current version: everyone's now
                log.warning("tenant %s deleted; %s@%s stays: %s", tenant.name, name, version, exc)
                kept.append(job["id"])
        self.housekeeping.forget(owner)
        versions_kept = [f"{j['gateway']['adapter']}@{j['gateway']['version']}"
                         for j in self.jobs.of_owner(owner) if j["id"] in kept]  # fmt: skip
        return {
            "files": self.files.forget(owner),
            "jobs": self.jobs.delete_owner(owner, keep=set(kept)),
            "adapters": adapters,
            "versions": removed,
            "versions_kept": versions_kept,
        }

    # jobs --------------------------------------------------------------------------------
    def create_job(self, tenant: Tenant | None, request: JobRequest) -> dict[str, Any]:
        owner = owner_of(tenant)
        self._check_limits(owner)
        self.housekeeping.sweep()  # job folders past their retention
        sources = {"train": self.files.path(owner, request.training_file)}
        if request.validation_file is not None:
            sources["validation"] = self.files.path(owner, request.validation_file)
        adapter = check_name(target_adapter(request, tenant, self.settings.served_model_name),
                             "name")  # fmt: skip
        found = self.runner.endings.registrar.adapter_owner(adapter)  # who owns it, if anyone
        check_ownership(request, owner if tenant else None, adapter, found)
        job_id = new_id("ftjob")
        version = version_name(job_id, request.suffix)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        folder = self.runner.config.jobs_dir / job_id
        folder.mkdir(parents=True)
        try:
            copies = {role: folder / f"{role}{src.suffix}" for role, src in sources.items()}
            fixed = {
                "data": str(copies["train"]),
                "validation": str(copies["validation"]) if "validation" in copies else None,
                "out_root": str(self.settings.adapter_store),
                "max_train_minutes": self.settings.finetune_max_minutes,
                "target_modules": list(self.settings.lora_target_modules),
                "rank": min(TrainConfig.model_fields["rank"].default, self.settings.max_lora_rank),
            }
            options = train_options(request, adapter, version, seed, fixed)
            for role, source in sources.items():
                shutil.copyfile(source, copies[role])
            (folder / "train.json").write_text(json.dumps(options), encoding="utf-8")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.jobs.insert(_record(job_id, owner, request, adapter, version, seed))
        self.jobs.add_event(job_id, f"Validating training file: {request.training_file}")
        job = self.jobs.move(job_id, "queued")
        self.jobs.add_event(job_id, "Files validated, moving job to queued state")
        self.runner.wake()
        self.housekeeping.record(owner, label_of(tenant))
        return job

    async def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(owner, job_id)
        if job["status"] not in ("validating_files", "queued", "running"):
            raise errors.JobNotCancellable(f"job {job_id} has already {job['status']}")
        await self.runner.cancel(job_id)
        return self.jobs.get(owner, job_id)

    def events(self, owner: str, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        self.jobs.get(owner, job_id)  # the owner's, or not found
        return self.jobs.events(job_id, after, limit)

    def checkpoints(self, owner: str, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        self.jobs.get(owner, job_id)
        return self.jobs.checkpoints(job_id, after, limit)

    def _check_limits(self, owner: str) -> None:
        per_hour, now = self.settings.finetune_jobs_per_hour, time.time()
        created, oldest = self.jobs.created_since(owner, now - HOUR_S)
        if created >= per_hour:
            raise errors.RateLimited(
                f"you created {created} fine-tuning jobs in the last hour, the most allowed",
                retry_after=max(1.0, (oldest or now) + HOUR_S - now),
                reason="fine_tuning_job_creations",
            )  # fmt: skip
        most = self.settings.finetune_max_active_jobs
        if self.jobs.active(owner) >= most:
            raise errors.JobLimitReached(
                f"you have {most} fine-tuning jobs queued or running, the most allowed; "
                "wait for one to end or cancel one",
                retry_after=60, reason="fine_tuning_jobs",
            )  # fmt: skip
        used, frees_at = self.jobs.tokens_today(owner)
        budget = self.settings.finetune_tokens_per_day
        if used >= budget:
            wait = (frees_at or time.time() + 3600) - time.time()
            raise errors.TrainingTokensExceeded(
                f"your jobs trained {used} tokens in the last 24 hours; the limit is {budget}",
                retry_after=max(1.0, wait), reason="training_tokens",
            )  # fmt: skip


def _record(
    job_id: str, owner: str, request: JobRequest, adapter: str, version: str, seed: int
) -> dict[str, Any]:
    """OpenAI's ``fine_tuning.job`` object, and ``gateway``: where the version goes."""
    hyperparameters = request.chosen_hyperparameters().model_dump()
    return {
        "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()),
        "finished_at": None, "model": request.model, "fine_tuned_model": None,
        "organization_id": owner, "result_files": [], "status": "validating_files",
        "training_file": request.training_file, "validation_file": request.validation_file,
        "hyperparameters": hyperparameters, "trained_tokens": None, "error": None,
        "seed": seed, "user_provided_suffix": request.suffix, "estimated_finish": None,
        "integrations": [], "metadata": request.metadata or None,
        "method": {"type": "supervised",
                   "supervised": {"hyperparameters": hyperparameters}},
        "gateway": {
            "adapter": adapter, "version": version, "labels": request.gateway.labels,
            "answer": request.gateway.answer, "schema_name": request.gateway.schema_name,
            "promote_if": request.gateway.promote_if.model_dump()
            if request.gateway.promote_if else None,
            "evaluation": None, "promoted": False,
        },
    }  # fmt: skip
