"""vLLM's CPU punica ops, computed per adapter instead of per token.

vLLM's torch ops (``vllm/lora/ops/torch_ops/lora_ops.py``) gather a full copy of the
LoRA matrix for every token (``lora_weights[lora_indices]``) and multiply token by
token. The tokens of one request share one adapter and a batch holds few adapters, so
here each adapter's tokens are taken together and multiplied by its matrix once: one
matrix product per adapter for shrink, one for expand, and no per-token weight copy.

Where a small batch holds two adapters or more (decode steps: one token per request),
one product per adapter means many tiny products per layer, each with its own gather and
scatter, and that overhead ate the gain. There every slot is stacked instead: shrink is
one product of the tokens with all slots' matrices side by side (each token then keeps
its own slot's columns), expand one product of a block-sparse input (each token's rank
vector in its slot's block) with the slots' matrices stacked along the rank. That does
the slot count times the arithmetic of the rank-sized products, which pays only while
the batch is small: past ``STACK_MAX_TOKENS`` tokens (prefill) each adapter gets its own
product again.

Weights are converted to the product's dtype once, not per call (shrink writes into a
float32 buffer, so each call would otherwise copy every bf16 slot to float32): a
conversion is kept until the slots change. vLLM writes an adapter into its slot in place,
which bumps the tensor's version counter, so a stale conversion is never read.

The functions keep the signatures and results of vLLM's: inputs and weights are cast to
the output's dtype before the product, shrink overwrites and scales, expand adds or
overwrites. One difference is deliberate: a token with index -1 (no adapter) gets no
LoRA term (shrink writes zeros, expand leaves it alone or writes zeros), as vLLM's GPU
kernels do; vLLM's torch ops read slot -1, the last one, which is all zeros unless every
slot holds an adapter, and then lend that adapter to base-model tokens.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

NO_ADAPTER = -1
Rows = slice | torch.Tensor  # one contiguous run of tokens, or the indices of several runs


@functools.lru_cache(maxsize=16)
def run_groups(adapters: tuple[int, ...], lengths: tuple[int, ...]) -> tuple[tuple[int, Rows], ...]:
    """(adapter, rows) for each distinct adapter of consecutive runs of tokens.

    Every layer of one forward step asks with the same runs, hence the cache.
    """
    spans: dict[int, list[tuple[int, int]]] = {}
    start = 0
    for adapter, length in zip(adapters, lengths, strict=True):
        spans.setdefault(adapter, []).append((start, start + length))
        start += length
    return tuple(
        (adapter, slice(*runs[0]) if len(runs) == 1 else _indices(runs))
        for adapter, runs in spans.items()
    )


STACK_MAX_TOKENS = 64  # above it, one product per adapter costs less than stacking


@dataclass(frozen=True)
class Stacked:
    """A small batch of two adapters or more, as the stacked products read it."""

    slot: torch.Tensor  # per token: its adapter's slot (0 for no adapter)
    has_adapter: torch.Tensor  # per token, (tokens, 1): 1 if it has an adapter, else 0
    rows: torch.Tensor  # the tokens with an adapter


@functools.lru_cache(maxsize=16)
def stacked_plan(adapters: tuple[int, ...], lengths: tuple[int, ...]) -> Stacked | None:
    """How a batch is stacked; None where it should not be (one adapter, or too many
    tokens)."""
    if sum(lengths) > STACK_MAX_TOKENS or len(set(adapters) - {NO_ADAPTER}) < 2:
        return None
    slot = torch.repeat_interleave(torch.tensor(adapters), torch.tensor(lengths))
    has = slot != NO_ADAPTER
    return Stacked(slot.clamp(min=0), has.unsqueeze(1), has.nonzero()[:, 0])


_CONVERTED: OrderedDict[tuple[Any, ...], tuple[weakref.ref, torch.Tensor]] = OrderedDict()
MAX_CONVERTED = 4096  # about two per LoRA weight tensor of a large model


def converted(weights: torch.Tensor, dtype: torch.dtype, transposed: bool = False) -> torch.Tensor:
    """``weights`` in ``dtype`` (with the last two dimensions of every slot swapped and
    the slots stacked along them if ``transposed``), kept until the slots are written."""
    if weights.dtype == dtype and not transposed:
        return weights
    base = weights if weights._base is None else weights._base
    key = (weights.data_ptr(), weights.shape, weights.stride(), weights._version, dtype,
           transposed)  # fmt: skip
    found = _CONVERTED.get(key)
    if found is not None and found[0]() is base:  # not a freed tensor's reused address
        _CONVERTED.move_to_end(key)
        return found[1]
    slots, out, rank = weights.shape[0], weights.shape[-2], weights.shape[-1]
    value = (
        weights.reshape(slots, out, rank).transpose(1, 2).reshape(slots * rank, out)
        if transposed else weights
    ).to(dtype).contiguous()  # fmt: skip
    _CONVERTED[key] = (weakref.ref(base), value)
    while len(_CONVERTED) > MAX_CONVERTED:
        _CONVERTED.popitem(last=False)
    return value


def _indices(runs: list[tuple[int, int]]) -> torch.Tensor:
    return torch.cat([torch.arange(start, end) for start, end in runs])


Plan = tuple[tuple[tuple[int, Rows], ...], Stacked | None]


def token_groups(lora_indices: torch.Tensor) -> Plan:
    return _runs(*torch.unique_consecutive(lora_indices, return_counts=True))


def _runs(adapters: torch.Tensor, lengths: torch.Tensor) -> Plan:
    key = (tuple(adapters.tolist()), tuple(lengths.tolist()))
    return run_groups(*key), stacked_plan(*key)


def _weight(weights: torch.Tensor, adapter: int, dtype: torch.dtype) -> torch.Tensor:
    """One adapter's (out, in) matrix; vLLM stacks slots as (slots, 1, out, in)."""
    weight = converted(weights, dtype)[adapter]
    return weight[0] if weight.dim() == 3 else weight


def _shrink(
    inputs: torch.Tensor, weights: torch.Tensor, output: torch.Tensor, plan: Plan, scaling: float
) -> None:
    rank = weights.shape[-2]
    groups, stacked = plan
    if stacked is not None and stacked.slot.numel() == inputs.shape[0]:
        # (tokens, in) x (in, slots * rank): every token times every slot's matrix
        side_by_side = converted(weights, output.dtype).reshape(-1, weights.shape[-1])
        products = (inputs.to(output.dtype) @ side_by_side.t()).view(inputs.shape[0], -1, rank)
        own = products[torch.arange(inputs.shape[0]), stacked.slot]
        output[:, :rank] = scaling * own * stacked.has_adapter
        return
    for adapter, rows in groups:
        if adapter == NO_ADAPTER:
            output[rows, :rank] = 0
            continue
        weight = _weight(weights, adapter, output.dtype)
        output[rows, :rank] = scaling * (inputs[rows].to(output.dtype) @ weight.t())


def _expand(
    inputs: torch.Tensor,
    weights: torch.Tensor,
    output: torch.Tensor,
    plan: Plan,
    columns: slice,
    add_inputs: bool,
) -> None:
    groups, stacked = plan
    if stacked is not None and stacked.slot.numel() == inputs.shape[0]:
        slots, rank = weights.shape[0], weights.shape[-1]
        stacked_weights = converted(weights, output.dtype, transposed=True)  # (slots * rank, out)
        blocks = inputs.new_zeros((inputs.shape[0], slots, rank), dtype=output.dtype)
        rows = stacked.rows
        blocks[rows, stacked.slot[rows]] = inputs[rows, :rank].to(output.dtype)
        product = blocks.view(inputs.shape[0], slots * rank) @ stacked_weights
        if add_inputs:
            output[:, columns] += product  # a token without an adapter adds zeros
        else:
            output[:, columns] = product
        return
    if sum(_count(rows) for _, rows in groups) == 1 and output.shape[0] != 1:
        # vLLM broadcasts a lone token's product to every output row.
        groups = tuple((adapter, slice(None)) for adapter, _ in groups)  # one group
    for adapter, rows in groups:
        if adapter == NO_ADAPTER:
            if not add_inputs:
                output[rows, columns] = 0
            continue
        product = inputs[rows].to(output.dtype) @ _weight(weights, adapter, output.dtype).t()
        if add_inputs:
            output[rows, columns] += product
        else:
            output[rows, columns] = product


def _count(rows: Rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else rows.numel()


def _expand_columns(weights: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, slice]:
    """The adapter's output may be padded differently from the model's: vLLM writes the
    columns both have (so only those are computed)."""
    width = min(weights.shape[-2], output.shape[1])
    return weights[..., :width, :], slice(0, width)


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    _shrink(inputs, lora_b_weights, output_tensor, token_groups(lora_indices_tensor), scaling)


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    weights, columns = _expand_columns(lora_b_weights, output_tensor)
    plan = token_groups(lora_indices_tensor)
    _expand(inputs, weights, output_tensor, plan, columns, add_inputs)


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    columns = slice(slice_offset, slice_offset + slice_size)
    plan = token_groups(lora_indices_tensor)
    _expand(inputs, lora_b_weights, output_tensor, plan, columns, add_inputs)


# The sgmv ops receive the batch as runs of tokens (vLLM merges neighbouring runs of one
# adapter); like vLLM's, they ignore the start offsets and batch sizes they are given.


def sgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    scaling: float,
) -> None:
    plan = _runs(lora_indices_tensor, seq_len_tensor)
    _shrink(inputs, lora_a_weights, output_tensor, plan, scaling)


def sgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    add_inputs: bool = False,
) -> None:
    weights, columns = _expand_columns(lora_b_weights, output_tensor)
    plan = _runs(lora_indices_tensor, seq_len_tensor)
    _expand(inputs, weights, output_tensor, plan, columns, add_inputs)


def sgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = False,
) -> None:
    columns = slice(slice_offset, slice_offset + slice_size)
    plan = _runs(lora_indices_tensor, seq_len_tensor)
    _expand(inputs, lora_b_weights, output_tensor, plan, columns, add_inputs)
