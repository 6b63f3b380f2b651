"""What the HTTP routes call: files and jobs of one owner (the tenant's name, ``open``
without keys), with the per-tenant limits checked before a job is accepted.

A job is accepted in ``validating_files``: its files must be the tenant's own uploads,
which were read by the training readers when they came in; they are copied into the
job's folder (so deleting an upload later does not change a queued job), the training
options are validated, and the job moves to ``queued``. The full data checks need the
tokenizer and run first thing in the worker.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.config import Settings
from gateway.finetune import runner as runner_module
from gateway.finetune.endings import OPEN_OWNER, Registrar
from gateway.finetune.files import FileStore
from gateway.finetune.jobs import JobStore, new_id
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


def owner_of(tenant: Tenant | None) -> str:
    return tenant.name if tenant is not None else OPEN_OWNER


@dataclass
class FineTuning:
    settings: Settings
    files: FileStore
    jobs: JobStore
    runner: JobRunner

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
        files = FileStore(root / "files", settings.finetune_max_file_bytes)
        serving = (
            ServingFirst(settings.finetune_resume_after_idle_s, settings.finetune_min_share)
            if settings.finetune_yield_to_serving else None
        )  # fmt: skip
        runner = JobRunner(jobs, registrar, config, metrics, serving)
        return cls(settings, files, jobs, runner)

    def start(self) -> None:
        """Recover from the last run (jobs that were running fail), then start training."""
        self.runner.endings.recover()  # the registry's state says how each one ended
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        self.jobs.close()

    # jobs --------------------------------------------------------------------------------
    def create_job(self, tenant: Tenant | None, request: JobRequest) -> dict[str, Any]:
        owner = owner_of(tenant)
        self._check_limits(owner)
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
