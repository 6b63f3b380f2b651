"""The grouped CPU LoRA ops give vLLM's results, and the plugin installs them only on request.

Reference: vLLM's own torch ops (``vllm.lora.ops.torch_ops``), the ones its CPU punica
wrapper calls. Tolerance: fp32 outputs rtol = atol = 1e-5 (the two sum in different
orders); bf16 outputs one bf16 rounding step (2^-8) of the largest reference value.
Weights keep the last slot empty, as in a vLLM batch with a free slot: vLLM's ops read
slot -1 for a base-model token (see ``test_a_base_model_token_gets_no_lora_term``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from vllm.lora.layers import LoRAMapping
from vllm.lora.ops import torch_ops as reference
from vllm.lora.punica_wrapper import punica_cpu
from vllm.lora.punica_wrapper.utils import compute_meta
from vllm.platforms import current_platform

from gateway.config import Settings
from gateway.engine.grouped_lora import fused, kernel, logits, ops, plugin

# vLLM's own add_lora_linear, even if a plugin test of this process patched it already
VLLM_ADD_LORA_LINEAR = fused.ORIGINAL or punica_cpu.PunicaWrapperCPU.add_lora_linear
VLLM_ADD_LORA_LOGITS = logits.ORIGINAL or punica_cpu.PunicaWrapperCPU.add_lora_logits

ROOT = Path(__file__).resolve().parents[3]
SLOTS, RANK, HIDDEN = 4, 8, 48
# Token -> adapter slot, -1 = base model. Prefill: runs per request (one adapter twice);
# decode: one token per request, adapters interleaved.
PATTERNS = {
    "prefill": [0] * 7 + [-1] * 5 + [1] * 9 + [0] * 3 + [2] * 4,
    "decode": [0, 2, -1, 1, 0, 0, 2, -1, 1, 2, -1],
    "one-adapter": [1] * 6,
    "base-only": [-1] * 5,
    # past STACK_MAX_TOKENS: one product per adapter, not stacked
    "long-prefill": [0] * 40 + [-1] * 10 + [1] * 30,
}
DTYPES = (torch.bfloat16, torch.float32)


def weights(out: int, inp: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Stacked like vLLM's LoRA layers: (slots, 1, out, in), last slot free."""
    stacked = torch.randn(SLOTS, 1, out, inp, generator=torch.Generator().manual_seed(seed))
    stacked[-1] = 0
    return (stacked * 0.2).to(dtype)


def randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def assert_same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype
    if want.dtype == torch.bfloat16:
        atol = 2**-8 * want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=2**-8, atol=atol)
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def sgmv_meta(
    indices: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int, int]:
    """The runs vLLM's CPU wrapper hands to the sgmv ops (``prefill_metadata``)."""
    return compute_meta(indices)[:6]


def run_both(
    op: str,
    sgmv: bool,
    indices: torch.Tensor,
    inputs: torch.Tensor,
    stacked: torch.Tensor,
    output: torch.Tensor,
    *rest: object,
) -> list[torch.Tensor]:
    """Runs vLLM's op and ours, each on its own copy of ``output``; returns both copies."""
    index_args = sgmv_meta(indices) if sgmv else (indices,)
    copies = []
    for module in (reference, ops):
        copy = output.clone()
        getattr(module, f"{'sgmv' if sgmv else 'bgmv'}_{op}")(
            inputs, stacked, copy, *index_args, *rest
        )
        copies.append(copy)
    return copies


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("sgmv", [True, False], ids=["sgmv", "bgmv"])
@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [(torch.bfloat16, torch.float32), (torch.float32, torch.float32), (torch.bfloat16,) * 2],
)
def test_shrink_matches_vllm(
    pattern: str, sgmv: bool, dtype: torch.dtype, out_dtype: torch.dtype
) -> None:
    indices = torch.tensor(PATTERNS[pattern])
    x = randn(len(indices), HIDDEN, dtype=dtype)
    stale = torch.full((len(indices), RANK), 7.0, dtype=out_dtype)  # shrink overwrites
    got_vllm, got = run_both(
        "shrink", sgmv, indices, x, weights(RANK, HIDDEN, dtype, 2), stale, 0.5
    )
    assert_same(got, got_vllm)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("sgmv", [True, False], ids=["sgmv", "bgmv"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_matches_vllm(
    pattern: str, sgmv: bool, dtype: torch.dtype, add_inputs: bool
) -> None:
    indices = torch.tensor(PATTERNS[pattern])
    buffer = randn(len(indices), RANK)  # vLLM's shrink buffer is fp32
    y = randn(len(indices), 40, dtype=dtype, seed=3)
    w = weights(40, RANK, dtype, 4)
    got_vllm, got = run_both("expand", sgmv, indices, buffer, w, y, add_inputs)
    assert_same(got, got_vllm)


@pytest.mark.parametrize("pattern", ["prefill", "decode"])
@pytest.mark.parametrize("sgmv", [True, False], ids=["sgmv", "bgmv"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_slice_matches_vllm_at_each_offset(
    pattern: str, sgmv: bool, dtype: torch.dtype, add_inputs: bool
) -> None:
    indices = torch.tensor(PATTERNS[pattern])
    y = randn(len(indices), 16 + 24 + 8, dtype=dtype, seed=5)  # q, k, v-like slices
    for offset, size in ((0, 16), (16, 24), (40, 8)):
        buffer = randn(len(indices), RANK, seed=offset)
        w = weights(size, RANK, dtype, offset)
        got_vllm, got = run_both(
            "expand_slice", sgmv, indices, buffer, w, y, offset, size, add_inputs
        )
        assert_same(got, got_vllm)
        y = got_vllm


def test_expand_writes_only_the_columns_the_output_has() -> None:
    indices = torch.tensor(PATTERNS["decode"])
    buffer, y = randn(len(indices), RANK), randn(len(indices), 30, seed=6)
    got_vllm, got = run_both(
        "expand", False, indices, buffer, weights(32, RANK, torch.float32, 7), y, True
    )
    assert_same(got, got_vllm)


def test_a_lone_token_is_broadcast_to_every_row_as_vllm_does() -> None:
    buffer, y = randn(1, RANK), randn(3, 40, seed=8)
    got_vllm, got = run_both(
        "expand", False, torch.tensor([2]), buffer, weights(40, RANK, torch.float32, 9), y, True
    )
    assert_same(got, got_vllm)


def test_a_base_model_token_gets_no_lora_term() -> None:
    """Even when every slot holds an adapter (vLLM's torch ops then apply the last one)."""
    indices = torch.tensor([3, -1, 0, -1])
    a = weights(RANK, HIDDEN, torch.float32, 10)
    a[-1] = 1.0
    shrunk = torch.full((4, RANK), 7.0)
    ops.bgmv_shrink(randn(4, HIDDEN), a, shrunk, indices, 1.0)
    assert shrunk[[1, 3]].eq(0).all() and shrunk[[0, 2]].ne(0).all()
    y = randn(4, 40, seed=11)
    added = y.clone()
    ops.bgmv_expand(shrunk, weights(40, RANK, torch.float32, 12), added, indices, True)
    assert torch.equal(added[[1, 3]], y[[1, 3]])


def test_runs_are_grouped_into_one_product_per_adapter() -> None:
    groups = ops.run_groups((0, -1, 1, 0), (3, 2, 4, 2))
    assert [adapter for adapter, _ in groups] == [0, -1, 1]
    assert groups[0][1].tolist() == [0, 1, 2, 9, 10]  # one product over both runs of 0
    assert groups[2][1] == slice(5, 9)  # one run: a view, no gather


def test_small_batches_of_two_adapters_or_more_are_stacked() -> None:
    assert ops.stacked_plan((1, -1, 1), (2, 1, 3)) is None  # one adapter: its own product
    plan = ops.stacked_plan((2, -1, 0, 2), (2, 1, 2, 1))
    assert plan is not None
    assert plan.slot.tolist() == [2, 2, 0, 0, 0, 2]  # a base token's 0 is masked out
    assert plan.has_adapter[:, 0].tolist() == [True, True, False, True, True, True]
    assert plan.rows.tolist() == [0, 1, 3, 4, 5]
    many = ops.STACK_MAX_TOKENS // 2 + 1
    assert ops.stacked_plan((0, 1), (many, many)) is None  # prefill: one product per adapter


def test_a_conversion_is_not_reused_once_the_slots_are_written() -> None:
    stacked = weights(RANK, HIDDEN, torch.bfloat16, 40)
    first = ops.converted(stacked, torch.float32)
    assert ops.converted(stacked, torch.float32) is first  # kept while nothing changed
    stacked[1].copy_(weights(RANK, HIDDEN, torch.bfloat16, 41)[1])  # a new adapter in slot 1
    second = ops.converted(stacked, torch.float32)
    assert second is not first and torch.equal(second, stacked.float())
    flipped = ops.converted(stacked, torch.float32, transposed=True)
    assert flipped.shape == (SLOTS * HIDDEN, RANK)
    assert torch.equal(flipped[HIDDEN : 2 * HIDDEN], stacked[1, 0].float().t())


@pytest.mark.parametrize("is_prefill", [True, False], ids=["sgmv", "bgmv"])
def test_vllms_cpu_wrapper_gives_the_same_lora_output_with_the_grouped_ops(
    is_prefill: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``PunicaWrapperCPU.add_lora_linear`` as a layer calls it (three slices)."""
    lora_ids = [11, 12, 13, None]  # slot -> adapter id; id 0 = base model
    token_ids = [11] * 4 + [0] * 3 + [13] * 2 + [12, 0, 11]
    wrapper = punica_cpu.PunicaWrapperCPU(64, 8, device="cpu")
    mapping = LoRAMapping(tuple(token_ids), tuple(token_ids), is_prefill=is_prefill)
    wrapper.update_metadata(mapping, lora_ids, SLOTS, 100)
    slices = (16, 8, 8)
    a = tuple(weights(RANK, HIDDEN, torch.bfloat16, 20 + i) for i in range(3))
    b = tuple(weights(size, RANK, torch.bfloat16, 30 + i) for i, size in enumerate(slices))
    x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=13)
    outputs = []
    for patch in (False, True):
        if patch:
            for name in plugin.PATCHED:
                monkeypatch.setattr(punica_cpu, name, getattr(ops, name))
        y = torch.zeros(len(token_ids), sum(slices), dtype=torch.bfloat16)
        wrapper.add_lora_linear(y, x, a, b, 1.0, slices)
        outputs.append(y)
    assert_same(outputs[1], outputs[0])
    assert outputs[1][4:7].eq(0).all() and outputs[1][:4].ne(0).any()


@pytest.fixture
def vllm_ops(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """vLLM's ops in ``punica_cpu``, put back after the test whatever it patched."""
    originals = {name: getattr(punica_cpu, name) for name in plugin.PATCHED}
    for name, op in originals.items():
        monkeypatch.setattr(punica_cpu, name, op)
    monkeypatch.setattr(punica_cpu.PunicaWrapperCPU, "add_lora_linear", VLLM_ADD_LORA_LINEAR)
    monkeypatch.setattr(punica_cpu.PunicaWrapperCPU, "add_lora_logits", VLLM_ADD_LORA_LOGITS)
    return originals


@pytest.mark.parametrize("value", [None, "0", "true"])
def test_the_plugin_patches_nothing_unless_asked_with_1(
    value: str | None, vllm_ops: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(plugin.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(plugin.ENV_VAR, value)
    plugin.register()
    assert {name: getattr(punica_cpu, name) for name in plugin.PATCHED} == vllm_ops
    assert punica_cpu.PunicaWrapperCPU.add_lora_linear is VLLM_ADD_LORA_LINEAR
    assert punica_cpu.PunicaWrapperCPU.add_lora_logits is VLLM_ADD_LORA_LOGITS


def test_the_plugin_patches_every_op_once(
    vllm_ops: dict[str, object], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(plugin.ENV_VAR, "1")
    with caplog.at_level(logging.INFO, logger=plugin.__name__):
        plugin.register()
        plugin.register()
    assert all(getattr(punica_cpu, name) is getattr(ops, name) for name in plugin.PATCHED)
    assert punica_cpu.PunicaWrapperCPU.add_lora_linear is fused.add_lora_linear
    assert fused.ORIGINAL is VLLM_ADD_LORA_LINEAR
    assert punica_cpu.PunicaWrapperCPU.add_lora_logits is logits.add_lora_logits
    assert logits.ORIGINAL is VLLM_ADD_LORA_LOGITS
    assert len([r for r in caplog.records if "installed" in r.getMessage()]) == 1


def test_the_plugin_leaves_other_platforms_alone(
    vllm_ops: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugin.ENV_VAR, "1")
    monkeypatch.setattr(current_platform, "is_cpu", lambda: False)
    plugin.register()
    assert {name: getattr(punica_cpu, name) for name in plugin.PATCHED} == vllm_ops


def test_vllm_finds_the_plugin_and_the_setting_shares_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the entry point is missing, reinstall: ``pip install --no-deps -e .``."""
    found = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert found.get("gateway_grouped_lora") == "gateway.engine.grouped_lora.plugin:register"
    monkeypatch.setenv(plugin.ENV_VAR, "1")  # restored afterwards
    monkeypatch.setenv(plugin.KERNEL_ENV_VAR, "1")
    plugin.announce(False, with_kernel=False)
    assert Settings().grouped_lora is False and Settings().lora_kernel is False
    plugin.announce(True, with_kernel="build")  # the development opt-in travels too
    assert Settings().lora_kernel == "build" and kernel.mode() == "build"


# The fused linear path (``fused.add_lora_linear``) against vLLM's own add_lora_linear with
# vLLM's own ops: small batches (stacked when two adapters or more) and large ones (per
# adapter), prefill and decode, base-model tokens.
FUSED_CASES = {
    "decode-mixed": ([11, 13, 0, 12, 11, 11, 13, 0, 12], False),
    "decode-one": ([12] * 5, False),
    # every block full: the base-model tokens need a padding row of zeros to read
    "decode-full-blocks": ([11, 12, 0, 12, 11, 0], False),
    "decode-no-base": ([13, 11, 11, 13], False),
    "prefill-mixed": ([11] * 7 + [0] * 5 + [12] * 9 + [11] * 3 + [13] * 4, True),
    "prefill-long": ([11] * 50 + [0] * 20 + [13] * 30, True),  # past stacking: per adapter
    # past stacking, a prefill chunk beside decode tokens: sorted by slot, gathered back
    "prefill-beside-decode": ([11] * 50 + [12, 13, 0, 12, 11, 13] * 2 + [13] * 20, True),
    "base-only": ([0] * 4, True),
}


def _wrapper(token_ids: list[int], is_prefill: bool) -> punica_cpu.PunicaWrapperCPU:
    wrapper = punica_cpu.PunicaWrapperCPU(256, 16, device="cpu")
    mapping = LoRAMapping(tuple(token_ids), tuple(token_ids), is_prefill=is_prefill)
    wrapper.update_metadata(mapping, [11, 12, 13, None], SLOTS, 100)  # slot -> adapter id
    return wrapper


def _kernel_built() -> bool:
    """The C kernel the package shipped (built by its install, ``setup.py``); missing,
    reinstall with a C compiler: ``pip install --no-deps -e .``."""
    assert kernel.SHIPPED.is_file(), f"{kernel.SHIPPED} missing: pip install --no-deps -e ."
    assert kernel.load() is not None, "the shipped LoRA decode kernel did not load: see the log"
    assert kernel.describe().startswith("shipped-"), kernel.describe()
    return True


@pytest.fixture(params=["kernel", "torch"])
def lora_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Decode-sized batches through the C kernel, or through the fused torch ops alone;
    returns what each ``_by_kernel`` call answered, so a test can see which one ran."""
    if request.param == "kernel":
        _kernel_built()
    else:
        monkeypatch.setattr(fused, "KERNEL_MAX_TOKENS", 0)
    answers: list[bool] = []
    by_kernel = fused._by_kernel

    def recorded(*args: object) -> bool:
        answers.append(by_kernel(*args))  # type: ignore[arg-type]
        return answers[-1]

    monkeypatch.setattr(fused, "_by_kernel", recorded)
    return answers


@pytest.mark.parametrize("case", FUSED_CASES)
@pytest.mark.parametrize("slices", [(16, 8, 8), (24,)], ids=["qkv", "one-slice"])
def test_the_fused_linear_path_gives_vllms_lora_output(
    case: str, slices: tuple[int, ...], vllm_ops: dict[str, object], lora_path: list[bool]
) -> None:
    token_ids, is_prefill = FUSED_CASES[case]
    wrapper = _wrapper(token_ids, is_prefill)
    a = tuple(weights(RANK, HIDDEN, torch.bfloat16, 40 + i) for i in range(len(slices)))
    b = tuple(weights(size, RANK, torch.bfloat16, 50 + i) for i, size in enumerate(slices))
    x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=17)
    want = torch.zeros(len(token_ids), sum(slices), dtype=torch.bfloat16)
    got = want.clone()
    VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 0.5, slices)
    fused.add_lora_linear(wrapper, got, x, a, b, 0.5, slices)
    assert_same(got, want)
    start = randn(len(token_ids), sum(slices), dtype=torch.bfloat16, seed=18)
    added = start.clone()
    fused.add_lora_linear(wrapper, added, x, a, b, 0.5, slices)  # adds to what is there
    base = torch.tensor(token_ids) == 0
    assert torch.equal(added[base], start[base])  # base-model tokens: untouched
    torch.testing.assert_close(added[~base], start[~base] + got[~base], rtol=2**-7, atol=2**-7)
    by_kernel = len(token_ids) <= fused.KERNEL_MAX_TOKENS and case != "base-only"
    assert lora_path == [True, True] * by_kernel  # the kernel ran where it should, only there


def test_the_kernel_reads_strided_rows_and_writes_only_its_columns(
    vllm_ops: dict[str, object], lora_path: list[bool]
) -> None:
    """vLLM hands views: inputs that are column slices of a wider tensor, outputs whose
    rows are wider than the LoRA term's columns; the columns past it stay as they were."""
    token_ids, slices = [11, 13, 0, 12, 11, 12], (16, 8, 8)
    wrapper = _wrapper(token_ids, False)
    a = tuple(weights(RANK, HIDDEN, torch.bfloat16, 90 + i) for i in range(3))
    b = tuple(weights(size, RANK, torch.bfloat16, 95 + i) for i, size in enumerate(slices))
    wide_x = randn(len(token_ids), HIDDEN + 7, dtype=torch.bfloat16, seed=23)
    x = wide_x[:, 3 : 3 + HIDDEN]
    start = randn(len(token_ids), sum(slices) + 5, dtype=torch.bfloat16, seed=24)
    want, got = start.clone(), start.clone()
    VLLM_ADD_LORA_LINEAR(wrapper, want, x.contiguous(), a, b, 0.5, slices)
    fused.add_lora_linear(wrapper, got, x, a, b, 0.5, slices)
    assert_same(got, want)
    assert torch.equal(got[:, sum(slices) :], start[:, sum(slices) :])
    assert lora_path == [True] * bool(fused.KERNEL_MAX_TOKENS)


def test_a_float32_model_is_left_to_the_torch_ops(vllm_ops: dict[str, object]) -> None:
    """The kernel reads and writes bfloat16 (the engine's dtype here); other dtypes go to
    the fused torch ops and get vLLM's answer all the same."""
    _kernel_built()
    token_ids = [11, 12, 0, 13]
    wrapper = _wrapper(token_ids, False)
    a = (weights(RANK, HIDDEN, torch.float32, 31),)
    b = (weights(24, RANK, torch.float32, 32),)
    x = randn(len(token_ids), HIDDEN, seed=33)
    want = torch.zeros(len(token_ids), 24)
    got = want.clone()
    VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 0.5, (24,))
    layout = fused.fused_weights(a, b, (24,), 0.5, torch.float32)
    assert not fused._by_kernel(layout, x, got, wrapper.token_lora_indices)
    fused.add_lora_linear(wrapper, got, x, a, b, 0.5, (24,))
    assert_same(got, want)


WITHOUT_KERNEL = {
    "off": ({kernel.ENV_VAR: "0"}, False, "off", "kernel off"),
    "not-shipped": ({kernel.ENV_VAR: "1"}, True, "torch-fallback",
                    "not built when the package was installed"),
    "build-fails": ({kernel.ENV_VAR: "build", "CC": "false"}, False, "torch-fallback",
                    "did not build"),
}  # fmt: skip


@pytest.mark.parametrize("case", WITHOUT_KERNEL)
def test_without_a_kernel_the_torch_ops_serve(
    case: str, vllm_ops: dict[str, object], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:  # fmt: skip
    """The setting off, a package installed without a compiler (no shipped library), or
    the ``build`` opt-in with a compiler that fails (here ``false``): no kernel, a log line
    saying so, ``describe`` says which, and the same answers from the torch ops."""
    variables, missing, described, logged = WITHOUT_KERNEL[case]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if missing:
        monkeypatch.setattr(kernel, "SHIPPED", tmp_path / "liblora_kernel.so")
    kernel.reset()
    try:
        with caplog.at_level(logging.INFO, logger=kernel.__name__):
            assert kernel.load() is None
        assert kernel.describe() == described
        assert logged in caplog.text
        token_ids = [11, 13, 0, 12]
        wrapper = _wrapper(token_ids, False)
        a, b = (weights(RANK, HIDDEN, torch.bfloat16, 41),), (weights(8, RANK, torch.bfloat16, 42),)
        x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=43)
        want = torch.zeros(len(token_ids), 8, dtype=torch.bfloat16)
        got = want.clone()
        VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 0.5, (8,))
        fused._WEIGHTS.clear()  # layouts built while the kernel was there carry its copy
        fused.add_lora_linear(wrapper, got, x, a, b, 0.5, (8,))
        assert_same(got, want)
    finally:
        kernel.reset()
        fused._WEIGHTS.clear()


LOADED_WITHOUT_A_COMPILER = """
import os, sys
from gateway.engine.grouped_lora import kernel
lib = kernel.load()
maps = open("/proc/self/maps").read()
print(kernel.describe(), str(kernel.SHIPPED) in maps, lib is not None)
"""


def test_the_shipped_kernel_loads_without_a_compiler_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """What a runtime image without gcc does: no compiler on PATH, ``CC`` a failing one,
    an empty private temp dir: the library is mapped from the package directory, the CPU's
    clone is named, and the temp dir stays empty (nothing is built or copied at start)."""
    _kernel_built()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"PATH": str(tmp_path / "no-bin"), "CC": "/bin/false", "TMPDIR": str(temp),
           "HOME": str(tmp_path), kernel.ENV_VAR: "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", LOADED_WITHOUT_A_COMPILER], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    described, mapped, loaded = done.stdout.split()
    assert described.startswith("shipped-") and mapped == "True" and loaded == "True"
    assert described in ("shipped-avx512f", "shipped-avx2", "shipped-baseline")
    assert list(temp.iterdir()) == []


def test_the_fused_plan_and_weights_follow_vllms_in_place_writes(
    vllm_ops: dict[str, object], lora_path: list[bool]
) -> None:
    """One plan per forward step and one weight layout per slot contents: a new batch
    (vLLM rewrites its index buffer) or a new adapter in a slot is never read stale."""
    token_ids = [11, 12, 11, 13]
    wrapper = _wrapper(token_ids, False)
    a = (weights(RANK, HIDDEN, torch.bfloat16, 60),)
    b = (weights(8, RANK, torch.bfloat16, 61),)
    x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=19)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        want, got = torch.zeros(len(token_ids), 8, dtype=torch.bfloat16), None
        got = want.clone()
        VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 1.0, (8,))
        fused.add_lora_linear(wrapper, got, x, a, b, 1.0, (8,))
        return got, want

    assert_same(*both())
    reversed_ids = [13, 11, 12, 11]
    wrapper.update_metadata(
        LoRAMapping(tuple(reversed_ids), tuple(reversed_ids), is_prefill=False),
        [11, 12, 13, None], SLOTS, 100,
    )  # fmt: skip
    assert_same(*both())  # the next step's batch, through the same index buffer
    a[0][1].copy_(weights(RANK, HIDDEN, torch.bfloat16, 62)[1])  # a new adapter in slot 1
    assert_same(*both())


@pytest.mark.parametrize("case", ["decode-mixed", "prefill-long"])
def test_the_fused_path_skips_the_zero_padding_of_smaller_ranks(
    case: str, vllm_ops: dict[str, object], lora_path: list[bool]
) -> None:
    """vLLM sizes slots for ``max_lora_rank`` and pads smaller adapters with zeros; the
    fused products leave those columns out, and the answer does not change."""
    token_ids, is_prefill = FUSED_CASES[case]
    wrapper = _wrapper(token_ids, is_prefill)
    slices = (16, 8, 8)
    a = tuple(weights(2 * RANK, HIDDEN, torch.bfloat16, 70 + i) for i in range(3))
    b = tuple(weights(size, 2 * RANK, torch.bfloat16, 80 + i) for i, size in enumerate(slices))
    for stacked in a:  # slot 0 has rank 3, slot 1 rank 8, slot 2 rank 5: 8 of 16 used
        for slot, rank in enumerate((3, RANK, 5)):
            stacked[slot, :, rank:] = 0
    x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=21)
    want = torch.zeros(len(token_ids), sum(slices), dtype=torch.bfloat16)
    got = want.clone()
    VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 2.0, slices)
    fused.add_lora_linear(wrapper, got, x, a, b, 2.0, slices)
    assert_same(got, want)
    layout = fused.fused_weights(a, b, slices, 2.0, torch.float32)
    assert layout.per_slot_a.shape == (SLOTS, HIDDEN, 3 * RANK)  # rank 8, not 16


def test_a_layer_no_adapter_trains_is_left_alone_until_one_is_written() -> None:
    """Adapters that train q and v only leave the MLP's slots zero: nothing is added
    there, and once a slot is written (in place) its term is computed again."""
    token_ids = [11, 12, 0, 13, 11]
    wrapper = _wrapper(token_ids, is_prefill=False)
    a = (torch.zeros(SLOTS, 1, RANK, HIDDEN, dtype=torch.bfloat16),)
    b = (weights(24, RANK, torch.bfloat16, 60),)
    x = randn(len(token_ids), HIDDEN, dtype=torch.bfloat16, seed=19)
    start = randn(len(token_ids), 24, dtype=torch.bfloat16, seed=20)
    got = start.clone()
    fused.add_lora_linear(wrapper, got, x, a, b, 0.5, (24,))
    assert torch.equal(got, start)
    a[0][2, 0].copy_(randn(RANK, HIDDEN, dtype=torch.bfloat16, seed=21))  # slot 2: adapter 13
    want = start.clone()
    VLLM_ADD_LORA_LINEAR(wrapper, want, x, a, b, 0.5, (24,))
    fused.add_lora_linear(wrapper, got, x, a, b, 0.5, (24,))
    assert_same(got, want)
    assert not torch.equal(got[3], start[3]) and torch.equal(got[:3], start[:3])


def test_the_logits_term_is_skipped_only_while_every_slot_is_zero() -> None:
    """Adapters that leave ``lm_head`` alone get zero logits slots; once a slot is written
    (in place, as vLLM does) the term is computed again and matches vLLM's."""
    logits.ORIGINAL = VLLM_ADD_LORA_LOGITS
    token_ids = [11, 0, 12, 12, 13]
    wrapper = _wrapper(token_ids, is_prefill=False)
    vocab, hidden, rank = 40, 16, 8
    a = torch.zeros(SLOTS, 1, rank, hidden, dtype=torch.bfloat16)
    b = torch.zeros(SLOTS, 1, vocab, rank, dtype=torch.bfloat16)
    x = torch.randn(len(token_ids), hidden, generator=torch.Generator().manual_seed(3))
    x = x.bfloat16()
    y = torch.randn(len(token_ids), vocab).bfloat16()
    before = y.clone()
    calls: list[int] = []

    def counted(*args: object, **kwargs: object) -> None:
        calls.append(1)
        VLLM_ADD_LORA_LOGITS(*args, **kwargs)

    logits.ORIGINAL = counted
    try:
        assert logits.add_lora_logits(wrapper, y, x, a, b, 1.0) is None
        assert calls == [] and torch.equal(y, before)
        gen = torch.Generator().manual_seed(4)
        a[1, 0].copy_(torch.randn(rank, hidden, generator=gen).bfloat16())  # slot 1: adapter 12
        b[1, 0].copy_(torch.randn(vocab, rank, generator=gen).bfloat16())
        logits.add_lora_logits(wrapper, y, x, a, b, 1.0)
    finally:
        logits.ORIGINAL = VLLM_ADD_LORA_LOGITS
    assert calls == [1]
    expected = before.clone()
    VLLM_ADD_LORA_LOGITS(wrapper, expected, x, a, b, 1.0)
    assert torch.equal(y, expected) and not torch.equal(y, before)
