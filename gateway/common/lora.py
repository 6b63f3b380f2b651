"""LoRA target modules, shared by the training default and the store's accept list."""

from __future__ import annotations

# Every linear projection of a Llama-style block: the served store accepts what the
# recipe trains by default, so a freshly trained adapter always loads.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
