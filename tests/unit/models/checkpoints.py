"""Model folders for the quantize tests, built without torch: a tiny Llama config, and
safetensors files whose headers hold the tensors a real checkpoint of it holds (shapes
as llmcompressor 0.14 wrote them for this config; the values do not matter here)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from gateway.models.toolenv import Runner

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
    "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 1, "vocab_size": 100,
}  # fmt: skip
# Projection -> (packed int4 weight, per-group scale) shapes in the w4a16 (group 32) output.
W4A16_SHAPES = {
    "self_attn.q_proj": ([64, 8], [64, 2]), "self_attn.k_proj": ([32, 8], [32, 2]),
    "self_attn.v_proj": ([32, 8], [32, 2]), "self_attn.o_proj": ([64, 8], [64, 2]),
    "mlp.gate_proj": ([128, 8], [128, 2]), "mlp.up_proj": ([128, 8], [128, 2]),
    "mlp.down_proj": ([64, 16], [64, 4]),
}  # fmt: skip
W4A16_CONFIG = {
    "quant_method": "compressed-tensors", "format": "pack-quantized",
    "config_groups": {"group_0": {
        "format": "pack-quantized", "targets": ["Linear"], "input_activations": None,
        "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                    "group_size": 32},
    }},
    "ignore": ["lm_head"],
}  # fmt: skip


def source_model(folder: Path, **config: Any) -> Path:
    """An unquantized model folder: config.json and a bf16-sized safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**TINY_CONFIG, **config}))
    save_file({"model.embed_tokens.weight": np.zeros((100, 64), np.float16)},
              str(folder / "model.safetensors"))  # fmt: skip
    return folder


def w4a16_checkpoint(folder: Path, drop: str | None = None) -> None:
    """What the worker writes for TINY_CONFIG with w4a16 at group 32 (less ``drop``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({**TINY_CONFIG, "quantization_config": W4A16_CONFIG})
    )
    tensors = {"model.embed_tokens.weight": np.zeros((100, 64), np.float16)}
    for name, (packed, scale) in W4A16_SHAPES.items():
        tensors[f"model.layers.0.{name}.weight_packed"] = np.zeros(packed, np.int32)
        tensors[f"model.layers.0.{name}.weight_scale"] = np.zeros(scale, np.float16)
    tensors.pop(drop or "", None)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")


def fake_worker(write: Callable[[Path], object], status: int = 0) -> tuple[Runner, list[list[str]]]:
    """A runner standing in for the tool venv's worker: it reads the job file the worker
    would read, writes into the job's ``out`` folder, and exits with ``status``."""
    calls: list[list[str]] = []

    def run(command: Sequence[str]) -> int:
        calls.append(list(command))
        job = json.loads(Path(command[-1]).read_text())
        write(Path(job["out"]))
        return status

    return run, calls
