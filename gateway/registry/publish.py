"""The one way a new adapter version enters the store: stage -> validate -> atomic rename.

Upload and training both write into a hidden staging folder next to the target (same
filesystem, so the final rename is atomic), the store's checks validate it, and one
rename makes the whole version visible at once. The publisher never replaces and never
deletes a version: a version that exists, possibly current or leased by a running
gateway, is refused (409 ``adapter_version_exists``); removing one is the admin API's job,
which honours the current version and leases. On any failure the staging folder is
removed and the store is as it was.

Refusing to replace must hold against a concurrent publisher too, so the rename is
Linux ``renameat2(RENAME_NOREPLACE)``: the kernel checks and renames in one step. Where
the filesystem lacks that flag (e.g. NFS), ``mkdir(target)`` claims the name exclusively
and ``rename`` then replaces only that empty folder this call made; a reader may briefly
see the empty folder, but never a replaced or partial version.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway import errors
from gateway.fileio import make_readable
from gateway.registry.store import AdapterStore, AdapterVersion

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def require_new_version(store: AdapterStore, name: str, version: str) -> Path:
    """The target folder of a version that does not exist yet; call it before slow work."""
    target = store.version_dir(name, version)
    if target.exists():
        raise _exists(name, version)
    return target


@contextmanager
def staging(store: AdapterStore, name: str, version: str) -> Iterator[Path]:
    """An empty hidden folder next to the target, removed on exit whatever happened; so is
    the adapter's folder if this call made it and nothing was published into it."""
    target = require_new_version(store, name, version)
    made_name_folder = _make_folder(target.parent)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=target.parent))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # already gone once published
    finally:
        if made_name_folder:
            _remove_if_empty(target.parent)


def publish(store: AdapterStore, name: str, version: str, staged: Path) -> AdapterVersion:
    """Validate ``staged`` (from ``staging``) and rename it into place as ``name/version``."""
    target = require_new_version(store, name, version)
    if staged.parent != target.parent:
        raise ValueError(f"{staged} is not a staging folder next to {target}")
    found = store.check_folder(staged, name, version)
    make_readable(staged)
    try:
        rename_noreplace(staged, target)
    except FileExistsError:  # a concurrent publisher won the name after the check above
        raise _exists(name, version) from None
    return dataclasses.replace(found, path=target)


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (and the store root if need be); True if this call created it."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    return True


def _remove_if_empty(folder: Path) -> None:
    """``rmdir`` removes only an empty folder, so a concurrent publisher's staging folder
    or version in it keeps it; one that removed it already is fine too."""
    try:
        folder.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise


def _exists(name: str, version: str) -> errors.AdapterVersionExists:
    return errors.AdapterVersionExists(
        f"{name}/{version} already exists in the adapter store and a version is never "
        f"replaced: publish a new version, or delete {name}/{version} first (on a gateway "
        "that has it registered, through the admin API, which refuses a current or in-use "
        "version)",
        param="version",
    )


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename atomically; ``FileExistsError`` if anything is at ``target``."""
    if _RENAMEAT2 is not None:
        flags = _RENAME_NOREPLACE
        if _RENAMEAT2(_AT_FDCWD, bytes(source), _AT_FDCWD, bytes(target), flags) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: this filesystem lacks the flag
            raise OSError(code, os.strerror(code), str(target))
    os.mkdir(target)  # the exclusive claim: FileExistsError if anything is there
    try:
        os.rename(source, target)  # replaces only the empty folder made just above
    except BaseException:
        os.rmdir(target)
        raise


def _load_renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if function is None:
        return None
    path, fd = ctypes.c_char_p, ctypes.c_int
    function.argtypes = [fd, path, fd, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()
