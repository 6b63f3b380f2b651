"""An upload, a promotion and a delete through the registry killed (SIGKILL, a real
forked process) before each of their writes, then a restart: the registry lists only
versions that are whole on disk, the current version is one of them, and a version is
either registered (whole) or not (gone, or a whole folder the registry does not list,
which no request can reach); no hidden staging or trash folder outlives the restart's
sweep. Same machinery as ``test_ending_kills``."""

from __future__ import annotations

import asyncio
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

from gateway.registry.leftovers import STALE_STAGING_S
from tests.adapter_factory import make_peft_folder
from tests.unit.registry.test_ending_kills import NAME, World, _counted, in_child

OPERATIONS = ("upload", "promote", "delete")


def prepare(root: Path) -> tuple[World, Path]:
    """v1 current and v2 registered; an archive of a valid v3 to upload."""
    world = World(root)
    for version in ("v1", "v2"):
        make_peft_folder(world.store / NAME / version, labels=["billing", "other"])
    source = make_peft_folder(root / "src" / "v3", labels=["billing", "other"])
    archive = root / "v3.tar"
    with tarfile.open(archive, "w") as tar:
        for file in sorted(source.iterdir()):
            tar.add(file, arcname=file.name)
    registry = world.registry()
    for version in ("v1", "v2"):
        asyncio.run(registry.register(NAME, version))
    return world, archive


def operate(world: World, operation: str, archive: Path) -> None:
    registry = world.registry()
    if operation == "upload":
        asyncio.run(registry.register_archive(NAME, "v3", archive))
    elif operation == "promote":
        asyncio.run(registry.promote(NAME, "v2"))
    else:
        asyncio.run(registry.delete(NAME, "v2"))


def run_to(root: Path, operation: str, kill_at: int) -> tuple[World, int]:
    world, archive = prepare(root)
    steps, failure = root / "steps.log", root / "failure.txt"

    def work() -> None:
        with pytest.MonkeyPatch.context() as patch:
            _counted(patch, kill_at, steps)
            operate(world, operation, archive)

    status = in_child(work, failure)
    if kill_at:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    else:
        assert os.waitstatus_to_exitcode(status) == 0, failure.read_text()
    return world, len(steps.read_text().splitlines()) if steps.exists() else 0


def check_consistent(world: World, where: str) -> tuple[bool, bool, str | None]:
    """After a restart (in a fresh process): whether v2, v3 are registered; the current."""
    hidden = list((world.store / NAME).glob(".*"))
    for folder in hidden:  # what a publisher killed before its rename left: old by now
        old = time.time() - STALE_STAGING_S - 60
        os.utime(folder, (old, old))
    failure = world.root / "restart.txt"
    assert os.waitstatus_to_exitcode(in_child(world.registry, failure)) == 0, where
    problems: list[str] = []
    registry = world.registry(problems)
    assert problems == [], where  # every registered version is whole on disk
    alias = registry.state.aliases[NAME]
    assert alias.current in alias.versions and "v1" in alias.versions, where
    assert list((world.store / NAME).glob(".*")) == [], where  # swept at the restart
    registered = {}
    for version in ("v2", "v3"):
        registered[version] = version in alias.versions
        folder = world.store / NAME / version
        if registered[version]:
            assert registry.store.inspect(NAME, version), where
        elif folder.exists():  # unlisted: no request reaches it; it is whole, not torn
            assert registry.store.check_folder(folder, NAME, version), where
    return registered["v2"], registered["v3"], alias.current


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_kill_at_any_step_of_an_admin_change_leaves_old_or_new(
    tmp_path: Path, operation: str
) -> None:
    world, steps = run_to(tmp_path / "whole", operation, 0)
    old = (True, False, "v1")
    new = {"upload": (True, True, "v1"), "promote": (True, False, "v2"),
           "delete": (False, False, "v1")}[operation]  # fmt: skip
    assert check_consistent(world, "no kill") == new
    outcomes = set()
    for kill_at in range(1, steps + 1):
        world, _ = run_to(tmp_path / f"kill-{kill_at}", operation, kill_at)
        outcomes.add(check_consistent(world, f"{operation} killed before step {kill_at}"))
    print(f"{operation}: killed before each of {steps} steps, then restarted")
    assert old in outcomes and outcomes <= {old, new}  # never a third state
