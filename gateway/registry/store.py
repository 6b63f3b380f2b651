"""The adapter store on disk: ``<root>/<name>/<version>/`` holding PEFT files + manifest.

Everything read from the store goes through here, so the rules live in one place:
names and versions come from a safe character set, no path leaves the root, no
symlink is followed, weights are safetensors (never pickle) with a header that fits
the file, and the manifest says the adapter was trained on the base model we serve.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.calibration import EscalationPolicy
from gateway.common.lexicon import Lexicon
from gateway.common.names import excerpt, require_name
from gateway.common.prompts import DecisionToken
from gateway.errors import AdapterInvalid
from gateway.registry.answers import (
    read_answer,
    read_answer_schema,
    read_escalation,
    read_lexicon,
    read_temperature,
)

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.models import ModelInfo

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "manifest.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Names the store's own files take in its root: the registry state (``Settings.registry_path``
# defaults to ``<adapter_store>/registry.json``). Hidden files (temp, staging, trash) start
# with a dot, which no name may.
RESERVED_NAMES = frozenset({"registry.json"})
REQUIRED_MANIFEST_KEYS = ("name", "version", "base_model", "lora", "system_prompt", "labels")
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


@dataclass(frozen=True)
class StoreLimits:
    base_fingerprint: str
    max_rank: int
    target_modules: frozenset[str]
    max_bytes: int


def store_limits(settings: Settings, base: ModelInfo) -> StoreLimits:
    """What this gateway accepts: the server and a training run check the same limits."""
    return StoreLimits(
        base_fingerprint=base.fingerprint,
        max_rank=settings.max_lora_rank,
        target_modules=frozenset(settings.lora_target_modules),
        max_bytes=settings.max_adapter_bytes,
    )


@dataclass(frozen=True)
class AdapterVersion:
    """One validated version of an adapter, with what its training recorded."""

    name: str
    version: str
    path: Path
    rank: int
    size_bytes: int
    created: int
    system_prompt: str | None
    labels: tuple[str, ...] | None
    schema_name: str | None
    answer: tuple[DecisionToken, ...] | None = None  # None: legacy, answers in JSON
    temperature: float | None = None  # None: uncalibrated
    escalation: EscalationPolicy | None = None  # the adapter's default policy
    lexicon: Lexicon | None = None  # None: classify reads the text as sent
    # A structured adapter's answer schema (manifest ``schema.json``): chat requests that
    # send no response_format are constrained to it. None: classification or plain text.
    answer_schema: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def calibrated(self) -> bool:
        """Classify confidences are temperature-scaled (a legacy adapter's never are)."""
        return self.answer is not None and self.temperature is not None


def check_name(value: str, what: str) -> str:
    """The name rule for adapters and versions, plus the names the store keeps for itself."""
    require_name(value, what, AdapterInvalid)
    if value in RESERVED_NAMES:
        raise AdapterInvalid(
            f"{what} {value!r} is reserved: the adapter store keeps a file of that name",
            param=what,
        )
    return value


def parse_store_path(text: str) -> tuple[str, str]:
    """``"<name>/<version>"`` relative to the store; anything else is refused."""
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) != 2:
        raise AdapterInvalid(
            f"path {excerpt(text)} must be '<name>/<version>' inside the adapter store",
            param="path",
        )
    return check_name(parts[0], "name"), check_name(parts[1], "version")


class AdapterStore:
    def __init__(self, root: Path, limits: StoreLimits) -> None:
        self.root = root.resolve()
        self.limits = limits

    def version_dir(self, name: str, version: str) -> Path:
        """The folder of one version; refuses names that could leave the store."""
        check_name(name, "name")
        check_name(version, "version")
        folder = self.root / name / version
        for part in (self.root / name, folder):
            if part.is_symlink():
                raise AdapterInvalid(f"{name}/{version}: symlinks are not followed in the store")
            if part.exists() and not part.is_dir():
                raise AdapterInvalid(f"{name}/{version}: the store has a file there, not a folder")
        if folder.resolve().parent.parent != self.root:
            raise AdapterInvalid(f"{name}/{version} is outside the adapter store")
        return folder

    def inspect(self, name: str, version: str) -> AdapterVersion:
        """Validate one version folder completely; raise ``AdapterInvalid`` with the reason."""
        folder = self.version_dir(name, version)
        if not folder.is_dir():
            raise errors.AdapterNotFound(
                f"adapter {name}/{version} is not in the adapter store", param="version"
            )
        return self.check_folder(folder, name, version)

    def check_folder(self, folder: Path, name: str, version: str) -> AdapterVersion:
        where = f"adapter {name}/{version}"
        total = 0
        with os.scandir(folder) as entries:
            for entry in entries:
                mode = entry.stat(follow_symlinks=False).st_mode
                if entry.name.endswith(PICKLE_SUFFIXES):
                    raise AdapterInvalid(f"{where}: {entry.name} is a pickle file; use safetensors")
                if not stat.S_ISREG(mode):
                    raise AdapterInvalid(f"{where}: {entry.name} is not a regular file")
                total += entry.stat(follow_symlinks=False).st_size
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise AdapterInvalid(f"{where}: missing {', '.join(missing)}")
        if total > self.limits.max_bytes:
            limit = self.limits.max_bytes
            raise AdapterInvalid(f"{where}: {total} bytes is over the {limit}-byte limit")
        config = _read_json(folder / "adapter_config.json", where)
        rank = self._check_config(config, where)
        check_safetensors(folder / "adapter_model.safetensors", where)
        manifest = _read_json(folder / "manifest.json", where)
        self._check_manifest(manifest, where)
        return AdapterVersion(
            name=name,
            version=version,
            path=folder,
            rank=rank,
            size_bytes=total,
            created=int((folder / "adapter_model.safetensors").stat().st_mtime),
            **classify_fields(manifest, where),
        )

    def _check_config(self, config: dict[str, Any], where: str) -> int:
        if config.get("peft_type", "LORA") != "LORA":
            raise AdapterInvalid(f"{where}: peft_type {config.get('peft_type')!r} is not LORA")
        rank, modules = config.get("r"), config.get("target_modules")
        self.check_lora(rank, modules, where)
        return rank

    def check_lora(self, rank: Any, modules: Any, where: str) -> None:
        """Rank and target modules within this gateway's limits (training checks up front)."""
        if not isinstance(rank, int) or not 0 < rank <= self.limits.max_rank:
            raise AdapterInvalid(f"{where}: rank {rank!r} is outside 1..{self.limits.max_rank}")
        if not isinstance(modules, list) or not modules:
            raise AdapterInvalid(f"{where}: target_modules must be a list of module names")
        unsupported = sorted(set(modules) - self.limits.target_modules)
        if unsupported:
            raise AdapterInvalid(f"{where}: unsupported target modules {unsupported}")

    def _check_manifest(self, manifest: dict[str, Any], where: str) -> None:
        missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
        if missing:
            raise AdapterInvalid(f"{where}: manifest.json lacks {', '.join(missing)}")
        base = manifest.get("base_model") or {}
        trained_on = base.get("fingerprint") if isinstance(base, dict) else None
        if trained_on != self.limits.base_fingerprint:
            raise AdapterInvalid(
                f"{where} was trained on another base model ({base.get('name', '?')}, "
                f"fingerprint {str(trained_on)[:12]}); this gateway serves fingerprint "
                f"{self.limits.base_fingerprint[:12]}"
            )
        labels = manifest.get("labels")
        if labels is not None and not (
            isinstance(labels, list) and all(isinstance(x, str) for x in labels)
        ):
            raise AdapterInvalid(f"{where}: manifest labels must be a list of strings")


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterInvalid(f"{where}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise AdapterInvalid(f"{where}: {path.name} must hold a JSON object")
    return value


def check_safetensors(path: Path, where: str) -> None:
    """The header parses and every tensor lies inside the file (no torch needed)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise AdapterInvalid(f"{where}: {path.name} is truncated")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100_000_000):
            raise AdapterInvalid(f"{where}: {path.name} has a corrupt header length")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdapterInvalid(f"{where}: {path.name} has a corrupt header") from exc
    if not isinstance(header, dict):
        raise AdapterInvalid(f"{where}: {path.name} has a corrupt header")
    data_bytes = size - 8 - header_len
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise AdapterInvalid(f"{where}: {path.name} holds no tensors")
    for key, info in tensors.items():
        try:
            begin, end = info["data_offsets"]
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            expected = count * _DTYPE_BYTES[info["dtype"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterInvalid(f"{where}: {path.name}: bad entry for {key}") from exc
        if not 0 <= begin <= end <= data_bytes or end - begin != expected:
            raise AdapterInvalid(f"{where}: {path.name}: tensor {key} does not fit the file")


def merged_profile(model_dir: Path) -> AdapterVersion | None:
    """How a merged model classifies: the merged adapter's labels, prompt, decision
    tokens, temperature and escalation, which ``gateway adapters merge`` copied into the
    model's provenance. Served with no LoRA; None for any other model folder."""
    path = model_dir / "provenance.json"
    if not path.is_file():
        return None
    provenance = _read_json(path, str(path))
    # a merged model, or its quantized copy (``gateway adapters merge --quantize``)
    block = (
        provenance.get("classify") if provenance.get("kind") in ("merged", "quantized") else None
    )
    if not isinstance(block, dict) or not block.get("labels"):
        return None
    adapter = provenance.get("adapter") or {}
    return AdapterVersion(
        name=str(adapter.get("name", model_dir.name)),
        version=str(adapter.get("version", "merged")),
        path=model_dir,
        rank=0,
        size_bytes=0,
        created=int(path.stat().st_mtime),
        **classify_fields(block, f"merged model {model_dir.name}"),
    )


def classify_fields(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """How an adapter classifies, read from its manifest (or a merged model's copy of it)."""
    labels = tuple(manifest["labels"]) if manifest.get("labels") else None
    return {
        "system_prompt": manifest.get("system_prompt"),
        "labels": labels,
        "schema_name": (manifest.get("schema") or {}).get("name"),
        "answer": read_answer(manifest, labels, where),
        "temperature": read_temperature(manifest, where),
        "escalation": read_escalation(manifest, labels, where),
        "lexicon": read_lexicon(manifest, where),
        "answer_schema": read_answer_schema(manifest, where),
    }
