"""The engine's processes die with the gateway (``gateway.common.lifeline``), shown on a
process tree built the way vLLM builds its own (``lifeline_child``): a gateway, an engine
core it spawned, a worker the core spawned; the gateway is SIGKILLed, without a chance to
clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.common import lifeline
from tests.processes import alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after ``seconds`` (the bound only stops a failing test)."""
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


class Tree:
    def __init__(self, mode: str, tmp_path: Path) -> None:
        self.go = tmp_path / "go"
        command = [sys.executable, "-m", "tests.unit.common.lifeline_child", mode, str(self.go)]
        self.gateway = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.seen: dict[str, tuple[int, int]] = {}

    def wait_for(self, role: str) -> tuple[int, int]:
        assert self.gateway.stdout is not None
        while role not in self.seen:
            line = self.gateway.stdout.readline()
            assert line, f"the tree ended before its {role} reported"
            name, pid, signum = line.split()
            self.seen[name] = (int(pid), int(signum))
        return self.seen[role]

    def kill_gateway(self) -> None:
        self.gateway.kill()
        self.gateway.wait()

    def pids(self) -> list[int]:
        return [pid for pid, _ in self.seen.values()]


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[list[Tree]]:
    made: list[Tree] = []
    yield made
    for tree in made:  # whatever a failing test left: never leave processes running
        tree.kill_gateway()
        for pid in tree.pids():
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
        assert tree.gateway.stdout is not None
        tree.gateway.stdout.close()


def test_engine_core_and_worker_die_with_a_killed_gateway(
    tmp_path: Path, trees: list[Tree]
) -> None:
    tree = Tree("handed", tmp_path)
    trees.append(tree)
    tree.go.touch()
    core, core_signal = tree.wait_for("core")
    worker, worker_signal = tree.wait_for("worker")
    assert core_signal == worker_signal == signal.SIGKILL
    tree.kill_gateway()
    assert gone_within([core, worker], 10) == []


def test_a_core_whose_gateway_died_before_it_registered_exits(
    tmp_path: Path, trees: list[Tree]
) -> None:
    tree = Tree("late", tmp_path)
    trees.append(tree)
    core, _ = tree.wait_for("started")
    tree.kill_gateway()  # before the core asked for the signal: the kernel will not send it
    assert alive(core)
    tree.go.touch()
    assert gone_within([core], 10) == []


def test_without_hand_down_nothing_is_tied(tmp_path: Path, trees: list[Tree]) -> None:
    """vLLM used outside the gateway (another program, a notebook) keeps vLLM's behaviour."""
    tree = Tree("plain", tmp_path)
    trees.append(tree)
    tree.go.touch()
    _, core_signal = tree.wait_for("core")
    _, worker_signal = tree.wait_for("worker")
    assert core_signal == worker_signal == 0


def test_a_process_started_through_another_one_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM loaded by a grandchild (through a shell, say) whose handing process lives:
    not its parent, so no signal, and no exit either."""
    monkeypatch.setenv(lifeline.ENV_VAR, str(os.getpid()))
    code = (
        "from gateway.common import lifeline; lifeline.register(); print(lifeline.death_signal())"
    )
    shell = f"{sys.executable} -c '{code}'; true"  # the trailing command keeps sh in between
    done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"


def test_the_gateway_itself_is_never_tied_to_its_own_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``register`` runs in the gateway too (vLLM loads plugins there): a gateway started
    from a shell must outlive that shell, so there it does nothing."""
    for name in (lifeline.ENV_VAR, "VLLM_WORKER_MULTIPROC_METHOD"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever hand_down sets
    lifeline.hand_down()
    lifeline.register()
    assert lifeline.death_signal() == 0
