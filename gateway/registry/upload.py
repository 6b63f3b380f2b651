"""Adapter upload: a tar archive of one PEFT folder becomes a new version in the store.

The archive is untrusted. Only regular files with plain names are taken (no folders
beyond one optional top level, no links, no devices, no ``..``), sizes are capped
before anything is written, and the result is validated and published like any new
version (``gateway.registry.publish``). A refused upload leaves nothing behind.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

from gateway import errors
from gateway.common.names import is_valid_name
from gateway.registry.publish import publish, staging
from gateway.registry.store import AdapterInvalid, AdapterStore, AdapterVersion

MAX_MEMBERS = 32
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


def _extract(archive: Path, into: Path, max_bytes: int) -> None:
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by "with tar" below)
    except (tarfile.TarError, OSError) as exc:
        raise AdapterInvalid(f"the upload is not a tar archive ({exc})") from exc
    with tar:
        members = []
        total = 0
        for member in tar:
            if len(members) >= MAX_MEMBERS:
                raise AdapterInvalid(f"the archive holds more than {MAX_MEMBERS} entries")
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if member.isdir() and len(parts) <= 1:
                continue  # the optional top-level folder
            if not member.isreg():
                raise AdapterInvalid(f"archive entry {member.name!r} is not a regular file")
            if len(parts) > 2 or not all(is_valid_name(p) for p in parts):
                raise AdapterInvalid(f"archive entry {member.name!r} has an unsafe path")
            total += member.size
            if total > max_bytes:
                raise AdapterInvalid(f"the archive unpacks to over {max_bytes} bytes")
            members.append((member, parts[-1]))
        names = [n for _, n in members]
        if len(set(names)) != len(names):
            raise AdapterInvalid("the archive holds two files with the same name")
        for member, filename in members:
            source = tar.extractfile(member)
            if source is None:
                raise AdapterInvalid(f"archive entry {member.name!r} is unreadable")
            with source, (into / filename).open("xb") as out:
                shutil.copyfileobj(source, out)
