"""Job records, their events and checkpoints, in SQLite (``<finetune_dir>/jobs.sqlite``).

A job's status only moves along ``MOVES`` (OpenAI's statuses and order), and every move
is one committed transaction, so a restarted gateway finds each job where it was: queued
jobs wait their turn again, and ``recover`` marks a job that was running (its worker died
with the old process) failed with the code ``interrupted``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.common.names import excerpt
from gateway.finetune.pages import page

ACTIVE = ("validating_files", "queued", "running")
ENDED = ("succeeded", "failed", "cancelled")
MOVES = {
    "validating_files": ("queued", "failed", "cancelled"),
    "queued": ("running", "failed", "cancelled"),
    "running": ("succeeded", "failed", "cancelled"),
}
DAY_S = 86_400
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT NOT NULL,
    status TEXT NOT NULL, finished_at INTEGER, tokens INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, body TEXT NOT NULL);
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class JobStore:
    """One connection, used under a lock; every write commits before it returns."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()  # ``move`` reads the job under the lock it holds

    def close(self) -> None:
        self._db.close()

    # jobs -----------------------------------------------------------------------------
    def insert(self, job: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, owner, status, body) VALUES (?, ?, ?, ?)",
                (job["id"], job["organization_id"], job["status"], json.dumps(job)),
            )
        return job

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        """The job, if ``owner``'s; another tenant's job is not found, like a missing one."""
        row = self._one("SELECT body FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))
        if row is None:
            raise errors.JobNotFound(f"no fine-tuning job {excerpt(job_id)}", param="job_id")
        return json.loads(row[0])

    def by_id(self, job_id: str) -> dict[str, Any]:
        row = self._one("SELECT body FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise errors.JobNotFound(f"no fine-tuning job {excerpt(job_id)}", param="job_id")
        return json.loads(row[0])

    def listing(self, owner: str, after: str | None, limit: int) -> dict[str, Any]:
        rows = self._all("SELECT body FROM jobs WHERE owner = ? ORDER BY seq DESC", (owner,))
        return page([json.loads(body) for (body,) in rows], after, limit)

    def version_owner(self, adapter: str, version: str) -> str | None:
        """Whose job made ``adapter``'s ``version`` (None: no job did). Any job naming it
        counts, ended or not: a version name carries its job's id and is never reused."""
        row = self._one(
            "SELECT owner FROM jobs WHERE json_extract(body, '$.gateway.adapter') = ? "
            "AND json_extract(body, '$.gateway.version') = ?",
            (adapter, version),
        )
        return None if row is None else str(row[0])

    def move(self, job_id: str, status: str, **fields: Any) -> dict[str, Any]:
        """Change the status (only along ``MOVES``) and any other fields, in one commit."""
        with self._lock:
            job = self.by_id(job_id)
            if status not in MOVES.get(job["status"], ()):
                kind = errors.JobNotCancellable if status == "cancelled" else errors.Conflict
                raise kind(f"job {job_id} is {job['status']}; it cannot become {status}")
            job.update(fields, status=status)
            if status in ENDED:
                job["finished_at"] = int(self.clock())
            self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, body = ? WHERE id = ?",
                (status, job.get("finished_at"), json.dumps(job), job_id),
            )
        return job

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Fields other than the status (resolved hyperparameters, the version name)."""
        with self._lock:
            job = {**self.by_id(job_id), **fields}
            self._db.execute("UPDATE jobs SET body = ? WHERE id = ?", (json.dumps(job), job_id))
        return job

    def count_tokens(self, job_id: str, tokens: int) -> None:
        """Training tokens so far (the daily budget counts them while a job runs)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET tokens = ? WHERE id = ?", (tokens, job_id))

    def next_queued(self) -> dict[str, Any] | None:
        row = self._one("SELECT body FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1", ())
        return None if row is None else json.loads(row[0])

    def active(self, owner: str) -> int:
        marks = ", ".join("?" * len(ACTIVE))
        query = f"SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ({marks})"
        return int(self._one(query, (owner, *ACTIVE))[0])  # type: ignore[index]

    def created_since(self, owner: str, since: float) -> tuple[int, int | None]:
        """How many jobs ``owner`` created since ``since`` (cancelled ones too), and when
        the oldest of them was created."""
        row = self._one(
            "SELECT COUNT(*), MIN(json_extract(body, '$.created_at')) FROM jobs "
            "WHERE owner = ? AND json_extract(body, '$.created_at') >= ?",
            (owner, int(since)),
        )
        count, oldest = row  # type: ignore[misc]
        return int(count), None if oldest is None else int(oldest)

    def of_owner(self, owner: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT body FROM jobs WHERE owner = ? ORDER BY seq", (owner,))
        return [json.loads(body) for (body,) in rows]

    def ended(self) -> list[tuple[str, str, str, int]]:
        """Every ended job: id, owner, status and when it ended."""
        marks = ", ".join("?" * len(ENDED))
        query = f"SELECT id, owner, status, finished_at FROM jobs WHERE status IN ({marks})"
        return [(i, o, s, int(f or 0)) for i, o, s, f in self._all(query, ENDED)]

    def ids(self) -> set[str]:
        return {job_id for (job_id,) in self._all("SELECT id FROM jobs", ())}

    def delete_owner(self, owner: str, keep: set[str]) -> int:
        """Remove ``owner``'s jobs with their events and checkpoints, but those in ``keep``
        (a job whose version an alias still serves names that version's owner)."""
        with self._lock:
            gone = [j for (j,) in self._all("SELECT id FROM jobs WHERE owner = ?", (owner,))
                    if j not in keep]  # fmt: skip
            for job_id in gone:
                for table in ("events", "checkpoints"):
                    self._db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return len(gone)

    def tokens_today(self, owner: str) -> tuple[int, int | None]:
        """Training tokens of ``owner``'s jobs running or ended in the last 24 hours, and
        when the oldest of those ended jobs leaves that window (None if none will)."""
        since = int(self.clock()) - DAY_S
        row = self._one(
            "SELECT COALESCE(SUM(tokens), 0), MIN(finished_at) FROM jobs WHERE owner = ? "
            "AND (status = 'running' OR finished_at >= ?)",
            (owner, since),
        )
        tokens, oldest = row  # type: ignore[misc]
        return int(tokens), None if oldest is None else int(oldest) + DAY_S

    def counts(self) -> dict[str, int]:
        rows = self._all("SELECT status, COUNT(*) FROM jobs GROUP BY status", ())
        found = dict(rows)
        return {status: int(found.get(status, 0)) for status in (*ACTIVE, *ENDED)}

    def unfinished(self) -> list[str]:
        """Jobs the last process left ``running`` or ``validating_files``."""
        rows = self._all("SELECT id FROM jobs WHERE status IN ('running', 'validating_files')", ())
        return [job_id for (job_id,) in rows]

    def recover(self) -> list[str]:
        """At start-up: a job still ``running`` or ``validating_files`` lost its process
        with the previous gateway; it fails with code ``interrupted`` (jobs are not
        resumed: a rerun is a new job). Queued jobs stay queued."""
        rows = self._all("SELECT id FROM jobs WHERE status IN ('running', 'validating_files')", ())
        error = {
            "code": "interrupted",
            "message": "the gateway stopped while this job was in progress; nothing was "
            "registered. Create the job again to retrain.",
            "param": None,
        }
        for (job_id,) in rows:
            self.move(job_id, "failed", error=error)
            self.add_event(job_id, error["message"], level="error")
        return [job_id for (job_id,) in rows]

    # events and checkpoints -----------------------------------------------------------
    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        kind: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        event = {
            "id": new_id("ftevent"), "object": "fine_tuning.job.event",
            "created_at": int(self.clock()), "level": level, "message": message,
            "type": kind, "data": data,
        }  # fmt: skip
        with self._lock:
            self._db.execute(
                "INSERT INTO events (job_id, body) VALUES (?, ?)", (job_id, json.dumps(event))
            )

    def events(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        rows = self._all("SELECT body FROM events WHERE job_id = ? ORDER BY seq DESC", (job_id,))
        return page([json.loads(body) for (body,) in rows], after, limit)

    def add_checkpoint(self, job_id: str, step: int, metrics: dict[str, Any], model: str) -> None:
        checkpoint = {
            "id": new_id("ftckpt"), "object": "fine_tuning.job.checkpoint",
            "created_at": int(self.clock()), "fine_tuning_job_id": job_id,
            "fine_tuned_model_checkpoint": model, "step_number": step, "metrics": metrics,
        }  # fmt: skip
        with self._lock:
            self._db.execute(
                "INSERT INTO checkpoints (job_id, body) VALUES (?, ?)",
                (job_id, json.dumps(checkpoint)),
            )

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        query = "SELECT body FROM checkpoints WHERE job_id = ? ORDER BY seq DESC"
        return page([json.loads(b) for (b,) in self._all(query, (job_id,))], after, limit)

    # internals ------------------------------------------------------------------------
    def _one(self, query: str, args: tuple) -> tuple | None:
        with self._lock:
            return self._db.execute(query, args).fetchone()

    def _all(self, query: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(query, args).fetchall()
