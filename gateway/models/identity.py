"""Which model a folder holds: the embedded default, a quantized checkpoint we made (its
manifest names the family and the source), or any other Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from gateway.models.files import (
    MANIFEST,
    fingerprint_dir,
    manifest_problem,
    read_json,
    read_manifest,
    verify,
)
from gateway.models.info import (
    ModelError,
    ModelInfo,
    Quantization,
    read_quantization,
    unquantized_variant,
)
from gateway.models.provision import (
    DEFAULT_MODEL_NAME,
    default_fingerprint,
    default_model_dir,
    provision,
)

QUANTIZED = "quantized"  # the manifest ``kind`` of a checkpoint ``gateway model quantize`` made


def require_model_dir(model_dir: Path) -> None:
    """Cheap enough to run before anything loads, so a wrong path is told at once."""
    if not model_dir.exists():
        raise ModelError(f"model_dir {model_dir} does not exist")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"model_dir {model_dir} is not a Hugging Face model directory")


def default_model(cache_dir: Path) -> ModelInfo:
    """The embedded default, bf16, provisioned on first use."""
    target = default_model_dir(cache_dir)
    if not verify(target):
        provision(target)
    return ModelInfo(DEFAULT_MODEL_NAME, target, default_fingerprint())


def identify(model_dir: Path) -> ModelInfo:
    """A configured folder. One we quantized keeps its family's fingerprint (adapters of
    the family fit it); any other is fingerprinted by its own config and weights."""
    require_model_dir(model_dir)
    manifest = read_manifest(model_dir)
    if manifest is not None and manifest.get("kind") == QUANTIZED:
        return quantized_info(model_dir)
    config = read_json(model_dir / "config.json")
    quantization = read_quantization(config)
    variant = quantization.variant if quantization else unquantized_variant(config)
    return ModelInfo(
        model_dir.name, model_dir, fingerprint_dir(model_dir), variant, None, quantization
    )


def quantized_info(folder: Path) -> ModelInfo:
    """A checkpoint ``gateway model quantize`` wrote, checked file by file against its
    manifest; the source is None when its folder is not on this machine."""
    if problem := manifest_problem(folder):
        raise ModelError(
            f"{folder} is a corrupt quantized checkpoint: {problem}; remove the folder and "
            "quantize again"
        )
    manifest = read_manifest(folder) or {}
    try:
        quantization = Quantization(**manifest["quantization"])
        source = Path(manifest["source"]["path"])
        return ModelInfo(
            manifest["name"],
            folder,
            manifest["fingerprint"],
            quantization.variant,
            source if (source / "config.json").is_file() else None,
            quantization,
        )
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{folder / MANIFEST} lacks {exc}") from exc
