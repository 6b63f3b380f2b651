"""Settings -> engine: the one place that turns operator settings into engine arguments.

The server, adapter evaluation and the benchmarks all build their engine here, so
each runs the engine the settings describe, with the same base model.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.engine.cpu_runtime import is_cpu_build
from gateway.engine.types import EngineClient
from gateway.engine.vllm_engine import EngineOptions, VllmEngine
from gateway.models import ModelInfo, resolve_model


def default_engine(settings: Settings) -> tuple[EngineClient, ModelInfo]:
    options, info = engine_options(settings)
    return VllmEngine(options), info


def engine_options(settings: Settings) -> tuple[EngineOptions, ModelInfo]:
    """The engine arguments ``settings`` ask for (resolving, and if need be pulling, the model)."""
    info = resolve_model(settings.model_dir, settings.model_cache_dir, settings.base_variant)
    options = EngineOptions(
        model_path=str(info.path),
        quantization=settings.quantization,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_seqs=settings.max_num_seqs,
        max_loras=settings.max_loras,
        max_cpu_loras=settings.max_cpu_loras,
        max_lora_rank=settings.max_lora_rank,
        structured_backend=settings.structured_backend,
        disable_any_whitespace=settings.disable_any_whitespace,
        enforce_eager=settings.enforce_eager,
        seed=settings.seed,
        grouped_lora=is_cpu_build() if settings.grouped_lora is None else settings.grouped_lora,
        lora_kernel=settings.lora_kernel,
        kv_cache_gib=settings.kv_cache_gib,
    )
    return options, info
