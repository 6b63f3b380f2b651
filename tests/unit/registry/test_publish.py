"""The publisher: stage -> validate -> atomic rename, never replacing or deleting a version."""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import AdapterInvalid, AdapterVersionExists
from gateway.registry import publish as publisher
from gateway.registry.publish import publish, staging
from gateway.registry.registry import AdapterRegistry
from gateway.registry.state import RegistryState
from gateway.registry.store import AdapterStore
from gateway.registry.upload import install_archive
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.registry.test_store import LIMITS
from tests.unit.registry.test_upload import _adapter_files, _archive


def _no_renameat2(*_: object) -> int:
    ctypes.set_errno(errno.EINVAL)  # what renameat2 says on a filesystem without the flag
    return -1


@pytest.fixture(params=["renameat2", "mkdir-claim"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdapterStore]:
    """Every test runs with the kernel's no-replace rename and with the fallback."""
    if request.param == "renameat2" and publisher._RENAMEAT2 is None:
        pytest.skip("this libc has no renameat2")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "mkdir-claim":
            patch.setattr(publisher, "_RENAMEAT2", _no_renameat2)
        (tmp_path / "store").mkdir()
        yield AdapterStore(tmp_path / "store", LIMITS)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _hidden(store: AdapterStore) -> list[Path]:
    return list(store.root.rglob(".*"))


def _publish_new(store: AdapterStore, version: str, rank: int = 8) -> Path:
    with staging(store, "demo", version) as folder:
        make_peft_folder(folder, rank=rank)
        return publish(store, "demo", version, folder).path


def test_a_valid_staged_folder_is_published(store: AdapterStore) -> None:
    with staging(store, "demo", "v1") as folder:
        assert folder.parent == store.root / "demo" and folder.name.startswith(".")
        make_peft_folder(folder, rank=4)
        found = publish(store, "demo", "v1", folder)
    assert found.path == store.root / "demo" / "v1"
    assert store.inspect("demo", "v1").rank == found.rank == 4
    assert not _hidden(store)


def test_an_existing_version_is_refused_and_left_byte_identical(store: AdapterStore) -> None:
    existing = _publish_new(store, "v1", rank=8)
    before = _snapshot(existing)
    with (
        pytest.raises(AdapterVersionExists, match="demo/v1 already exists") as refused,
        staging(store, "demo", "v1"),
    ):
        pass  # refused before any work is staged
    assert (refused.value.status_code, refused.value.code) == (409, "adapter_version_exists")
    with staging(store, "demo", "v2") as folder:
        make_peft_folder(folder, rank=2)
        with pytest.raises(AdapterVersionExists):
            publish(store, "demo", "v1", folder)  # another version's staging folder, same place
    assert _snapshot(existing) == before
    assert not _hidden(store) and not (store.root / "demo" / "v2").exists()


def test_a_version_that_appears_during_validation_wins(
    store: AdapterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race between the existence check and the rename: the late one is refused."""
    rival = make_peft_folder(store.root / "demo" / ".rival", rank=2)
    check_folder = store.check_folder

    def check_then_lose_the_race(*args: object) -> object:
        found = check_folder(*args)  # type: ignore[arg-type]
        rival.rename(store.root / "demo" / "v1")
        return found

    monkeypatch.setattr(store, "check_folder", check_then_lose_the_race)
    with pytest.raises(AdapterVersionExists), staging(store, "demo", "v1") as folder:
        make_peft_folder(folder, rank=8)
        publish(store, "demo", "v1", folder)
    monkeypatch.undo()
    assert store.inspect("demo", "v1").rank == 2  # the rival, not replaced
    assert not _hidden(store)


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "manifest.json").unlink(),
        lambda folder: (folder / "weights.bin").write_bytes(b"\x80\x04"),
        lambda folder: (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 4),
        lambda folder: (folder / "link").symlink_to("/etc/passwd"),
    ],
)
def test_a_folder_failing_validation_leaves_no_trace(store: AdapterStore, damage) -> None:
    with pytest.raises(AdapterInvalid), staging(store, "demo", "v1") as folder:
        damage(make_peft_folder(folder))
        publish(store, "demo", "v1", folder)
    assert list(store.root.rglob("*")) == []  # the name folder this call made is gone too


def test_a_failure_keeps_a_name_folder_this_call_did_not_make(store: AdapterStore) -> None:
    (store.root / "demo").mkdir()  # e.g. made by a concurrent publisher of another version
    with pytest.raises(AdapterInvalid), staging(store, "demo", "v1") as folder:
        publish(store, "demo", "v1", folder)  # empty: fails validation
    assert list(store.root.rglob("*")) == [store.root / "demo"]


def test_a_folder_outside_the_staging_place_is_refused(store: AdapterStore, tmp_path: Path) -> None:
    elsewhere = make_peft_folder(tmp_path / "elsewhere" / "v1")
    with pytest.raises(ValueError, match="not a staging folder"):
        publish(store, "demo", "v1", elsewhere)
    assert not (store.root / "demo" / "v1").exists() and elsewhere.is_dir()


def test_concurrent_publishes_of_one_version_have_exactly_one_winner(store: AdapterStore) -> None:
    contenders = 8
    ready = threading.Barrier(contenders)
    outcomes: dict[int, str] = {}

    def contend(rank: int) -> None:
        try:
            with staging(store, "demo", "v1") as folder:
                make_peft_folder(folder, rank=rank)
                ready.wait()  # all staged and past the existence check: only the rename decides
                publish(store, "demo", "v1", folder)
            outcomes[rank] = "won"
        except AdapterVersionExists:
            outcomes[rank] = "refused"

    threads = [threading.Thread(target=contend, args=(r,)) for r in range(1, contenders + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [rank for rank, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == contenders and len(winners) == 1
    assert store.inspect("demo", "v1").rank == winners[0]  # whole, and the winner's
    assert not _hidden(store)


async def test_a_current_leased_version_survives_an_upload_of_the_same_version(
    store: AdapterStore, tmp_path: Path
) -> None:
    """The publisher has no delete path: a served version is untouched by a clash."""
    served = _publish_new(store, "v1")
    before = _snapshot(served)
    registry = AdapterRegistry(
        store, RegistryState.load(store.root / "registry.json"), FakeEngine(), 2
    )
    await registry.register("demo", "v1")
    upload = _archive(tmp_path, _adapter_files(tmp_path))
    async with registry.lease(registry.current("demo")):
        with pytest.raises(AdapterVersionExists):
            await registry.register_archive("demo", "v1", upload)
        with pytest.raises(AdapterVersionExists):
            install_archive(store, "demo", "v1", upload)
        assert registry.current("demo").version == "v1"
    assert _snapshot(served) == before
    assert not _hidden(store)
