"""The adapter store: nothing outside it is read, nothing invalid is registered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway import errors
from gateway.registry.store import (
    AdapterInvalid,
    AdapterStore,
    StoreLimits,
    check_safetensors,
    parse_store_path,
)
from tests.adapter_factory import FAKE_BASE, make_peft_folder

LIMITS = StoreLimits(FAKE_BASE.fingerprint, 16, frozenset({"q_proj", "v_proj"}), 10_000_000)


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    root = tmp_path / "store"
    make_peft_folder(root / "demo" / "v1", labels=["a", "b"])
    return AdapterStore(root, LIMITS)


def test_a_valid_version_is_described(store: AdapterStore) -> None:
    found = store.inspect("demo", "v1")
    assert (found.name, found.version, found.rank) == ("demo", "v1", 8)
    assert found.labels == ("a", "b")
    assert found.system_prompt == "Classify."
    assert found.path == store.root / "demo" / "v1"


@pytest.mark.parametrize(
    "path",
    ["../x", "../../etc/passwd", "/etc/passwd", "/etc", "demo/../../x", "demo/..", "demo",
     "demo/v1/extra", "%2e%2e/x", "..%2Fx/v1", "demo/%2e%2e", "demo/v1%00", ".hidden/v1",
     "demo/ v1", "demo\\v1"],
)  # fmt: skip
def test_path_tricks_are_refused(store: AdapterStore, path: str) -> None:
    with pytest.raises(AdapterInvalid):
        name, version = parse_store_path(path)
        store.inspect(name, version)


@pytest.mark.parametrize(
    "name", ["..", ".", "a/b", "", "x" * 65, "-lead", "café", "v1\n", "v1\r\n", "\ud800"]
)
def test_unsafe_names_are_refused(store: AdapterStore, name: str) -> None:
    with pytest.raises(AdapterInvalid):
        store.version_dir(name, "v1")
    with pytest.raises(AdapterInvalid):
        store.version_dir("demo", name)


def test_the_stores_own_file_names_are_reserved(store: AdapterStore) -> None:
    for name, version in [("registry.json", "v1"), ("demo", "registry.json")]:
        with pytest.raises(AdapterInvalid, match="reserved") as caught:
            store.version_dir(name, version)
        assert caught.value.status_code == 400
    (store.root / "state.yaml").write_text("a registry file under another name")
    with pytest.raises(AdapterInvalid, match="a file there, not a folder"):
        store.version_dir("state.yaml", "v1")


def test_a_long_hostile_name_is_echoed_as_a_short_escaped_excerpt(store: AdapterStore) -> None:
    with pytest.raises(AdapterInvalid) as caught:
        store.version_dir("\n\u202e" + "x" * 100_000, "v1")
    assert len(caught.value.message) < 250
    assert "\\n" in caught.value.message and "\\u202e" in caught.value.message
    assert "\n" not in caught.value.message and "\u202e" not in caught.value.message


def test_symlinks_out_of_the_store_are_not_followed(store: AdapterStore, tmp_path: Path) -> None:
    outside = make_peft_folder(tmp_path / "outside" / "evil" / "v1")
    (store.root / "evil").symlink_to(outside.parent)  # a name that is a link
    with pytest.raises(AdapterInvalid, match="symlink"):
        store.inspect("evil", "v1")
    (store.root / "demo" / "v9").symlink_to(outside)  # a version that is a link
    with pytest.raises(AdapterInvalid, match="symlink"):
        store.inspect("demo", "v9")
    weights = store.root / "demo" / "v1" / "adapter_model.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "adapter_model.safetensors")  # a file that is a link
    with pytest.raises(AdapterInvalid, match="not a regular file"):
        store.inspect("demo", "v1")


def test_missing_version_is_404(store: AdapterStore) -> None:
    with pytest.raises(errors.AdapterNotFound):
        store.inspect("demo", "v2")


def test_pickle_weights_are_refused(store: AdapterStore) -> None:
    (store.root / "demo" / "v1" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(AdapterInvalid, match="pickle"):
        store.inspect("demo", "v1")


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:4],  # truncated before the header length
        lambda b: b[:-8],  # tensor data cut short
        lambda b: (10**12).to_bytes(8, "little") + b[8:],  # absurd header length
        lambda b: b[:8] + b"{not json" + b[17:],  # header bytes garbled
        lambda b: b"",  # empty file
    ],
)
def test_corrupt_safetensors_are_refused(store: AdapterStore, damage) -> None:
    weights = store.root / "demo" / "v1" / "adapter_model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(AdapterInvalid):
        store.inspect("demo", "v1")


def test_an_intact_safetensors_file_passes(store: AdapterStore) -> None:
    check_safetensors(store.root / "demo" / "v1" / "adapter_model.safetensors", "x")


def test_other_base_model_is_refused(store: AdapterStore) -> None:
    make_peft_folder(store.root / "demo" / "v2", fingerprint="0" * 64)
    with pytest.raises(AdapterInvalid, match="another base model"):
        store.inspect("demo", "v2")


def test_rank_modules_size_and_manifest_limits(store: AdapterStore, tmp_path: Path) -> None:
    make_peft_folder(store.root / "big" / "v1", rank=32)
    with pytest.raises(AdapterInvalid, match="rank"):
        store.inspect("big", "v1")
    make_peft_folder(store.root / "mods" / "v1", modules=("q_proj", "lm_head"))
    with pytest.raises(AdapterInvalid, match="lm_head"):
        store.inspect("mods", "v1")
    tiny = AdapterStore(
        store.root, StoreLimits(FAKE_BASE.fingerprint, 16, LIMITS.target_modules, 100)
    )
    with pytest.raises(AdapterInvalid, match="limit"):
        tiny.inspect("demo", "v1")
    manifest = store.root / "demo" / "v1" / "manifest.json"
    body = json.loads(manifest.read_text())
    del body["labels"]
    manifest.write_text(json.dumps(body))
    with pytest.raises(AdapterInvalid, match="lacks labels"):
        store.inspect("demo", "v1")
    os.remove(manifest)
    with pytest.raises(AdapterInvalid, match=r"missing manifest\.json"):
        store.inspect("demo", "v1")
