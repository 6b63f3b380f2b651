"""vLLM's exceptions -> the gateway's (``gateway.engine.failures``), fed vLLM's real
exception classes; no engine is started. A client is blamed (4xx) only for what it
caused, a dead engine is a 503, and anything else is a 500 whose id is in the log."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import errors
from gateway.engine.failures import adapter_failure, check_adapter_files, generation_failure
from gateway.engine.types import GenerationParams, LoraRef
from gateway.engine.vllm_engine import EngineOptions, VllmEngine
from tests.adapter_factory import make_peft_folder

with warnings.catch_warnings():
    # vLLM's engine package imports a torch module that still uses torch.jit.script_method
    warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
    from vllm.config.lora import LoRAConfig
    from vllm.exceptions import LoRAAdapterNotFoundError, VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError

LORA_CONFIG = LoRAConfig(max_lora_rank=16)


def generation(exc: Exception, constrained: bool = False) -> errors.GatewayError:
    return generation_failure(exc, request_id="chatcmpl-1", constrained=constrained,
                              backend="xgrammar")  # fmt: skip


@pytest.mark.parametrize(("constrained", "code"), [(True, "schema_unsupported"),
                                                   (False, "invalid_request")])  # fmt: skip
def test_a_request_vllm_refuses_is_a_400(constrained: bool, code: str) -> None:
    failure = generation(VLLMValidationError("bad", parameter="x"), constrained)
    assert (failure.status_code, failure.code) == (400, code)


def test_a_dead_engine_is_a_503_whatever_it_was_doing() -> None:
    for failure in (generation(EngineDeadError()), adapter_failure(EngineDeadError(), "a@v1")):
        assert (failure.status_code, failure.code) == (503, "engine_unavailable")
        assert failure.retryable


UNFORESEEN = [
    ValueError("sampling distribution replay requires temperature > 0"),
    RuntimeError("out of memory"),
    Exception("Call to add_lora method failed: out of memory"),  # how vLLM reports it
]


@pytest.mark.parametrize("exc", UNFORESEEN, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["generate", "add_lora"])
def test_anything_else_is_a_500_whose_id_is_logged_with_the_traceback(
    exc: Exception, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    failure = generation(exc, True) if where == "generate" else adapter_failure(exc, "a@v1")
    assert (failure.status_code, failure.code) == (500, "engine_error")
    error_id = failure.to_body()["error"]["id"]
    assert error_id and error_id == failure.error_id and error_id in failure.message
    [logged] = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info and logged.exc_info[1] is exc


def test_each_failure_gets_its_own_id() -> None:
    ids = {adapter_failure(RuntimeError("x"), "a@v1").error_id for _ in range(3)}
    assert len(ids) == 3


def test_an_adapter_vllm_cannot_find_is_adapter_invalid() -> None:
    failure = adapter_failure(LoRAAdapterNotFoundError("a@v1", "/gone"), "a@v1")
    assert (failure.status_code, failure.code) == (400, "adapter_invalid")


Config = dict[str, Any]


def rewrite_config(folder: Path, edit: Callable[[Config], Config]) -> Path:
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(edit(config)))
    return folder


def dora(config: Config) -> Config:
    return {**config, "use_dora": True}


BAD_CONFIGS: dict[str, tuple[Callable[[Config], Config], str]] = {
    "dora": (dora, "DoRA"),
    "bias": (lambda c: {**c, "bias": "all"}, "bias"),
    "rank": (lambda c: {**c, "r": 64}, "max_lora_rank"),
    "rank_not_a_number": (lambda c: {**c, "r": "8"}, "a@v1"),
    "no_alpha": (lambda c: {k: v for k, v in c.items() if k != "lora_alpha"}, "lora_alpha"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_adapter_files_vllm_would_refuse_are_adapter_invalid(tmp_path: Path, case: str) -> None:
    edit, reason = BAD_CONFIGS[case]
    folder = rewrite_config(make_peft_folder(tmp_path / "a" / "v1"), edit)
    with pytest.raises(errors.AdapterInvalid, match=reason) as caught:
        check_adapter_files("a@v1", str(folder), LORA_CONFIG)
    assert caught.value.status_code == 400


def test_unreadable_adapter_files_are_adapter_invalid(tmp_path: Path) -> None:
    with pytest.raises(errors.AdapterInvalid):
        check_adapter_files("a@v1", str(tmp_path / "gone"), LORA_CONFIG)
    folder = make_peft_folder(tmp_path / "a" / "v1")
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(errors.AdapterInvalid):
        check_adapter_files("a@v1", str(folder), LORA_CONFIG)


def test_a_valid_adapter_passes_the_check(tmp_path: Path) -> None:
    check_adapter_files("a@v1", str(make_peft_folder(tmp_path / "a" / "v1")), LORA_CONFIG)


class FailingLLM:
    """Stands in for vLLM's ``AsyncLLM``: every call raises ``exc``."""

    errored = False

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.vllm_config = SimpleNamespace(lora_config=LORA_CONFIG)
        self.lora_calls = 0

    async def add_lora(self, request: Any) -> bool:
        self.lora_calls += 1
        raise self.exc

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        async def fail() -> Any:
            raise self.exc
            yield  # an async generator, like AsyncLLM.generate

        return fail()


def started_engine(exc: Exception) -> tuple[VllmEngine, FailingLLM]:
    options = EngineOptions(
        model_path="/nonexistent", quantization=None, dtype="bfloat16", max_model_len=1024,
        gpu_memory_utilization=0.9, max_num_seqs=4, max_loras=1, max_cpu_loras=2,
        max_lora_rank=16, structured_backend="xgrammar", disable_any_whitespace=False,
        enforce_eager=True, seed=0, grouped_lora=False,
    )  # fmt: skip
    engine, llm = VllmEngine(options), FailingLLM(exc)
    engine._llm, engine._ready = llm, True
    return engine, llm


async def test_the_engine_raises_the_mapped_error_and_stops_being_ready_when_dead() -> None:
    engine, _ = started_engine(EngineDeadError())
    params = GenerationParams(request_id="chatcmpl-1", prompt_token_ids=[1, 2], max_tokens=4)
    with pytest.raises(errors.EngineUnavailable):
        async for _ in engine.generate(params):
            pass
    assert not engine.is_ready


async def test_the_engine_checks_adapter_files_before_loading_them(tmp_path: Path) -> None:
    engine, llm = started_engine(RuntimeError("out of memory"))
    bad = rewrite_config(make_peft_folder(tmp_path / "a" / "v1"), dora)
    with pytest.raises(errors.AdapterInvalid):
        await engine.add_lora(LoraRef("a@v1", 1, str(bad)))
    assert llm.lora_calls == 0  # refused before the engine was asked
    valid = make_peft_folder(tmp_path / "b" / "v1")
    with pytest.raises(errors.EngineFailed):
        await engine.add_lora(LoraRef("b@v1", 2, str(valid)))
    assert llm.lora_calls == 1 and engine.is_ready  # a failed load is not a dead engine
