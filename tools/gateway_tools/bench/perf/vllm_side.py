"""Side ``vllm``: vLLM's own OpenAI server with the engine arguments the gateway uses,
always on vLLM's own CPU LoRA path (the gateway's plugin is installed in the same venv,
so the path is pinned off rather than left to whatever the parent's environment says)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.engine.vllm_engine import (
    WHITESPACE_FREE_BACKENDS,
    WORKER_EXTENSION,
    EngineOptions,
    kv_cache_bytes,
)
from gateway_tools.bench.perf.sides import Bench, grouped_env
from gateway_tools.bench.perf.workload import BASE_MODEL
from gateway_tools.launch import LaunchError, free_port, stop


def vllm_serve_argv(options: EngineOptions, loras: dict[str, str], port: int) -> list[str]:
    """vLLM's server with the engine arguments ``engine_args`` gives the gateway."""
    structured: dict[str, Any] = {"backend": options.structured_backend}
    if options.disable_any_whitespace and options.structured_backend in WHITESPACE_FREE_BACKENDS:
        structured["disable_any_whitespace"] = True
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", str(port),
        "--model", options.model_path, "--served-model-name", BASE_MODEL,
        "--dtype", options.dtype,
        "--max-model-len", str(options.max_model_len),
        "--gpu-memory-utilization", str(options.gpu_memory_utilization),
        *([] if options.kv_cache_gib is None
          else ["--kv-cache-memory-bytes", str(kv_cache_bytes(options.kv_cache_gib))]),
        "--max-num-seqs", str(options.max_num_seqs),
        "--enable-lora",
        "--max-loras", str(options.max_loras),
        "--max-cpu-loras", str(options.max_cpu_loras),
        "--max-lora-rank", str(options.max_lora_rank),
        "--structured-outputs-config", json.dumps(structured),
        "--seed", str(options.seed),
        "--disable-uvicorn-access-log",
        # the gateway's fix for vLLM's LoRA start-up on W8A8 layers that gave up their
        # weight (vllm-project/vllm#57503): without it vllm serve cannot load LoRA on this
        # base at all. It changes no kernel, so the comparison stays like with like.
        "--worker-extension-cls", WORKER_EXTENSION,
    ]  # fmt: skip
    if options.quantization:
        argv += ["--quantization", options.quantization]
    if options.enforce_eager:
        argv.append("--enforce-eager")
    if not loras:  # base-model cells only: vLLM refuses an empty --lora-modules
        return argv
    return [*argv, "--lora-modules", *(f"{name}={path}" for name, path in loras.items())]


def vllm_env(bench: Bench) -> dict[str, str]:
    """The server's whole environment: the CPU runtime, and vLLM's own LoRA path."""
    return {**os.environ, **bench.env, **grouped_env(False)}


@contextmanager
def vllm_serve(bench: Bench, log: Path, timeout_s: float = 900) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            vllm_serve_argv(bench.options, bench.adapter_paths(), port),
            env=vllm_env(bench),
            stdout=sink,
            stderr=sink,
        )
    try:
        while True:
            if proc.poll() is not None:
                text = log.read_text()
                # the root cause is logged by the engine process long before the tail
                causes = [line for line in text.splitlines() if "Error" in line][:12]
                raise LaunchError(
                    f"vllm serve exited ({proc.returncode}); errors:\n"
                    + "\n".join(causes)
                    + f"\n...\n{text[-2000:]}"
                )
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout_s:
                raise LaunchError(f"vllm serve not ready in {timeout_s:.0f}s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        stop(proc)
