"""A fine-tuning job's ending killed (SIGKILL, a real process) at every step, then a
restart: the adapter store, the registry and the job must agree, and nothing registered
may be lost.

Each run forks a child that builds the real registry (its state file on disk, the
engine test double), the real job store (SQLite) and the real ``Endings``, and runs the
job's ending as the runner does after the worker exited. Every write the ending makes
goes through a counted call (the registry's and the job store's file and database
writes, renames, fsyncs, deletes, the engine load); the child kills itself with SIGKILL
just before call number K. A second forked child then starts as the gateway does
(registry recovery, then ``Endings.recover``) and exits. The parent checks the result.
K runs over every step (counted by an unkilled run first), so each scenario covers
all of its kill points (``pytest -s`` prints how many).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.finetune.endings import Endings
from gateway.finetune.jobs import JobStore
from gateway.finetune.tail import Tail
from gateway.registry import leftovers, publish
from gateway.registry.registry import AdapterRegistry
from gateway.registry.state import RegistryState
from gateway.registry.store import AdapterStore
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.registry.test_store import LIMITS

NAME = "acme-intents"
VERSION = "ft-ok-0123456789ab"
JOB_ID = "ftjob-0123456789abcdef01234567"


def _job(promote: bool) -> dict[str, Any]:
    return {
        "id": JOB_ID, "object": "fine_tuning.job", "created_at": 0, "finished_at": None,
        "organization_id": "acme", "status": "validating_files", "model": "base",
        "fine_tuned_model": None, "trained_tokens": None, "error": None,
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                            "learning_rate_multiplier": "auto"},
        "gateway": {"adapter": NAME, "version": VERSION, "labels": None,
                    "answer": "decision_token", "schema_name": "intent_classification",
                    "promote_if": {"min_accuracy": 0.5} if promote else None,
                    "evaluation": None, "promoted": False},
    }  # fmt: skip


RESULT = {
    "type": "result", "name": NAME, "version": VERSION, "trained_tokens": 120,
    "hyperparameters": {"n_epochs": 1},
    "evaluation": {"valid_loss": 0.5, "valid_accuracy": 0.9, "calibration": None},
}  # fmt: skip


class World:
    """The files a gateway finds on disk: store, registry state, job database, job folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store"
        self.state = self.store / "registry.json"
        self.jobs_dir = root / "jobs"
        self.database = root / "jobs.sqlite"

    def registry(self, problems: list[str] | None = None) -> AdapterRegistry:
        """As a gateway starts it: persisted versions re-validated (``problems``: those
        dropped because they are not whole on disk)."""
        registry = AdapterRegistry(
            AdapterStore(self.store, LIMITS), RegistryState.load(self.state), FakeEngine(), 4
        )
        (problems if problems is not None else []).extend(registry.recover())
        return registry

    def endings(self, registry: AdapterRegistry, jobs: JobStore) -> Endings:
        return Endings(jobs, registry, self.jobs_dir, tokens_per_day=10**6)


def prepare(root: Path, scenario: str) -> World:
    """v1 registered and current, owned by the tenant and scored on the job's held-out
    data (so a better job earns its promotion); the job running; its worker has exited."""
    world = World(root)
    make_peft_folder(world.store / NAME / "v1", labels=["billing", "other"])
    folder = world.jobs_dir / JOB_ID
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text('{"text": "my bill", "intent": "billing"}\n')
    jobs = JobStore(world.database)
    job = _job(promote=scenario == "promoted")
    jobs.insert(job)
    jobs.move(JOB_ID, "queued")
    jobs.move(JOB_ID, "running")
    registry = world.registry()
    score = Endings(jobs, registry, world.jobs_dir, 1).score(job, RESULT)
    assert score is not None
    asyncio.run(registry.register(NAME, "v1", "acme", {**score, "accuracy": 0.6}))
    jobs.close()
    events = folder / "events.jsonl"
    if scenario in ("promoted", "registered", "register_refused"):
        make_peft_folder(world.store / NAME / VERSION, labels=["billing", "other"])
        events.write_text(json.dumps(RESULT) + "\n")
    if scenario == "register_refused":  # published, but the store refuses it
        (world.store / NAME / VERSION / "manifest.json").write_text("{}")
    if scenario in ("failed", "cancelled"):  # what a stopped worker leaves
        (world.store / NAME / f".staging-{VERSION}-x").mkdir(parents=True)
        failure = {"type": "failure", "code": "data_check_failed", "message": "checks failed"}
        events.write_text(json.dumps(failure) + "\n")
    return world


def end_job(world: World, scenario: str) -> None:
    """What the runner does once the worker exited (``JobRunner._run``)."""
    jobs = JobStore(world.database)
    endings = world.endings(world.registry(), jobs)
    tail = Tail(world.jobs_dir / JOB_ID / "events.jsonl", JOB_ID, f"{NAME}@{VERSION}")
    tail.read(jobs)
    stop = "cancelled" if scenario == "cancelled" else None
    code = 2 if scenario == "failed" else 0
    asyncio.run(endings.finish(jobs.by_id(JOB_ID), stop, tail, code))


def restart(world: World) -> None:
    """What a gateway start does (``start_services``, then ``FineTuning.start``)."""
    jobs = JobStore(world.database)
    world.endings(world.registry(), jobs).recover()


# counting steps and killing at one ----------------------------------------------------------
def _counted(monkeypatch: pytest.MonkeyPatch, kill_at: int, log: Path) -> None:
    """Wrap every write an ending can make; call number ``kill_at`` is never made: the
    process is killed just before it. Each call is logged (the step count)."""
    calls = 0

    def wrap(owner: Any, attribute: str) -> None:
        original = getattr(owner, attribute)

        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            with log.open("a") as out:
                out.write(f"{calls} {attribute}\n")
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, step)

    for attribute in ("replace", "rename", "fsync", "rmdir", "mkdir"):
        wrap(os, attribute)
    wrap(shutil, "rmtree")
    wrap(leftovers, "remove_folder")
    wrap(publish, "rename_noreplace")  # an upload's publish
    for attribute in ("move", "add_event", "update", "count_tokens", "add_checkpoint"):
        wrap(JobStore, attribute)
    for attribute in ("add_lora", "remove_lora"):
        wrap(FakeEngine, attribute)


def in_child(work: Callable[[], None], failure: Path) -> int:
    """Run ``work`` in a forked process; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            work()
        except BaseException:
            failure.write_text(traceback.format_exc())
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def run_to(root: Path, scenario: str, kill_at: int) -> tuple[World, int]:
    """Prepare, end the job killed before step ``kill_at`` (0: never), restart."""
    world = prepare(root, scenario)
    steps, failure = root / "steps.log", root / "failure.txt"

    def ending() -> None:
        with pytest.MonkeyPatch.context() as patch:
            _counted(patch, kill_at, steps)
            end_job(world, scenario)

    status = in_child(ending, failure)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert killed if kill_at else os.waitstatus_to_exitcode(status) == 0, (
        failure.read_text() if failure.exists() else status
    )
    status = in_child(lambda: restart(world), failure)
    assert os.waitstatus_to_exitcode(status) == 0, failure.read_text()
    taken = len(steps.read_text().splitlines()) if steps.exists() else 0
    return world, taken


def check_consistent(world: World, scenario: str, where: str) -> str:
    """The invariants after any crash and restart; returns the job's final status."""
    problems: list[str] = []
    registry = world.registry(problems)
    assert problems == [], where  # every registered version is whole on disk
    assert registry.is_persisted(NAME, "v1") and registry.store.inspect(NAME, "v1"), where
    jobs = JobStore(world.database)
    job = jobs.by_id(JOB_ID)
    jobs.close()
    registered = registry.is_persisted(NAME, VERSION)
    folder = world.store / NAME / VERSION
    leftover = [p.name for p in (world.store / NAME).iterdir() if p.name.startswith(".")]
    assert leftover == [], (where, leftover)  # no staging or trash folder stays
    if registered:
        assert folder.is_dir(), where
        assert job["status"] == "succeeded", (where, job["status"], job["error"])
        assert job["fine_tuned_model"] == f"{NAME}@{VERSION}", where
        current = registry.current_of(NAME) == VERSION
        assert job["gateway"]["promoted"] is current, where
    else:
        assert not folder.exists(), where  # an unregistered version never stays
        assert job["status"] in ("failed", "cancelled"), (where, job["status"])
        assert registry.current_of(NAME) == "v1", where
    return job["status"]


SCENARIOS = {  # scenario -> the job's status when nothing is killed
    "promoted": "succeeded",
    "registered": "succeeded",
    "register_refused": "failed",
    "failed": "failed",
    "cancelled": "cancelled",
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_kill_at_any_step_of_an_ending_loses_nothing(tmp_path: Path, scenario: str) -> None:
    world, steps = run_to(tmp_path / "whole", scenario, kill_at=0)
    assert check_consistent(world, scenario, "no kill") == SCENARIOS[scenario]
    if scenario == "promoted":  # it earned it: 0.9 >= v1's 0.6 on the same held-out file
        assert world.registry().current_of(NAME) == VERSION
    assert steps >= 2
    outcomes = set()
    for kill_at in range(1, steps + 1):
        world, _ = run_to(tmp_path / f"kill-{kill_at}", scenario, kill_at)
        outcomes.add(check_consistent(world, scenario, f"killed before step {kill_at}"))
    print(f"{scenario}: killed before each of {steps} steps, then restarted")
    if scenario in ("promoted", "registered"):
        assert outcomes == {"succeeded", "failed"}  # killed before or after registering


def test_a_shutdown_during_registration_is_settled_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown cancels the ending while the registry's write runs on in its thread:
    the job is left ``running`` (not failed), and the next start finds it registered."""
    world = prepare(tmp_path, "registered")
    jobs = JobStore(world.database)
    registry = world.registry()
    endings = world.endings(registry, jobs)
    release, commit = threading.Event(), registry.state.commit

    def held_commit(*args: Any) -> None:
        release.wait(10)
        commit(*args)

    monkeypatch.setattr(registry.state, "commit", held_commit)
    tail = Tail(world.jobs_dir / JOB_ID / "events.jsonl", JOB_ID, f"{NAME}@{VERSION}")
    tail.read(jobs)

    async def shutdown_mid_write() -> None:
        ending = asyncio.create_task(endings.finish(jobs.by_id(JOB_ID), None, tail, 0))
        while not registry.is_writing():
            await asyncio.sleep(0.01)
        ending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ending
        endings.fail(jobs.by_id(JOB_ID), "interrupted", "the gateway stopped")  # the runner's
        assert jobs.by_id(JOB_ID)["status"] == "running"
        release.set()
        while registry.is_writing():
            await asyncio.sleep(0.01)

    asyncio.run(shutdown_mid_write())
    jobs.close()
    restart(world)
    assert check_consistent(world, "registered", "shutdown mid-registration") == "succeeded"
