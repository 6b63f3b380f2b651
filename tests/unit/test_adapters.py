from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import errors
from gateway.service.adapters import AdapterCatalog, AdapterInvalid
from tests.unit.conftest import make_peft_folder


@pytest.fixture
def catalog() -> AdapterCatalog:
    return AdapterCatalog("base", max_rank=16, base_fingerprint="a" * 64)


def test_ids_are_unique_and_increasing(catalog: AdapterCatalog, tmp_path: Path) -> None:
    a = catalog.add("a", make_peft_folder(tmp_path / "a"))
    b = catalog.add("b", make_peft_folder(tmp_path / "b"))
    assert (a.lora.lora_id, b.lora.lora_id) == (1, 2)
    assert catalog.resolve("b") is b
    assert catalog.resolve("base") is None
    assert catalog.resolve(None) is None


@pytest.mark.parametrize("name", ["../etc", "/abs", "a/b", "", ".hidden", "x" * 65, "sp ace"])
def test_unsafe_names_are_refused(catalog: AdapterCatalog, tmp_path: Path, name: str) -> None:
    with pytest.raises(AdapterInvalid):
        catalog.add(name, make_peft_folder(tmp_path / "ok"))


def test_pickle_only_adapter_is_refused(catalog: AdapterCatalog, tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "adapter_model.bin").write_bytes(b"\x80")
    with pytest.raises(AdapterInvalid, match=r"adapter_model\.safetensors"):
        catalog.add("p", folder)


def test_rank_over_engine_limit(catalog: AdapterCatalog, tmp_path: Path) -> None:
    with pytest.raises(AdapterInvalid, match="rank 64"):
        catalog.add("big", make_peft_folder(tmp_path / "big", rank=64))


def test_duplicate_and_base_names(catalog: AdapterCatalog, tmp_path: Path) -> None:
    catalog.add("a", make_peft_folder(tmp_path / "a"))
    for name in ("a", "base"):
        with pytest.raises(AdapterInvalid):
            catalog.add(name, make_peft_folder(tmp_path / "again"))


def test_unknown_adapter_is_404(catalog: AdapterCatalog) -> None:
    with pytest.raises(errors.AdapterNotFound) as info:
        catalog.resolve("ghost")
    assert info.value.status_code == 404


def test_manifest_prompt_and_labels(catalog: AdapterCatalog, tmp_path: Path) -> None:
    folder = make_peft_folder(tmp_path / "m")
    manifest = {"system_prompt": "Classify.", "labels": ["x", "y"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    adapter = catalog.add("m", folder)
    assert adapter.system_prompt == "Classify."
    assert adapter.labels == ("x", "y")
