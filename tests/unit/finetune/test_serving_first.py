"""Training steps aside while serving: a real child process is stopped when a request is
admitted and continued once serving has been idle, with a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.finetune.serving_first import ServingFirst


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(pid: int) -> str:
    """The process's state letter: T stopped, S sleeping, R running."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def worker() -> Iterator[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield child.pid
    child.kill()
    child.wait()


def wait_for(pid: int, letter: str) -> None:
    for _ in range(200):
        if (state(pid) == "T") == (letter == "T"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is {state(pid)}, not {letter}")


async def test_a_request_pauses_the_worker_until_serving_is_idle(worker: int) -> None:
    clock = Clock()
    gate = ServingFirst(idle_s=1.0, clock=clock)
    gate.add(worker)
    wait_for(worker, "S")  # nothing in flight: it runs
    gate.started()
    wait_for(worker, "T")
    assert gate.paused
    gate.finished()
    clock.now += 0.5
    gate.decide()
    wait_for(worker, "T")  # idle, but not for long enough
    clock.now += 0.6
    gate.decide()
    wait_for(worker, "S")
    assert not gate.paused and gate.seconds_paused() == pytest.approx(1.1)
    gate.remove(worker)


async def test_a_worker_that_starts_while_serving_is_busy_starts_paused(worker: int) -> None:
    gate = ServingFirst(clock=Clock())
    gate.started()
    gate.add(worker)
    wait_for(worker, "T")
    gate.remove(worker)  # before a cancel's SIGTERM: a stopped process would not see it
    wait_for(worker, "S")


async def test_a_minimum_share_runs_a_starving_worker_for_its_slice(worker: int) -> None:
    clock = Clock()
    gate = ServingFirst(min_share=0.2, window_s=10.0, clock=clock)
    gate.add(worker)
    gate.started()  # constant traffic from here on
    wait_for(worker, "T")
    clock.now += 7.9
    gate.decide()
    wait_for(worker, "T")
    clock.now += 0.2  # paused for 8 s of the 10 s window: its 2 s now
    gate.decide()
    wait_for(worker, "S")
    gate.started()  # another request within its slice does not cut it
    clock.now += 1.9
    gate.decide()
    wait_for(worker, "S")
    clock.now += 0.2
    gate.decide()
    wait_for(worker, "T")
    gate.remove(worker)
