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
  adapter in the batch; in a small batch of two adapters or more, one batched product
  each (``bmm``) over the adapters' slots, each slot's tokens gathered into a block of
  equal depth (short blocks padded with zero rows) and gathered back to each token's
  row (``index_add_`` would be one op per row on a CPU: it took a third of a step at
  8 adapters): a dozen ops a layer whatever the mix, and only the products each token
  needs;
- every product in float32: torch's bf16 products on this CPU were 2 to 4 times slower
  at every size measured, 16 to 1,024 tokens (a decode step to a prefill chunk); one
  dtype for every batch shape also keeps an answer from depending on the dtype its
  batch happened to get (the products' summation order can still differ by shape, so
  the tests compare within rounding).

Decode-sized batches (``KERNEL_MAX_TOKENS``) go to the C kernel instead (``kernel.c``),
where it is built: one call for the layer rather than a dozen ops, whatever the mix.

vLLM rounds the shrink result to the model's dtype before expand too, so the answers
stay within the rounding of vLLM's own path (tests/unit/engine/test_grouped_lora.py).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from gateway.engine.grouped_lora import kernel
from gateway.engine.grouped_lora.ops import NO_ADAPTER, Rows, token_groups

PRODUCT_DTYPE = torch.float32
KERNEL_MAX_TOKENS = 64  # decode steps; larger batches amortise dispatch over real products


@dataclass(frozen=True)
class Padded:
    """A small batch of two adapters or more, as the batched products read it: slots
    ``first`` to ``first + count - 1``, each with ``depth`` rows."""

    first: int
    count: int
    depth: int
    gather: torch.Tensor  # (count * depth,) the token in each row; ``tokens``: a zero row
    source: torch.Tensor  # (tokens,) each token's row (base-model tokens: a zero row)


@dataclass(frozen=True)
class Sorted:
    """A large batch whose adapters' tokens are not one run each (a prefill chunk beside
    other requests' decode tokens): the tokens with an adapter, gathered in slot order,
    so that each slot's are one contiguous block."""

    order: torch.Tensor  # (with adapter,) the token in each sorted row
    blocks: tuple[tuple[int, slice], ...]  # (slot, its rows in sorted order)
    source: torch.Tensor  # (tokens,) each token's sorted row (base-model tokens: the last)


@dataclass(frozen=True)
class StepPlan:
    groups: tuple[tuple[int, Rows], ...]  # (slot, rows) per adapter in the batch
    padded: Padded | None  # small batches of two adapters or more
    tokens: int
    sorted: Sorted | None = None  # other batches where some adapter's rows are not a run


@dataclass(frozen=True)
class FusedWeights:
    """``rank`` is the largest rank any slot uses: vLLM sizes slots for
    ``max_lora_rank`` and pads smaller adapters with zeros, which cost products here."""

    per_slot_a: torch.Tensor  # (slots, in, slices * rank), scaled
    per_slot_b: torch.Tensor  # (slots, slices * rank, width), block-diagonal
    empty: bool = False  # no slot's adapter trains this layer: its term is zero
    # the C kernel's layout (``kernel.c``): A rows (slots, slices * rank, in) and each
    # slice's B in its own columns (slots, rank, width), without the zero blocks
    kernel_a: torch.Tensor | None = None
    kernel_b: torch.Tensor | None = None
    rank: int = 0
    widths: torch.Tensor | None = None  # (slices,) int64


_PLANS: dict[tuple[int, int, int, int], tuple[weakref.ref, StepPlan]] = {}
# id(layer's A tuple), id(B tuple), widths, scale, dtype -> (A tuple, B tuple, the
# tensors' versions, layout). The tuples are held, so their ids cannot be reused while
# cached; a layer passes the same tuples at every step.
_WEIGHTS: OrderedDict[tuple[Any, ...], tuple[Any, Any, tuple[int, ...], FusedWeights]] = (
    OrderedDict()
)
MAX_WEIGHTS = 1024  # LoRA layers of a large model


def step_plan(indices: torch.Tensor, slots: int) -> StepPlan:
    """The batch's plan, computed once per forward step: every layer asks with the same
    index buffer, which vLLM rewrites in place (bumping its version) for the next step."""
    key = (indices.data_ptr(), indices._version, indices.numel(), slots)
    base = indices if indices._base is None else indices._base
    found = _PLANS.get(key)
    if found is not None and found[0]() is base:  # not a freed buffer's reused address
        return found[1]
    groups, stacked = token_groups(indices)
    padded = padded_plan(groups) if stacked is not None else None
    plan = StepPlan(groups, padded, indices.numel(), None if padded else sorted_plan(groups))
    if len(_PLANS) > 64:
        _PLANS.clear()
    _PLANS[key] = (weakref.ref(base), plan)
    return plan


def padded_plan(groups: tuple[tuple[int, Rows], ...]) -> Padded | None:
    """Each adapter's tokens in a block of its slot; slots between the first and last used
    that the batch does not use get a block of zero rows, so the weights are a view."""
    rows = {slot: _row_list(r) for slot, r in groups if slot != NO_ADAPTER}
    if len(rows) < 2:
        return None
    tokens = sum(len(_row_list(r)) for _, r in groups)
    first, last = min(rows), max(rows)
    depth = max(len(r) for r in rows.values())
    count = last - first + 1
    with_adapter = sum(len(r) for r in rows.values())
    if tokens > with_adapter and count * depth == with_adapter:
        depth += 1  # base-model tokens read a zero row, and every row holds a token
    gather: list[int] = []
    source = [0] * tokens
    for slot in range(first, last + 1):
        own = rows.get(slot, [])
        for token in own:
            source[token] = len(gather)
            gather.append(token)
        gather += [tokens] * (depth - len(own))
    zero = gather.index(tokens) if tokens in gather else 0
    for slot, r in groups:
        if slot == NO_ADAPTER:
            for token in _row_list(r):
                source[token] = zero
    return Padded(first, count, depth, torch.tensor(gather), torch.tensor(source))


def sorted_plan(groups: tuple[tuple[int, Rows], ...]) -> Sorted | None:
    """None where every adapter's tokens are one run already (products read views)."""
    if all(isinstance(r, slice) for slot, r in groups if slot != NO_ADAPTER):
        return None
    tokens = sum(len(_row_list(r)) for _, r in groups)
    order: list[int] = []
    blocks = []
    for slot, r in sorted((slot, r) for slot, r in groups if slot != NO_ADAPTER):
        own = _row_list(r)
        blocks.append((slot, slice(len(order), len(order) + len(own))))
        order += own
    source = [len(order)] * tokens  # the zero row after the sorted ones
    for row, token in enumerate(order):
        source[token] = row
    return Sorted(torch.tensor(order), tuple(blocks), torch.tensor(source))


def _row_list(rows: Rows) -> list[int]:
    if isinstance(rows, slice):
        return list(range(rows.start, rows.stop))
    return rows.tolist()


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
    # scaled, then rounded to the weights' own dtype: vLLM's products read bf16 weights
    a = (a[:, :, :rank] * scale).to(lora_a[0].dtype).to(torch.float32)  # (slots, n, rank, in)
    per_slot_a = a.reshape(slots, n * rank, -1).transpose(1, 2).to(dtype).contiguous()
    per_slot_b = torch.zeros(slots, n * rank, sum(widths), dtype=dtype)
    column = 0
    for i, (w, width) in enumerate(zip(lora_b, widths, strict=True)):
        used = min(width, w.shape[-2])  # vLLM writes the columns both have
        block = w.reshape(slots, w.shape[-2], padded)[:, :used, :rank].transpose(1, 2)
        per_slot_b[:, i * rank : (i + 1) * rank, column : column + used] = block.to(dtype)
        column += width
    fused = FusedWeights(per_slot_a, per_slot_b, empty=not nonzero.numel())
    if dtype == torch.float32 and kernel.load() is not None:
        compact = torch.zeros(slots, rank, sum(widths), dtype=dtype)
        column = 0
        for i, width in enumerate(widths):
            rows = slice(i * rank, (i + 1) * rank)
            compact[:, :, column : column + width] = per_slot_b[:, rows, column : column + width]
            column += width
        fused = dataclasses.replace(
            fused, kernel_a=per_slot_a.transpose(1, 2).contiguous(), kernel_b=compact,
            rank=rank, widths=torch.tensor(widths, dtype=torch.int64),
        )  # fmt: skip
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
    dtype = PRODUCT_DTYPE
    weights = fused_weights(lora_a_stacked, lora_b_stacked, output_slices, scale, dtype)
    if weights.empty:  # e.g. adapters that train q and v only, in an MLP layer
        return
    if tokens <= KERNEL_MAX_TOKENS and _by_kernel(weights, inputs, out, indices):
        return
    xin = inputs.to(dtype)
    padded = plan.padded
    if padded is not None and plan.tokens == tokens:
        blocks = torch.nn.functional.pad(xin, (0, 0, 0, 1)).index_select(0, padded.gather)
        used = slice(padded.first, padded.first + padded.count)
        shrunk = torch.bmm(blocks.view(padded.count, padded.depth, -1), weights.per_slot_a[used])
        shrunk = _rounded(shrunk, out.dtype)
        product = torch.bmm(shrunk, weights.per_slot_b[used]).to(out.dtype)
        # a gather back, not ``index_add_``: on CPU that adds row by row, one op each
        out[:, :width].add_(product.view(-1, width).index_select(0, padded.source))
        return
    ordered = plan.sorted
    if ordered is not None and plan.tokens == tokens:
        # one gather in, a product per slot on its contiguous block, one gather back:
        # not a gather, a scatter and an indexed add per adapter
        picked = xin.index_select(0, ordered.order)
        products = torch.empty(picked.shape[0] + 1, width, dtype=dtype)
        products[-1] = 0
        for slot, block in ordered.blocks:
            shrunk = _rounded(picked[block] @ weights.per_slot_a[slot], out.dtype)
            torch.mm(shrunk, weights.per_slot_b[slot], out=products[block])
        out[:, :width].add_(products.to(out.dtype).index_select(0, ordered.source))
        return
    for slot, rows in plan.groups:
        if slot == NO_ADAPTER:
            continue
        shrunk = _rounded(xin[rows] @ weights.per_slot_a[slot], out.dtype)
        product = (shrunk @ weights.per_slot_b[slot]).to(out.dtype)  # rounded as vLLM's
        if isinstance(rows, slice):
            out[rows, :width].add_(product)  # a view: no gather and scatter
        else:
            out[rows, :width] += product


def _by_kernel(
    weights: FusedWeights, inputs: torch.Tensor, out: torch.Tensor, indices: torch.Tensor
) -> bool:
    """The whole term in one C call, where the kernel is built and the layout is its own
    (bfloat16 rows with unit stride, int64 slots); False leaves the batch to torch."""
    lib = kernel.load()
    if (
        lib is None or weights.kernel_a is None or weights.kernel_b is None
        or weights.widths is None
        or inputs.dtype != torch.bfloat16 or out.dtype != torch.bfloat16
        or inputs.stride(-1) != 1 or out.stride(-1) != 1
        or indices.dtype != torch.int64 or not indices.is_contiguous()
    ):  # fmt: skip
        return False
    slots, ranks, width_in = weights.kernel_a.shape
    status = lib.gateway_lora_decode(
        inputs.shape[0], inputs.data_ptr(), inputs.stride(0), indices.data_ptr(), slots,
        weights.kernel_a.data_ptr(), weights.kernel_b.data_ptr(), width_in, weights.rank,
        ranks // weights.rank, weights.widths.data_ptr(), out.data_ptr(), out.stride(0),
    )  # fmt: skip
    return status == 0


ORIGINAL: Any = None  # vLLM's add_lora_linear, for shapes this path does not handle


def _rounded(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float32 products rounded where vLLM's path rounds to the model's dtype (its shrink
    result, then its expand result), so answers stay within vLLM's rounding."""
    return values if values.dtype == dtype else values.to(dtype).to(values.dtype)
