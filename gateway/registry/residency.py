"""Which adapter versions are loaded in the engine, and who is using them.

vLLM keeps up to ``max_cpu_loras`` adapters loaded (``max_loras`` of them active in a
batch). Its own server only forgets a name on unload; here ``remove_lora`` really frees
the slot. Each request holds a lease on the version it was admitted with, so a promote
or an eviction never pulls weights from under a running request: eviction takes the
least recently used version that no request holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway import errors
from gateway.engine.types import EngineClient, LoraRef


@dataclass
class _Slot:
    lora: LoraRef
    leases: int = 0


class Residency:
    def __init__(self, engine: EngineClient, capacity: int) -> None:
        self.engine = engine
        self.capacity = capacity
        self._slots: OrderedDict[int, _Slot] = OrderedDict()  # LRU first
        self._lock = asyncio.Lock()  # one load/unload at a time; loads take ~20 ms
        self.events: Counter[str] = Counter()  # loads, unloads, evictions
        self.on_event: Callable[[str, str], None] = lambda adapter, event: None  # for metrics

    def is_loaded(self, lora_id: int) -> bool:
        return lora_id in self._slots

    def leases(self, lora_id: int) -> int:
        slot = self._slots.get(lora_id)
        return slot.leases if slot else 0

    @property
    def num_loaded(self) -> int:
        return len(self._slots)

    async def acquire(self, lora: LoraRef) -> None:
        """Load ``lora`` if needed and hold it until ``release``."""
        slot = self._slots.get(lora.lora_id)
        if slot is None:
            async with self._lock:
                slot = self._slots.get(lora.lora_id)
                if slot is None:
                    await self._make_room()
                    await self.engine.add_lora(lora)
                    slot = _Slot(lora)
                    self._slots[lora.lora_id] = slot
                    self._event(lora.name, "loads")
        slot.leases += 1
        self._slots.move_to_end(lora.lora_id)

    def release(self, lora_id: int) -> None:
        slot = self._slots.get(lora_id)
        if slot is not None and slot.leases > 0:
            slot.leases -= 1

    async def load(self, lora: LoraRef) -> bool:
        """Make ``lora`` resident without holding it. True if it was not loaded before."""
        was_loaded = self.is_loaded(lora.lora_id)
        await self.acquire(lora)
        self.release(lora.lora_id)
        return not was_loaded

    async def unload(self, lora_id: int) -> bool:
        """Free the engine slot; refused while requests hold the version."""
        async with self._lock:
            slot = self._slots.get(lora_id)
            if slot is None:
                return False
            if slot.leases:
                raise errors.Conflict(
                    f"{slot.lora.name} has {slot.leases} requests running; retry when they end"
                )
            await self._remove(lora_id)
            self._event(slot.lora.name, "unloads")
            return True

    async def _make_room(self) -> None:
        while len(self._slots) >= self.capacity:
            victim = next((i for i, s in self._slots.items() if s.leases == 0), None)
            if victim is None:
                raise errors.AdapterUnavailable(
                    f"all {self.capacity} adapter slots are serving requests; retry shortly"
                )
            name = self._slots[victim].lora.name
            await self._remove(victim)
            self._event(name, "evictions")

    def _event(self, lora_name: str, event: str) -> None:
        self.events[event] += 1
        self.on_event(lora_name.partition("@")[0], event)

    async def _remove(self, lora_id: int) -> None:
        del self._slots[lora_id]  # first: no request may lease it while the engine frees it
        await self.engine.remove_lora(lora_id)
