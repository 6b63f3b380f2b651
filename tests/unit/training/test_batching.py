"""The shared-prefix loss must be the plain loss, computed with less work."""

from __future__ import annotations

import random

import pytest
import torch

from gateway.training.batching import (
    IGNORE,
    batch_loss,
    batches,
    shared_prefix_length,
    tensors,
)
from tests.unit.training.runs import tiny_lora_model

PREFIX = list(range(3, 15))  # 12 shared prompt tokens


def _row(user: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
    prompt = PREFIX + user
    return prompt + answer, [IGNORE] * len(prompt) + answer


ROWS = [
    _row([20, 21], [40, 41, 42]),
    _row([22, 23, 24, 25], [43, 44]),
    _row([26], [45, 46, 47, 48]),
]


def _loss_and_grads(model: torch.nn.Module, share: bool) -> tuple[float, int, list[torch.Tensor]]:
    model.zero_grad()
    loss, num_tokens = batch_loss(model, ROWS, [0, 1, 2], pad=0, share_prefix=share)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return float(loss.detach()), num_tokens, grads


def test_prefix_stops_before_the_first_scored_label() -> None:
    assert shared_prefix_length(ROWS, [0, 1, 2]) == len(PREFIX)
    short = [_row([], [40, 41])]  # the answer starts right after the prefix
    assert shared_prefix_length([*ROWS, *short], [0, 3]) == len(PREFIX) - 1
    assert shared_prefix_length([([1, 2], [IGNORE, 5]), ([9, 2], [IGNORE, 5])], [0, 1]) == 0


def test_shared_prefix_gives_the_same_loss_and_gradients() -> None:
    model = tiny_lora_model()
    model.eval()  # no dropout, so both passes see the same network
    plain_loss, plain_tokens, plain_grads = _loss_and_grads(model, share=False)
    shared_loss, shared_tokens, shared_grads = _loss_and_grads(model, share=True)
    assert shared_loss == pytest.approx(plain_loss, rel=1e-5)
    assert shared_tokens == plain_tokens == sum(len(ids) for ids, _ in ROWS)
    assert any(g.abs().sum() > 0 for g in plain_grads)
    for plain, shared in zip(plain_grads, shared_grads, strict=True):
        torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-6)


def test_tensors_pad_right_from_an_offset() -> None:
    ids, tgt, mask = tensors(ROWS, [0, 2], pad=0, start=len(PREFIX))
    assert ids.tolist() == [[20, 21, 40, 41, 42], [26, 45, 46, 47, 48]]
    assert tgt[0].tolist() == [IGNORE, IGNORE, 40, 41, 42]
    assert mask.sum().item() == 10


def test_batches_are_length_sorted_and_cover_everything() -> None:
    encoded = [([0] * n, [0] * n) for n in (5, 1, 9, 3, 7, 2)]
    chunks = batches(encoded, 2, random.Random(0))
    assert sorted(i for c in chunks for i in c) == list(range(6))
    for chunk in chunks:
        lengths = sorted(len(encoded[i][0]) for i in chunk)
        assert lengths[-1] - lengths[0] <= 2
