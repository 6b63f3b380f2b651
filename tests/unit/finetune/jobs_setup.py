"""Job records for the store and runner tests, in the shape the service writes."""

from __future__ import annotations

from typing import Any

from gateway.finetune.jobs import JobStore, new_id


def job(owner: str = "acme", suffix: str = "ok", **gateway: Any) -> dict[str, Any]:
    job_id = new_id("ftjob")
    return {
        "id": job_id, "object": "fine_tuning.job", "created_at": 0, "finished_at": None,
        "organization_id": owner, "status": "validating_files", "model": "base",
        "fine_tuned_model": None,
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                            "learning_rate_multiplier": "auto"},
        "gateway": {"adapter": "acme-intents", "version": f"ft-{suffix}-{job_id[-12:]}",
                    "promote_if": None, **gateway},
    }  # fmt: skip


def queued(jobs: JobStore, **options: Any) -> dict[str, Any]:
    record = jobs.insert(job(**options))
    return jobs.move(record["id"], "queued")
