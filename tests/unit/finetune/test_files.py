"""The file store: what an upload must be, where it lives, and who can see it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway import errors
from gateway.finetune.files import FileStore

LABELLED = (
    b'{"text": "I was billed twice", "intent": "billing"}\n{"text": "hi", "intent": "other"}\n'
)
CHAT = json.dumps({"messages": [
    {"role": "user", "content": "refund me"},
    {"role": "assistant", "content": '{"intent":"billing"}'},
]}).encode()  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files", max_bytes=4096)


def test_an_upload_is_kept_with_its_hash_and_row_count(store: FileStore) -> None:
    record = store.create("acme", "train.jsonl", "fine-tune", LABELLED)
    assert record["object"] == "file" and record["id"].startswith("file-")
    assert record["bytes"] == len(LABELLED) and record["rows"] == 2
    assert record["sha256"] == hashlib.sha256(LABELLED).hexdigest()
    assert record["status"] == "processed" and record["filename"] == "train.jsonl"
    assert store.content("acme", record["id"]) == LABELLED
    assert store.get("acme", record["id"]) == record
    assert store.create("acme", "chat.jsonl", "fine-tune", CHAT)["rows"] == 1


def test_csv_is_read_as_csv(store: FileStore) -> None:
    record = store.create("acme", "data.csv", "fine-tune", b"text,intent\nrefund me,billing\n")
    assert record["rows"] == 1
    assert store.path("acme", record["id"]).suffix == ".csv"


@pytest.mark.parametrize(
    ("content", "purpose", "kind", "words"),
    [
        (LABELLED, "assistants", errors.InvalidRequest, "purpose"),
        (b"x" * 5000, "fine-tune", errors.FileTooLarge, "over 4096 bytes"),
        (b"\xff\xfe", "fine-tune", errors.InvalidFile, "not UTF-8"),
        (b'{"text": "no label"}\n', "fine-tune", errors.InvalidFile, "train.jsonl:1"),
        (b"not json\n", "fine-tune", errors.InvalidFile, "not JSON"),
        (b"\n\n", "fine-tune", errors.InvalidFile, "no examples"),
    ],
)
def test_what_training_could_not_read_is_refused_and_not_kept(
    store: FileStore, content: bytes, purpose: str, kind: type, words: str
) -> None:
    with pytest.raises(kind, match=words) as refused:
        store.create("acme", "train.jsonl", purpose, content)
    assert str(store.root) not in refused.value.message  # the server's paths stay private
    assert not list(store.root.rglob("file-*"))


def test_a_path_in_the_filename_is_dropped(store: FileStore) -> None:
    assert store.create("acme", "../../etc/x.jsonl", "fine-tune", LABELLED)["filename"] == "x.jsonl"
    with pytest.raises(errors.InvalidRequest, match="filename"):
        store.create("acme", "a/", "fine-tune", LABELLED)


def test_another_tenants_file_is_not_found(store: FileStore) -> None:
    file_id = store.create("acme", "train.jsonl", "fine-tune", LABELLED)["id"]
    for call in (store.get, store.content, store.delete):
        with pytest.raises(errors.FileNotFound):
            call("globex", file_id)
    assert store.listing("globex", None, 10, "desc")["data"] == []
    with pytest.raises(errors.FileNotFound):
        store.get("acme", "../globex/file-x")  # not an id: never a path


def test_list_pages_newest_first_and_delete_removes(store: FileStore) -> None:
    ids = [store.create("acme", f"{n}.jsonl", "fine-tune", LABELLED)["id"] for n in range(3)]
    first = store.listing("acme", None, 2, "desc")
    assert [f["id"] for f in first["data"]] == [ids[2], ids[1]] and first["has_more"]
    rest = store.listing("acme", first["last_id"], 2, "desc")
    assert [f["id"] for f in rest["data"]] == [ids[0]] and not rest["has_more"]
    assert [f["id"] for f in store.listing("acme", None, 10, "asc")["data"]] == ids
    with pytest.raises(errors.InvalidRequest, match="after"):
        store.listing("acme", "file-000000000000000000000000", 2, "desc")
    assert store.delete("acme", ids[0]) == {"id": ids[0], "object": "file", "deleted": True}
    with pytest.raises(errors.FileNotFound):
        store.get("acme", ids[0])
    assert len(list((store.root / "acme").iterdir())) == 4  # two files, two records
