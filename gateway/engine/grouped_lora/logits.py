"""``PunicaWrapperCPU.add_lora_logits`` skipped while no slot holds logits weights.

vLLM gives the logits layer (``lm_head``) a LoRA slot per adapter whether or not the
adapter trains ``lm_head``, and runs its shrink and expand at every step. The expand
writes over the whole vocabulary (49,152 columns for SmolLM2), so for adapters that
leave ``lm_head`` alone, the usual case (PEFT's ``all-linear`` excludes it), every step
paid for a product of zeros: about 4% of a decode step at 8 adapters here. Adding zeros
changes nothing, so the call is skipped while every slot is zero, which is known once per
write to the slots (vLLM writes them in place, bumping the tensors' version counter).
"""

from __future__ import annotations

from typing import Any

import torch

ORIGINAL: Any = None  # vLLM's add_lora_logits
_ZERO: dict[int, tuple[torch.Tensor, int, bool]] = {}  # id -> (tensor, version, all zero)


def all_zero(weights: torch.Tensor) -> bool:
    """Whether every slot of ``weights`` is zero, recomputed only after a write."""
    found = _ZERO.get(id(weights))
    if found is not None and found[0] is weights and found[1] == weights._version:
        return found[2]
    zero = not bool(weights.any())
    if len(_ZERO) > 64:
        _ZERO.clear()
    _ZERO[id(weights)] = (weights, weights._version, zero)
    return zero


def add_lora_logits(
    wrapper: Any,
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_stacked: torch.Tensor,
    lora_b_stacked: torch.Tensor,
    scale: float,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """vLLM's op unless the product is zero: then ``y`` is already the answer."""
    if all_zero(lora_b_stacked) or all_zero(lora_a_stacked):
        return None  # what vLLM's CPU op returns too: ``y`` is updated in place
    return ORIGINAL(wrapper, y, x, lora_a_stacked, lora_b_stacked, scale, *args, **kwargs)
