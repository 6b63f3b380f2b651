"""Uploads training could not read, and uploads that break the readers themselves (issue
33: a JSONL row nested 100,000 deep, the same inside a chat answer, a CSV field over
131,072 characters answered 500 and left the content under ``files/<tenant>/`` with no
record). Every content here gets an answer (a record, or 400 ``invalid_file`` naming the
line) and leaves the folder consistent: a record for each content file, nothing else."""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway import errors
from gateway.finetune import upload_check
from gateway.finetune.files import FileStore
from gateway.finetune.upload_check import count_rows

ROW = b'{"text": "I was billed twice", "intent": "billing"}\n'
DEEP = b"[" * 100_000 + b"]" * 100_000
CHAT_DEEP = json.dumps({"messages": [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "[" * 100_000 + "]" * 100_000},
]}).encode()  # fmt: skip
LONG_FIELD = b"text,intent\nshort,billing\n" + b'"' + b"x" * 140_000 + b'",billing\n'
# (name, content, the line a refusal must name; None: any answer, the folder is checked)
CASES = [
    ("deep.jsonl", ROW + DEEP + b"\n", "deep.jsonl:2"),
    ("chat_deep.jsonl", ROW + CHAT_DEEP + b"\n", "chat_deep.jsonl:2"),
    ("field.csv", LONG_FIELD, "field.csv:3"),
    ("digits.jsonl", ROW + b'{"text": "a", "intent": "b", "n": ' + b"9" * 5000 + b"}\n",
     "digits.jsonl:2"),
    ("huge_line.jsonl", b'{"text": "' + b"a" * 3_000_000 + b'", "intent": "b"}\n', None),
    ("huge_broken_line.jsonl", ROW + b"{" * 3_000_000 + b"\n", "huge_broken_line.jsonl:2"),
    ("utf16.jsonl", "\ufeff".encode("utf-16-le") + ROW.decode().encode("utf-16-le"), "UTF-8"),
    ("latin1.csv", "text,intent\ncafé,billing\n".encode("latin-1"), "UTF-8"),
    ("bom.jsonl", b"\xef\xbb\xbf" + ROW, None),
    ("nul.jsonl", ROW + b"\x00\x00\n", "nul.jsonl:2"),
    ("surrogate.jsonl", b'{"text": "\\ud800", "intent": "b"}\n', None),
    ("separators.jsonl", b'{"text": "a\xe2\x80\xa8b", "intent": "b"}\n' + ROW, None),
    ("cr_only.jsonl", ROW.replace(b"\n", b"\r") * 3, None),
    ("csv_nul.csv", b"text,intent\na\x00b,billing\n", None),
    ("csv_quotes.csv", b'text,intent\n"unclosed,billing\n' + b"x\n" * 100, None),
]  # fmt: skip


def random_contents(seed: int, count: int) -> list[tuple[str, bytes]]:
    """Seeded junk: random bytes, random brackets, random slices of the cases above."""
    rng = random.Random(seed)
    found = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            content = rng.randbytes(rng.randint(1, 3000))
        elif kind == 1:
            content = ROW + "".join(rng.choice('[]{}",: 1') for _ in range(3000)).encode()
        else:
            _, source, _ = rng.choice(CASES)
            start = rng.randrange(len(source))
            content = source[start : start + rng.randint(1, 200_000)]
        found.append((f"r{n}.{rng.choice(['jsonl', 'csv'])}", content))
    return found


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files", 10_000_000, max_files=1000, check=count_rows)


def consistent(store: FileStore, owner: str) -> list[str]:
    """The folder holds exactly a content file and a record per kept file."""
    folder = store.root / owner
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    kept = [r["id"] for r in store.listing(owner, None, 10_000, "asc")["data"]]
    wanted = sorted([f"{i}.json" for i in kept] + [store.path(owner, i).name for i in kept])
    assert names == wanted
    return kept


@pytest.mark.parametrize(("name", "content", "words"), CASES, ids=[c[0] for c in CASES])
def test_every_content_is_answered_and_leaves_nothing_unrecorded(
    store: FileStore, name: str, content: bytes, words: str | None
) -> None:
    try:
        record = store.create("acme", name, "fine-tune", content)
    except errors.InvalidFile as refused:
        assert refused.status_code == 400
        assert words is None or words in refused.message, refused.message
        assert str(store.root) not in refused.message  # the server's paths stay private
        assert consistent(store, "acme") == []
    else:
        assert words is None, f"{name} was kept: {record}"
        assert consistent(store, "acme") == [record["id"]]
        assert store.content("acme", record["id"]) == content


def test_seeded_junk_is_answered_and_leaves_nothing_unrecorded(store: FileStore) -> None:
    kept = 0
    for name, content in random_contents(seed=33, count=60):
        try:
            store.create("acme", name, "fine-tune", content)
            kept += 1
        except (errors.InvalidFile, errors.FileTooLarge):
            pass
        assert len(consistent(store, "acme")) == kept


def test_the_check_runs_in_a_child_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's own process never runs the readers on an upload (issue 33: a
    1,000,000-row upload read in a thread slowed every other tenant's requests)."""

    def in_process(path: Path) -> dict:
        raise AssertionError("the readers ran in the gateway's process")

    monkeypatch.setattr(upload_check, "count_rows", in_process)
    store = FileStore(tmp_path / "files", 10_000_000)
    assert store.create("acme", "train.jsonl", "fine-tune", ROW * 3)["rows"] == 3
    with pytest.raises(errors.InvalidFile, match=r"train\.jsonl:2: nested too deeply"):
        store.create("acme", "train.jsonl", "fine-tune", ROW + DEEP)
    assert len(consistent(store, "acme")) == 1


def test_a_check_that_crashes_is_a_typed_500_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_check, "CHECK", (sys.executable, "-c", "raise SystemExit(3)"))
    store = FileStore(tmp_path / "files", 10_000_000)
    with pytest.raises(errors.GatewayError) as failed:
        store.create("acme", "train.jsonl", "fine-tune", ROW)
    assert failed.value.status_code == 500 and failed.value.error_id
    broken = FileStore(tmp_path / "files", 10_000_000, check=lambda path: 1 / 0)  # type: ignore[arg-type,return-value]
    with pytest.raises(errors.GatewayError) as failed:
        broken.create("acme", "train.jsonl", "fine-tune", ROW)
    assert failed.value.status_code == 500 and failed.value.error_id
    assert consistent(store, "acme") == []


def test_one_upload_per_tenant_at_a_time(tmp_path: Path) -> None:
    reading, release = threading.Event(), threading.Event()

    def slow(path: Path) -> dict:
        reading.set()
        release.wait(10)
        return count_rows(path)

    store = FileStore(tmp_path / "files", 10_000, check=slow)
    first = threading.Thread(target=store.create, args=("acme", "a.jsonl", "fine-tune", ROW))
    first.start()
    assert reading.wait(10)
    with pytest.raises(errors.UploadInProgress) as refused:
        store.create("acme", "b.jsonl", "fine-tune", ROW)
    assert refused.value.status_code == 429 and refused.value.retry_after > 0
    release.set()  # another tenant is not held up
    assert store.create("globex", "c.jsonl", "fine-tune", ROW)["rows"] == 1
    first.join(10)
    assert len(consistent(store, "acme")) == 1
    assert store.create("acme", "b.jsonl", "fine-tune", ROW)["rows"] == 1  # done: next one


def test_files_and_bytes_per_tenant_are_capped(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files", 10_000, max_files=2, max_total_bytes=len(ROW) * 3,
                      check=count_rows)  # fmt: skip
    store.create("acme", "a.jsonl", "fine-tune", ROW * 2)
    with pytest.raises(errors.QuotaExceeded, match="bytes") as refused:
        store.create("acme", "b.jsonl", "fine-tune", ROW * 2)
    assert refused.value.status_code == 429 and refused.value.code == "quota_exceeded"
    store.create("acme", "b.jsonl", "fine-tune", ROW)
    with pytest.raises(errors.QuotaExceeded, match="files"):
        store.create("acme", "c.jsonl", "fine-tune", ROW)
    assert store.create("globex", "c.jsonl", "fine-tune", ROW)  # per tenant
    assert len(consistent(store, "acme")) == 2
    assert store.used_bytes("acme") == len(ROW) * 3


def test_the_sweep_removes_old_leftovers_no_record_names(store: FileStore) -> None:
    kept = store.create("acme", "a.jsonl", "fine-tune", ROW)["id"]
    folder = store.root / "acme"
    old, young = folder / "file-000000000000000000000001.jsonl", folder / ".file-x.part.csv"
    hidden = folder / ".file-000000000000000000000002.json-tmp"
    for path in (old, young, hidden):
        path.write_bytes(ROW)
    hour_ago = time.time() - 3600
    for path in (old, hidden, *folder.glob(f"{kept}*")):
        os.utime(path, (hour_ago, hour_ago))
    assert sorted(store.sweep(grace_s=600)) == sorted([old, hidden])
    assert young.exists() and consistent is not None
    young.unlink()
    assert consistent(store, "acme") == [kept]
