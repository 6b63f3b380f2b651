"""``gateway adapters merge``: the refusals, told before anything loads, and a merge of a
random LoRA into a tiny random Llama whose greedy outputs are those of base + adapter.

Tests marked ``heavy`` build the tiny model with torch (a second or two); nothing here
needs the provisioned base model or the network.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.common.prompts import classify_messages, default_system_prompt, render_prompt
from gateway.config import Settings
from gateway.errors import AdapterInvalid
from gateway.models import (
    MANIFEST,
    ModelError,
    ModelInfo,
    Quantization,
    fingerprint_dir,
    resolve_model,
    sha256_file,
)
from gateway.models.files import tensor_shapes
from gateway.training.merge import KIND, MergedModel, merge_adapter
from tests.adapter_factory import (
    FAKE_BASE,
    make_peft_folder,
    make_random_adapter,
    tiny_llama_config,
)
from tests.unit.common.test_prompts import CHATML, char_tokenizer

LABELS = ["billing", "other"]


def _too_far(*args: object, **kwargs: object) -> None:
    raise AssertionError("the merge went past the refusal (base model or weights loaded)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    make_peft_folder(tmp_path / "store" / "support" / "v1", labels=LABELS)
    return Settings(adapter_store=tmp_path / "store")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".merge-"))


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """Runs ``gateway adapters merge ARGS`` on ``settings``' store with FAKE_BASE as the
    base; returns the one-line error after checking exit status 2."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_ADAPTER_STORE", str(settings.adapter_store))
    monkeypatch.setattr("gateway.models.resolve_model", lambda *args: FAKE_BASE)
    monkeypatch.setattr("gateway.training.merge._merge_weights", _too_far)

    def run(*argv: str) -> str:
        assert main(["adapters", "merge", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gateway: error: ") and err.count("\n") == 1, err
        return err.removeprefix("gateway: error: ").strip()

    return run


def test_an_unknown_adapter_is_refused(cli: Callable[..., str], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert cli("support", "v9", "--out", str(out)) == (
        "adapter support/v9 is not in the adapter store"
    )
    assert cli("nobody", "v1", "--out", str(out)).startswith("adapter nobody/v1 is not in")
    assert not out.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize(
    ("name", "version", "problem"),
    [
        ("..", "v1", "name '..' must be 1-64 characters"),
        ("support", "../../etc", "version '../../etc' must be 1-64 characters"),
        ("support/v1", "v1", "name 'support/v1' must be"),
        (".hidden", "v1", "name '.hidden' must be"),
        ("registry.json", "v1", "name 'registry.json' is reserved"),
    ],
)
def test_a_name_against_the_rule_is_refused_before_the_base_loads(
    cli: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    version: str,
    problem: str,
) -> None:
    monkeypatch.setattr("gateway.models.resolve_model", _too_far)
    assert cli(name, version, "--out", str(tmp_path / "merged")).startswith(problem)
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("taken", ["served", "served-w4a16-g32"])
def test_an_existing_folder_is_never_replaced(
    cli: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, taken: str
) -> None:
    """Neither --out nor, with --quantize, the quantized checkpoint's folder beside it."""
    monkeypatch.setattr("gateway.models.resolve_model", _too_far)
    (tmp_path / taken).mkdir()
    (tmp_path / taken / "config.json").write_text("{}")
    problem = cli("support", "v1", "--out", str(tmp_path / "served"), "--quantize", "w4a16")
    assert problem == f"{tmp_path / taken} already exists; a merge never replaces a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["store", taken])
    assert [p.name for p in (tmp_path / taken).iterdir()] == ["config.json"]


def test_an_adapter_of_another_base_family_is_refused(settings: Settings, tmp_path: Path) -> None:
    other = ModelInfo("other-base", Path("/nonexistent"), "0" * 64)
    with pytest.raises(AdapterInvalid, match="was trained on another base model"):
        merge_adapter(settings, other, "support", "v1", tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and not _leftovers(tmp_path)


def test_a_quantized_base_without_its_source_is_refused(settings: Settings, tmp_path: Path) -> None:
    w4a16 = Quantization("compressed-tensors", "pack-quantized", 4, None, 32)
    quantized = dataclasses.replace(FAKE_BASE, variant=w4a16.variant, quantization=w4a16)
    with pytest.raises(ModelError, match="unquantized source is not on this machine"):
        merge_adapter(settings, quantized, "support", "v1", tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and not _leftovers(tmp_path)


def test_a_failed_merge_leaves_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_written(base_dir: Path, adapter: object, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"partial")
        raise MemoryError("killed halfway")

    monkeypatch.setattr("gateway.training.merge._merge_weights", half_written)
    with pytest.raises(MemoryError):
        merge_adapter(settings, FAKE_BASE, "support", "v1", tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and not _leftovers(tmp_path)


def test_quantize_writes_the_variant_beside_the_kept_merge(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The quantizer (``gateway model quantize``'s, faked here) reads the merged folder;
    when it fails, the merged model stays and the message says how to go on."""
    out = tmp_path / "served"
    jobs: list[dict[str, Any]] = []
    monkeypatch.setenv("GATEWAY_ADAPTER_STORE", str(settings.adapter_store))
    monkeypatch.setattr("gateway.models.resolve_model", lambda *args: FAKE_BASE)
    monkeypatch.setattr(
        "gateway.training.merge.merge_adapter",
        lambda settings, base, name, version, out: out.mkdir() or MergedModel(out, "e" * 64),
    )
    monkeypatch.setattr("gateway.models.toolenv.tool_env", lambda cache_dir: "tool")
    monkeypatch.setattr(
        "gateway.models.quantize.prepare",
        lambda source, cache, **kw: jobs.append({"source": source, **kw}) or kw["out"],
    )
    monkeypatch.setattr(
        "gateway.models.quantize.quantize",
        lambda job, tool: dataclasses.replace(FAKE_BASE, path=job),
    )

    assert (
        main(["adapters", "merge", "support", "v1", "--out", str(out), "--quantize", "w4a16"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    quantized = tmp_path / "served-w4a16-g32"
    assert (jobs[0]["source"], jobs[0]["scheme"], jobs[0]["out"]) == (out, "w4a16", quantized)
    assert printed == {
        "merged": str(out), "fingerprint": "e" * 64, "quantized": str(quantized),
        "serve": f"GATEWAY_MODEL_DIR={quantized} GATEWAY_ADAPTERS='{{}}' gateway serve",
    }  # fmt: skip

    def fails(job: object, tool: object) -> None:
        raise ModelError("the quantizer exited with status 1")

    monkeypatch.setattr("gateway.models.quantize.quantize", fails)
    again = tmp_path / "again"
    assert (
        main(["adapters", "merge", "support", "v1", "--out", str(again), "--quantize", "w8a8"]) == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"gateway: error: the quantizer exited with status 1. The merged model {again} is "
        f"complete; quantize it with `gateway model quantize --source {again} --scheme w8a8`"
    )
    assert again.is_dir()


# A merged float32 model against base + adapter (PEFT, unmerged), both run in float32:
# they differ only in the order of additions, measured at most 8.3e-4 on logits up to
# 22.5 (the same with 1 and 2 threads), while the narrowest greedy margin on these prompts
# is 0.035. A base saved unmerged is off by 24.6 and changes every greedy answer below.
LOGIT_TOLERANCE = 1e-2
PROMPTS = ("I was billed twice", "where is my card?", "reset my password", "are you hiring")


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    """A two-layer Llama with seeded wide weights (``initializer_range=1``, so greedy
    choices are decided by clear margins) and a one-token-per-character tokenizer, all
    made here, offline."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-family")
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"])
    tokenizer.save_pretrained(path)
    config = tiny_llama_config(len(tokenizer), initializer_range=1.0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return resolve_model(path, path / "unused-cache")


def _random_adapter(family: ModelInfo, root: Path) -> Path:
    """A random non-zero LoRA on every attention projection, with classify metadata."""
    folder = make_random_adapter(family, root / "support" / "v1", seed=1, rank=8)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(labels=LABELS, system_prompt=default_system_prompt(tuple(LABELS)))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _greedy(model: Any, prompt: list[int], steps: int = 12) -> list[int]:
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :].tolist()


@pytest.mark.heavy
def test_the_merged_model_answers_as_base_plus_adapter(family: ModelInfo, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = _random_adapter(family, tmp_path / "store")
    out = tmp_path / "merged"
    settings = Settings(adapter_store=tmp_path / "store")
    merged = merge_adapter(settings, family, "support", "v1", out)

    assert merged.path == out and merged.fingerprint == fingerprint_dir(out) != family.fingerprint
    assert not _leftovers(tmp_path)
    provenance = json.loads((out / MANIFEST).read_text())
    assert provenance["kind"] == KIND and provenance["fingerprint"] == merged.fingerprint
    assert provenance["adapter"]["manifest_sha256"] == sha256_file(adapter / "manifest.json")
    assert (provenance["base"]["fingerprint"], provenance["base"]["variant"]) == (
        family.fingerprint, "fp32",
    )  # fmt: skip
    assert provenance["classify"] == {  # the manifest's blocks: no schema, answer, ... here
        "labels": LABELS, "system_prompt": default_system_prompt(tuple(LABELS)),
    }  # fmt: skip
    assert provenance["files"] == {
        p.name: sha256_file(p) for p in out.iterdir() if p.name != MANIFEST
    }

    tokenizer = AutoTokenizer.from_pretrained(out)
    system = provenance["classify"]["system_prompt"]
    prompts = [render_prompt(tokenizer, classify_messages(system, text)) for text in PROMPTS]
    base = AutoModelForCausalLM.from_pretrained(family.path, dtype=torch.float32).eval()
    base_answers = [_greedy(base, p) for p in prompts]
    with_adapter = PeftModel.from_pretrained(base, adapter).eval()
    expected = [_greedy(with_adapter, p) for p in prompts]
    assert all(a != b for a, b in zip(expected, base_answers, strict=True))  # the LoRA matters
    served = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert [_greedy(served, p) for p in prompts] == expected
    with torch.no_grad():
        drift = max(
            float((served(ids).logits - with_adapter(ids).logits).abs().max())
            for ids in (torch.tensor([p + a]) for p, a in zip(prompts, expected, strict=True))
        )
    assert drift <= LOGIT_TOLERANCE


@pytest.mark.heavy
def test_a_bf16_base_gives_a_bf16_merge(family: ModelInfo, tmp_path: Path) -> None:
    """Merged in float32, rounded once to the base's dtype: the checkpoint holds the
    base's tensors (no LoRA ones left) in the base's dtype, so it is no larger."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(family.path, dtype=torch.bfloat16).save_pretrained(path)
    AutoTokenizer.from_pretrained(family.path).save_pretrained(path)
    bf16 = resolve_model(path, tmp_path / "cache")
    _random_adapter(bf16, tmp_path / "store")
    out = tmp_path / "merged"
    merge_adapter(Settings(adapter_store=tmp_path / "store"), bf16, "support", "v1", out)
    tensors = tensor_shapes(out / "model.safetensors")
    assert set(tensors) == set(tensor_shapes(path / "model.safetensors"))
    assert {dtype for dtype, _ in tensors.values()} == {"BF16"}
    assert json.loads((out / MANIFEST).read_text())["base"]["variant"] == "bf16"
