"""Atomic file writes: readers (and a restarted process) see the old file or the new one,
whole, never a torn one. Used for manifests, the adapter registry and the tenants file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder + fsync + rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a gateway running as another user reads it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def make_readable(folder: Path) -> None:
    """A folder built in ``mkdtemp`` is 0700 (and some writers make 0600 files): open it
    to other readers before it is renamed into a shared store."""
    os.chmod(folder, 0o755)
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, 0o644)
