"""Each tenant's uploaded training files: ``<root>/<owner>/<file-id>.<jsonl|csv>`` plus a
``<file-id>.json`` record (the content first, so a record never names missing content).
``<owner>`` is the tenant's id (``Tenant.owner_id``), never reused by a later tenant.

An upload is streamed to a hidden part file in chunks (hashed, size-capped and checked as
UTF-8 on the way), then read by the training readers in a child process
(``upload_check``), so a file training could not read is refused at once with the
reader's message and line, and a large one costs the gateway neither memory nor its
event loop. Whatever goes wrong, the part file is removed: nothing stays without a
record. ``sweep`` removes what a crash left (older than a grace period) at start-up.

Per owner: one upload at a time, at most ``max_files`` files and ``max_total_bytes``
bytes. Ids are random and looked up only inside the caller's own folder: another
tenant's id is simply not found, the same answer as an id that never existed.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gateway import errors
from gateway.common.names import excerpt, require_name
from gateway.fileio import write_json_atomic
from gateway.finetune.pages import page
from gateway.finetune.upload_check import check_in_child

log = logging.getLogger(__name__)
PURPOSE = "fine-tune"
FILE_ID = re.compile(r"file-[0-9a-f]{24}")
MAX_FILENAME_CHARS = 255
CHUNK = 1 << 20
Check = Callable[[Path], dict[str, Any]]  # ``upload_check.count_rows``'s answer


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class FileStore:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        *,
        max_files: int = 100,
        max_total_bytes: int | None = None,
        check: Check | None = None,
        check_timeout_s: float = 300.0,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes or 10 * max_bytes
        self.check: Check = check or (lambda path: check_in_child(path, check_timeout_s))
        self._uploading: set[str] = set()  # owners with an upload in progress
        self._lock = threading.Lock()

    def create(
        self, owner: str, filename: str, purpose: str, source: BinaryIO | bytes
    ) -> dict[str, Any]:
        """Check and keep one upload; its record (OpenAI's file object) is returned."""
        if purpose != PURPOSE:
            raise errors.InvalidRequest(
                f"purpose {excerpt(purpose)} is not supported; this gateway keeps files for "
                f"{PURPOSE!r} only",
                param="purpose",
            )
        name = _filename(filename)
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        with self._one_upload(owner):
            folder = self._folder(owner)
            records = self._records(owner)
            if len(records) >= self.max_files:
                raise errors.QuotaExceeded(
                    f"you keep {len(records)} files, the most allowed; delete one first",
                    param="file", reason="fine_tuning_files",
                )  # fmt: skip
            file_id = new_file_id()
            part = folder / f".{file_id}.part{_suffix(name)}"  # the readers go by suffix
            try:
                return self._keep(owner, folder, file_id, name, stream, part, records)
            except errors.GatewayError:
                raise
            except Exception as exc:  # ours, not the file's: typed, logged, nothing kept
                raise errors.traced(errors.GatewayError, "the upload could not be kept", log,
                                    exc) from exc  # fmt: skip
            finally:
                part.unlink(missing_ok=True)

    def _keep(
        self,
        owner: str,
        folder: Path,
        file_id: str,
        name: str,
        stream: BinaryIO,
        part: Path,
        records: list[dict[str, Any]],
    ) -> dict[str, Any]:
        size, digest = _copy(stream, part, self.max_bytes)
        used = sum(r["bytes"] for r in records)
        if used + size > self.max_total_bytes:
            raise errors.QuotaExceeded(
                f"your files would take {used + size} bytes; the most allowed is "
                f"{self.max_total_bytes}; delete some first",
                param="file", reason="fine_tuning_bytes",
            )  # fmt: skip
        found = self.check(part)
        if "error" in found:
            raise errors.InvalidFile(str(found["error"]).replace(str(part), name), param="file")
        content = folder / f"{file_id}{_suffix(name)}"
        os.replace(part, content)
        record = {
            "id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
            "filename": name, "purpose": PURPOSE, "status": "processed",
            "status_details": None, "expires_at": None, "sha256": digest,
            "rows": int(found["rows"]), "created_ns": time.time_ns(),
        }  # fmt: skip
        try:
            write_json_atomic(folder / f"{file_id}.json", record)
        except BaseException:
            content.unlink(missing_ok=True)
            raise
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
        records = self._records(owner)
        records.sort(key=lambda r: r["created_ns"], reverse=order == "desc")
        return page([_public(r) for r in records], after, limit)

    def used_bytes(self, owner: str) -> int:
        return sum(r["bytes"] for r in self._records(owner))

    def delete(self, owner: str, file_id: str) -> dict[str, Any]:
        content = self.path(owner, file_id)
        (self._folder(owner) / f"{file_id}.json").unlink()  # the record first: it is the file
        content.unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    def forget(self, owner: str) -> int:
        """Remove every file of ``owner`` (a deleted tenant); returns how many it had."""
        folder = self.root / require_name(owner, "tenant")
        count = len(list(folder.glob("file-*.json"))) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def sweep(self, grace_s: float, now: float | None = None) -> list[Path]:
        """Remove what no record names (a crash between writing and recording, an
        earlier gateway's leftovers), once older than ``grace_s``. At start-up."""
        cutoff = (time.time() if now is None else now) - grace_s
        removed = []
        for path in self.root.glob("*/*") if self.root.is_dir() else ():
            hidden = path.name.startswith(".")  # a part file, an unfinished atomic write
            content = path.suffix in (".jsonl", ".csv")
            recorded = (path.parent / f"{path.name.split('.')[0]}.json").is_file()
            if not hidden and (not content or recorded):
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
        for path in removed:
            log.warning("removed %s: an upload no record names", path)
        return removed

    def _records(self, owner: str) -> list[dict[str, Any]]:
        return [_read(p) for p in self._folder(owner).glob("file-*.json")]

    def _record(self, owner: str, file_id: str) -> dict[str, Any]:
        path = self._folder(owner) / f"{file_id}.json"
        if FILE_ID.fullmatch(file_id) is None or not path.is_file():
            raise errors.FileNotFound(f"no file {excerpt(file_id)}", param="file_id")
        return _read(path)

    def _folder(self, owner: str) -> Path:
        folder = self.root / require_name(owner, "tenant")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def _one_upload(self, owner: str) -> Iterator[None]:
        """One upload per owner at a time: a second waits for none, it is refused."""
        with self._lock:
            if owner in self._uploading:
                raise errors.UploadInProgress(
                    "another upload of yours is being read; send the next one when it is "
                    "done", retry_after=2, reason="fine_tuning_upload",
                )  # fmt: skip
            self._uploading.add(owner)
        try:
            yield
        finally:
            with self._lock:
                self._uploading.discard(owner)


def _copy(source: BinaryIO, target: Path, max_bytes: int) -> tuple[int, str]:
    """Stream ``source`` into ``target`` in chunks: its size and SHA-256, checked as UTF-8
    and against ``max_bytes`` on the way (memory stays one chunk whatever the size)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise errors.FileTooLarge(f"the file is over {max_bytes} bytes", param="file")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise errors.InvalidFile(
                    f"the file is not UTF-8 text (byte {size - len(chunk) + exc.start})",
                    param="file",
                ) from exc
            digest.update(chunk)
            out.write(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise errors.InvalidFile(
                f"the file is not UTF-8 text (byte {size - len(exc.object) + exc.start})",
                param="file",
            ) from exc
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


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
