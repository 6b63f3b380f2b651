"""The LoRA device lookup fix: right answers, and applied only while vLLM needs it."""

from __future__ import annotations

import pytest
import torch

from gateway.engine import lora_device


def _layer(**tensors: torch.Tensor | None) -> torch.nn.Module:
    layer = torch.nn.Module()
    for name, tensor in tensors.items():
        value = None if tensor is None else torch.nn.Parameter(tensor, requires_grad=False)
        layer.register_parameter(name, value)
    return layer


def test_a_released_weight_falls_through_to_what_the_layer_still_holds() -> None:
    layer = _layer(weight=None, weight_scale=torch.ones(2, device="meta"))
    assert lora_device.lora_device(layer).type == "meta"


def test_the_order_of_vllms_own_lookup_is_kept() -> None:
    layer = _layer(weight_packed=torch.ones(1, device="meta"), weight_scale=torch.ones(1))
    assert lora_device.lora_device(layer).type == "meta"  # packed before any other tensor


def test_a_layer_with_no_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match="holds no tensor"):
        lora_device.lora_device(_layer(weight=None))


def test_the_installed_vllm_still_has_the_bug_the_fix_is_for() -> None:
    """When this fails, vLLM fixed vllm#57503: ``apply_if_needed`` then does nothing,
    and ``lora_device`` can be deleted."""
    assert lora_device.needs_fix(lora_device.vllm_lookup())
    assert not lora_device.needs_fix(lora_device.lora_device)


def test_the_fix_reaches_the_modules_that_imported_the_lookup_by_name() -> None:
    """The engine process imports ``worker_ext``, which applies the fix; so does this one."""
    from vllm.lora.layers import base_linear, utils

    from gateway.engine import worker_ext  # noqa: F401  (applies it at import)

    assert base_linear._get_lora_device is lora_device.lora_device
    assert utils._get_lora_device is lora_device.lora_device
    assert not lora_device.apply_if_needed()  # once is enough


def test_the_engine_names_the_extension_that_exists() -> None:
    from vllm.utils.import_utils import resolve_obj_by_qualname

    from gateway.engine import vllm_engine, worker_ext

    extension = resolve_obj_by_qualname(vllm_engine.WORKER_EXTENSION)
    assert extension is worker_ext.GatewayWorkerExtension
