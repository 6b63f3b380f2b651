"""The only module that imports vLLM: AsyncLLM lifecycle, LoRA requests, sampling params.

It speaks the small vocabulary of ``engine.types`` and turns vLLM's exceptions into
the gateway's own, so nothing above this layer knows which engine runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.engine.types import EngineStats, GenerationChunk, GenerationParams, LoraRef

log = logging.getLogger(__name__)

# vLLM refuses disable_any_whitespace with "auto" (it may fall back to outlines), so an
# auto deployment allows whitespace in JSON: the model may pad, within max_tokens.
WHITESPACE_FREE_BACKENDS = ("xgrammar", "guidance")


@dataclass(frozen=True)
class EngineOptions:
    """Engine arguments the gateway controls; built from ``Settings`` by the app."""

    model_path: str
    quantization: str | None
    dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    structured_backend: str
    disable_any_whitespace: bool
    enforce_eager: bool
    seed: int


def engine_args(opts: EngineOptions) -> Any:
    """vLLM's ``AsyncEngineArgs`` for ``opts``; the performance benchmark builds its bare
    engine from the same function, so both sides run identical engines."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    structured: dict[str, Any] = {"backend": opts.structured_backend}
    if opts.disable_any_whitespace and opts.structured_backend in WHITESPACE_FREE_BACKENDS:
        structured["disable_any_whitespace"] = True
    return AsyncEngineArgs(
        model=opts.model_path,
        tokenizer=opts.model_path,
        quantization=opts.quantization,
        dtype=opts.dtype,
        max_model_len=opts.max_model_len,
        gpu_memory_utilization=opts.gpu_memory_utilization,
        max_num_seqs=opts.max_num_seqs,
        enable_lora=True,
        max_loras=opts.max_loras,
        max_cpu_loras=opts.max_cpu_loras,
        max_lora_rank=opts.max_lora_rank,
        structured_outputs_config=structured,
        enforce_eager=opts.enforce_eager,
        seed=opts.seed,
        disable_log_stats=True,
    )


class VllmEngine:
    """An in-process ``AsyncLLM`` plus the model's tokenizer (for chat templates)."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.max_model_len = options.max_model_len
        self._llm: Any = None
        self._tokenizer: Any = None
        self._ready = False
        self.start_seconds: float | None = None
        self.on_stats: Callable[[EngineStats], None] | None = None

    @property
    def is_ready(self) -> bool:
        return self._ready and self._llm is not None and not self._llm.errored

    async def start(self) -> None:
        """Build the engine and prove it can generate before reporting ready."""
        from transformers import AutoTokenizer
        from vllm.v1.engine.async_llm import AsyncLLM

        opts = self.options
        started = time.perf_counter()
        args = engine_args(opts)
        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, opts.model_path)
        # Building the engine takes tens of seconds; off the event loop, /health answers.
        loggers = [_stats_bridge(self)] if self.on_stats is not None else None
        self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args, stat_loggers=loggers)
        probe = GenerationParams(
            request_id=f"ready-probe-{uuid.uuid4().hex}",
            prompt_token_ids=self.encode_chat([{"role": "user", "content": "Hi"}]),
            max_tokens=1,
        )
        async for _ in self.generate(probe):
            pass
        self.start_seconds = time.perf_counter() - started
        self._ready = True
        log.info("engine ready in %.1f s", self.start_seconds)

    def shutdown(self) -> None:
        self._ready = False
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Render the model's own chat template once, straight to token ids."""
        ids = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if hasattr(ids, "input_ids"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    async def add_lora(self, lora: LoraRef) -> None:
        from vllm.lora.request import LoRARequest

        self._require_engine()
        try:
            await self._llm.add_lora(LoRARequest(lora.name, lora.lora_id, lora.path))
        except Exception as exc:  # vLLM raises plain errors for bad adapter files
            raise errors.InvalidRequest(f"adapter {lora.name!r} failed to load: {exc}") from exc

    async def remove_lora(self, lora_id: int) -> bool:
        self._require_engine()
        return bool(await self._llm.remove_lora(lora_id))

    async def generate(self, params: GenerationParams) -> AsyncIterator[GenerationChunk]:
        """Stream deltas; map every engine failure to a ``GatewayError``."""
        from vllm.exceptions import VLLMValidationError
        from vllm.v1.engine.exceptions import EngineDeadError

        self._require_engine()
        sampling = self._sampling_params(params)
        lora = self._lora_request(params.lora)
        num_output = 0
        try:
            async for out in self._llm.generate(
                {"prompt_token_ids": params.prompt_token_ids},
                sampling,
                params.request_id,
                lora_request=lora,
            ):
                completion = out.outputs[0]
                num_output += len(completion.token_ids)
                yield GenerationChunk(
                    text=completion.text,
                    num_prompt_tokens=len(params.prompt_token_ids),
                    num_output_tokens=num_output,
                    finish_reason=completion.finish_reason if out.finished else None,
                )
        except VLLMValidationError as exc:
            if params.json_schema is not None or params.json_object:
                raise errors.SchemaUnsupported(
                    f"the {self.options.structured_backend} backend cannot enforce this "
                    f"schema: {exc}",
                    param="response_format",
                ) from exc
            raise errors.InvalidRequest(str(exc)) from exc
        except EngineDeadError as exc:
            self._ready = False
            raise errors.EngineUnavailable("the inference engine has stopped") from exc
        except (asyncio.CancelledError, errors.GatewayError):
            raise
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        except Exception as exc:
            log.exception("engine failure on %s", params.request_id)
            raise errors.EngineFailed(f"engine error: {type(exc).__name__}") from exc

    def _sampling_params(self, params: GenerationParams) -> Any:
        from vllm.sampling_params import (
            RequestOutputKind,
            SamplingParams,
            StructuredOutputsParams,
        )

        structured = None
        if params.json_schema is not None:
            structured = StructuredOutputsParams(json=params.json_schema)
        elif params.json_object:
            structured = StructuredOutputsParams(json_object=True)
        return SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
        )

    @staticmethod
    def _lora_request(lora: LoraRef | None) -> Any:
        if lora is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora.name, lora.lora_id, lora.path)

    def _require_engine(self) -> None:
        if self._llm is None or self._llm.errored:
            self._ready = False
            raise errors.EngineUnavailable("the inference engine is not running")


def _stats_bridge(engine: VllmEngine) -> Any:
    """A vLLM stat logger that hands each step's scheduler stats to ``engine.on_stats``.

    vLLM calls it on the output-processing path; it only copies numbers, so it costs
    next to nothing. (SchedulerStats is not a stable vLLM interface: fields are read
    defensively.)
    """
    from vllm.v1.metrics.loggers import StatLoggerBase

    class GatewayStatLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:  # fmt: skip
            sink = engine.on_stats
            if sink is None or scheduler_stats is None:
                return
            finished = getattr(iteration_stats, "finished_requests", None) or []
            sink(
                EngineStats(
                    num_running=getattr(scheduler_stats, "num_running_reqs", 0),
                    num_waiting=getattr(scheduler_stats, "num_waiting_reqs", 0),
                    kv_cache_usage=getattr(scheduler_stats, "kv_cache_usage", 0.0),
                    num_active_adapters=len(getattr(scheduler_stats, "running_lora_adapters", {})),
                    queued=tuple((f.request_id or "", f.queued_time) for f in finished),
                )
            )

        def log_engine_initialized(self) -> None:
            pass

    return GatewayStatLogger
