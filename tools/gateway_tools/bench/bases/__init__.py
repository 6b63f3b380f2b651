"""``gateway-tools bench bases``: the base model's variants (bf16, W4A16, W8A8) side by side.

One engine at a time, all in one run on one machine, so the ratios against the first
variant compare like with like; the table decides which variant is the default.
"""
