"""``PunicaWrapperCPU.add_lora_linear`` in a few products per layer instead of dozens.

vLLM applies a LoRA linear layer slice by slice (q, k and v are three slices; gate and
up two), each slice as a shrink op then an expand op, each op planning its batch again.
On a CPU, at decode sizes, every one of those small ops costs more in dispatch, dtype
casts and copies than in arithmetic: measured here, the LoRA term of a q/k/v layer took
~0.7 ms for 16 tokens against ~0.1 ms for the same products fused. So here one layer is:

- one plan per forward step, not per op (the adapter of each token is read once and
  kept while vLLM's index buffer is unchanged, which its version counter tells);
- one shrink product for all slices (their A matrices side by side, scaling folded in)
  and one expand product into all slices' columns (the B matrices block-diagonal), per
  adapter in the batch; in a small batch of two adapters or more, one product each for
  the whole batch over every slot, each token keeping its own slot's part by a 0/1 mask;
- small batches (decode) computed in float32, where oneDNN's small bf16 products are the
  slower ones; larger ones (prefill) in the model's dtype, where bf16 is ~3x faster here.

vLLM rounds the shrink result to the model's dtype before expand too, so the answers
stay within the rounding of vLLM's own path (tests/unit/engine/test_grouped_lora.py).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from gateway.engine.grouped_lora.ops import NO_ADAPTER, STACK_MAX_TOKENS, Rows, token_groups

SMALL_BATCH = STACK_MAX_TOKENS  # at most this many tokens: float32 products


@dataclass(frozen=True)
class StepPlan:
    groups: tuple[tuple[int, Rows], ...]  # (slot, rows) per adapter in the batch
    mask: torch.Tensor | None  # (tokens, 1, slots, 1) one-hot of each token's slot: stacked


@dataclass(frozen=True)
class FusedWeights:
    """``rank`` is the largest rank any slot uses: vLLM sizes slots for
    ``max_lora_rank`` and pads smaller adapters with zeros, which cost products here."""

    per_slot_a: torch.Tensor  # (slots, in, slices * rank), scaled
    per_slot_b: torch.Tensor  # (slots, slices * rank, width), block-diagonal
    all_a: torch.Tensor  # (in, slices * slots * rank): every slot side by side, by slice
    all_b: tuple[torch.Tensor, ...]  # per slice (slots * rank, slice width): slots stacked
    columns: tuple[slice, ...]  # each slice's columns of the output


_PLANS: dict[tuple[int, int, int, int], tuple[weakref.ref, StepPlan]] = {}
# id(layer's A tuple), id(B tuple), widths, scale, dtype -> (A tuple, B tuple, the
# tensors' versions, layout). The tuples are held, so their ids cannot be reused while
# cached; a layer passes the same tuples at every step.
_WEIGHTS: OrderedDict[tuple[Any, ...], tuple[Any, Any, tuple[int, ...], FusedWeights]] = (
    OrderedDict()
)
MAX_WEIGHTS = 1024  # two dtypes per LoRA layer of a large model


def step_plan(indices: torch.Tensor, slots: int) -> StepPlan:
    """The batch's plan, computed once per forward step: every layer asks with the same
    index buffer, which vLLM rewrites in place (bumping its version) for the next step."""
    key = (indices.data_ptr(), indices._version, indices.numel(), slots)
    base = indices if indices._base is None else indices._base
    found = _PLANS.get(key)
    if found is not None and found[0]() is base:  # not a freed buffer's reused address
        return found[1]
    groups, stacked = token_groups(indices)
    mask = None
    if stacked is not None:
        one_hot = torch.nn.functional.one_hot(stacked.slot, slots).to(torch.float32)
        mask = (one_hot * stacked.has_adapter)[:, None, :, None]
    plan = StepPlan(groups, mask)
    if len(_PLANS) > 64:
        _PLANS.clear()
    _PLANS[key] = (weakref.ref(base), plan)
    return plan


def fused_weights(
    lora_a: tuple[torch.Tensor, ...], lora_b: tuple[torch.Tensor, ...],
    widths: tuple[int, ...], scale: float, dtype: torch.dtype,
) -> FusedWeights:  # fmt: skip
    """The slices' weights in the fused layout, kept until vLLM writes a slot (which
    bumps the tensors' version counters)."""
    versions = tuple(t._version for t in lora_a) + tuple(t._version for t in lora_b)
    key = (id(lora_a), id(lora_b), widths, scale, dtype)
    found = _WEIGHTS.get(key)
    if found is not None and found[0] is lora_a and found[1] is lora_b and found[2] == versions:
        return found[3]
    slots, padded, n = lora_a[0].shape[0], lora_a[0].shape[-2], len(lora_a)
    a = torch.stack([w.reshape(slots, padded, -1) for w in lora_a], dim=1).to(torch.float32)
    nonzero = a.ne(0).any(dim=-1).any(dim=1).any(dim=0).nonzero()  # (slots, n, rank, in)
    rank = int(nonzero.max().item()) + 1 if nonzero.numel() else 1
    # scaled, then rounded to the weights' own dtype in both layouts, so a small batch's
    # float32 products see the same numbers as a large batch's bf16 ones
    a = (a[:, :, :rank] * scale).to(lora_a[0].dtype).to(torch.float32)  # (slots, n, rank, in)
    per_slot_a = a.reshape(slots, n * rank, -1).transpose(1, 2).to(dtype).contiguous()
    per_slot_b = torch.zeros(slots, n * rank, sum(widths), dtype=dtype)
    all_b, columns, column = [], [], 0
    for i, (w, width) in enumerate(zip(lora_b, widths, strict=True)):
        used = min(width, w.shape[-2])  # vLLM writes the columns both have
        block = w.reshape(slots, w.shape[-2], padded)[:, :used, :rank].transpose(1, 2)
        per_slot_b[:, i * rank : (i + 1) * rank, column : column + used] = block.to(dtype)
        all_b.append(block.reshape(slots * rank, used).to(dtype).contiguous())
        columns.append(slice(column, column + used))
        column += width
    fused = FusedWeights(
        per_slot_a,
        per_slot_b,
        a.permute(3, 1, 0, 2).reshape(a.shape[-1], -1).to(dtype).contiguous(),
        tuple(all_b),
        tuple(columns),
    )
    _WEIGHTS[key] = (lora_a, lora_b, versions, fused)
    while len(_WEIGHTS) > MAX_WEIGHTS:
        _WEIGHTS.popitem(last=False)
    return fused


def add_lora_linear(
    wrapper: Any,
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_stacked: tuple[torch.Tensor, ...],
    lora_b_stacked: tuple[torch.Tensor, ...],
    scale: float,
    output_slices: tuple[int, ...],
    *,
    buffer: tuple[torch.Tensor, ...] | None = None,
    **kwargs: Any,
) -> None:
    """``y[:, slices] += (x @ A_slice^T * scale) @ B_slice^T`` for each token's adapter,
    all slices at once; base-model tokens (slot -1) get nothing."""
    inputs, out = x.view(-1, x.shape[-1]), y.view(-1, y.shape[-1])
    indices = wrapper.token_lora_indices
    if not indices.numel() == inputs.shape[0] == out.shape[0]:
        ORIGINAL(wrapper, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices,
                 buffer=buffer, **kwargs)  # fmt: skip
        return
    slots = lora_a_stacked[0].shape[0]
    plan = step_plan(indices, slots)
    if all(slot == NO_ADAPTER for slot, _ in plan.groups):
        return
    tokens, width = inputs.shape[0], sum(output_slices)
    dtype = torch.float32 if tokens <= SMALL_BATCH else inputs.dtype
    weights = fused_weights(lora_a_stacked, lora_b_stacked, output_slices, scale, dtype)
    xin = inputs.to(dtype)
    if plan.mask is not None and plan.mask.shape[0] == tokens:
        n = len(weights.all_b)
        shrunk = ((xin @ weights.all_a).view(tokens, n, slots, -1) * plan.mask).view(tokens, n, -1)
        shrunk = _rounded(shrunk, out.dtype)
        for i, (b, columns) in enumerate(zip(weights.all_b, weights.columns, strict=True)):
            out[:, columns].add_(_rounded(shrunk[:, i] @ b, out.dtype))
        return
    for slot, rows in plan.groups:
        if slot == NO_ADAPTER:
            continue
        shrunk = _rounded(xin[rows] @ weights.per_slot_a[slot], out.dtype)
        product = _rounded(shrunk @ weights.per_slot_b[slot], out.dtype)
        if isinstance(rows, slice):
            out[rows, :width].add_(product)  # a view: no gather and scatter
        else:
            out[rows, :width] += product


ORIGINAL: Any = None  # vLLM's add_lora_linear, for shapes this path does not handle


def _rounded(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float32 products rounded where a bf16 product rounds (its shrink result, then its
    expand result), as vLLM's own path does too: an answer must not depend on whether its
    tokens shared a batch large enough for the bf16 products. A no-op in the model's
    dtype."""
    return values if values.dtype == dtype else values.to(dtype).to(values.dtype)
