"""Adapter versions in S3-compatible object storage, verified by SHA-256, cached locally.

Several gateway replicas share one bucket as the source of adapter files; a shared
database records for each version its object URI, SHA-256 and manifest. Each replica
keeps a local ``AdapterStore`` as a cache of the versions it serves:

- ``ObjectStore.put_version`` packs a version folder into one deterministic tar (same
  files, same bytes, same SHA-256) and uploads it to ``<prefix>/<name>/<version>/adapter.tar``.
  Versions are immutable: an object that exists is never replaced; putting the same
  content again returns the existing record (idempotent), other content is refused.
- ``ObjectStore.fetch_into`` downloads a version into the local store only after its
  SHA-256 matches the record, then unpacks it through ``install_archive`` (the same
  untrusted-archive rules and validation as an upload). A mismatch raises
  ``AdapterIntegrityFailed`` and leaves nothing in the store.
- ``LocalCache`` bounds the local store's size by removing least-recently-used versions
  that object storage can give back, never those the caller says are in use.

Trust: the bucket and the database are shared with other writers, so neither is trusted
further than needed. A record may only point at this version's own key in the configured
bucket (never another bucket, prefix or version: a replica must not read arbitrary
objects), its size is capped before the download starts and while it streams, and the
bytes are hashed before anything is unpacked.

The marker: a verified version carries its object's SHA-256 in ``<version>/.sha256``
(``MARKER``). It is hidden so that it is never packed, and because the store's name rule
refuses a leading dot, no uploaded archive can plant one: only this module writes it,
so a version whose marker matches a record really is that record's content. The store's
checks accept it (``check_folder`` refuses only pickle suffixes and non-regular files;
its 65 bytes count toward ``max_adapter_bytes`` like every file in the folder).
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway import errors
from gateway.common.names import excerpt, is_valid_name
from gateway.errors import AdapterInvalid
from gateway.registry.publish import publish, staging
from gateway.registry.store import AdapterStore, AdapterVersion, check_name
from gateway.registry.upload import MAX_MEMBERS, install_archive

MARKER = ".sha256"
OBJECT_NAME = "adapter.tar"
# What a tar adds to the files it holds: a 512-byte header and up to 511 bytes of padding
# per member (``install_archive`` takes at most MAX_MEMBERS), two end blocks and padding to
# a 10 KiB record: about 53 KB for ``pack``'s USTAR. 1 MiB also leaves room for the pax
# headers another packer may add, and is small beside ``max_adapter_bytes``.
TAR_OVERHEAD_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rule
_CONTENT_RANGE_RE = re.compile(r"bytes \d+-\d+/(\d+)")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    """One version's object as the shared database records it."""

    uri: str  # s3://<bucket>/<prefix>/<name>/<version>/adapter.tar
    sha256: str  # hex digest of the object's bytes
    size_bytes: int


class ObjectStore:
    """Adapter versions in one bucket of an S3-compatible server (AWS S3, MinIO, Ceph...).

    ``access_key``/``secret_key`` None: boto3's default chain (environment, profile, the
    pod's or instance's role). One boto3 client, which is thread-safe: call the blocking
    methods from a worker thread (``asyncio.to_thread``), never on the event loop.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "adapters",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        if not _BUCKET_RE.fullmatch(bucket):
            raise ValueError(f"bucket {bucket!r} is not a valid S3 bucket name")
        parts = prefix.strip("/").split("/")
        if not all(is_valid_name(p) for p in parts):
            raise ValueError(f"prefix {prefix!r} must be '/'-separated names (no '..', no dots)")
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither (boto3's chain)")
        self.bucket = bucket
        self.prefix = "/".join(parts)
        self.region = region
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        config = Config(
            # a custom endpoint (MinIO, moto, Ceph) rarely has per-bucket DNS names
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
        )
        self._s3: Any = session.client("s3", endpoint_url=endpoint_url, config=config)

    # naming -----------------------------------------------------------------------------
    def key(self, name: str, version: str) -> str:
        """The one key a version's object may have: ``<prefix>/<name>/<version>/adapter.tar``."""
        check_name(name, "name")
        check_name(version, "version")
        return f"{self.prefix}/{name}/{version}/{OBJECT_NAME}"

    def uri(self, name: str, version: str) -> str:
        return f"s3://{self.bucket}/{self.key(name, version)}"

    # bucket -----------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (for a dev or test server; production buckets
        are made, with their policies, by whoever runs the storage)."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise self._failure(f"could not check bucket {self.bucket}", exc) from exc
        except BotoCoreError as exc:
            raise self._failure(f"could not reach bucket {self.bucket}", exc) from exc
        extra = {}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            extra = {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            self._s3.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._failure(f"could not create bucket {self.bucket}", exc) from exc
        except BotoCoreError as exc:
            raise self._failure(f"could not create bucket {self.bucket}", exc) from exc

    # packing ----------------------------------------------------------------------------
    @staticmethod
    def pack(folder: Path) -> Path:
        """A deterministic, uncompressed tar of ``folder``'s files in a temp file (the
        caller removes it). Identical folders give identical bytes, hence one SHA-256:
        names sorted, mtime 0, uid/gid 0, no owner names, mode 0644, no folder entries,
        USTAR format (no pax headers with times). Hidden files (the marker, temp files)
        are left out; anything else that is not a regular file is refused."""
        path, _, _ = _pack(folder)
        assert path is not None
        return path

    # upload -----------------------------------------------------------------------------
    def put_version(self, name: str, version: str, folder: Path) -> StoredObject:
        """Upload ``folder`` as ``name/version``; versions are immutable.

        An object already at the key is never replaced: the same content (same SHA-256)
        returns its record, other content raises ``AdapterVersionExists``. The write is
        conditional (``If-None-Match: *``), so of two replicas putting the same version
        at once exactly one wins and the other sees the winner's object. The ``head``
        before it only saves an upload in the common case; on a server that ignores the
        condition (older S3-compatible servers) it is the only check, and two puts racing
        between the ``head`` and the write leave the last writer's bytes. Such a
        loser still gets its record back, but every fetch verifies the SHA-256 its
        record holds, so a replaced object is refused, never served.

        The folder is not validated here beyond its file names (the store validates on
        fetch); pass a version the store has accepted (``store.inspect``).
        """
        key = self.key(name, version)
        archive, sha256, size = _pack(folder)
        assert archive is not None
        try:
            existing = self.lookup(name, version)
            if existing is not None:
                return self._same_or_refuse(existing, sha256, name, version)
            try:
                with archive.open("rb") as body:
                    self._s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentLength=size,
                        ContentType="application/x-tar",
                        Metadata={"sha256": sha256},
                        # S3 checks the bytes it received against this before storing them
                        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                        IfNoneMatch="*",
                    )
            except ClientError as exc:
                # 412: the object exists (a concurrent put won); 409: one is in flight
                if _status(exc) not in (409, 412):
                    raise self._failure(f"could not upload {self.uri(name, version)}", exc) from exc
                existing = self.lookup(name, version)
                if existing is None:
                    raise self._failure(
                        f"a concurrent upload of {self.uri(name, version)} is in flight", exc
                    ) from exc
                return self._same_or_refuse(existing, sha256, name, version)
            except BotoCoreError as exc:
                raise self._failure(f"could not upload {self.uri(name, version)}", exc) from exc
        finally:
            archive.unlink(missing_ok=True)
        return StoredObject(self.uri(name, version), sha256, size)

    def lookup(self, name: str, version: str) -> StoredObject | None:
        """The record of the object at ``name/version``'s key, from its metadata; None if
        there is none. An object without our ``sha256`` metadata has an empty one."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key(name, version))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise self._failure(f"could not read {self.uri(name, version)}", exc) from exc
        except BotoCoreError as exc:
            raise self._failure(f"could not read {self.uri(name, version)}", exc) from exc
        sha256 = str(head.get("Metadata", {}).get("sha256", ""))
        return StoredObject(self.uri(name, version), sha256, int(head["ContentLength"]))

    def _same_or_refuse(
        self, existing: StoredObject, sha256: str, name: str, version: str
    ) -> StoredObject:
        if existing.sha256 == sha256:
            return existing
        raise errors.AdapterVersionExists(
            f"{name}/{version} is already in object storage ({existing.uri}) with other "
            f"content (sha256 {existing.sha256[:12] or 'unknown'}, this folder's is "
            f"{sha256[:12]}); a version is never replaced: publish a new version",
            param="version",
        )

    # download ---------------------------------------------------------------------------
    def fetch_into(
        self, store: AdapterStore, name: str, version: str, obj: StoredObject
    ) -> AdapterVersion:
        """``name/version`` in the local ``store``, with the content ``obj`` records.

        Already there with a marker of the same SHA-256: validated again and returned, no
        download. There without a marker (published locally, e.g. the folder this replica
        put): adopted if its ``pack`` has the recorded SHA-256. There with other content:
        ``AdapterVersionExists`` (the store never replaces a version; delete it first).

        Otherwise the object is streamed into a hidden work folder in the store's root
        (same filesystem, so publishing is a rename), capped at ``max_adapter_bytes`` plus
        ``TAR_OVERHEAD_BYTES`` (over: ``AdapterInvalid``, without reading the rest) and
        hashed as it arrives. A size or SHA-256 other than the record's raises
        ``AdapterIntegrityFailed``; a match is unpacked by ``install_archive`` into the
        work folder, given its marker, and published as one atomic rename, so no reader
        ever sees the version without its marker. Whatever happens, the work folder goes.
        """
        target = store.version_dir(name, version)
        cap = store.limits.max_bytes + TAR_OVERHEAD_BYTES
        self._check_record(name, version, obj, cap)
        try:
            if target.is_dir():
                return self._local(store, name, version, obj)
            store.root.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=store.root))
            try:
                archive = work / OBJECT_NAME
                self._download(name, version, obj, archive, cap)
                return self._install(store, name, version, obj, archive, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        except OSError as exc:  # the object's faults are GatewayErrors by now: the disk's
            raise errors.traced(
                errors.GatewayError, f"{name}/{version} could not be written to the store", log, exc
            ) from exc

    def _check_record(self, name: str, version: str, obj: StoredObject, cap: int) -> None:
        """A record may only name this version's own key in this bucket, a hex SHA-256
        and a size the store could accept; it comes from a shared database."""
        expected = self.uri(name, version)
        if obj.uri != expected:
            raise AdapterInvalid(
                f"{name}/{version}: object URI {excerpt(obj.uri, 200)} is not {expected}; "
                "a record may only point at its own version in this gateway's bucket",
                param="uri",
            )
        if not isinstance(obj.sha256, str) or not _SHA256_RE.fullmatch(obj.sha256):
            raise AdapterInvalid(
                f"{name}/{version}: sha256 {excerpt(obj.sha256)} is not 64 lowercase hex digits",
                param="sha256",
            )
        if not isinstance(obj.size_bytes, int) or not 0 < obj.size_bytes <= cap:
            raise AdapterInvalid(
                f"{name}/{version}: the object's {obj.size_bytes!r} bytes are outside "
                f"1..{cap} (max_adapter_bytes plus {TAR_OVERHEAD_BYTES} of tar overhead)",
                param="size_bytes",
            )

    def _local(
        self, store: AdapterStore, name: str, version: str, obj: StoredObject
    ) -> AdapterVersion:
        target = store.version_dir(name, version)
        marker = read_marker(target)
        if marker is None:  # published here, never fetched: the same bytes if it packs alike
            try:
                _, local, _ = _pack(target, keep=False)
            except AdapterInvalid:
                local = ""
            if local == obj.sha256:
                found = store.inspect(name, version)
                write_marker(target, obj.sha256)
                return found
            marker = local
        if marker == obj.sha256:
            return store.inspect(name, version)
        raise errors.AdapterVersionExists(
            f"{name}/{version} in the local adapter store is not the object its record names "
            f"(local sha256 {marker[:12] or 'unknown'}, recorded {obj.sha256[:12]}); a version "
            f"is never replaced: delete the local {name}/{version} first",
            param="version",
        )

    def _download(
        self, name: str, version: str, obj: StoredObject, archive: Path, cap: int
    ) -> None:
        where = f"adapter {name}/{version}"
        key = self.key(name, version)
        try:
            # The range bounds what the server sends, whatever the object's size.
            response = self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{cap}")
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise errors.AdapterIntegrityFailed(
                    f"{where}: its object {obj.uri} is missing from object storage"
                ) from exc
            if _code(exc) == "InvalidRange":  # only an empty object has no byte 0
                raise _integrity(where, obj, "", "the object is empty") from exc
            raise self._failure(f"could not download {obj.uri}", exc) from exc
        except BotoCoreError as exc:
            raise self._failure(f"could not download {obj.uri}", exc) from exc
        body = response["Body"]
        try:
            total = _object_size(response)
            if total > cap:
                raise AdapterInvalid(
                    f"{where}: its object is {total} bytes, over the {cap}-byte limit "
                    f"(max_adapter_bytes plus {TAR_OVERHEAD_BYTES} of tar overhead)",
                    param="size_bytes",
                )
            if total != obj.size_bytes:
                raise _integrity(where, obj, "", f"it is {total} bytes, not {obj.size_bytes}")
            digest = hashlib.sha256()
            received = 0
            with archive.open("xb") as out:
                while chunk := body.read(_CHUNK_BYTES):
                    received += len(chunk)
                    if received > obj.size_bytes:  # a server that ignored the range
                        raise _integrity(where, obj, "", f"it is over {obj.size_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except (BotoCoreError, ClientError) as exc:  # the stream broke off
            raise self._failure(f"could not download {obj.uri}", exc) from exc
        finally:
            body.close()
        actual = digest.hexdigest()
        if received != obj.size_bytes or actual != obj.sha256:
            raise _integrity(where, obj, actual, f"{received} bytes arrived")

    def _install(
        self,
        store: AdapterStore,
        name: str,
        version: str,
        obj: StoredObject,
        archive: Path,
        work: Path,
    ) -> AdapterVersion:
        """Unpack and validate in the work folder, then publish files + marker at once."""
        (work / "store").mkdir()
        unpacked = install_archive(
            AdapterStore(work / "store", store.limits), name, version, archive
        )
        try:
            with staging(store, name, version) as staged:
                for file in unpacked.path.iterdir():
                    os.rename(file, staged / file.name)
                write_marker(staged, obj.sha256)
                return publish(store, name, version, staged)
        except errors.AdapterVersionExists:
            # a concurrent fetch (or upload) published it meanwhile: fine if it is ours
            return self._local(store, name, version, obj)

    def _failure(self, what: str, exc: BaseException) -> errors.GatewayError:
        """Storage unreachable or refusing: logged with an id, a 500 for the caller."""
        return errors.traced(errors.GatewayError, f"object storage: {what}", log, exc)


def read_marker(folder: Path) -> str | None:
    """The SHA-256 a version folder was verified against; None if it has no valid marker.
    The marker is opened without following a symlink: a link there is no marker."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(128).decode("ascii", "replace").strip()
    return text if _SHA256_RE.fullmatch(text) else None


def write_marker(folder: Path, sha256: str) -> None:
    """Atomically (temp file + rename): a reader sees no marker or the whole one."""
    fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(sha256 + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalCache:
    """A size bound for the local store: least-recently-used versions go first.

    Only versions with a marker are removed: they came from object storage and
    ``fetch_into`` can bring them back. A version without one (uploaded or trained on
    this replica) may exist nowhere else and is never removed here; it still counts
    toward the total. Use is tracked in memory (``touch``); versions not touched since
    start-up are the oldest, ordered by their folder's modification time.

    The caller passes ``keep``: the versions that must stay (current, leased, loaded in
    the engine). A removed version's ``AdapterVersion.path`` is gone, so the caller must
    fetch it again before it registers or loads it.
    """

    def __init__(self, store: AdapterStore, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.store = store
        self.max_bytes = max_bytes
        self._used: dict[tuple[str, str], int] = {}
        self._clock = itertools.count(1)
        self._lock = threading.Lock()

    def touch(self, name: str, version: str) -> None:
        """Mark ``name/version`` as used now."""
        check_name(name, "name")
        check_name(version, "version")
        with self._lock:
            self._used[(name, version)] = next(self._clock)

    def total_bytes(self) -> int:
        """The bytes of every version folder in the store."""
        return sum(entry.size for entry in self._scan())

    def evict(self, keep: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove LRU versions until the store's version folders total <= ``max_bytes``;
        return the removed ``(name, version)``s, oldest first. Each goes atomically: renamed
        to a hidden trash name (readers see it whole or not at all), then deleted. Stops
        short of the bound, with a warning, when only kept or local-only versions remain."""
        pinned = set(keep)
        entries = self._scan()
        total = sum(entry.size for entry in entries)
        if total <= self.max_bytes:
            return []
        with self._lock:
            used = dict(self._used)
        candidates = sorted(
            (e for e in entries if e.key not in pinned and e.cached),
            key=lambda e: (used.get(e.key, 0), e.mtime),
        )
        removed: list[tuple[str, str]] = []
        for entry in candidates:
            if total <= self.max_bytes:
                break
            if _remove_version(entry.path, entry.key[1]):
                total -= entry.size
                removed.append(entry.key)
                with self._lock:
                    self._used.pop(entry.key, None)
        if total > self.max_bytes:
            log.warning(
                "adapter cache: %d bytes after eviction, over the %d-byte bound; the rest is "
                "in use or exists only here",
                total,
                self.max_bytes,
            )
        return removed

    def _scan(self) -> list[_CachedVersion]:
        """Every ``<name>/<version>`` folder; hidden entries (staging, trash, work) and
        anything that is not a plain folder are skipped."""
        found: list[_CachedVersion] = []
        root = self.store.root
        if not root.is_dir():
            return found
        for name in _plain_folders(root):
            for version in _plain_folders(root / name):
                path = root / name / version
                size, mtime = _folder_size(path)
                cached = read_marker(path) is not None
                found.append(_CachedVersion((name, version), path, size, mtime, cached))
        return found


@dataclass(frozen=True)
class _CachedVersion:
    key: tuple[str, str]
    path: Path
    size: int
    mtime: float
    cached: bool  # has a marker: object storage can give it back


def _plain_folders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name for e in entries if is_valid_name(e.name) and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:  # removed meanwhile
        return []


def _folder_size(folder: Path) -> tuple[int, float]:
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
        return total, folder.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0, 0.0


def _remove_version(path: Path, version: str) -> bool:
    """Like ``AdapterRegistry.delete``: an atomic rename out of sight, then the files."""
    trash = path.with_name(f".deleted-{version}-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:  # someone else removed it
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


class _Digest(io.RawIOBase):
    """A write-only sink that hashes and counts what ``tarfile`` writes, and copies it
    into ``copy`` when given."""

    def __init__(self, copy: IO[bytes] | None) -> None:
        super().__init__()
        self.copy = copy
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        if self.copy is not None:
            self.copy.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size


def _pack(folder: Path, *, keep: bool = True) -> tuple[Path | None, str, int]:
    """(temp tar path, sha256, size); ``keep=False`` only hashes: no file, path None."""
    names = _pack_names(folder)
    if not keep:
        sink = _Digest(None)
        _write_tar(sink, folder, names)
        return None, sink.digest.hexdigest(), sink.size
    fd, tmp = tempfile.mkstemp(prefix="adapter-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _Digest(out)
            _write_tar(sink, folder, names)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), sink.digest.hexdigest(), sink.size


def _write_tar(sink: _Digest, folder: Path, names: list[str]) -> None:
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            _add_file(tar, folder, name)


def _pack_names(folder: Path) -> list[str]:
    """The files to pack, sorted; refuses what ``install_archive`` would refuse to unpack."""
    try:
        with os.scandir(folder) as entries:
            found = [e for e in entries if not e.name.startswith(".")]
            plain = [e.name for e in found if e.is_file(follow_symlinks=False)]
    except OSError as exc:
        raise AdapterInvalid(f"{folder} cannot be read as a version folder ({exc})") from exc
    odd = sorted({e.name for e in found} - set(plain))
    if odd:
        raise AdapterInvalid(f"{folder}: {excerpt(odd[0])} is not a regular file")
    bad = [n for n in plain if not is_valid_name(n)]
    if bad:
        raise AdapterInvalid(f"{folder}: file name {excerpt(bad[0])} breaks the name rule")
    if not plain or len(plain) > MAX_MEMBERS:
        raise AdapterInvalid(f"{folder} holds {len(plain)} files; a version has 1..{MAX_MEMBERS}")
    return sorted(plain)


def _add_file(tar: tarfile.TarFile, folder: Path, name: str) -> None:
    fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AdapterInvalid(f"{folder}: {excerpt(name)} is not a regular file")
        member = tarfile.TarInfo(name)
        member.size = info.st_size
        member.mtime = 0
        member.mode = 0o644
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        tar.addfile(member, handle)  # OSError if the file shrinks meanwhile


def _object_size(response: dict[str, Any]) -> int:
    """The whole object's size: ``Content-Range``'s total for a ranged answer, else (a
    server that ignored the range) its length."""
    match = _CONTENT_RANGE_RE.fullmatch(str(response.get("ContentRange", "")))
    return int(match.group(1)) if match else int(response.get("ContentLength", 0))


def _integrity(
    where: str, obj: StoredObject, actual: str, detail: str
) -> errors.AdapterIntegrityFailed:
    got = f"sha256 {actual[:12]}" if actual else "its sha256 was not computed"
    return errors.AdapterIntegrityFailed(
        f"{where}: object {obj.uri} does not match its record (expected sha256 "
        f"{obj.sha256[:12]}, {obj.size_bytes} bytes; {got}, {detail}); it was not installed",
        hint="the object was changed or damaged after it was recorded; upload the version "
        "again under a new version name",
    )


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
