"""Adapter upload: a tar archive of one PEFT folder becomes a new version in the store.

The archive is untrusted. Only regular files with plain names are taken (no folders
beyond one optional top level, no links, no devices, no ``..``), sizes are capped
before anything is written, and the result is validated and published like any new
version (``gateway.registry.publish``). A refused upload leaves nothing behind.

What ``tarfile`` holds in memory regardless: one 512-byte header block at a time, the
``TarInfo`` of every member read so far (at most ``MAX_MEMBERS + 1`` here, folders
included), and an extended header (pax, GNU long name) whole while it parses it, so
those are refused by their declared size before being read, and counted: each one
makes ``tarfile`` recurse once, and a chain of thousands would exhaust the stack.
"""

from __future__ import annotations

import logging
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import IO

from gateway import errors
from gateway.common.names import excerpt, is_valid_name
from gateway.registry.publish import publish, staging
from gateway.registry.store import AdapterInvalid, AdapterStore, AdapterVersion

MAX_MEMBERS = 32
MAX_EXTENDED_HEADERS = 2 * MAX_MEMBERS  # a pax header per member, and a global one or two
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
_EXTENDED_TYPES = (
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
)  # fmt: skip
# What reading a damaged archive raises, at open or later: tarfile's own errors, and those
# of the decompressors under it (a truncated gzip is EOFError, a bad one BadGzipFile).
_UNREADABLE = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
_CHUNK_BYTES = 1 << 20
log = logging.getLogger(__name__)


def install_archive(store: AdapterStore, name: str, version: str, archive: Path) -> AdapterVersion:
    """Unpack ``archive`` as ``name/version`` through the publisher; a refusal leaves nothing.

    Raises ``AdapterInvalid`` for a bad archive, ``AdapterVersionExists`` for a taken version,
    and a 500 with a logged id when the store itself fails (a full disk, permissions).
    """
    try:
        with staging(store, name, version) as folder:
            _extract(archive, folder, store.limits.max_bytes)
            return publish(store, name, version, folder)
    except OSError as exc:  # the archive's own faults are AdapterInvalid by now: ours
        raise errors.traced(
            errors.GatewayError, f"{name}/{version} could not be written to the store", log, exc
        ) from exc


class _Header(tarfile.TarInfo):
    """Refuses oversized or endless extended headers before tarfile parses them
    (``_proc_member`` is the hook tarfile documents for subclasses)."""

    def _proc_member(self, archive: _Archive) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES:
            archive.extended_headers += 1
            if archive.extended_headers > MAX_EXTENDED_HEADERS:
                limit = MAX_EXTENDED_HEADERS
                raise AdapterInvalid(f"the archive holds over {limit} extended headers")
            if self.size > MAX_EXTENDED_HEADER_BYTES:
                raise AdapterInvalid(
                    f"the archive has a {self.size}-byte extended header (pax or long name); "
                    f"the limit is {MAX_EXTENDED_HEADER_BYTES}"
                )
        return super()._proc_member(archive)


class _Archive(tarfile.TarFile):
    tarinfo = _Header
    extended_headers = 0


def _extract(archive: Path, into: Path, max_bytes: int) -> None:
    try:
        tar = _Archive.open(archive, mode="r:*")
    except _UNREADABLE as exc:  # tarfile's message lists every format it tried: not useful
        raise AdapterInvalid(
            "the upload is not a tar archive (plain, gzip, bzip2 or xz), or its start is damaged"
        ) from exc
    with tar:
        try:
            members = _plan(tar, max_bytes)
        except _UNREADABLE as exc:
            raise _unreadable(exc) from exc
        for member, filename in members:
            with _open_member(tar, member) as source, (into / filename).open("xb") as out:
                while chunk := _read(source):
                    out.write(chunk)  # an OSError here is the store's: a logged 500


def _plan(tar: tarfile.TarFile, max_bytes: int) -> list[tuple[tarfile.TarInfo, str]]:
    """Every member checked, none written: (member, file name) of the files to extract.
    Every entry counts toward ``MAX_MEMBERS``, folders too, and reading stops at the first
    one over, so a few hundred KB of folder entries cannot keep the server busy."""
    members = []
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise AdapterInvalid(f"the archive holds over {MAX_MEMBERS} entries, folders included")
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if member.isdir() and len(parts) <= 1:
            continue  # the optional top-level folder
        if not member.isreg():
            raise AdapterInvalid(f"archive entry {excerpt(member.name)} is not a regular file")
        if len(parts) > 2 or not all(is_valid_name(p) for p in parts):
            raise AdapterInvalid(f"archive entry {excerpt(member.name)} has an unsafe path")
        if member.size < 0:  # tarfile accepts one (base-256 or pax): it would lower the total
            raise AdapterInvalid(f"archive entry {excerpt(member.name)} has a negative size")
        total += member.size
        if total > max_bytes:
            raise AdapterInvalid(f"the archive unpacks to over {max_bytes} bytes")
        members.append((member, parts[-1]))
    names = [n for _, n in members]
    if len(set(names)) != len(names):
        raise AdapterInvalid("the archive holds two files with the same name")
    return members


def _open_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    try:
        source = tar.extractfile(member)
    except _UNREADABLE as exc:
        raise _unreadable(exc) from exc
    if source is None:
        raise AdapterInvalid(f"archive entry {excerpt(member.name)} is unreadable")
    return source


def _read(source: IO[bytes]) -> bytes:
    try:
        return source.read(_CHUNK_BYTES)
    except _UNREADABLE as exc:  # data cut short or corrupt after a good header
        raise _unreadable(exc) from exc


def _unreadable(exc: BaseException) -> AdapterInvalid:
    reason = str(exc) or type(exc).__name__
    return AdapterInvalid(f"the archive is damaged or cut short ({excerpt(reason, 100)})")
