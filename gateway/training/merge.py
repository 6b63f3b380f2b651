"""``gateway adapters merge``: fold one LoRA version into its base, as a new base model.

A single-tenant deployment that serves one adapter pays for LoRA on every token; merged,
the update is in the weights and the engine runs no LoRA at all. The result is a new
model family: its fingerprint is its own, so adapters trained on the old base are refused
on it. Its ``provenance.json`` records what went in (the adapter, the base family, the
tools) and what ``/v1/classify`` needs to serve it as the adapter was trained (labels,
system prompt). Like every writer of a model folder it stages next to the target and
renames once, so ``--out`` holds a whole merged model or nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.fileio import make_readable, write_json_atomic
from gateway.models import MANIFEST, ModelInfo, fingerprint_dir, sha256_file
from gateway.models.files import file_hashes
from gateway.registry.publish import rename_noreplace
from gateway.registry.store import AdapterStore, AdapterVersion, store_limits
from gateway.training.manifest import tool_versions

KIND = "merged"  # the provenance ``kind`` of a model this module wrote
# The adapter manifest's blocks ``/v1/classify`` serves an adapter by (label set, prompt,
# schema, decision tokens, calibration, escalation), copied as they are: the merged
# model's ``classify`` section reads with the same rules, and a block absent stays absent.
CLASSIFY_KEYS = (
    "labels", "system_prompt", "schema", "answer", "calibration", "escalation", "lexicon",
)  # fmt: skip


class MergeRefused(ValueError):
    """The merge cannot be done as asked; the message says why, for the user."""


@dataclass(frozen=True)
class MergedModel:
    path: Path
    fingerprint: str  # the new family's: what adapters trained on this model record


def require_free(out: Path) -> None:
    """A merge never replaces a folder: it may be a model something is serving."""
    if out.exists() or out.is_symlink():
        raise _taken(out)


def _taken(out: Path) -> MergeRefused:
    return MergeRefused(f"{out} already exists; a merge never replaces a folder")


def merge_adapter(
    settings: Settings, base: ModelInfo, name: str, version: str, out: Path
) -> MergedModel:
    """Merge ``name/version`` of the adapter store into the unquantized weights of
    ``base``'s family and write the result to ``out``.

    The store validates the version as a gateway serving ``base`` would, which refuses
    an adapter trained on another family; a quantized ``base`` is merged through its
    unquantized source, since a LoRA update is to dense weights.
    """
    store = AdapterStore(settings.adapter_store, store_limits(settings, base))
    adapter = store.inspect(name, version)
    require_free(out)
    source = base.unquantized()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".merge-{out.name}-", dir=out.parent))
    except OSError as exc:
        raise MergeRefused(f"cannot write next to --out {out}: {exc}") from exc
    try:
        _merge_weights(source.path, adapter, staged)
        fingerprint = fingerprint_dir(staged)
        provenance = _provenance(adapter, source, out.name, fingerprint, staged)
        write_json_atomic(staged / MANIFEST, provenance)
        make_readable(staged)
        try:
            rename_noreplace(staged, out)
        except FileExistsError:  # made while we merged
            raise _taken(out) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # already gone once renamed
    return MergedModel(out, fingerprint)


def _merge_weights(base_dir: Path, adapter: AdapterVersion, out: Path) -> None:
    """PEFT's merge, done in float32 and rounded once to the base's dtype: merging in bf16
    would round the update and then the sum."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    dtype = model.dtype
    with_adapter = PeftModel.from_pretrained(model.to(torch.float32), adapter.path)
    try:
        merged = with_adapter.merge_and_unload(safe_merge=True)  # refuses NaN weights
    except ValueError as exc:
        raise MergeRefused(f"adapter {adapter.name}/{adapter.version}: {exc}") from exc
    merged.to(dtype).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)


def _provenance(
    adapter: AdapterVersion, base: ModelInfo, name: str, fingerprint: str, folder: Path
) -> dict[str, Any]:
    manifest_path = adapter.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))  # the store checked it
    return {
        "kind": KIND,
        "name": name,
        "fingerprint": fingerprint,
        "adapter": {
            "name": adapter.name,
            "version": adapter.version,
            "rank": adapter.rank,
            "manifest_sha256": sha256_file(manifest_path),
            "weights_sha256": sha256_file(adapter.path / "adapter_model.safetensors"),
        },
        "base": {
            "name": base.name,
            "fingerprint": base.fingerprint,
            "variant": base.variant,
            "path": str(base.path),
        },
        "classify": {key: manifest[key] for key in CLASSIFY_KEYS if key in manifest},
        "versions": tool_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": file_hashes(folder),
    }
