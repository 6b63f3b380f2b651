"""Removing what is in the adapter store but not registered: the one place, beside the
registry's own deletes, where folders under the store go away.

Its caller is the registry, which first checks its persisted state: a version the
registry lists is never passed here. Each folder leaves atomically (a rename to a
hidden ``.deleted-*`` name, then the files), so a crash leaves the whole folder or a
hidden trash folder, which ``sweep_trash`` removes at the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from gateway.registry.store import AdapterStore

TRASH_PREFIX = ".deleted-"
STAGING_PREFIX = ".staging-"
STALE_STAGING_S = 3600  # a publisher (upload, `gateway train`) stages for seconds, not hours


def remove_folder(folder: Path) -> None:
    """Make ``folder`` vanish whole (a rename), then delete its files."""
    trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def remove_unregistered(store: AdapterStore, name: str, version: str) -> list[str]:
    """``name/version``'s folder and its publishers' staging folders; then the name's
    folder if nothing else is in it. Returns what was removed (relative names)."""
    folder = store.version_dir(name, version)  # refuses names that leave the store
    parent = folder.parent
    removed = []
    for leftover in [folder, *parent.glob(f".staging-{version}-*")]:
        if leftover.is_dir() and not leftover.is_symlink():
            remove_folder(leftover)
            removed.append(f"{name}/{leftover.name}")
    with contextlib.suppress(OSError):
        parent.rmdir()  # only if empty: another version keeps it
    return removed


def sweep_trash(store: AdapterStore, now: float | None = None) -> int:
    """At start-up: trash folders a delete killed half-way left behind (never served:
    their version was unregistered, or never registered, before the rename), and staging
    folders of publishers killed before their rename, once older than
    ``STALE_STAGING_S`` (a younger one may belong to a ``gateway train`` still running)."""
    count = 0
    if not store.root.is_dir():
        return 0
    now = time.time() if now is None else now
    for hidden in store.root.glob("*/.*"):
        if not hidden.is_dir() or hidden.is_symlink():
            continue
        stale = hidden.name.startswith(STAGING_PREFIX) and (
            now - hidden.stat().st_mtime > STALE_STAGING_S
        )
        if hidden.name.startswith(TRASH_PREFIX) or stale:
            shutil.rmtree(hidden, ignore_errors=True)
            count += 1
    return count
