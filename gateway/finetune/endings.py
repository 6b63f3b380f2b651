"""How a job ends, once its worker has exited: registered (and promoted if it earned
it), cancelled, or failed with a typed code; and, at start-up, how a job whose ending a
crash cut short is settled.

The adapter registry owns the store: this module never deletes there itself. What a
stopped worker left is removed by ``Registrar.discard_unregistered``, which leaves any
registered version alone, so a crash between registering a version and recording the
job cannot cost that version. The registry's persisted state is the truth the job is
settled by: registered means the job succeeded (promoted if the version is current);
not registered means it did not, and its leftovers go.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from gateway import errors
from gateway.finetune.jobs import JobStore
from gateway.finetune.tail import Tail
from gateway.training.checks import CheckReport

log = logging.getLogger(__name__)
OPEN_OWNER = "open"  # auth_mode none: one owner for every caller, who is the operator


class Registrar(Protocol):
    """What a job's ending needs of the adapter registry, the store's owner."""

    async def register(
        self, name: str, version: str, owner: str | None = None, score: dict | None = None
    ) -> dict[str, Any]: ...

    async def promote_earned(self, name: str, version: str, owner: str | None) -> str | None: ...

    def is_persisted(self, name: str, version: str) -> bool: ...

    def adapter_owner(self, name: str) -> tuple[bool, str | None]: ...

    def current_of(self, name: str) -> str | None: ...

    def discard_unregistered(self, name: str, version: str) -> list[str]: ...

    def is_writing(self) -> bool: ...


def registry_owner(job: dict[str, Any]) -> str | None:
    """The owner the registry records: the tenant, or None (the operator) without keys."""
    owner = job["organization_id"]
    return None if owner == OPEN_OWNER else owner


class Endings:
    def __init__(
        self, jobs: JobStore, registrar: Registrar, jobs_dir: Path, tokens_per_day: int
    ) -> None:
        self.jobs = jobs
        self.registrar = registrar
        self.jobs_dir = jobs_dir  # each job's folder: its validation copy, its events
        self.tokens_per_day = tokens_per_day

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
        """Register (one atomic commit of the registry's state, with the owner and the
        held-out score), then promote if earned, then record the job."""
        job_id, extension = job["id"], dict(job["gateway"])
        name, version = result["name"], result["version"]
        owner, score = registry_owner(job), self.score(job, result)
        try:
            await self.registrar.register(name, version, owner, score)
        except errors.GatewayError as exc:
            self.fail(job, exc.code, f"the trained version could not be registered: {exc}")
            return
        evaluation = result["evaluation"]
        extension.update(evaluation=evaluation, promoted=False)
        wanted = (extension.get("promote_if") or {}).get("min_accuracy")
        accuracy = evaluation.get("valid_accuracy")
        if wanted is not None and accuracy is not None and accuracy >= wanted:
            try:
                refusal = await self.registrar.promote_earned(name, version, owner)
            except errors.GatewayError as exc:  # e.g. the engine could not load it
                refusal = exc.message
            if refusal is None:
                extension["promoted"] = True
                self.jobs.add_event(job_id, f"Promoted: validation accuracy {accuracy:.3f} >= "
                                    f"{wanted}; {name} now serves {version}")  # fmt: skip
            else:
                self.jobs.add_event(job_id, f"Not promoted: {refusal}", level="warn")
        elif wanted is not None:
            self.jobs.add_event(job_id, f"Not promoted: validation accuracy {accuracy} is "
                                f"below {wanted}; {name}'s current version stays")  # fmt: skip
        hyperparameters = {**job["hyperparameters"], **result["hyperparameters"]}
        self.jobs.move(job_id, "succeeded", fine_tuned_model=f"{name}@{version}",
                       trained_tokens=result["trained_tokens"], gateway=extension,
                       hyperparameters=hyperparameters)  # fmt: skip
        self.jobs.add_event(job_id, f"The job has successfully completed: {name}@{version}")

    def fail(self, job: dict[str, Any], code: str, message: str, **extra: Any) -> None:
        """The job failed, unless its version is registered by now (a fault after the
        registration): then it is recorded as the success it was."""
        if self._registered(job):
            self.settle_registered(job, f"after its version was registered: {message}")
            return
        if code == "interrupted" and self.registrar.is_writing():
            # shutdown cancelled a registration whose write still runs: whether the
            # version is registered is known only after it; the next start settles it
            log.warning("fine-tuning job %s: left running for the next start", job["id"])
            return
        self.discard(job)
        tokens = extra.pop("tokens", None)
        error = {"code": code, "message": message, "param": None, **extra}
        self.jobs.move(job["id"], "failed", error=error, trained_tokens=tokens)
        self.jobs.add_event(job["id"], message, level="error")

    def discard(self, job: dict[str, Any]) -> None:
        """Whatever a stopped worker left in the store for this job's version (its name
        carries the job id), removed by the store's owner only if it is not registered."""
        name, version = job["gateway"]["adapter"], job["gateway"]["version"]
        removed = self.registrar.discard_unregistered(name, version)
        if removed:
            log.info("fine-tuning job %s: removed %s", job["id"], ", ".join(removed))

    # held-out scores ---------------------------------------------------------------------
    def score(self, job: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
        """The version's accuracy on the job's validation file, keyed by that file's
        content and the answer format, so only scores on identical data compare. None
        without a validation file (the held-out rows were split from the training data)."""
        accuracy = (result.get("evaluation") or {}).get("valid_accuracy")
        copies = sorted((self.jobs_dir / job["id"]).glob("validation*"))
        if accuracy is None or not copies:
            return None
        options = job["gateway"]
        key = [hashlib.sha256(copies[0].read_bytes()).hexdigest(), options.get("answer"),
               options.get("schema_name"), options.get("labels")]  # fmt: skip
        held_out = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        return {"held_out": held_out, "accuracy": float(accuracy)}

    # after a crash -----------------------------------------------------------------------
    def recover(self) -> None:
        """At start-up, for each job the last process left running: registered -> it
        succeeded (promoted if its version is current); otherwise it failed as
        ``interrupted`` and what it left in the store goes."""
        for job_id in self.jobs.unfinished():
            job = self.jobs.by_id(job_id)
            if self._registered(job):
                self.settle_registered(job, "before the job was recorded")
        for job_id in self.jobs.recover():
            log.warning("fine-tuning job %s was running when the gateway stopped: failed", job_id)
            self.discard(self.jobs.by_id(job_id))

    def settle_registered(self, job: dict[str, Any], when: str) -> None:
        """Record a job whose version the registry holds as succeeded, with what the
        worker reported (its ``result`` line) and whether the version is current."""
        name, version = job["gateway"]["adapter"], job["gateway"]["version"]
        result = self._result_line(job["id"]) or {}
        promoted = self.registrar.current_of(name) == version
        extension = {**job["gateway"], "evaluation": result.get("evaluation"),
                     "promoted": promoted}  # fmt: skip
        hyperparameters = {**job["hyperparameters"], **result.get("hyperparameters", {})}
        self.jobs.move(job["id"], "succeeded", fine_tuned_model=f"{name}@{version}",
                       trained_tokens=result.get("trained_tokens"), gateway=extension,
                       hyperparameters=hyperparameters)  # fmt: skip
        state = "it is the current version" if promoted else "it is not the current version"
        self.jobs.add_event(job["id"], f"The gateway stopped {when}; {name}@{version} is "
                            f"registered and {state}", level="warn")  # fmt: skip

    def _registered(self, job: dict[str, Any]) -> bool:
        return self.registrar.is_persisted(job["gateway"]["adapter"], job["gateway"]["version"])

    def _result_line(self, job_id: str) -> dict[str, Any] | None:
        path = self.jobs_dir / job_id / "events.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line the worker was killed writing
                continue
            if isinstance(event, dict) and event.get("type") == "result":
                return event
        return None
