"""Adapter choice: which LoRA (if any) serves a request, checked before the engine sees it.

Adapters are PEFT folders. Names are restricted to a safe character set and every
adapter is validated (safetensors only, rank within the engine's limit) when it is
added, so a bad folder fails at start-up, not on a customer's request.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from gateway import errors
from gateway.engine.types import LoraRef

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")


class AdapterInvalid(errors.InvalidRequest):
    code = "adapter_invalid"


@dataclass(frozen=True)
class Adapter:
    """An adapter the gateway serves, with what its training recorded about prompting."""

    name: str
    lora: LoraRef
    rank: int
    created: int
    system_prompt: str | None = None
    labels: tuple[str, ...] | None = None


def read_adapter(
    name: str, path: Path, lora_id: int, max_rank: int, base_fingerprint: str
) -> Adapter:
    """Validate a PEFT folder and describe it; raises ``AdapterInvalid`` with the reason."""
    if not NAME_RE.match(name):
        raise AdapterInvalid(f"adapter name {name!r} must match {NAME_RE.pattern}")
    folder = path.resolve()
    if not folder.is_dir():
        raise AdapterInvalid(f"adapter {name!r}: {path} is not a directory")
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise AdapterInvalid(f"adapter {name!r}: missing {', '.join(missing)} in {path}")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterInvalid(f"adapter {name!r}: unreadable adapter_config.json: {exc}") from exc
    rank = int(config.get("r", 0))
    if not 0 < rank <= max_rank:
        raise AdapterInvalid(f"adapter {name!r}: rank {rank} is outside 1..{max_rank}")
    manifest = _read_manifest(folder)
    trained_on = (manifest.get("base_model") or {}).get("fingerprint")
    if trained_on is not None and trained_on != base_fingerprint:
        raise AdapterInvalid(
            f"adapter {name!r} was trained on another base model "
            f"({manifest['base_model'].get('name', '?')}, fingerprint {trained_on[:12]}); "
            f"this gateway serves fingerprint {base_fingerprint[:12]}"
        )
    labels = manifest.get("labels")
    return Adapter(
        name=name,
        lora=LoraRef(name=name, lora_id=lora_id, path=str(folder)),
        rank=rank,
        created=int((folder / "adapter_model.safetensors").stat().st_mtime),
        system_prompt=manifest.get("system_prompt"),
        labels=tuple(labels) if labels else None,
    )


def _read_manifest(folder: Path) -> dict:
    file = folder / "manifest.json"
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise AdapterInvalid(f"{file}: not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


class AdapterCatalog:
    """Name -> adapter, with monotonically increasing engine ids (never reused)."""

    def __init__(self, base_name: str, max_rank: int, base_fingerprint: str) -> None:
        self.base_name = base_name
        self.base_fingerprint = base_fingerprint
        self.max_rank = max_rank
        self._adapters: dict[str, Adapter] = {}
        self._ids = itertools.count(1)
        self.created = int(time.time())

    def add(self, name: str, path: Path) -> Adapter:
        if name == self.base_name or name in self._adapters:
            raise AdapterInvalid(f"adapter name {name!r} is already in use")
        adapter = read_adapter(name, path, next(self._ids), self.max_rank, self.base_fingerprint)
        self._adapters[name] = adapter
        return adapter

    def all(self) -> list[Adapter]:
        return list(self._adapters.values())

    def resolve(self, model: str | None) -> Adapter | None:
        """None means the base model; unknown names are a 404, never a silent fallback."""
        if model is None or model == self.base_name:
            return None
        adapter = self._adapters.get(model)
        if adapter is None:
            raise errors.AdapterNotFound(f"the model {model!r} does not exist", param="model")
        return adapter
