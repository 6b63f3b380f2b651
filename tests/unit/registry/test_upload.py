"""Uploaded archives are untrusted: only a flat set of regular files gets in, validated."""

from __future__ import annotations

import errno
import io
import stat
import tarfile
from pathlib import Path

import pytest

from gateway.errors import AdapterInvalid, AdapterVersionExists, GatewayError
from gateway.registry.store import AdapterStore
from gateway.registry.upload import install_archive
from tests.adapter_factory import make_peft_folder
from tests.unit.registry.test_store import LIMITS


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    (tmp_path / "store").mkdir()
    return AdapterStore(tmp_path / "store", LIMITS)


def _archive(tmp_path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    path = tmp_path / "upload.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return path


def _adapter_files(tmp_path: Path, prefix: str = "") -> list[tuple[str, bytes]]:
    folder = make_peft_folder(tmp_path / "src" / "x" / "v1")
    return [(prefix + p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


def _leftovers(store: AdapterStore) -> list[str]:
    return [str(p.relative_to(store.root)) for p in store.root.rglob("*")]


@pytest.mark.parametrize("prefix", ["", "demo-v3/"])
def test_a_good_archive_becomes_a_version(store: AdapterStore, tmp_path: Path, prefix: str) -> None:
    found = install_archive(
        store, "demo", "v3", _archive(tmp_path, _adapter_files(tmp_path, prefix))
    )
    assert found.path == store.root / "demo" / "v3"
    assert store.inspect("demo", "v3").rank == 8
    assert stat.S_IMODE(found.path.stat().st_mode) == 0o755
    files = ("adapter_config.json", "adapter_model.safetensors", "manifest.json")
    assert sorted(_leftovers(store)) == ["demo", "demo/v3", *(f"demo/v3/{n}" for n in files)]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "bad",
    [
        [("../../evil.json", b"{}")],
        [("/etc/cron.d/evil", b"x")],
        [("a/b/c/adapter_config.json", b"{}")],
        [_link("adapter_model.safetensors", "/etc/passwd")],
        [_link("adapter_config.json", "../../x", tarfile.LNKTYPE)],
        [("model.bin", b"\x80\x04")],
    ],
)
def test_hostile_archives_leave_nothing(store: AdapterStore, tmp_path: Path, bad: list) -> None:
    with pytest.raises(AdapterInvalid):
        install_archive(store, "demo", "v3", _archive(tmp_path, _adapter_files(tmp_path) + bad))
    assert _leftovers(store) in ([], ["demo"])
    assert not (tmp_path / "evil.json").exists()


def test_not_a_tar_and_oversize_and_existing(store: AdapterStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(AdapterInvalid, match="not a tar"):
        install_archive(store, "demo", "v3", junk)
    huge = _archive(tmp_path, [*_adapter_files(tmp_path), ("pad.txt", b"0" * 11_000_000)])
    with pytest.raises(AdapterInvalid, match="over"):
        install_archive(store, "demo", "v3", huge)
    good = _archive(tmp_path, _adapter_files(tmp_path))
    install_archive(store, "demo", "v3", good)
    with pytest.raises(AdapterVersionExists, match="already exists"):
        install_archive(store, "demo", "v3", good)


def test_a_store_that_cannot_be_written_is_a_logged_500_not_the_clients_fault(
    store: AdapterStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _archive(tmp_path, _adapter_files(tmp_path))

    def disk_full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gateway.registry.upload._extract", disk_full)
    with pytest.raises(GatewayError) as caught:
        install_archive(store, "demo", "v3", archive)
    assert caught.value.status_code == 500 and not isinstance(caught.value, AdapterInvalid)
    assert caught.value.error_id and caught.value.error_id in caught.value.message
    assert _leftovers(store) == ["demo"]  # the staging folder is gone
