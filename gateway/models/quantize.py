"""``gateway model quantize``: a compressed-tensors checkpoint from an unquantized one.

Every refusal comes first (``prepare``: scheme, group size against the model's shapes,
calibration file, source folder, target), then the heavy part runs in the tool's venv
(``worker.py``) into a staging folder beside the target. The result is checked (config,
packed tensors, tokenizer), given a provenance manifest and renamed into place; on any
failure, Ctrl-C included, the staging folder goes and the cache holds nothing half made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.fileio import make_readable, write_json_atomic
from gateway.models.calibration import Calibration, load_calibration
from gateway.models.files import MANIFEST, file_hashes, read_json, read_manifest, tensor_shapes
from gateway.models.identity import QUANTIZED, default_model, identify, quantized_info
from gateway.models.info import ModelError, ModelInfo, Quantization, read_quantization
from gateway.models.layout import check_group_size, expected_tensors, linear_shapes
from gateway.models.provision import default_model_dir
from gateway.models.toolenv import Runner, ToolEnv, run_streaming

WORKER = Path(__file__).with_name("worker.py")
METHOD = "compressed-tensors"
DEFAULT_GROUP_SIZE = 32  # divides SmolLM2's 576; the source GGUF's Q4_1 blocks are 32 too
MAX_SEQ_LENGTH = 256


@dataclass(frozen=True)
class Scheme:
    format: str  # compressed-tensors' name for how the weights are stored
    weight_bits: int
    activation_bits: int | None  # None: activations stay 16-bit
    is_grouped: bool
    needs_data: bool  # GPTQ fits its updates on calibration texts; round-to-nearest does not


SCHEMES = {
    "w4a16": Scheme("pack-quantized", 4, None, is_grouped=True, needs_data=True),
    "w8a8": Scheme("int-quantized", 8, 8, is_grouped=False, needs_data=False),
}


@dataclass(frozen=True)
class QuantizeJob:
    source: ModelInfo
    scheme: str
    quantization: Quantization  # what the checkpoint's config.json must state
    calibration: Calibration | None  # None: a data-free scheme (w8a8)
    out: Path
    seed: int


def target_quantization(scheme: str, group_size: int | None) -> Quantization:
    """What ``scheme`` at ``group_size`` writes; an unknown scheme or a group size where
    the scheme has none is refused."""
    if scheme not in SCHEMES:
        raise ModelError(f"unsupported scheme {scheme!r}; choose {' or '.join(SCHEMES)}")
    spec = SCHEMES[scheme]
    if not spec.is_grouped and group_size is not None:
        raise ModelError(f"{scheme} quantizes per output channel; a group size is for w4a16")
    if not spec.is_grouped:
        group = None
    else:
        group = DEFAULT_GROUP_SIZE if group_size is None else group_size
    return Quantization(METHOD, spec.format, spec.weight_bits, spec.activation_bits, group)


def prepare(
    source_dir: Path | None,
    cache_dir: Path,
    *,
    scheme: str,
    group_size: int | None,
    calibration: Path,
    samples: int,
    seed: int,
    out: Path | None,
) -> QuantizeJob:
    """Every check that needs no tool: a mistake is told before anything is installed or
    computed. ``source_dir`` None is the embedded default (provisioned if need be)."""
    target = target_quantization(scheme, group_size)
    # A data-free scheme reads no file: the embedded model's default variant is then made
    # where only the package is installed (a container), with no data/ folder beside it.
    texts = load_calibration(calibration, samples, seed) if SCHEMES[scheme].needs_data else None
    out = out or cache_dir / f"{(source_dir or default_model_dir(cache_dir)).name}-{target.variant}"
    if out.exists():
        raise ModelError(f"{out} already exists; remove it or choose another --out")
    if source_dir is not None:
        shapes = check_source(source_dir)
        source = identify(source_dir)
    else:
        source = default_model(cache_dir)
        shapes = check_source(source.path)
    if target.group_size is not None:
        try:
            check_group_size(shapes, target.group_size)
        except ModelError as exc:
            raise ModelError(f"{source.path}: {exc}") from exc
    return QuantizeJob(source, scheme, target, texts, out, seed)


def check_source(folder: Path) -> dict[str, tuple[int, int]]:
    """An unquantized model folder in a layout we can check; its linear layers' shapes."""
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a model folder: no such folder")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} is not a model folder: no config.json")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(f"{folder} is not a model folder: no *.safetensors weights")
    config = read_json(folder / "config.json")
    if (quantization := read_quantization(config)) is not None:
        raise ModelError(
            f"{folder} is already quantized ({quantization.variant}); quantize its "
            "unquantized source instead"
        )
    try:
        return linear_shapes(config)
    except ModelError as exc:
        raise ModelError(f"{folder}: {exc}") from exc


def quantize(job: QuantizeJob, tool: ToolEnv, run: Runner = run_streaming) -> ModelInfo:
    """Run the worker into a staging folder, check and record the result, rename it to
    ``job.out``. Whatever goes wrong, the staging folder is removed."""
    job.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=job.out.parent))
    try:
        model, spec = staging / "model", staging / "job.json"
        spec.write_text(json.dumps(_worker_job(job, model)), encoding="utf-8")
        data = job.calibration
        used = f"{len(data.texts)} calibration texts from {data.path}" if data else "no data"
        print(f"Quantizing {job.source.path} to {job.quantization.variant} with {used}", flush=True)
        status = run([str(tool.python), str(WORKER), str(spec)])
        if status != 0:
            raise ModelError(
                f"the quantizer exited with status {status} (its output is above); "
                f"nothing was written to {job.out}"
            )
        if problem := output_problem(model, job.quantization):
            raise ModelError(f"the quantized checkpoint is wrong: {problem}; nothing was written")
        write_json_atomic(model / MANIFEST, provenance(job, tool, file_hashes(model)))
        make_readable(model)
        if job.out.exists():
            raise ModelError(f"{job.out} appeared while quantizing; it was left as it is")
        os.replace(model, job.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Wrote {job.out}", flush=True)
    return quantized_info(job.out)


def _worker_job(job: QuantizeJob, model: Path) -> dict[str, Any]:
    return {
        "source": str(job.source.path), "out": str(model), "scheme": job.scheme,
        "group_size": job.quantization.group_size,
        "texts": list(job.calibration.texts) if job.calibration else [],
        "seed": job.seed, "max_seq_length": MAX_SEQ_LENGTH,
    }  # fmt: skip


def output_problem(folder: Path, expected: Quantization) -> str | None:
    """What is wrong with the worker's output, or None: the config must state the
    expected quantization, every linear layer must be stored quantized, the tokenizer
    must be there."""
    try:
        config = read_json(folder / "config.json")
        stated = read_quantization(config)
        if stated != expected:
            return f"config.json states {stated}, expected {expected}"
        tensors: dict[str, tuple[str, list[int]]] = {}
        for weights in sorted(folder.glob("*.safetensors")):
            tensors |= tensor_shapes(weights)
        want = expected_tensors(config, expected.weight_bits or 0, expected.group_size)
    except ModelError as exc:
        return str(exc)
    for name, (dtype, shape) in want.items():
        if name not in tensors:
            return f"tensor {name} is missing"
        found_dtype, found_shape = tensors[name]
        if found_shape != shape or dtype not in (None, found_dtype):
            return f"tensor {name} is {found_dtype} {found_shape}, expected {dtype} {shape}"
    if not (folder / "tokenizer_config.json").is_file() or not any(
        (folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")
    ):
        return "the tokenizer is missing"
    return None


def provenance(job: QuantizeJob, tool: ToolEnv, files: dict[str, str]) -> dict[str, Any]:
    """Enough to audit and remake the checkpoint: source, scheme, data, seed, tools."""
    source = job.source
    merged = read_manifest(source.path) or {}
    return {
        "kind": QUANTIZED,
        "name": source.name,
        "fingerprint": source.fingerprint,  # the family's: adapters of the source fit
        "variant": job.quantization.variant,
        "scheme": job.scheme,
        "quantization": vars(job.quantization),
        "source": {
            "path": str(source.path.resolve()),
            "variant": source.variant,
            "fingerprint": source.fingerprint,
            "files": file_hashes(source.path),
        },
        "calibration": job.calibration.record() if job.calibration else None,
        "seed": job.seed,
        "max_seq_length": MAX_SEQ_LENGTH,
        "tools": tool.versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        # a merged model's adapter and classify profile travel with its quantized copy
        **{key: merged[key] for key in ("adapter", "classify") if key in merged},
    }
