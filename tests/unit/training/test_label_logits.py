"""Decision-token logits read off the decoder must be the full model's, shared prefix or not."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from gateway.training.batching import label_logits
from tests.adapter_factory import tiny_llama_config
from tests.unit.training.runs import tiny_lora_model

PREFIX = list(range(3, 15))  # 12 shared prompt tokens
PROMPTS = [([*PREFIX, 20, 21], 0), ([*PREFIX, 22, 23, 24, 25], 2), ([*PREFIX, 26], 1)]
LABEL_IDS = [40, 41, 42]


def _model() -> torch.nn.Module:
    model = tiny_lora_model()
    model.eval()  # no dropout, so every pass sees the same network
    return model


def _loss_and_grads(model: torch.nn.Module, share: bool) -> tuple[torch.Tensor, list]:
    model.zero_grad()
    logits, num_tokens = label_logits(model, PROMPTS, [0, 1, 2], 0, LABEL_IDS, share)
    assert num_tokens == sum(len(ids) for ids, _ in PROMPTS)
    gold = torch.tensor([label for _, label in PROMPTS])
    torch.nn.functional.cross_entropy(logits, gold).backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_label_logits_are_the_full_models_at_the_last_prompt_position() -> None:
    model = _model()
    with torch.no_grad():
        plain = torch.stack(
            [model(input_ids=torch.tensor([ids])).logits[0, -1, LABEL_IDS] for ids, _ in PROMPTS]
        )
    for share in (False, True):
        logits, _ = _loss_and_grads(model, share)
        torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)


def test_shared_prefix_gives_the_same_label_gradients() -> None:
    model = _model()
    _, plain = _loss_and_grads(model, share=False)
    _, shared = _loss_and_grads(model, share=True)
    assert any(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, shared, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_a_lora_trained_output_layer_is_refused() -> None:
    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(64, max_position_embeddings=128))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "lm_head"]))
    with pytest.raises(ValueError, match="plain linear output layer"):
        label_logits(model, PROMPTS, [0, 1], 0, LABEL_IDS, True)
