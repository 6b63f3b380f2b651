"""How a job ends, once its worker has exited: registered (and promoted if it earned
it), cancelled, or failed with a typed code. Every ending but success removes what the
worker left in the adapter store for the job's version, so nothing half-made remains."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any, Protocol

from gateway import errors
from gateway.finetune.jobs import JobStore
from gateway.finetune.tail import Tail
from gateway.training.checks import CheckReport

log = logging.getLogger(__name__)


class Registrar(Protocol):
    """What a job's ending needs of the adapter registry."""

    async def register(self, name: str, version: str) -> dict[str, Any]: ...

    async def promote(self, name: str, version: str) -> dict[str, Any]: ...


class Endings:
    def __init__(
        self, jobs: JobStore, registrar: Registrar, store: Path, tokens_per_day: int
    ) -> None:
        self.jobs = jobs
        self.registrar = registrar
        self.store = store  # the adapter store the worker publishes into
        self.tokens_per_day = tokens_per_day
        self._registered: set[str] = set()  # jobs whose version is the registry's now

    async def finish(
        self, job: dict[str, Any], stop_reason: str | None, tail: Tail, code: int
    ) -> None:
        """After the worker exited with ``code``, asked to stop for ``stop_reason`` or not."""
        job_id, ending = job["id"], tail.ending
        if stop_reason == "cancelled":
            self.discard(job)
            self.jobs.move(job_id, "cancelled", trained_tokens=tail.tokens)
            self.jobs.add_event(job_id, "Job cancelled; nothing was registered")
        elif stop_reason == "budget":
            self.fail(job, "training_token_budget_exceeded", "the tenant's training tokens "
                      f"of the last 24 hours passed {self.tokens_per_day}",
                      tokens=tail.tokens)  # fmt: skip
        elif code == 0 and ending is not None and ending["type"] == "result":
            await self.succeed(job, ending)
        elif ending is not None and ending["type"] == "failure":
            message, findings = ending["message"], ending.get("findings")
            if findings:
                rows = [(f["check"], f["status"], f["detail"]) for f in findings]
                message = f"{message}\n{CheckReport(rows).table()}"
            self.fail(job, ending["code"], message, findings=findings)
        else:
            log.error("fine-tuning job %s: the worker exited with %s; its output is in "
                      "worker.log in the job's folder", job_id, code)  # fmt: skip
            self.fail(job, "training_error", f"the training worker exited with status {code}; "
                      f"the gateway log has its output under job id {job_id}")  # fmt: skip

    async def succeed(self, job: dict[str, Any], result: dict[str, Any]) -> None:
        job_id, extension = job["id"], dict(job["gateway"])
        name, version = result["name"], result["version"]
        try:
            await self.registrar.register(name, version)
        except errors.GatewayError as exc:
            self.fail(job, exc.code, f"the trained version could not be registered: {exc}")
            return
        self._registered.add(job_id)  # from here on, never discarded
        evaluation = result["evaluation"]
        extension.update(evaluation=evaluation, promoted=False)
        wanted = (extension.get("promote_if") or {}).get("min_accuracy")
        accuracy = evaluation.get("valid_accuracy")
        if wanted is not None and accuracy is not None and accuracy >= wanted:
            try:
                await self.registrar.promote(name, version)
                extension["promoted"] = True
                self.jobs.add_event(job_id, f"Promoted: validation accuracy {accuracy:.3f} >= "
                                    f"{wanted}; {name} now serves {version}")  # fmt: skip
            except errors.GatewayError as exc:  # e.g. the engine could not load it
                self.jobs.add_event(job_id, f"Not promoted: {exc.message}", level="warn")
        elif wanted is not None:
            self.jobs.add_event(job_id, f"Not promoted: validation accuracy {accuracy} is "
                                f"below {wanted}; {name}'s current version stays")  # fmt: skip
        hyperparameters = {**job["hyperparameters"], **result["hyperparameters"]}
        self.jobs.move(job_id, "succeeded", fine_tuned_model=f"{name}@{version}",
                       trained_tokens=result["trained_tokens"], gateway=extension,
                       hyperparameters=hyperparameters)  # fmt: skip
        self.jobs.add_event(job_id, f"The job has successfully completed: {name}@{version}")

    def fail(self, job: dict[str, Any], code: str, message: str, **extra: Any) -> None:
        self.discard(job)
        tokens = extra.pop("tokens", None)
        error = {"code": code, "message": message, "param": None, **extra}
        self.jobs.move(job["id"], "failed", error=error, trained_tokens=tokens)
        self.jobs.add_event(job["id"], message, level="error")

    def discard(self, job: dict[str, Any]) -> None:
        """Whatever a stopped worker left in the store for this job's version, which is
        this job's alone (its name carries the job id) and was never registered."""
        if job["id"] in self._registered:
            return
        name, version = job["gateway"]["adapter"], job["gateway"]["version"]
        folder = self.store / name
        for leftover in [folder / version, *folder.glob(f".staging-{version}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: another version keeps it
