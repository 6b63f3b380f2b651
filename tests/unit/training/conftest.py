"""Base models for the recipe tests: the provisioned one, and a tiny Llama with its tokenizer."""

from __future__ import annotations

import pytest

from gateway.config import Settings
from gateway.models import ModelInfo, fingerprint_dir, resolve_model
from tests.adapter_factory import tiny_llama_config


@pytest.fixture(scope="session")
def base() -> ModelInfo:
    return resolve_model(None, Settings().model_cache_dir)


@pytest.fixture(scope="session")
def tiny_base(base: ModelInfo, tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    """A two-layer, 32-wide Llama with seeded weights and the base model's tokenizer.

    Its weights are drawn wide (``initializer_range=1``) so its predictions are far from
    uniform: then which tokens the loss covers changes the loss, as it does in a real model.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    tokenizer.save_pretrained(path)
    config = tiny_llama_config(
        len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=1.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return ModelInfo("tiny-llama", path, fingerprint_dir(path))
