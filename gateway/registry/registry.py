"""The adapter registry: validated versions, aliases, and engine residency together.

Requests resolve a name to its current version once, at admission, and hold a lease
on that version until they finish; ``promote`` and ``rollback`` only move the alias,
so running requests finish on the version they started with and new ones get the new
one. Mutations of one name are serialised by a per-name lock (as vLLM's server does)
and persisted before they take effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.engine.types import EngineClient, LoraRef
from gateway.registry import state as st
from gateway.registry.leftovers import remove_folder, remove_unregistered, sweep_trash
from gateway.registry.residency import Residency
from gateway.registry.store import AdapterStore, AdapterVersion, check_name
from gateway.registry.upload import install_archive

log = logging.getLogger(__name__)


class AdapterRegistry:
    def __init__(
        self, store: AdapterStore, state: st.RegistryState, engine: EngineClient, capacity: int
    ) -> None:
        self.store = store
        self.state = state
        self.residency = Residency(engine, capacity)
        self.created = int(time.time())
        self._versions: dict[tuple[str, str], AdapterVersion] = {}
        self._lora_ids: dict[tuple[str, str], int] = {}
        self._next_id = itertools.count(1)  # never reused, as vLLM requires
        self._locks: dict[str, asyncio.Lock] = {}
        self._writing: set[asyncio.Future[None]] = set()  # state writes not yet ended
        # Shared mode (Postgres + object storage): uploads a new version's files and
        # stages its record in the state before the commit that registers it.
        self.publisher: Callable[[AdapterVersion], Any] | None = None
        self._sha: dict[tuple[str, str], str] = {}  # shared mode: the verified object hash
        # shared mode: records refused for their content (hash, validation), by hash, so
        # each resync does not download the same bad object again
        self._refused: dict[tuple[str, str], tuple[str, str]] = {}
        self.pick: Callable[[], float] = random.random  # the canary's coin (tests fix it)
        # Shared mode with a bounded local cache: brings back a version's evicted files.
        self.refetch: Callable[[str, str], AdapterVersion] | None = None
        self.on_use: Callable[[str, str], None] | None = None  # the cache's recency

    # start-up -------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Re-validate every persisted version; unusable ones are dropped with a warning.
        Trash a delete killed half-way left behind goes first."""
        if swept := sweep_trash(self.store):
            log.warning("registry: removed %d half-deleted or stale staging folders", swept)
        problems: list[str] = []
        aliases = self.state.snapshot()
        for name, alias in list(aliases.items()):
            for version in list(alias.versions):
                try:
                    self._remember(self.store.inspect(name, version))
                except errors.GatewayError as exc:
                    problems.append(f"{name}/{version}: {exc.message}")
                    alias.versions.remove(version)
            alias.history = [v for v in alias.history if v in alias.versions]
            if alias.current not in alias.versions:
                alias.current = alias.history.pop() if alias.history else None
            if alias.current is None:
                del aliases[name]
        if problems:
            for problem in problems:
                log.warning("registry: dropped %s", problem)
            self.state.commit(aliases)
        return problems

    def ensure(self, name: str, version: str) -> AdapterVersion:
        """Register ``name/version`` if it is not yet (start-up configuration)."""
        key = (name, version)
        if key in self._versions:
            return self._versions[key]
        found = self.store.inspect(name, version)
        aliases = self.state.snapshot()
        if st.add_version(aliases, name, version):
            self.state.commit(aliases)
        return self._remember(found)

    # lookups --------------------------------------------------------------------------
    def current(self, name: str) -> AdapterVersion:
        """The version a request for ``name`` gets: the current one, or, for a share of
        requests equal to the canary's weight, the canary (the answer's
        X-Gateway-Adapter-Version header says which)."""
        alias = self.state.aliases.get(name)
        if alias is None or alias.current is None:
            raise errors.AdapterNotFound(f"the model {name!r} does not exist", param="model")
        if alias.canary is not None and self.pick() < alias.canary_weight:
            return self._versions[(name, alias.canary)]
        return self._versions[(name, alias.current)]

    def version(self, name: str, version: str | None) -> AdapterVersion:
        """A registered version (None: the current one)."""
        if version is None:
            return self.current(name)
        found = self._versions.get((name, version))
        if found is None:
            raise errors.AdapterNotFound(f"adapter {name!r} has no version {version!r}")
        return found

    def names(self) -> list[str]:
        return list(self.state.aliases)

    def lora_ref(self, found: AdapterVersion) -> LoraRef:
        key = (found.name, found.version)
        return LoraRef(f"{found.name}@{found.version}", self._lora_ids[key], str(found.path))

    @asynccontextmanager
    async def lease(self, found: AdapterVersion) -> AsyncIterator[LoraRef]:
        """Hold ``found`` loaded in the engine for the duration of one request."""
        ref = self.lora_ref(found)
        await self._on_disk(found)
        if self.on_use is not None:
            self.on_use(found.name, found.version)
        await self.residency.acquire(ref)
        try:
            yield ref
        finally:
            self.residency.release(ref.lora_id)

    # mutations (admin API) ------------------------------------------------------------
    async def register(
        self, name: str, version: str, owner: str | None = None, score: dict | None = None
    ) -> dict[str, Any]:
        """``owner``: the tenant whose job made it (None: the operator); ``score``: what
        the job measured on its held-out data (``st.promotion_refusal`` compares them)."""
        async with self._lock(name):
            found = self.store.inspect(name, version)
            aliases = self.state.snapshot()
            if not st.add_version(aliases, name, version, owner, score):
                raise errors.Conflict(f"{name}/{version} is already registered")
            await self._publish(found)
            await self._commit(aliases, "register")
            self._remember(found)
            return {"registered": f"{name}/{version}", "current": aliases[name].current}

    async def register_archive(self, name: str, version: str, archive: Path) -> dict[str, Any]:
        """Unpack an uploaded tar archive as ``name/version``, validate, then register."""
        async with self._lock(name):
            found = await asyncio.to_thread(install_archive, self.store, name, version, archive)
            aliases = self.state.snapshot()
            st.add_version(aliases, name, version)
            await self._publish(found)
            await self._commit(aliases, "register")
            self._remember(found)
            return {"registered": f"{name}/{version}", "current": aliases[name].current,
                    "size_bytes": found.size_bytes}  # fmt: skip

    async def promote(self, name: str, version: str) -> dict[str, Any]:
        async with self._lock(name):
            return await self._promote(name, version)

    async def promote_earned(self, name: str, version: str, owner: str | None) -> str | None:
        """A fine-tuning job's promotion: done, and None, only if ``st.promotion_refusal``
        finds none (checked under the name's lock, against the state of that moment);
        otherwise the reason, and nothing changes."""
        async with self._lock(name):
            check_name(version, "version")
            refusal = st.promotion_refusal(self.state.snapshot(), name, version, owner)
            if refusal is None:
                await self._promote(name, version)
            return refusal

    async def _promote(self, name: str, version: str) -> dict[str, Any]:
        check_name(version, "version")
        aliases = self.state.snapshot()
        previous = st.promote(aliases, name, version)
        await self._on_disk(self._versions[(name, version)])
        await self.residency.load(self.lora_ref(self._versions[(name, version)]))
        await self._commit(aliases, "promote")  # warm first, then switch: no cold start
        return {"name": name, "previous": previous, "current": version}

    async def set_canary(self, name: str, version: str | None, weight: float) -> dict[str, Any]:
        """Send ``weight`` of ``name``'s requests to ``version`` (None ends the canary)."""
        async with self._lock(name):
            aliases = self.state.snapshot()
            alias = st.set_canary(aliases, name, version, weight)
            if version is not None:
                await self._on_disk(self._versions[(name, version)])
                await self.residency.load(self.lora_ref(self._versions[(name, version)]))
            await self._commit(aliases, "canary" if version else "canary_end")
            return {"name": name, "current": alias.current, "canary": alias.canary,
                    "canary_weight": alias.canary_weight}  # fmt: skip

    async def rollback(self, name: str) -> dict[str, Any]:
        async with self._lock(name):
            aliases = self.state.snapshot()
            previous, current = st.rollback(aliases, name)
            await self._on_disk(self._versions[(name, current)])
            await self.residency.load(self.lora_ref(self._versions[(name, current)]))
            await self._commit(aliases, "rollback")
            return {"name": name, "previous": previous, "current": current}

    def is_registered(self, name: str, version: str) -> bool:
        return (name, version) in self._versions

    def is_persisted(self, name: str, version: str) -> bool:
        """Registered in the state on disk (or in Postgres): what survives a crash."""
        alias = self.state.aliases.get(name)
        return alias is not None and version in alias.versions

    def is_writing(self) -> bool:
        """A state write is still running (its caller may have been cancelled)."""
        return bool(self._writing)

    def current_of(self, name: str) -> str | None:
        alias = self.state.aliases.get(name)
        return None if alias is None else alias.current

    def adapter_owner(self, name: str) -> tuple[bool, str | None]:
        """(whether ``name`` exists, its owner: a tenant, or None for the operator)."""
        alias = self.state.aliases.get(name)
        return (False, None) if alias is None else (True, alias.owner)

    def discard_unregistered(self, name: str, version: str) -> list[str]:
        """Remove what a stopped publisher (a fine-tuning job) left for ``name/version``,
        unless that version is registered: then nothing is touched. Synchronous on the
        event loop thread, so no mutation of this registry interleaves with it; a
        registration in flight for the same name (its lock held) is left alone too."""
        lock = self._locks.get(name)
        if self.is_persisted(name, version) or self.is_registered(name, version):
            return []
        if self._writing or (lock is not None and lock.locked()):
            log.warning("registry: %s/%s is being changed; its leftovers stay", name, version)
            return []
        return remove_unregistered(self.store, name, version)

    async def load(self, name: str, version: str | None = None) -> dict[str, Any]:
        found = self.version(name, version)
        await self._on_disk(found)
        loaded = await self.residency.load(self.lora_ref(found))
        return {"loaded": f"{found.name}/{found.version}", "changed": loaded}

    async def unload(self, name: str, version: str | None = None) -> dict[str, Any]:
        found = self.version(name, version)
        unloaded = await self.residency.unload(self._lora_ids[(found.name, found.version)])
        return {"unloaded": f"{found.name}/{found.version}", "changed": unloaded}

    async def delete(self, name: str, version: str) -> dict[str, Any]:
        """Unregister and remove the files; refused for a current or busy version."""
        async with self._lock(name):
            found = self.version(name, version)
            aliases = self.state.snapshot()
            st.remove_version(aliases, name, version)
            await self.residency.unload(self._lora_ids[(name, version)])
            await self._commit(aliases, "delete_version")
            del self._versions[(name, version)]
            remove_folder(found.path)  # atomic: the version vanishes whole
            current = aliases[name].current if name in aliases else None
            return {"deleted": f"{name}/{version}", "current": current}

    async def delete_adapter(self, name: str) -> dict[str, Any]:
        """Unregister an adapter and remove every registered version's files, the current
        one too; refused (409, nothing removed) while a request holds any version. Files
        in the store that were never registered are left alone."""
        async with self._lock(name):
            aliases = self.state.snapshot()
            versions = st.remove_adapter(aliases, name)
            ids = [self._lora_ids[(name, version)] for version in versions]
            busy = [v for v, i in zip(versions, ids, strict=True) if self.residency.leases(i)]
            if busy:
                raise errors.Conflict(
                    f"{name} has requests running on {', '.join(busy)}; retry when they end"
                )
            for lora_id in ids:
                await self.residency.unload(lora_id)
            await self._commit(aliases, "delete")
            for version in versions:
                remove_folder(self._versions.pop((name, version)).path)  # each whole
            with contextlib.suppress(OSError):
                (self.store.root / name).rmdir()  # only if nothing else is there
            return {"deleted": name, "versions": versions}

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, alias in self.state.aliases.items():
            versions = []
            for version in alias.versions:
                found = self._versions[(name, version)]
                lora_id = self._lora_ids[(name, version)]
                versions.append({
                    "version": version,
                    "rank": found.rank,
                    "size_bytes": found.size_bytes,
                    "labels": len(found.labels or ()),
                    "loaded": self.residency.is_loaded(lora_id),
                    "requests_running": self.residency.leases(lora_id),
                })  # fmt: skip
            entry = {"name": name, "current": alias.current, "history": alias.history,
                     "versions": versions}  # fmt: skip
            if alias.canary is not None:
                entry.update(canary=alias.canary, canary_weight=alias.canary_weight)
            out.append(entry)
        return out

    # shared mode ----------------------------------------------------------------------
    async def adopt_shared(
        self, aliases: dict[str, st.AliasState], records: dict[tuple[str, str], Any],
        materialize: Callable[[Any], AdapterVersion],
    ) -> list[str]:  # fmt: skip
        """Take the shared state another replica (or this one) committed.

        Versions new to this replica are fetched and verified (``materialize``) before
        any alias may point at them; one that fails is reported and left out, and an
        alias whose current version failed keeps what this replica served before. A
        changed current version is loaded before the switch when the old one was loaded,
        so the first request after a promotion does not pay the load. Versions deleted
        elsewhere are forgotten once no request here holds them.
        """
        problems: list[str] = []
        usable: set[tuple[str, str]] = set()
        for key, record in records.items():
            have = self._versions.get(key)
            if have is not None and self._sha.get(key) == record.sha256 and have.path.is_dir():
                usable.add(key)
                continue
            refused = self._refused.get(key)
            if refused is not None and refused[0] == record.sha256:
                problems.append(refused[1])
                continue
            try:
                found = await asyncio.to_thread(materialize, record)
            except errors.GatewayError as exc:
                problems.append(f"{key[0]}/{key[1]}: {exc.message}")
                if isinstance(exc, errors.AdapterIntegrityFailed | errors.AdapterInvalid):
                    self._refused[key] = (record.sha256, problems[-1])
                    log.error("registry: not adopted %s", problems[-1])
                else:  # storage unreachable: tried again at the next resync
                    log.warning("registry: not adopted yet %s", problems[-1])
                continue
            self._remember(found)
            self._sha[key] = record.sha256
            usable.add(key)
        before = self.state.aliases
        adopted: dict[str, st.AliasState] = {}
        for name, shared in aliases.items():
            alias = copy.deepcopy(shared)
            alias.versions = [v for v in alias.versions if (name, v) in usable]
            if alias.canary is not None and (name, alias.canary) not in usable:
                alias.canary, alias.canary_weight = None, 0.0
            if alias.current not in alias.versions:
                if name in before:  # keep serving what we had; the failure is reported
                    adopted[name] = before[name]
                continue
            adopted[name] = alias
        for name, alias in adopted.items():
            old = before.get(name)
            if old is None or old.current == alias.current or old.current is None:
                continue
            old_id = self._lora_ids.get((name, old.current))
            if old_id is not None and self.residency.is_loaded(old_id):
                with contextlib.suppress(errors.GatewayError):
                    await self.residency.load(self.lora_ref(self._versions[(name, alias.current)]))
        kept = {k for k in usable if k[0] in adopted and k[1] in adopted[k[0]].versions}
        self.state.adopt(adopted, {k: v for k, v in records.items() if k in kept})  # type: ignore[attr-defined]
        for key in [k for k in self._versions if k not in kept]:
            lora_id = self._lora_ids[key]
            if not self.residency.leases(lora_id):
                await self.residency.unload(lora_id)
                del self._versions[key]
        return problems

    def busy_versions(self) -> set[tuple[str, str]]:
        """Versions loaded in the engine or held by a request: never evicted from disk."""
        return {
            key for key, lora_id in self._lora_ids.items()
            if self.residency.is_loaded(lora_id) or self.residency.leases(lora_id)
        }  # fmt: skip

    def mark_verified(self, name: str, version: str, sha256: str) -> None:
        self._sha[(name, version)] = sha256

    # internals ------------------------------------------------------------------------
    async def _on_disk(self, found: AdapterVersion) -> None:
        """A version whose files the local cache removed is fetched again first."""
        if self.refetch is not None and not found.path.is_dir():
            self._remember(await asyncio.to_thread(self.refetch, found.name, found.version))

    async def _publish(self, found: AdapterVersion) -> None:
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher, found)

    async def _commit(self, aliases: dict[str, st.AliasState], action: str) -> None:
        """The write happens in a thread: a database round trip must not stall requests.
        A cancelled caller does not stop that thread, so the write is tracked until it
        really ends (``discard_unregistered`` waits for none in flight)."""
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(None, self.state.commit, aliases, action)
        self._writing.add(write)
        write.add_done_callback(self._writing.discard)
        await asyncio.shield(write)

    def _remember(self, found: AdapterVersion) -> AdapterVersion:
        key = (found.name, found.version)
        self._versions[key] = found
        self._lora_ids.setdefault(key, next(self._next_id))
        return found

    def _lock(self, name: str) -> asyncio.Lock:
        check_name(name, "name")
        return self._locks.setdefault(name, asyncio.Lock())
