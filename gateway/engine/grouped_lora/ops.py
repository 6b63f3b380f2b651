"""vLLM's CPU punica ops, computed per adapter instead of per token.

vLLM's torch ops (``vllm/lora/ops/torch_ops/lora_ops.py``) gather a full copy of the
LoRA matrix for every token (``lora_weights[lora_indices]``) and multiply token by
token. The tokens of one request share one adapter and a batch holds few adapters, so
here each adapter's tokens are taken together and multiplied by its matrix once: one
matrix product per adapter for shrink, one for expand, and no per-token weight copy.

The functions keep the signatures and results of vLLM's: inputs and weights are cast to
the output's dtype before the product, shrink overwrites and scales, expand adds or
overwrites. One difference is deliberate: a token with index -1 (no adapter) gets no
LoRA term (shrink writes zeros, expand leaves it alone or writes zeros), as vLLM's GPU
kernels do; vLLM's torch ops read slot -1, the last one, which is all zeros unless every
slot holds an adapter, and then lend that adapter to base-model tokens.
"""

from __future__ import annotations

import functools

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


def _indices(runs: list[tuple[int, int]]) -> torch.Tensor:
    return torch.cat([torch.arange(start, end) for start, end in runs])


def token_groups(lora_indices: torch.Tensor) -> tuple[tuple[int, Rows], ...]:
    return _runs(*torch.unique_consecutive(lora_indices, return_counts=True))


def _runs(adapters: torch.Tensor, lengths: torch.Tensor) -> tuple[tuple[int, Rows], ...]:
    return run_groups(tuple(adapters.tolist()), tuple(lengths.tolist()))


def _weight(weights: torch.Tensor, adapter: int, dtype: torch.dtype) -> torch.Tensor:
    """One adapter's (out, in) matrix; vLLM stacks slots as (slots, 1, out, in)."""
    weight = weights[adapter]
    return (weight[0] if weight.dim() == 3 else weight).to(dtype)


def _shrink(
    inputs: torch.Tensor,
    weights: torch.Tensor,
    output: torch.Tensor,
    groups: tuple[tuple[int, Rows], ...],
    scaling: float,
) -> None:
    rank = weights.shape[-2]
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
    groups: tuple[tuple[int, Rows], ...],
    columns: slice,
    add_inputs: bool,
) -> None:
    if sum(_count(rows) for _, rows in groups) == 1 and output.shape[0] != 1:
        # vLLM broadcasts a lone token's product to every output row.
        groups = tuple((adapter, slice(None)) for adapter, _ in groups)
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
    groups = token_groups(lora_indices_tensor)
    _expand(inputs, weights, output_tensor, groups, columns, add_inputs)


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
    groups = token_groups(lora_indices_tensor)
    _expand(inputs, lora_b_weights, output_tensor, groups, columns, add_inputs)


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
    groups = _runs(lora_indices_tensor, seq_len_tensor)
    _shrink(inputs, lora_a_weights, output_tensor, groups, scaling)


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
    groups = _runs(lora_indices_tensor, seq_len_tensor)
    _expand(inputs, weights, output_tensor, groups, columns, add_inputs)


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
    groups = _runs(lora_indices_tensor, seq_len_tensor)
    _expand(inputs, lora_b_weights, output_tensor, groups, columns, add_inputs)
