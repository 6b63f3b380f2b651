"""The vLLM general plugin that installs the grouped ops in vLLM's CPU LoRA wrapper.

vLLM calls ``register`` (entry point ``vllm.general_plugins`` in pyproject.toml) in
every process it starts, before any model runs. The gateway decides on or off before it
builds the engine (``announce``), through an environment variable the engine's processes
inherit; a process decides once, so turning it off means starting a new engine.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gateway.engine.grouped_lora import kernel

log = logging.getLogger(__name__)

ENV_VAR = "GATEWAY_GROUPED_LORA"  # also the env name of the ``grouped_lora`` setting
KERNEL_ENV_VAR = kernel.ENV_VAR  # and of ``lora_kernel``
# The ops ``punica_cpu`` imported by name from vLLM's torch ops: patched where it looks them up.
PATCHED = (
    "bgmv_shrink", "bgmv_expand", "bgmv_expand_slice",
    "sgmv_shrink", "sgmv_expand", "sgmv_expand_slice",
)  # fmt: skip


def announce(enabled: bool, with_kernel: bool | str = True) -> None:
    """Tell the engine processes started after this call whether to use the grouped ops,
    and with them the C kernel for decode-sized batches (``kernel.py``): True the shipped
    one, ``"build"`` one compiled at engine start (development), False none."""
    os.environ[ENV_VAR] = "1" if enabled else "0"
    chosen = kernel.BUILD if with_kernel == kernel.BUILD else "1" if with_kernel else "0"
    os.environ[KERNEL_ENV_VAR] = chosen
    log.info("grouped CPU LoRA path: %s (setting grouped_lora), C kernel: %s (lora_kernel)",
             "on" if enabled else "off",
             {"1": "shipped", "0": "off"}.get(chosen, chosen) if enabled else "off")  # fmt: skip


def register() -> None:
    """Install the grouped ops if ``GATEWAY_GROUPED_LORA`` is "1" and vLLM runs on CPU."""
    if os.environ.get(ENV_VAR) != "1":
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.lora.punica_wrapper import punica_cpu

    from gateway.engine.grouped_lora import fused, logits, ops

    if punica_cpu.sgmv_shrink is ops.sgmv_shrink:
        return
    for name in PATCHED:
        setattr(punica_cpu, name, getattr(ops, name))
    # the linear layers' whole LoRA term in a few fused products (the ops above still
    # serve the embedding and logits layers, and shapes the fused path hands back)
    wrapper = punica_cpu.PunicaWrapperCPU
    fused.ORIGINAL = wrapper.add_lora_linear
    wrapper.add_lora_linear = fused.add_lora_linear
    # the logits layer's LoRA term, skipped while no adapter in a slot trains lm_head
    logits.ORIGINAL = wrapper.add_lora_logits
    wrapper.add_lora_logits = logits.add_lora_logits
    log.info("grouped CPU LoRA path installed in vLLM's punica_cpu (pid %d)", os.getpid())


def status() -> dict[str, Any]:
    """What this process runs, for the gateway to report (asked through the worker
    extension, since the engine's own process does not show the gateway's log lines):
    the grouped path, and the kernel it serves decode batches with (``kernel.describe``:
    e.g. ``shipped-avx2``, ``torch-fallback``, loaded here if not yet, so before the first
    request rather than during it); ``none`` without the grouped path."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu

        from gateway.engine.grouped_lora import fused
    except ImportError:  # a build without the CPU wrapper
        return {"grouped": False, "kernel": "none"}
    grouped = punica_cpu.PunicaWrapperCPU.add_lora_linear is fused.add_lora_linear
    return {"grouped": grouped, "kernel": kernel.describe() if grouped else "none"}
