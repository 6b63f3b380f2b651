"""Runs queued jobs, ``max_running`` at a time (one by default), each in a worker process.

The worker starts under ``nice`` and Linux's ``SCHED_IDLE`` policy with its torch
threads capped, and is paused while requests are in flight (``serving_first``: measured,
a low priority alone still cost serving several times its latency). It is the leader of
its own process group, so a cancel (SIGTERM, then SIGKILL after ``grace_s``) reaches
whatever it started. While it runs, its event file is read into the job store. When it
has published a version, the runner registers it in the running gateway (the registry's
own ``register``: validated, persisted, usable at once) and promotes it only if the
job's ``promote_if`` was met. A job that ends any other way leaves nothing in the store:
its version folder and staging leftovers are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.finetune.endings import Endings, Registrar
from gateway.finetune.jobs import JobStore
from gateway.finetune.serving_first import ServingFirst
from gateway.finetune.tail import Tail
from gateway.observability.metrics import GatewayMetrics

log = logging.getLogger(__name__)
WORKER = (sys.executable, "-m", "gateway.finetune.worker")
POLL_S = 0.5


@dataclass(frozen=True)
class RunnerSettings:
    jobs_dir: Path
    store: Path  # the adapter store the worker publishes into
    runtime: dict[str, Any]  # spec.json's base, limits and threads
    nice: int
    sched_idle: bool  # SCHED_IDLE on top of nice, where the platform has it
    grace_s: float
    tokens_per_day: int
    max_running: int
    command: tuple[str, ...]  # ``WORKER``; tests name a stand-in worker
    poll_s: float = POLL_S  # how often a running worker's events are read


@dataclass
class Running:
    tail: Tail
    process: asyncio.subprocess.Process | None = None  # None while it starts
    stop_reason: str | None = None  # "cancelled", "budget" or "shutdown" once asked to stop
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobRunner:
    def __init__(
        self,
        jobs: JobStore,
        registrar: Registrar,
        config: RunnerSettings,
        metrics: GatewayMetrics,
        serving: ServingFirst | None = None,
    ) -> None:
        self.jobs = jobs
        self.serving = serving  # pauses workers while requests are in flight
        self.config = config
        self.metrics = metrics
        self.running: dict[str, Running] = {}
        # called with a job's id once it has its final status (its folder is cleaned up)
        self.on_end: Callable[[str], None] | None = None
        self.endings = Endings(jobs, registrar, config.jobs_dir, config.tokens_per_day)
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._loop()) for _ in range(self.config.max_running)]
        self.refresh_metrics()

    def wake(self) -> None:
        """A job was queued."""
        self._wake.set()
        self.refresh_metrics()

    async def stop(self) -> None:
        """Gateway shutdown: workers are stopped and their jobs fail as ``interrupted``."""
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def cancel(self, job_id: str) -> None:
        """Stop a running job's worker; returns once the job has its final status."""
        running = self.running.get(job_id)
        if running is not None:
            await self._stop_worker(running, "cancelled")
            await running.done.wait()
        else:  # validating or queued: nothing runs yet
            self.jobs.move(job_id, "cancelled")
            self.jobs.add_event(job_id, "Job cancelled before it started")
            self.ended(job_id)
            self.refresh_metrics()

    def refresh_metrics(self) -> None:
        counts = self.jobs.counts()
        for status, count in counts.items():
            self.metrics.finetune_jobs.labels(status=status).set(count)
        self.metrics.finetune_queue.set(counts["queued"])
        speed = sum(r.tail.tokens_per_second for r in self.running.values())
        self.metrics.finetune_tokens_per_second.set(speed)
        if self.serving is not None:
            self.metrics.finetune_paused.set(1 if self.serving.paused else 0)
            self.metrics.finetune_paused_seconds.set(self.serving.seconds_paused())

    # the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            job = self.jobs.next_queued()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.jobs.move(job["id"], "running")  # claimed: no await since next_queued
            self.jobs.add_event(job["id"], "Fine-tuning job started")
            try:
                await self._run(job)
            except Exception:  # recording the job's end failed: keep serving the queue
                log.exception("fine-tuning job %s: its ending could not be recorded", job["id"])

    async def _run(self, job: dict[str, Any]) -> None:
        job_id, extension = job["id"], job["gateway"]
        folder = self.config.jobs_dir / job_id
        used, _ = self.jobs.tokens_today(job["organization_id"])
        allowed = self.config.tokens_per_day - used
        model = f"{extension['adapter']}@{extension['version']}"
        running = Running(Tail(folder / "events.jsonl", job_id, model))
        self.running[job_id] = running  # from here a cancel reaches this job
        try:
            running.process = process = await self._launch(folder)
            if self.serving is not None:
                self.serving.add(process.pid)  # its process group: start_new_session
            if running.stop_reason is not None:  # cancelled while it started
                await self._stop_worker(running, running.stop_reason)
            self.refresh_metrics()
            while process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), self.config.poll_s)
                running.tail.read(self.jobs)
                if running.tail.tokens > allowed and running.stop_reason is None:
                    await self._stop_worker(running, "budget")
                self.refresh_metrics()
            await self.endings.finish(job, running.stop_reason, running.tail, process.returncode)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_worker(running, "shutdown"))
            self.endings.fail(job, "interrupted", "the gateway stopped while this job was "
                              "running; nothing was registered. Create the job again to "
                              "retrain.")  # fmt: skip
            raise
        except Exception as exc:  # a fault of ours: the job fails, the runner goes on
            error = errors.traced(errors.GatewayError, f"fine-tuning job {job_id} failed", log, exc)
            self.endings.fail(job, "training_error", error.message)
        finally:
            if self.serving is not None and running.process is not None:
                self.serving.remove(running.process.pid)
            self.running.pop(job_id, None)
            self.ended(job_id)
            running.done.set()
            self.refresh_metrics()

    def ended(self, job_id: str) -> None:
        if self.on_end is not None:
            try:
                self.on_end(job_id)
            except Exception:  # cleaning up is not worth a stopped queue
                log.exception("fine-tuning job %s: cleaning up after it failed", job_id)

    async def _launch(self, folder: Path) -> asyncio.subprocess.Process:
        train = json.loads((folder / "train.json").read_text(encoding="utf-8"))
        spec = {"train": train, **self.config.runtime}
        (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        threads = str(spec["threads"])
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "TOKENIZERS_PARALLELISM": "false",
               "GATEWAY_FINETUNE_PARENT": str(os.getpid())}  # fmt: skip
        command = ["nice", "-n", str(self.config.nice), *self.config.command, str(folder)]
        with (folder / "worker.log").open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=out, stderr=out, env=env, start_new_session=True
            )
        if self.config.sched_idle:
            idle_policy(process.pid)
        return process

    async def _stop_worker(self, running: Running, reason: str) -> None:
        """SIGTERM to the worker's process group, SIGKILL after the grace period."""
        running.stop_reason = running.stop_reason or reason
        process = running.process
        if self.serving is not None and process is not None:
            self.serving.remove(process.pid)  # a stopped process would not see SIGTERM
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process is None or process.returncode is not None:
                return  # not started yet: ``_run`` stops it as soon as it has started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), self.config.grace_s)


def idle_policy(pid: int) -> None:
    """Put every thread of ``pid`` under ``SCHED_IDLE``. It is set from here, just after the
    start, before the worker has imported torch (seconds later), so the threads torch then
    starts inherit it; each thread already there is set too, so none is missed."""
    if not hasattr(os, "SCHED_IDLE"):
        log.warning("SCHED_IDLE is not available here; the worker runs under nice only")
        return
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            os.sched_setscheduler(int(thread), os.SCHED_IDLE, os.sched_param(0))
    except (FileNotFoundError, ProcessLookupError):
        pass  # it already exited: its ending is read as usual
    except PermissionError as exc:  # a sandbox may refuse it; serving comes first: say so
        log.warning("could not set SCHED_IDLE on the training worker: %s", exc)
