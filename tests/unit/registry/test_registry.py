"""Registry: aliases, leases, residency and crash-safe state, against the engine test double."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway import errors
from gateway.registry.registry import AdapterRegistry
from gateway.registry.state import RegistryState
from gateway.registry.store import AdapterStore
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.registry.test_store import LIMITS


def _registry(root: Path, engine: FakeEngine, capacity: int = 2) -> AdapterRegistry:
    state = RegistryState.load(root / "registry.json")
    registry = AdapterRegistry(AdapterStore(root, LIMITS), state, engine, capacity)
    registry.recover()
    return registry


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name, version in [("demo", "v1"), ("demo", "v2"), ("other", "v1"), ("third", "v1")]:
        make_peft_folder(tmp_path / "store" / name / version)
    return tmp_path / "store"


async def test_promote_and_rollback_move_the_alias(root: Path) -> None:
    registry = _registry(root, FakeEngine())
    assert (await registry.register("demo", "v1"))["current"] == "v1"
    assert (await registry.register("demo", "v2"))["current"] == "v1"  # first one stays
    assert (await registry.promote("demo", "v2")) == {
        "name": "demo", "previous": "v1", "current": "v2",
    }  # fmt: skip
    assert registry.current("demo").version == "v2"
    assert (await registry.rollback("demo"))["current"] == "v1"
    with pytest.raises(errors.Conflict):
        await registry.rollback("demo")  # nothing earlier than v1
    with pytest.raises(errors.Conflict):
        await registry.register("demo", "v1")
    with pytest.raises(errors.AdapterNotFound):
        await registry.promote("demo", "v7")


async def test_state_survives_a_restart(root: Path) -> None:
    registry = _registry(root, FakeEngine())
    await registry.register("demo", "v1")
    await registry.register("demo", "v2")
    await registry.promote("demo", "v2")
    again = _registry(root, FakeEngine())
    assert again.current("demo").version == "v2"
    assert (await again.rollback("demo"))["current"] == "v1"


async def test_requests_keep_the_version_they_were_admitted_with(root: Path) -> None:
    engine = FakeEngine()
    registry = _registry(root, engine)
    await registry.register("demo", "v1")
    await registry.register("demo", "v2")
    admitted = registry.current("demo")
    async with registry.lease(admitted) as lora:
        await registry.promote("demo", "v2")
        assert lora.name == "demo@v1"
        assert registry.current("demo").version == "v2"
        with pytest.raises(errors.Conflict):  # v1 is busy: not unloaded under the request
            await registry.unload("demo", "v1")
    assert (await registry.unload("demo", "v1"))["changed"] is True
    assert [x.name for x in engine.loras] == ["demo@v2"]


async def test_lru_eviction_never_takes_a_busy_slot(root: Path) -> None:
    engine = FakeEngine()
    registry = _registry(root, engine, capacity=2)
    for name in ("demo", "other", "third"):
        await registry.register(name, "v1")
    demo, other, third = (registry.current(n) for n in ("demo", "other", "third"))
    async with registry.lease(demo):
        await registry.load("other")
        await registry.load("third")  # evicts "other" (LRU and idle), not busy "demo"
        assert {x.name for x in engine.loras} == {"demo@v1", "third@v1"}
        async with registry.lease(third):
            with pytest.raises(errors.AdapterUnavailable):
                async with registry.lease(other):
                    pass
    assert registry.residency.events == {"loads": 3, "evictions": 1}


async def test_concurrent_first_requests_load_once(root: Path) -> None:
    engine = FakeEngine()
    registry = _registry(root, engine)
    await registry.register("demo", "v1")
    found = registry.current("demo")

    async def use() -> None:
        async with registry.lease(found):
            await asyncio.sleep(0)

    await asyncio.gather(*(use() for _ in range(10)))
    assert len(engine.loras) == 1
    assert registry.residency.leases(registry.lora_ref(found).lora_id) == 0


async def test_delete_refuses_the_current_version_and_removes_files(root: Path) -> None:
    engine = FakeEngine()
    registry = _registry(root, engine)
    await registry.register("demo", "v1")
    await registry.register("demo", "v2")
    with pytest.raises(errors.Conflict):
        await registry.delete("demo", "v1")
    await registry.load("demo", "v2")
    assert (await registry.delete("demo", "v2"))["current"] == "v1"
    assert not (root / "demo" / "v2").exists()
    assert [p.name for p in (root / "demo").iterdir()] == ["v1"]  # no trash left
    assert engine.loras == []  # its engine slot was freed
    assert _registry(root, FakeEngine()).describe()[0]["versions"][0]["version"] == "v1"


async def test_an_adapter_is_deleted_whole_but_not_while_in_use(root: Path) -> None:
    engine = FakeEngine()
    registry = _registry(root, engine)
    await registry.register("demo", "v1")
    await registry.register("demo", "v2")
    await registry.register("other", "v1")
    (root / "demo" / "v3").mkdir()  # in the store, never registered: not the registry's
    async with registry.lease(registry.version("demo", "v2")):
        with pytest.raises(errors.Conflict):
            await registry.delete_adapter("demo")
    assert registry.current("demo").version == "v1"  # refused: nothing changed
    assert await registry.delete_adapter("demo") == {"deleted": "demo", "versions": ["v1", "v2"]}
    assert sorted(p.name for p in (root / "demo").iterdir()) == ["v3"]
    assert engine.loras == []  # its engine slots were freed
    with pytest.raises(errors.AdapterNotFound):
        registry.current("demo")
    assert [a["name"] for a in _registry(root, FakeEngine()).describe()] == ["other"]
    with pytest.raises(errors.AdapterNotFound):
        await registry.delete_adapter("demo")


async def test_recovery_drops_versions_that_vanished(root: Path) -> None:
    registry = _registry(root, FakeEngine())
    await registry.register("demo", "v1")
    await registry.register("demo", "v2")
    await registry.promote("demo", "v2")
    (root / "demo" / "v2" / "adapter_model.safetensors").write_bytes(b"junk")
    again = AdapterRegistry(
        AdapterStore(root, LIMITS), RegistryState.load(root / "registry.json"), FakeEngine(), 2
    )
    problems = again.recover()
    assert len(problems) == 1 and "demo/v2" in problems[0]
    assert again.current("demo").version == "v1"  # fell back to the previous version


def test_a_corrupt_state_file_stops_start_up(root: Path) -> None:
    (root / "registry.json").write_text("{torn")
    with pytest.raises(ValueError, match="unreadable"):
        RegistryState.load(root / "registry.json")


KILLER = textwrap.dedent(
    """
    import os, sys
    from gateway.registry.state import RegistryState, AliasState
    state = RegistryState.load(sys.argv[1] and __import__("pathlib").Path(sys.argv[1]))
    i = 0
    while True:  # rewrite the state as fast as possible until killed
        i += 1
        state.commit({"demo": AliasState(versions=[f"v{j}" for j in range(1, 300)],
                                         current=f"v{1 + i % 299}", history=[])})
        if i == 50:
            print("ready", flush=True)
    """
)


def test_a_process_killed_mid_write_leaves_a_whole_state(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    for _ in range(3):
        with subprocess.Popen(
            [sys.executable, "-c", KILLER, str(path)], stdout=subprocess.PIPE, text=True
        ) as child:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            os.kill(child.pid, signal.SIGKILL)
        state = RegistryState.load(path)  # parses: the old or the new file, never torn
        assert state.aliases["demo"].current in state.aliases["demo"].versions
        assert json.loads(path.read_text())["format"] == 1
