"""The real tool, end to end, on a tiny random Llama: both schemes through the isolated
venv (installed on first use under the model cache, about a minute; then seconds).
Serving the result through vLLM is tested with the engine (tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.models import resolve_model
from gateway.models.quantize import prepare, quantize
from gateway.models.resolve import DEFAULT_CALIBRATION
from gateway.models.toolenv import RECORDED, tool_env
from tests.unit.common.test_prompts import CHATML, char_tokenizer

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hidden 64, intermediate 128, 4 heads of 16 (2 for keys and values), 2 layers: every
    linear size a multiple of 32, as the CPU W4A16 kernel needs; seeded bf16 weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = char_tokenizer(CHATML, ["<|im_start|>", "<|im_end|>"], eos="<|im_end|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("scheme", "variant", "stored"),
    [("w4a16", "w4a16-g32", "weight_packed"), ("w8a8", "w8a8", "weight")],
)
def test_the_real_tool_quantizes_a_tiny_llama(
    tiny_llama: Path, tmp_path: Path, scheme: str, variant: str, stored: str
) -> None:
    job = prepare(
        tiny_llama, tmp_path, scheme=scheme, group_size=None, calibration=DEFAULT_CALIBRATION,
        samples=16, seed=0, out=tmp_path / variant,
    )  # fmt: skip
    info = quantize(job, tool_env(Settings().model_cache_dir))
    assert [p.name for p in tmp_path.iterdir()] == [variant]  # the staging folder is gone
    assert (info.variant, info.source, info.quantization) == (
        variant,
        tiny_llama.resolve(),
        job.quantization,
    )
    manifest = json.loads((info.path / "provenance.json").read_text())
    assert manifest["tools"]["llmcompressor"] == "0.14.0.1"
    assert sorted(manifest["tools"]) == sorted(RECORDED)
    # GPTQ ran on 16 texts; w8a8 is data-free and read no file
    samples = manifest["calibration"]["samples"] if manifest["calibration"] else None
    assert (samples, manifest["seed"]) == ({"w4a16": 16, "w8a8": None}[scheme], 0)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    config = json.loads((info.path / "config.json").read_text())["quantization_config"]
    assert (config["quant_method"], config["ignore"]) == ("compressed-tensors", ["lm_head"])
    header = (info.path / "model.safetensors").read_bytes()[:20_000]
    assert f"model.layers.1.mlp.down_proj.{stored}".encode() in header
    assert resolve_model(info.path, tmp_path) == info
