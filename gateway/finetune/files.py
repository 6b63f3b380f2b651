"""Each tenant's uploaded training files: ``<root>/<tenant>/<file-id>.<jsonl|csv>`` plus a
``<file-id>.json`` record, both written atomically (the content first, so a record never
names missing content).

An upload is read by the same readers ``gateway train`` uses before it is kept, so a file
that training could not read is refused at once with the reader's message. Ids are random
and looked up only inside the caller's own folder: another tenant's id is simply not
found, the same answer as an id that never existed.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.common.names import excerpt, require_name
from gateway.common.usage import UsageError
from gateway.fileio import write_json_atomic, write_text_atomic
from gateway.finetune.pages import page
from gateway.training.data import load_examples

PURPOSE = "fine-tune"
FILE_ID = re.compile(r"file-[0-9a-f]{24}")
MAX_FILENAME_CHARS = 255


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class FileStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def create(self, owner: str, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """Check and keep one upload; its record (OpenAI's file object) is returned."""
        if purpose != PURPOSE:
            raise errors.InvalidRequest(
                f"purpose {excerpt(purpose)} is not supported; this gateway keeps files for "
                f"{PURPOSE!r} only",
                param="purpose",
            )
        if len(content) > self.max_bytes:
            raise errors.FileTooLarge(f"the file is over {self.max_bytes} bytes", param="file")
        name = _filename(filename)
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.InvalidFile(
                f"the file is not UTF-8 text (byte {exc.start})", param="file"
            ) from exc
        folder = self._folder(owner)
        file_id = new_file_id()
        path = folder / f"{file_id}{_suffix(name)}"
        write_text_atomic(path, text)  # on Linux, the bytes as uploaded
        try:
            rows = len(load_examples(path, confidence=0.9))
        except UsageError as exc:
            path.unlink()
            raise errors.InvalidFile(str(exc).replace(str(path), name), param="file") from exc
        record = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": PURPOSE,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
            "sha256": hashlib.sha256(content).hexdigest(),
            "rows": rows,
            "created_ns": time.time_ns(),
        }
        write_json_atomic(folder / f"{file_id}.json", record)
        return _public(record)

    def get(self, owner: str, file_id: str) -> dict[str, Any]:
        return _public(self._record(owner, file_id))

    def path(self, owner: str, file_id: str) -> Path:
        """The content on disk (what a job copies before it trains)."""
        record = self._record(owner, file_id)
        return self._folder(owner) / f"{file_id}{_suffix(record['filename'])}"

    def content(self, owner: str, file_id: str) -> bytes:
        return self.path(owner, file_id).read_bytes()

    def listing(self, owner: str, after: str | None, limit: int, order: str) -> dict[str, Any]:
        records = [_read(p) for p in self._folder(owner).glob("file-*.json")]
        records.sort(key=lambda r: r["created_ns"], reverse=order == "desc")
        return page([_public(r) for r in records], after, limit)

    def delete(self, owner: str, file_id: str) -> dict[str, Any]:
        content = self.path(owner, file_id)
        (self._folder(owner) / f"{file_id}.json").unlink()  # the record first: it is the file
        content.unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    def _record(self, owner: str, file_id: str) -> dict[str, Any]:
        path = self._folder(owner) / f"{file_id}.json"
        if FILE_ID.fullmatch(file_id) is None or not path.is_file():
            raise errors.FileNotFound(f"no file {excerpt(file_id)}", param="file_id")
        return _read(path)

    def _folder(self, owner: str) -> Path:
        folder = self.root / require_name(owner, "tenant")
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _filename(filename: str) -> str:
    """The client's name for the file, kept for display only (never a path here)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > MAX_FILENAME_CHARS or not name.isprintable():
        raise errors.InvalidRequest(
            f"filename {excerpt(filename)} must be 1-{MAX_FILENAME_CHARS} printable characters",
            param="file",
        )
    return name


def _suffix(filename: str) -> str:
    """The readers choose the format by suffix: CSV for ``.csv``, JSON lines otherwise."""
    return ".csv" if filename.lower().endswith(".csv") else ".jsonl"


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "created_ns"}
