"""Adapter upload: a tar archive of one PEFT folder becomes a new version in the store.

The archive is untrusted. Only regular files with plain names are taken (no folders
beyond one optional top level, no links, no devices, no ``..``), sizes are capped
before anything is written, and the result is validated like any store folder before
one atomic rename makes it visible. A refused upload leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from gateway.fileio import make_readable
from gateway.registry.store import NAME_RE, AdapterInvalid, AdapterStore, AdapterVersion

MAX_MEMBERS = 32


def install_archive(store: AdapterStore, name: str, version: str, archive: Path) -> AdapterVersion:
    """Unpack ``archive`` as ``name/version``; raises ``AdapterInvalid`` and cleans up."""
    target = store.version_dir(name, version)
    if target.exists():
        raise AdapterInvalid(f"{name}/{version} already exists in the store", param="version")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".upload-{version}-", dir=target.parent))
    try:
        _extract(archive, staging, store.limits.max_bytes)
        found = store.check_folder(staging, name, version)
        make_readable(staging)
        os.rename(staging, target)  # atomic; fails if a concurrent upload won the name
        return AdapterVersion(**{**found.__dict__, "path": target})
    except OSError as exc:
        raise AdapterInvalid(f"{name}/{version}: could not be stored ({exc.strerror})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
            if len(parts) > 2 or not all(NAME_RE.match(p) for p in parts):
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
