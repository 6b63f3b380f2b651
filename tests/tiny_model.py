"""A tiny real Llama for engine tests: the served model's tokenizer and chat template,
seeded random weights, and every projection a multiple of 32 wide (what vLLM's CPU
int4 kernel needs), so quantizing, merging and serving it take seconds."""

from __future__ import annotations

from pathlib import Path

from gateway.models import ModelInfo, fingerprint_dir


def make_tiny_llama(out: Path, tokenizer_from: Path, *, seed: int = 0) -> ModelInfo:
    """Four heads of 32 (two for keys and values), 128 wide, two layers, bf16."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.2,  # wide enough that greedy choices are not near-ties
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    return ModelInfo("tiny-llama", out, fingerprint_dir(out))
