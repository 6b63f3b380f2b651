"""vLLM itself: AsyncLLM lifecycle, LoRA requests, sampling params.

It speaks the small vocabulary of ``engine.types`` and turns vLLM's exceptions into
the gateway's own (``engine.failures`` decides which), so nothing above this layer
knows which engine runs. No module outside ``gateway.engine`` imports vLLM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.common import lifeline
from gateway.common.prompts import DecisionToken, decision_tokens, render_prompt
from gateway.engine.failures import (
    adapter_failure,
    check_adapter_files,
    engine_failure,
    generation_failure,
)
from gateway.engine.grouped_lora import plugin as grouped_lora
from gateway.engine.quantization import QuantizationRefused, checked_summary
from gateway.engine.types import (
    EngineStats,
    GenerationChunk,
    GenerationParams,
    LoraRef,
    TokenLogprobs,
)

log = logging.getLogger(__name__)

# vLLM refuses disable_any_whitespace with "auto" (it may fall back to outlines), so an
# auto deployment allows whitespace in JSON: the model may pad, within max_tokens.
WHITESPACE_FREE_BACKENDS = ("xgrammar", "guidance")
# Loaded by vLLM in the engine process (see ``worker_ext``); a name, so that importing
# this module does not patch vLLM in the gateway's own process.
WORKER_EXTENSION = "gateway.engine.worker_ext.GatewayWorkerExtension"


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
    grouped_lora: bool  # the grouped CPU LoRA path (``grouped_lora.plugin``)
    kv_cache_gib: float | None = None  # set: a fixed KV cache, whatever the node's memory
    lora_kernel: bool | str = True  # with the grouped path: the C kernel (or "build")


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
        kv_cache_memory_bytes=kv_cache_bytes(opts.kv_cache_gib),
        max_num_seqs=opts.max_num_seqs,
        enable_lora=True,
        max_loras=opts.max_loras,
        max_cpu_loras=opts.max_cpu_loras,
        max_lora_rank=opts.max_lora_rank,
        structured_outputs_config=structured,
        enforce_eager=opts.enforce_eager,
        seed=opts.seed,
        disable_log_stats=True,
        worker_extension_cls=WORKER_EXTENSION,
    )


def kv_cache_bytes(gib: float | None) -> int | None:
    return None if gib is None else int(gib * 2**30)


def build_llm(opts: EngineOptions, stat_loggers: list[Any] | None = None) -> Any:
    """vLLM's ``AsyncLLM`` for ``opts`` (blocking: tens of seconds). The performance
    benchmark's bare side uses it too, so both sides run one engine build."""
    from vllm.v1.engine.async_llm import AsyncLLM

    # Before the engine arguments: building them loads vLLM's plugins in this process.
    grouped_lora.announce(opts.grouped_lora, opts.lora_kernel)
    lifeline.hand_down()  # the engine's processes die with this one, however it dies
    return AsyncLLM.from_engine_args(engine_args(opts), stat_loggers=stat_loggers)


def sampling_params(params: GenerationParams) -> Any:
    """vLLM's ``SamplingParams`` for one generation, streamed as deltas."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    structured = None
    if params.json_schema is not None:
        structured = StructuredOutputsParams(json=params.json_schema)
    elif params.json_object:
        structured = StructuredOutputsParams(json_object=True)
    return SamplingParams(
        max_tokens=params.max_tokens,
        min_tokens=params.min_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop) or None,
        structured_outputs=structured,
        output_kind=RequestOutputKind.DELTA,
        logprobs=params.logprobs,
        logprob_token_ids=list(params.logprob_token_ids) if params.logprob_token_ids else None,
    )


def token_logprobs(token_ids: Any, positions: Any) -> list[TokenLogprobs]:
    """vLLM's per-position ``{id: Logprob}`` as plain floats, one entry per new token.

    vLLM's ranks are ignored: for ``logprob_token_ids`` it numbers the ids 1..n as if they
    were the top n, which they are not.
    """
    return [
        TokenLogprobs(
            token_id=token_id,
            text=position[token_id].decoded_token or "",
            logprobs={index: float(entry.logprob) for index, entry in position.items()},
        )
        for token_id, position in zip(token_ids, positions, strict=True)
    ]


def lora_request(lora: LoraRef | None) -> Any:
    """vLLM's ``LoRARequest`` for ``lora``; None runs the base model."""
    if lora is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest(lora.name, lora.lora_id, lora.path)


class VllmEngine:
    """An in-process ``AsyncLLM`` plus the model's tokenizer (for chat templates)."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.max_model_len = options.max_model_len
        self._llm: Any = None
        self._tokenizer: Any = None
        self._ready = False
        self.start_seconds: float | None = None
        self.quantization: dict[str, Any] | None = None
        self.lora_path: dict[str, Any] | None = None  # what the engine process runs
        self.on_stats: Callable[[EngineStats], None] | None = None
        self._decision_tokens: dict[tuple[str, ...], tuple[DecisionToken, ...]] = {}

    @property
    def is_ready(self) -> bool:
        return self._ready and self._llm is not None and not self._llm.errored

    async def start(self) -> None:
        """Build the engine and prove it can generate before reporting ready."""
        from transformers import AutoTokenizer

        opts = self.options
        started = time.perf_counter()
        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, opts.model_path)
        # Building the engine takes tens of seconds; off the event loop, /health answers.
        loggers = [_stats_bridge(self)] if self.on_stats is not None else None
        self._llm = await asyncio.to_thread(build_llm, opts, loggers)
        await self._check_quantization()
        self.lora_path = (await self._llm.collective_rpc("gateway_lora_path"))[0]
        log.info("LoRA path in the engine process: %s, C decode kernel: %s",
                 "grouped" if self.lora_path["grouped"] else "vLLM's own",
                 self.lora_path["kernel"])  # fmt: skip
        armed = (await self._llm.collective_rpc("gateway_death_signal"))[0] == signal.SIGKILL
        # False: the lifeline plugin did not run (VLLM_PLUGINS, stale package metadata)
        say = log.info if armed else log.warning
        say("the engine worker dies with the engine core: %s", armed)
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

    async def _check_quantization(self) -> None:
        replies = await self._llm.collective_rpc("gateway_quantization_summary")
        try:
            opts = self.options
            self.quantization = checked_summary(replies[0], opts.quantization, opts.model_path)
        except QuantizationRefused:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        self._ready = False
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """The model's own chat template, rendered the way training renders it."""
        return render_prompt(self._tokenizer, messages)

    def encode_text(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def decision_tokens(self, labels: tuple[str, ...]) -> tuple[DecisionToken, ...]:
        """The label tokens under the served tokenizer (the same rule training uses)."""
        found = self._decision_tokens.get(labels)
        if found is None:
            found = self._decision_tokens[labels] = decision_tokens(self._tokenizer, labels)
        return found

    async def add_lora(self, lora: LoraRef) -> None:
        """Load ``lora`` into the engine; its files are checked here first, where a bad
        file is still known by its exception type (see ``engine.failures``)."""
        self._require_engine()
        lora_config = self._llm.vllm_config.lora_config
        await asyncio.to_thread(check_adapter_files, lora.name, lora.path, lora_config)
        try:
            await self._llm.add_lora(lora_request(lora))
        except Exception as exc:
            raise self._noted(adapter_failure(exc, lora.name)) from exc

    async def remove_lora(self, lora_id: int) -> bool:
        self._require_engine()
        try:
            return bool(await self._llm.remove_lora(lora_id))
        except Exception as exc:
            failure = engine_failure(exc, f"the engine failed to unload adapter id {lora_id}")
            raise self._noted(failure) from exc

    async def generate(self, params: GenerationParams) -> AsyncIterator[GenerationChunk]:
        """Stream deltas; map every engine failure to a ``GatewayError``."""
        self._require_engine()
        num_output = 0
        try:
            sampling = sampling_params(params)
            async for out in self._llm.generate(
                {"prompt_token_ids": params.prompt_token_ids},
                sampling,
                params.request_id,
                lora_request=lora_request(params.lora),
            ):
                completion = out.outputs[0]
                num_output += len(completion.token_ids)
                yield GenerationChunk(
                    text=completion.text,
                    num_prompt_tokens=len(params.prompt_token_ids),
                    num_output_tokens=num_output,
                    finish_reason=completion.finish_reason if out.finished else None,
                    logprobs=(
                        None
                        if completion.logprobs is None
                        else token_logprobs(completion.token_ids, completion.logprobs)
                    ),
                )
        except Exception as exc:  # cancellation is a BaseException and passes untouched
            failure = generation_failure(
                exc,
                request_id=params.request_id,
                constrained=params.json_schema is not None or params.json_object,
                backend=self.options.structured_backend,
            )
            raise self._noted(failure) from exc

    def _noted(self, failure: errors.GatewayError) -> errors.GatewayError:
        """A dead engine stops reporting ready at once; the server's watchdog acts on it."""
        if isinstance(failure, errors.EngineUnavailable):
            self._ready = False
        return failure

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
                    running_adapters=tuple(getattr(scheduler_stats, "running_lora_adapters", {})),
                    waiting_adapters=tuple(getattr(scheduler_stats, "waiting_lora_adapters", {})),
                    queued=tuple((f.request_id or "", f.queued_time) for f in finished),
                )
            )

        def log_engine_initialized(self) -> None:
            pass

    return GatewayStatLogger
