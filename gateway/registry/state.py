"""Which versions are registered and which one each adapter name points at.

The state is small and written whole on every change: a temp file in the same folder,
fsync, then ``os.replace``. A process killed at any moment leaves either the old or
the new file, never a torn one, so a restart always finds a consistent registry.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.fileio import write_json_atomic

FORMAT = 1


@dataclass
class AliasState:
    """One adapter name: its registered versions, the current one, and rollback history."""

    versions: list[str] = field(default_factory=list)
    current: str | None = None
    history: list[str] = field(default_factory=list)  # previous currents, newest last
    canary: str | None = None  # a second version that takes ``canary_weight`` of requests
    canary_weight: float = 0.0
    rev: int = 0  # the shared store's row version (0: not stored there yet; files: unused)
    # The tenant whose fine-tuning job made the adapter (its first version); None: the
    # operator's (config, admin API, upload). Only an owner's jobs may promote.
    owner: str | None = None
    # What a job measured of a version: {"held_out": <key of the validation data>,
    # "accuracy": <float>}. A job promotes only over a current version scored on the
    # same held-out data, so the two numbers are comparable.
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "versions": self.versions, "current": self.current, "history": self.history
        }  # fmt: skip
        if self.canary is not None:
            body.update(canary=self.canary, canary_weight=self.canary_weight)
        if self.owner is not None:
            body["owner"] = self.owner
        if self.scores:
            body["scores"] = self.scores
        return body


class RegistryState:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.aliases: dict[str, AliasState] = {}

    @classmethod
    def load(cls, path: Path | None) -> RegistryState:
        state = cls(path)
        if path is None:
            return state
        _remove_stale_temp_files(path)
        if not path.exists():
            return state
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            for name, alias in raw["adapters"].items():
                state.aliases[name] = AliasState(
                    versions=list(alias["versions"]),
                    current=alias["current"],
                    history=list(alias["history"]),
                    canary=alias.get("canary"),
                    canary_weight=float(alias.get("canary_weight", 0.0)),
                    owner=_text_or_none(alias.get("owner")),
                    scores=_scores(alias.get("scores", {})),
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"registry state {path} is unreadable: {exc}") from exc
        return state

    def snapshot(self) -> dict[str, AliasState]:
        return copy.deepcopy(self.aliases)

    def commit(self, aliases: dict[str, AliasState], action: str = "change") -> None:
        """Persist ``aliases`` first, then adopt them: a failed write changes nothing.
        ``action`` names the change for a store that keeps a history (Postgres)."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = {"format": FORMAT, "adapters": {k: v.as_dict() for k, v in aliases.items()}}
            write_json_atomic(self.path, body)
        self.aliases = aliases


def _text_or_none(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"owner {value!r} is not a name")
    return value


def _scores(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ValueError("scores must be an object")
    for version, score in raw.items():
        if not (isinstance(score, dict) and isinstance(score.get("held_out"), str)
                and isinstance(score.get("accuracy"), int | float)):  # fmt: skip
            raise ValueError(f"score of {version!r} must have held_out and accuracy")
    return {str(k): dict(v) for k, v in raw.items()}


def _remove_stale_temp_files(path: Path, min_age_s: float = 60) -> None:
    """A writer killed between temp file and rename leaves its temp file behind."""
    now = time.time()
    for stale in path.parent.glob(f".{path.name}-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > min_age_s:
                stale.unlink()


def add_version(
    aliases: dict[str, AliasState],
    name: str,
    version: str,
    owner: str | None = None,
    score: dict[str, Any] | None = None,
) -> bool:
    """Register ``version``; the first version of a name becomes current. True if new.

    ``owner``: the tenant whose job made it (None: the operator). A new name becomes
    that tenant's; a tenant adds versions only to its own adapters or the operator's
    (there they stay its private versions: only the operator promotes them)."""
    alias = aliases.get(name)
    if alias is not None and owner is not None and alias.owner not in (None, owner):
        raise errors.AdapterForbidden(
            f"the adapter {name!r} belongs to another tenant", param="model"
        )
    alias = aliases.setdefault(name, AliasState(owner=owner))
    if version in alias.versions:
        return False
    if score is not None:
        alias.scores[version] = score
    alias.versions.append(version)
    if alias.current is None:
        alias.current = version
    return True


def promote(aliases: dict[str, AliasState], name: str, version: str) -> str | None:
    alias = _alias(aliases, name)
    if version not in alias.versions:
        raise errors.AdapterNotFound(f"adapter {name!r} has no version {version!r}")
    previous = alias.current
    if previous != version:
        if previous is not None:
            alias.history.append(previous)
        alias.current = version
    alias.canary, alias.canary_weight = None, 0.0  # a promotion ends any canary
    return previous


def promotion_refusal(
    aliases: dict[str, AliasState], name: str, version: str, owner: str | None
) -> str | None:
    """Why a job of ``owner`` may not make ``version`` current (None: it may).

    Only the adapter's owner promotes (a shared adapter is the operator's), and only a
    version at least as good as the current one on the same held-out data: both scored
    by a job on identical validation data (same content and answer format). A current
    version with no such score is never replaced by a job: there is nothing to compare."""
    alias = _alias(aliases, name)
    if version not in alias.versions:
        return f"{name} has no version {version}"
    if alias.owner != owner:
        whose = "the operator's" if alias.owner is None else "another tenant's"
        return f"{name} is {whose} adapter; only its owner promotes"
    if alias.current in (None, version):
        return None
    new, old = alias.scores.get(version), alias.scores.get(alias.current)
    if new is None:
        return f"{name}@{version} has no score on held-out data"
    if old is None or old["held_out"] != new["held_out"]:
        return (f"the current version {alias.current} was not scored on this job's "
                "held-out data, so the two cannot be compared")  # fmt: skip
    if new["accuracy"] < old["accuracy"]:
        return (f"its held-out accuracy {new['accuracy']:.3f} is below the current version "
                f"{alias.current}'s {old['accuracy']:.3f} on the same data")  # fmt: skip
    return None


def set_canary(
    aliases: dict[str, AliasState], name: str, version: str | None, weight: float
) -> AliasState:
    """Send ``weight`` of the alias's requests to ``version`` (None: end the canary)."""
    alias = _alias(aliases, name)
    if version is None:
        alias.canary, alias.canary_weight = None, 0.0
        return alias
    if version not in alias.versions:
        raise errors.AdapterNotFound(f"adapter {name!r} has no version {version!r}")
    if version == alias.current:
        raise errors.Conflict(f"{name}/{version} is already the current version")
    if not 0.0 < weight < 1.0:
        raise errors.InvalidRequest("a canary's weight must be between 0 and 1", param="weight")
    alias.canary, alias.canary_weight = version, weight
    return alias


def rollback(aliases: dict[str, AliasState], name: str) -> tuple[str | None, str]:
    alias = _alias(aliases, name)
    while alias.history and alias.history[-1] not in alias.versions:
        alias.history.pop()  # a deleted version cannot be rolled back to
    if not alias.history:
        raise errors.Conflict(f"adapter {name!r} has no earlier version to roll back to")
    previous, alias.current = alias.current, alias.history.pop()
    alias.canary, alias.canary_weight = None, 0.0
    return previous, alias.current


def remove_version(aliases: dict[str, AliasState], name: str, version: str) -> None:
    alias = _alias(aliases, name)
    if version not in alias.versions:
        raise errors.AdapterNotFound(f"adapter {name!r} has no version {version!r}")
    if alias.current == version:
        raise errors.Conflict(
            f"{name}/{version} is the current version; promote another version first"
        )
    if alias.canary == version:
        raise errors.Conflict(f"{name}/{version} is the alias's canary; end the canary first")
    alias.versions.remove(version)
    alias.history = [v for v in alias.history if v != version]
    alias.scores.pop(version, None)
    if not alias.versions:
        del aliases[name]


def remove_adapter(aliases: dict[str, AliasState], name: str) -> list[str]:
    """Unregister ``name`` and every version of it; returns the versions."""
    versions = list(_alias(aliases, name).versions)
    del aliases[name]
    return versions


def _alias(aliases: dict[str, AliasState], name: str) -> AliasState:
    alias = aliases.get(name)
    if alias is None:
        raise errors.AdapterNotFound(f"the adapter {name!r} does not exist", param="name")
    return alias
