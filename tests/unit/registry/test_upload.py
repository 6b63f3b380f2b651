"""Uploaded archives are untrusted: only a flat set of regular files gets in, validated."""

from __future__ import annotations

import errno
import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest

from gateway.errors import AdapterInvalid, AdapterVersionExists, GatewayError
from gateway.registry.store import AdapterStore
from gateway.registry.upload import MAX_EXTENDED_HEADERS, MAX_MEMBERS, install_archive
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
    assert _leftovers(store) == []
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
    assert _leftovers(store) == []  # the staging folder and the new name folder are gone


def test_a_refused_upload_under_an_existing_name_keeps_that_name(
    store: AdapterStore, tmp_path: Path
) -> None:
    install_archive(store, "demo", "v1", _archive(tmp_path, _adapter_files(tmp_path)))
    before = sorted(_leftovers(store))
    with pytest.raises(AdapterInvalid):
        install_archive(store, "demo", "v2", _archive(tmp_path, [("model.bin", b"\x80\x04")]))
    assert sorted(_leftovers(store)) == before


@pytest.mark.parametrize("member", ["note\n", "adapter_config.json\n", "a\u202eb", "x\udcff"])
def test_member_names_are_full_matched(store: AdapterStore, tmp_path: Path, member: str) -> None:
    archive = _archive(tmp_path, [*_adapter_files(tmp_path), (member, b"x")])
    with pytest.raises(AdapterInvalid, match="unsafe path"):
        install_archive(store, "demo", "v3", archive)
    assert _leftovers(store) == []


def test_the_stores_own_file_names_cannot_be_uploaded(store: AdapterStore, tmp_path: Path) -> None:
    (store.root / "registry.json").write_text("{}")
    archive = _archive(tmp_path, _adapter_files(tmp_path))
    with pytest.raises(AdapterInvalid, match="reserved") as caught:
        install_archive(store, "registry.json", "v1", archive)
    assert caught.value.status_code == 400
    assert _leftovers(store) == ["registry.json"] and store.root.joinpath("registry.json").is_file()


def _corruptions(good: bytes) -> dict[str, bytes]:
    raw = gzip.decompress(good)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # bad deflate data in the middle of the stream
    unended = raw.rstrip(b"\0")  # no end-of-archive blocks: tarfile reads to the gzip trailer
    bad_crc = bytearray(gzip.compress(unended.ljust(-(-len(unended) // 512) * 512, b"\0")))
    bad_crc[-8] ^= 0xFF  # the trailer's CRC: gzip raises BadGzipFile, an OSError
    return {
        "first half of a .tar.gz": good[: len(good) // 2],
        "gzip of garbage": gzip.compress(b"garbage" * 1000),
        "tar cut inside a file": raw[: 512 + 100],
        "deflate data damaged": bytes(flipped),
        "gzip checksum wrong": bytes(bad_crc),
        "first 20 bytes": good[:20],
        "empty": b"",
    }


@pytest.mark.parametrize(
    "case",
    ["first half of a .tar.gz", "gzip of garbage", "tar cut inside a file",
     "deflate data damaged", "gzip checksum wrong", "first 20 bytes", "empty"],
)  # fmt: skip
def test_a_damaged_archive_is_invalid_not_a_server_error(
    store: AdapterStore, tmp_path: Path, case: str
) -> None:
    good = _archive(tmp_path, _adapter_files(tmp_path)).read_bytes()
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(_corruptions(good)[case])
    with pytest.raises(AdapterInvalid) as caught:
        install_archive(store, "demo", "v3", damaged)
    assert caught.value.status_code == 400
    assert _leftovers(store) == []


def test_folders_count_toward_the_entry_cap_and_reading_stops_there(
    store: AdapterStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = [tarfile.TarInfo(f"d{i}") for i in range(2000)]
    for info in folders:
        info.type = tarfile.DIRTYPE
    archive = _archive(tmp_path, [*folders, *_adapter_files(tmp_path)])
    headers_read = 0
    next_member = tarfile.TarFile.next

    def counting(self: tarfile.TarFile) -> tarfile.TarInfo | None:
        nonlocal headers_read
        headers_read += 1
        return next_member(self)

    monkeypatch.setattr(tarfile.TarFile, "next", counting)
    with pytest.raises(AdapterInvalid, match=f"over {MAX_MEMBERS} entries, folders included"):
        install_archive(store, "demo", "v3", archive)
    assert headers_read <= MAX_MEMBERS + 2  # not the 2,000 folders (+1: the first, read at open)
    assert _leftovers(store) == []


def _pax_member(path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.size = 1
    return info


def test_a_huge_pax_path_is_refused_unread_and_never_echoed(
    store: AdapterStore, tmp_path: Path
) -> None:
    path = tmp_path / "pax.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_pax_member("p" * 2_000_000), io.BytesIO(b"x"))
    with pytest.raises(AdapterInvalid, match="extended header") as caught:
        install_archive(store, "demo", "v3", path)
    assert len(caught.value.message) < 200
    assert _leftovers(store) == []


def test_a_long_member_name_comes_back_as_a_short_excerpt(
    store: AdapterStore, tmp_path: Path
) -> None:
    path = tmp_path / "long.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_pax_member("q" * 60_000 + "\n"), io.BytesIO(b"x"))
    with pytest.raises(AdapterInvalid, match="unsafe path") as caught:
        install_archive(store, "demo", "v3", path)
    assert len(caught.value.message) < 200 and "q" * 64 + "'…" in caught.value.message


def test_a_chain_of_extended_headers_is_refused_not_a_recursion_error(
    store: AdapterStore, tmp_path: Path
) -> None:
    record = b"10 a=bbbb\n"  # one pax record; tarfile recurses once per header in a chain
    header = tarfile.TarInfo("pax")
    header.type, header.size = tarfile.XHDTYPE, len(record)
    block = header.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    path = tmp_path / "chain.tar.gz"
    path.write_bytes(gzip.compress(block * 5000 + b"\0" * 1024))
    with pytest.raises(AdapterInvalid, match=f"over {MAX_EXTENDED_HEADERS} extended headers"):
        install_archive(store, "demo", "v3", path)
    assert _leftovers(store) == []


def test_a_negative_size_cannot_offset_the_size_cap(store: AdapterStore, tmp_path: Path) -> None:
    path = tmp_path / "negative.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        negative = tarfile.TarInfo("neg.txt")
        negative.pax_headers = {"size": "-20000000"}  # tarfile reads it back as is
        tar.addfile(negative)
        for name, data in [*_adapter_files(tmp_path), ("pad.txt", b"0" * 20_000_000)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(AdapterInvalid, match="negative size"):
        install_archive(store, "demo", "v3", path)
    assert _leftovers(store) == []


def test_a_plain_pax_archive_from_gnu_tar_is_accepted(store: AdapterStore, tmp_path: Path) -> None:
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in _adapter_files(tmp_path, "demo-v3/"):
            info = tarfile.TarInfo(name)
            info.size, info.pax_headers = len(data), {"comment": "c" * 1000}
            tar.addfile(info, io.BytesIO(data))
    assert install_archive(store, "demo", "v3", path).rank == 8
