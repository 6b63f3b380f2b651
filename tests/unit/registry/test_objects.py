"""Adapter versions in object storage: verified before use, immutable, cached in bounds.

Every test talks to a real S3-compatible server (moto's, over loopback HTTP) through
boto3 unmocked; tampering goes through a second, plain boto3 client, as an attacker with
write access to the bucket would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import socket
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from gateway.errors import AdapterIntegrityFailed, AdapterInvalid, AdapterVersionExists
from gateway.registry import objects
from gateway.registry.objects import (
    MARKER,
    TAR_OVERHEAD_BYTES,
    LocalCache,
    ObjectStore,
    StoredObject,
    read_marker,
)
from gateway.registry.store import AdapterStore
from gateway.registry.upload import install_archive
from tests.adapter_factory import make_peft_folder
from tests.servers.s3_server import S3Server, s3_server
from tests.unit.registry.test_store import LIMITS

FILES = ["adapter_config.json", "adapter_model.safetensors", "manifest.json"]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default temp folder (``pack``'s) is the test's own, so leftovers show."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _object_store(s3: S3Server, bucket: str, endpoint_url: str | None = None) -> ObjectStore:
    return ObjectStore(
        bucket,
        endpoint_url=endpoint_url or s3.endpoint_url,
        region=s3.region,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )


@pytest.fixture
def bucket() -> str:
    return f"adapters-{uuid.uuid4().hex[:12]}"  # each test its own


@pytest.fixture
def remote(s3: S3Server, bucket: str) -> ObjectStore:
    found = _object_store(s3, bucket)
    found.ensure_bucket()
    found.ensure_bucket()  # a second call finds it
    return found


@pytest.fixture
def raw(s3: S3Server) -> Any:
    """A plain boto3 client: writes whatever bytes it likes, like anyone with bucket access."""
    session = boto3.session.Session(
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
    )
    return session.client("s3", endpoint_url=s3.endpoint_url)


def _store(tmp_path: Path, max_bytes: int = LIMITS.max_bytes) -> AdapterStore:
    (tmp_path / "store").mkdir(exist_ok=True)
    return AdapterStore(tmp_path / "store", dataclasses.replace(LIMITS, max_bytes=max_bytes))


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    return _store(tmp_path)


def _source(tmp_path: Path, version: str = "v1", rank: int = 8, name: str = "demo") -> Path:
    return make_peft_folder(tmp_path / "src" / name / version, rank=rank, labels=["a", "b"])


def _everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _version_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MARKER}


# round trip -------------------------------------------------------------------------------
def test_a_put_version_is_fetched_verified_and_accepted_by_the_store(
    remote: ObjectStore, store: AdapterStore, raw: Any, bucket: str, tmp_path: Path
) -> None:
    source = _source(tmp_path)
    record = remote.put_version("demo", "v1", source)
    assert record.uri == f"s3://{bucket}/adapters/demo/v1/adapter.tar"
    head = raw.head_object(Bucket=bucket, Key="adapters/demo/v1/adapter.tar")
    assert head["Metadata"]["sha256"] == record.sha256
    assert head["ContentLength"] == record.size_bytes
    assert remote.lookup("demo", "v1") == record
    assert remote.lookup("demo", "v2") is None

    found = remote.fetch_into(store, "demo", "v1", record)
    assert found.path == store.root / "demo" / "v1"
    assert store.inspect("demo", "v1").labels == ("a", "b")
    assert _version_files(found.path) == _version_files(source)
    assert read_marker(found.path) == record.sha256
    assert (found.path / MARKER).read_text() == record.sha256 + "\n"
    assert _everything(store.root) == ["demo", "demo/v1", f"demo/v1/{MARKER}",
                                       *(f"demo/v1/{n}" for n in FILES)]  # fmt: skip
    assert _everything(Path(tempfile.gettempdir())) == []  # the packed tar is gone

    # Fetched already: answered from the store, no download (the object is gone now).
    raw.delete_object(Bucket=bucket, Key="adapters/demo/v1/adapter.tar")
    assert remote.fetch_into(store, "demo", "v1", record).path == found.path


def test_pack_is_deterministic(tmp_path: Path) -> None:
    first = _source(tmp_path / "a")
    second = tmp_path / "b" / "demo" / "v1"
    second.mkdir(parents=True)
    for file in sorted(first.iterdir(), reverse=True):  # other creation order, times, modes
        (second / file.name).write_bytes(file.read_bytes())
        os.utime(second / file.name, (1_000_000, 1_000_000))
        os.chmod(second / file.name, 0o600)
    (second / ".sha256").write_text("f" * 64)  # hidden files are not packed
    (second / ".scratch-123").write_text("temp")

    packs = [ObjectStore.pack(first), ObjectStore.pack(second)]
    try:
        assert packs[0].read_bytes() == packs[1].read_bytes()
        with tarfile.open(packs[0]) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == FILES
        assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname, m.type) for m in members} == {
            (0, 0o644, 0, 0, "", "", tarfile.REGTYPE)
        }
        assert (
            objects._pack(first, keep=False)[1] == hashlib.sha256(packs[0].read_bytes()).hexdigest()
        )
    finally:
        for pack in packs:
            pack.unlink()
    (second / "manifest.json").write_text((second / "manifest.json").read_text() + " ")
    assert objects._pack(second, keep=False)[1] != objects._pack(first, keep=False)[1]


@pytest.mark.parametrize("odd", ["link", "folder", "bad name"])
def test_pack_refuses_what_the_store_would_refuse_to_unpack(tmp_path: Path, odd: str) -> None:
    folder = _source(tmp_path)
    if odd == "link":
        (folder / "extra.json").symlink_to(folder / "manifest.json")
    elif odd == "folder":
        (folder / "nested").mkdir()
    else:
        (folder / "-x").write_text("{}")
    with pytest.raises(AdapterInvalid):
        ObjectStore.pack(folder)
    assert _everything(Path(tempfile.gettempdir())) == []


# immutability -----------------------------------------------------------------------------
def test_a_version_is_never_replaced(
    remote: ObjectStore, tmp_path: Path, raw: Any, bucket: str
) -> None:
    record = remote.put_version("demo", "v1", _source(tmp_path / "a"))
    assert remote.put_version("demo", "v1", _source(tmp_path / "b")) == record  # same bytes
    with pytest.raises(AdapterVersionExists, match=record.sha256[:12]):
        remote.put_version("demo", "v1", _source(tmp_path / "c", rank=4))
    assert remote.lookup("demo", "v1") == record
    body = raw.get_object(Bucket=bucket, Key="adapters/demo/v1/adapter.tar")["Body"]
    with body:
        assert hashlib.sha256(body.read()).hexdigest() == record.sha256


def test_the_conditional_write_settles_a_race_the_head_missed(
    remote: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas put at once: both heads see nothing, the server's If-None-Match decides."""
    record = remote.put_version("demo", "v1", _source(tmp_path / "a"))
    real_lookup = remote.lookup
    calls: list[str] = []

    def late_lookup(name: str, version: str) -> StoredObject | None:
        calls.append(version)
        return None if len(calls) == 1 else real_lookup(name, version)  # the first head: empty

    monkeypatch.setattr(remote, "lookup", late_lookup)
    with pytest.raises(AdapterVersionExists):
        remote.put_version("demo", "v1", _source(tmp_path / "b", rank=4))
    assert len(calls) == 2  # refused by the server (412), then read back
    assert real_lookup("demo", "v1") == record
    calls.clear()
    assert remote.put_version("demo", "v1", _source(tmp_path / "c")) == record  # idempotent


# integrity --------------------------------------------------------------------------------
def _tamper(raw: Any, bucket: str, data: bytes) -> None:
    raw.put_object(Bucket=bucket, Key="adapters/demo/v1/adapter.tar", Body=data)


@pytest.mark.parametrize("same_size", [True, False])
def test_a_tampered_object_is_refused_and_leaves_nothing(
    remote: ObjectStore, store: AdapterStore, raw: Any, bucket: str, tmp_path: Path,
    same_size: bool,
) -> None:  # fmt: skip
    source = _source(tmp_path)
    record = remote.put_version("demo", "v1", source)
    pack = ObjectStore.pack(source)
    data = bytearray(pack.read_bytes())
    pack.unlink()
    # a flipped byte inside the manifest keeps a valid tar: only the hash can tell
    offset = data.index(b'"labels"')
    data[offset + 2] ^= 0x20
    if not same_size:
        data += bytes(512)
    _tamper(raw, bucket, bytes(data))

    with pytest.raises(AdapterIntegrityFailed) as refused:
        remote.fetch_into(store, "demo", "v1", record)
    message = refused.value.message
    assert "demo/v1" in message and record.sha256[:12] in message
    if same_size:
        assert hashlib.sha256(bytes(data)).hexdigest()[:12] in message
    assert refused.value.status_code == 502
    assert _everything(store.root) == []  # no folder, no work files
    assert _everything(Path(tempfile.gettempdir())) == []


def test_a_wrong_sha_in_the_record_is_refused(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path
) -> None:
    record = remote.put_version("demo", "v1", _source(tmp_path))
    wrong = dataclasses.replace(record, sha256="0" * 64)
    with pytest.raises(
        AdapterIntegrityFailed, match=f"expected sha256 {'0' * 12}.*{record.sha256[:12]}"
    ):
        remote.fetch_into(store, "demo", "v1", wrong)
    assert _everything(store.root) == []


def test_a_verified_object_the_store_refuses_leaves_nothing(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path
) -> None:
    """The hash proves the bytes are the record's, not that this gateway can serve them."""
    other_base = make_peft_folder(tmp_path / "src" / "demo" / "v1", fingerprint="0" * 64)
    record = remote.put_version("demo", "v1", other_base)
    with pytest.raises(AdapterInvalid, match="another base model"):
        remote.fetch_into(store, "demo", "v1", record)
    assert _everything(store.root) == []


def test_partial_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        ObjectStore("adapters", endpoint_url="http://127.0.0.1:9", access_key="only-one")


def test_a_missing_object_is_an_integrity_failure(
    remote: ObjectStore, store: AdapterStore, bucket: str
) -> None:
    record = StoredObject(f"s3://{bucket}/adapters/demo/v1/adapter.tar", "a" * 64, 1000)
    with pytest.raises(AdapterIntegrityFailed, match="missing"):
        remote.fetch_into(store, "demo", "v1", record)
    assert _everything(store.root) == []


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/adapters/demo/v1/adapter.tar",
        "s3://{bucket}/adapters/demo/../other/v1/adapter.tar",
        "s3://{bucket}/adapters/other/../demo/v1/adapter.tar",
        "s3://{bucket}/elsewhere/demo/v1/adapter.tar",
        "s3://{bucket}/adapters/demo/v2/adapter.tar",  # another version's object
        "s3://{bucket}/adapters/other/v1/adapter.tar",  # another adapter's
        "s3://{bucket}/adapters/demo/v1/other.tar",
        "s3://{bucket}/adapters/demo/v1/adapter.tar?versionId=1",
        "https://{bucket}.s3.amazonaws.com/adapters/demo/v1/adapter.tar",
        "s3://{bucket}//adapters/demo/v1/adapter.tar",
    ],
)
def test_a_record_may_only_name_its_own_object(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path, bucket: str, uri: str
) -> None:
    record = remote.put_version("demo", "v1", _source(tmp_path))
    foreign = dataclasses.replace(record, uri=uri.format(bucket=bucket))
    with pytest.raises(AdapterInvalid) as refused:
        remote.fetch_into(store, "demo", "v1", foreign)
    assert refused.value.param == "uri"
    assert _everything(store.root) == []


@pytest.mark.parametrize("prefix", ["../x", "a/../b", ".hidden", ""])
def test_a_prefix_that_could_leave_its_folder_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ObjectStore("adapters", prefix=prefix, endpoint_url="http://127.0.0.1:9")


@contextlib.contextmanager
def _counting_proxy(target: str) -> Iterator[tuple[str, list[int]]]:
    """A loopback TCP relay in front of the server that counts the bytes it sends back."""
    host, port = target.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    received = [0]
    sockets: list[socket.socket] = [listener]
    threads: list[threading.Thread] = []

    def relay(source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                if count:
                    received[0] += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((host, int(port)))
            sockets.extend((client, upstream))
            for args in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(target=relay, args=args, daemon=True)
                threads.append(thread)
                thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(5)
        for sock in sockets[1:]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for sock in sockets:
            sock.close()


def test_an_object_over_the_cap_is_refused_without_downloading_it(
    s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    store = _store(tmp_path, max_bytes=200_000)
    cap = 200_000 + TAR_OVERHEAD_BYTES
    remote = _object_store(s3, bucket)
    remote.ensure_bucket()
    big = os.urandom(8 * 1024 * 1024)
    _tamper(raw, bucket, big)
    uri = f"s3://{bucket}/adapters/demo/v1/adapter.tar"

    honest = StoredObject(uri, hashlib.sha256(big).hexdigest(), len(big))
    with pytest.raises(AdapterInvalid, match=f"1..{cap}") as refused:  # before any request
        remote.fetch_into(store, "demo", "v1", honest)
    assert refused.value.param == "size_bytes"

    lying = dataclasses.replace(honest, size_bytes=1000)  # the record understates it
    with _counting_proxy(s3.endpoint_url) as (endpoint, received):
        proxied = _object_store(s3, bucket, endpoint_url=endpoint)
        with pytest.raises(AdapterInvalid, match=f"{len(big)} bytes, over the {cap}-byte limit"):
            proxied.fetch_into(store, "demo", "v1", lying)
    assert 0 < received[0] <= cap + 64 * 1024 < len(big) // 4  # the range bounded the reply
    assert _everything(store.root) == []


# the local store --------------------------------------------------------------------------
def test_a_local_version_with_the_same_content_is_adopted_without_download(
    remote: ObjectStore, store: AdapterStore, raw: Any, bucket: str
) -> None:
    local = make_peft_folder(store.root / "demo" / "v1", labels=["a", "b"])
    record = remote.put_version("demo", "v1", local)  # the replica that published it
    raw.delete_object(Bucket=bucket, Key="adapters/demo/v1/adapter.tar")
    found = remote.fetch_into(store, "demo", "v1", record)
    assert found.path == local and read_marker(local) == record.sha256
    assert not [p for p in local.iterdir() if p.name.startswith(".") and p.name != MARKER]


def test_a_local_version_with_other_content_is_never_replaced(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path
) -> None:
    record = remote.put_version("demo", "v1", _source(tmp_path))
    local = make_peft_folder(store.root / "demo" / "v1", rank=4)
    before = _version_files(local)
    with pytest.raises(AdapterVersionExists, match="delete the local demo/v1"):
        remote.fetch_into(store, "demo", "v1", record)
    objects.write_marker(local, "e" * 64)  # a marker for other content: refused as well
    with pytest.raises(AdapterVersionExists):
        remote.fetch_into(store, "demo", "v1", record)
    assert _version_files(local) == before


def test_no_upload_can_plant_a_marker(store: AdapterStore, tmp_path: Path) -> None:
    """The marker's name breaks the name rule, so only this module writes one."""
    files = [(p.name, p.read_bytes()) for p in sorted(_source(tmp_path).iterdir())]
    archive = tmp_path / "upload.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in [*files, (MARKER, b"f" * 64)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(AdapterInvalid):
        install_archive(store, "demo", "v1", archive)


def _fill(remote: ObjectStore, store: AdapterStore, tmp_path: Path, versions: list[str]) -> None:
    for version in versions:
        record = remote.put_version("demo", version, _source(tmp_path, version))
        remote.fetch_into(store, "demo", version, record)


def _size(store: AdapterStore, version: str, name: str = "demo") -> int:
    return sum(p.stat().st_size for p in (store.root / name / version).iterdir())


def test_the_cache_evicts_least_recently_used_and_never_what_is_kept(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path, bucket: str
) -> None:
    _fill(remote, store, tmp_path, ["v1", "v2", "v3", "v4"])
    make_peft_folder(store.root / "local" / "v1")  # published here: exists nowhere else
    total = sum(_size(store, v) for v in ["v1", "v2", "v3", "v4"]) + _size(store, "v1", "local")
    cache = LocalCache(store, max_bytes=total)
    assert cache.total_bytes() == total
    assert cache.evict(set()) == []  # within the bound

    for version in ["v1", "v2", "v3", "v4", "v1"]:
        cache.touch("demo", version)  # least recent now: v2, v3, v4, v1
    cache.max_bytes = total - _size(store, "v2") - 1  # two must go
    assert cache.evict({("demo", "v2")}) == [("demo", "v3"), ("demo", "v4")]
    assert cache.total_bytes() <= cache.max_bytes

    cache.max_bytes = 0  # everything that may go, goes
    assert cache.evict([("demo", "v2")]) == [("demo", "v1")]
    assert _everything(store.root) == sorted(
        ["demo", "demo/v2", "local", "local/v1", f"demo/v2/{MARKER}"]
        + [f"{folder}/{n}" for folder in ("demo/v2", "local/v1") for n in FILES]
    )  # no trash left behind
    assert store.inspect("demo", "v2").labels == ("a", "b")

    # an evicted version comes back from object storage
    again = remote.fetch_into(store, "demo", "v3", remote.lookup("demo", "v3") or _never())
    assert store.inspect("demo", "v3").path == again.path
    cache.touch("demo", "v3")
    assert cache.evict(set()) == [("demo", "v2"), ("demo", "v3")]  # v2 was last used before v3


def test_untouched_versions_go_oldest_first(
    remote: ObjectStore, store: AdapterStore, tmp_path: Path
) -> None:
    _fill(remote, store, tmp_path, ["v1", "v2", "v3"])
    for age, version in enumerate(["v3", "v1", "v2"]):  # v3 the oldest folder
        os.utime(store.root / "demo" / version, (1_000_000 + age, 1_000_000 + age))
    cache = LocalCache(store, max_bytes=_size(store, "v2"))
    assert cache.evict(set()) == [("demo", "v3"), ("demo", "v1")]


def _never() -> StoredObject:
    raise AssertionError("the object should be in the bucket")
