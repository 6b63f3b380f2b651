"""Batches and the loss over them, computed so the CPU does as little work as it can.

Two savings, both exact (the loss is the same as a plain padded forward pass):

- Length-sorted buckets: sequences of similar length share a batch, so little padding.
- A shared prefix: classification examples start with the same system prompt and chat
  template (47 of ~92 tokens for BANKING77). That prefix is run once per batch, its
  key/value cache is broadcast to every row, and only the differing suffixes run per
  row. Gradients flow back through the cache, so the LoRA weights in the prefix layers
  are trained as before.

Decision-token answers (``label_logits``) need one more saving: only the last prompt
position's logits for the N label tokens, read off the decoder's hidden state with N
rows of the output layer instead of its full vocabulary at every position.
"""

from __future__ import annotations

import random
from typing import Any

IGNORE = -100
MIN_SHARED_PREFIX = 8  # below this the extra forward call costs more than it saves

Encoded = list[tuple[list[int], list[int]]]
Prompts = list[tuple[list[int], int]]  # prompt ids and the gold label's index


def batches(encoded: Encoded | Prompts, size: int, rng: random.Random) -> list[list[int]]:
    """Length-sorted buckets (little padding), visited in random order each epoch."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(chunks)
    return chunks


def shared_prefix_length(encoded: Encoded, chunk: list[int]) -> int:
    """Tokens every row of ``chunk`` starts with, all masked out of the loss.

    The first suffix token's label is never scored when the prefix is split off (its
    logits would come from the prefix pass), so the prefix stops one token before the
    first scored label of any row.
    """
    rows = [encoded[i] for i in chunk]
    first_scored = (
        next((j for j, lab in enumerate(labels) if lab != IGNORE), len(labels))
        for _, labels in rows
    )
    return common_prefix([ids for ids, _ in rows], min(first_scored) - 1)


def common_prefix(rows: list[list[int]], limit: int) -> int:
    """Tokens every row starts with, at most ``limit`` and never a whole row."""
    length = min(limit, *(len(ids) - 1 for ids in rows))
    for ids in rows[1:]:
        j = 0
        while j < length and ids[j] == rows[0][j]:
            j += 1
        length = j
    return max(length, 0)


def tensors(encoded: Encoded, chunk: list[int], pad: int, start: int = 0) -> tuple[Any, ...]:
    """Right-padded ``input_ids``, ``labels`` and ``attention_mask`` from token ``start`` on."""
    import torch

    width = max(len(encoded[i][0]) for i in chunk) - start
    ids = torch.full((len(chunk), width), pad)
    tgt = torch.full((len(chunk), width), IGNORE)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for row, i in enumerate(chunk):
        seq, lab = encoded[i][0][start:], encoded[i][1][start:]
        ids[row, : len(seq)] = torch.tensor(seq)
        tgt[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(seq)] = 1
    return ids, tgt, mask


def batch_loss(
    model: Any, encoded: Encoded, chunk: list[int], pad: int, share_prefix: bool = True
) -> tuple[Any, int]:
    """Mean loss over the scored tokens of ``chunk`` and the number of tokens it covers."""
    import torch

    device = next(model.parameters()).device
    prefix = shared_prefix_length(encoded, chunk) if share_prefix and len(chunk) > 1 else 0
    if prefix < MIN_SHARED_PREFIX:
        ids, tgt, mask = (t.to(device) for t in tensors(encoded, chunk, pad))
        return model(input_ids=ids, attention_mask=mask, labels=tgt).loss, int(mask.sum())

    head = torch.tensor([encoded[chunk[0]][0][:prefix]], device=device)
    cache = model(input_ids=head, use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(chunk))
    ids, tgt, mask = (t.to(device) for t in tensors(encoded, chunk, pad, start=prefix))
    full_mask = torch.cat(
        [torch.ones(len(chunk), prefix, dtype=mask.dtype, device=device), mask], 1
    )
    positions = torch.arange(prefix, prefix + ids.shape[1], device=device).expand(len(chunk), -1)
    out = model(
        input_ids=ids,
        attention_mask=full_mask,
        position_ids=positions,
        past_key_values=cache,
        labels=tgt,
    )
    return out.loss, int(mask.sum()) + prefix * len(chunk)


def _output_rows(model: Any) -> tuple[Any, Any]:
    """The decoder stack (LoRA layers in place) and the output layer it feeds."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError("decision-token training needs a plain linear output layer (no LoRA)")
    if getattr(base.config, "final_logit_softcapping", None):
        raise ValueError("decision-token training does not model final-logit soft-capping")
    return base.get_decoder(), head


def label_logits(
    model: Any, prompts: Prompts, chunk: list[int], pad: int, token_ids: Any, share_prefix: bool
) -> tuple[Any, int]:
    """The logits of ``token_ids`` at each prompt's last position (one row per item of
    ``chunk``), and the number of prompt tokens they cover.

    Equal to the full model's logits there: a causal decoder's last real position does
    not see right padding, and a row of the output layer is that token's logit.
    """
    import torch

    decoder, head = _output_rows(model)
    device = head.weight.device
    rows = [prompts[i][0] for i in chunk]
    prefix = common_prefix(rows, len(rows[0])) if share_prefix and len(rows) > 1 else 0
    prefix = prefix if prefix >= MIN_SHARED_PREFIX else 0
    width = max(len(ids) for ids in rows) - prefix
    ids = torch.full((len(rows), width), pad, device=device)
    mask = torch.zeros((len(rows), prefix + width), dtype=torch.long, device=device)
    for row, seq in enumerate(rows):
        ids[row, : len(seq) - prefix] = torch.tensor(seq[prefix:])
        mask[row, : len(seq)] = 1
    extra: dict[str, Any] = {}
    if prefix:
        head_ids = torch.tensor([rows[0][:prefix]], device=device)
        cache = decoder(input_ids=head_ids, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(rows))
        positions = torch.arange(prefix, prefix + width, device=device).expand(len(rows), -1)
        extra = {"past_key_values": cache, "position_ids": positions}
    hidden = decoder(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
    last = torch.tensor([len(seq) - prefix - 1 for seq in rows], device=device)
    picked = hidden[torch.arange(len(rows), device=device), last]
    index = torch.as_tensor(token_ids, device=device)
    bias = head.bias[index] if head.bias is not None else None
    return torch.nn.functional.linear(picked, head.weight[index], bias), sum(map(len, rows))
