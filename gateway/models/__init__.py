"""Base models: the embedded default (provisioned from a PyPI wheel, never a hub), its
quantized variants (``gateway model quantize``), and the identity adapters are checked
against. Submodules import each other, never this package."""

from gateway.models.files import MANIFEST, fingerprint_dir, sha256_file, verify
from gateway.models.identity import require_model_dir
from gateway.models.info import ModelError, ModelInfo, Quantization
from gateway.models.provision import (
    DEFAULT_MODEL_NAME,
    default_fingerprint,
    default_model_dir,
    provision,
)
from gateway.models.resolve import resolve_model

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MANIFEST",
    "ModelError",
    "ModelInfo",
    "Quantization",
    "default_fingerprint",
    "default_model_dir",
    "fingerprint_dir",
    "provision",
    "require_model_dir",
    "resolve_model",
    "sha256_file",
    "verify",
]
