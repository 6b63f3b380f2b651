"""A model folder's files: hashes, the provenance manifest that lists them, and the
safetensors headers that say which tensors a checkpoint holds (read without torch)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gateway.models.info import ModelError

MANIFEST = "provenance.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_dir(path: Path) -> str:
    """Hash of config + weights: what makes two model directories the same model."""
    digest = hashlib.sha256()
    names = sorted(
        p.name for p in path.iterdir() if p.name == "config.json" or p.suffix == ".safetensors"
    )
    if not names:
        raise ModelError(f"{path} holds no config.json or *.safetensors")
    for name in names:
        digest.update(name.encode())
        digest.update(sha256_file(path / name).encode())
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """Every regular file of ``folder`` but the manifest, by name: what the manifest lists."""
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST
    }


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path} does not exist") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return value


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    return read_json(path) if path.is_file() else None


def manifest_problem(folder: Path) -> str | None:
    """Why ``folder`` does not match its manifest (the first file that differs), or None."""
    if not (folder / MANIFEST).is_file():
        return f"{MANIFEST} is missing"
    try:
        files = read_json(folder / MANIFEST).get("files")
    except ModelError as exc:
        return str(exc)
    if not isinstance(files, dict) or not files:
        return f"{MANIFEST} lists no files"
    for name, digest in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256_file(file) != digest:
            return f"{name} does not match its hash in {MANIFEST}"
    return None


def verify(target: Path) -> bool:
    """True when ``target`` holds a complete model whose files match its manifest."""
    return manifest_problem(target) is None


def tensor_shapes(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (dtype, shape), from the header alone: no tensor is loaded."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as weights:
            names = weights.keys()  # the handle is not iterable
            slices = {name: weights.get_slice(name) for name in names}
            return {name: (s.get_dtype(), s.get_shape()) for name, s in slices.items()}
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{path.name} is not a readable safetensors file: {exc}") from exc
