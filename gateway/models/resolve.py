"""The base model a gateway serves: a configured folder as it is, or the embedded
default in the chosen variant, made on first use and verified on every later one."""

from __future__ import annotations

from pathlib import Path

from gateway.config import REPO_ROOT, BaseVariant
from gateway.models.identity import default_model, identify, quantized_info
from gateway.models.info import ModelError, ModelInfo
from gateway.models.quantize import prepare, quantize, target_quantization
from gateway.models.toolenv import tool_env

# How the embedded default's variants are made: fixed, so every machine makes the same one.
DEFAULT_CALIBRATION = REPO_ROOT / "data" / "banking77" / "train.csv"
DEFAULT_SAMPLES = 256
DEFAULT_SEED = 0


def resolve_model(
    model_dir: Path | None, cache_dir: Path, variant: BaseVariant = "bf16"
) -> ModelInfo:
    """``model_dir`` as it is (``variant`` applies to the embedded default only), or the
    embedded default: bf16 provisioned from its wheel, a quantized variant quantized
    from that on first use."""
    if model_dir is not None:
        return identify(model_dir)
    base = default_model(cache_dir)
    if variant == "bf16":
        return base
    target = cache_dir / f"{base.path.name}-{target_quantization(variant, None).variant}"
    if not target.exists():
        job = prepare(
            None, cache_dir, scheme=variant, group_size=None, calibration=DEFAULT_CALIBRATION,
            samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED, out=target,
        )  # fmt: skip
        quantize(job, tool_env(cache_dir))
    info = quantized_info(target)
    if info.fingerprint != base.fingerprint:
        raise ModelError(
            f"{target} was quantized from another model (fingerprint {info.fingerprint[:12]}, "
            f"not {base.fingerprint[:12]}); remove the folder and run `gateway model pull`"
        )
    return info
