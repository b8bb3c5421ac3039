"""Node outputs kept across runs, keyed by input signature, least recently used first out.

Each device has a byte budget. Over an accelerator's budget, the oldest entries move to the CPU; over the
CPU budget, the oldest entries are dropped. Entries in use by a running prompt are pinned.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphcore.sizing import CPU, measure, to_cpu

DEFAULT_CPU_BUDGET = 4 * 1024**3
DEFAULT_ACCELERATOR_BUDGET = 2 * 1024**3


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None
    sizes: dict[str, int] = field(default_factory=dict)
    pins: int = 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    offloads: int = 0


class OutputCache:
    def __init__(self, budgets: Mapping[str, int] | None = None) -> None:
        self.budgets = dict(budgets or {})
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._used: dict[str, int] = {}
        self._lock = threading.RLock()
        self.stats = CacheStats()

    def budget(self, device: str) -> int:
        if device in self.budgets:
            return self.budgets[device]
        device_type = device.split(":")[0]
        if device_type in self.budgets:
            return self.budgets[device_type]
        return DEFAULT_CPU_BUDGET if device_type == CPU else DEFAULT_ACCELERATOR_BUDGET

    def used(self, device: str = CPU) -> int:
        return self._used.get(device, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def get(self, key: bytes) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry

    def pin(self, key: bytes) -> None:
        with self._lock:
            if key in self._entries:
                self._entries[key].pins += 1

    def unpin(self, key: bytes) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.pins > 0:
                entry.pins -= 1
        self._enforce()

    def put(self, key: bytes, outputs: tuple[Any, ...], ui: dict[str, Any] | None = None) -> bool:
        """Store outputs; False when they alone exceed a budget (then they are not kept)."""
        sizes = measure((outputs, ui))
        if any(nbytes > self.budget(device) for device, nbytes in sizes.items()):
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._account(old.sizes, -1)
            self._entries[key] = CacheEntry(outputs, ui, sizes)
            self._account(sizes, +1)
        self._enforce()
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.pins == 0]:
                self._drop(key)

    def _account(self, sizes: Mapping[str, int], sign: int) -> None:
        for device, nbytes in sizes.items():
            self._used[device] = self._used.get(device, 0) + sign * nbytes

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._account(entry.sizes, -1)
        self.stats.evictions += 1

    def _enforce(self) -> None:
        with self._lock:
            for device in [d for d in self._used if d != CPU]:
                self._shrink(device, offload=True)
            self._shrink(CPU, offload=False)

    def _shrink(self, device: str, offload: bool) -> None:
        if self._used.get(device, 0) <= self.budget(device):
            return
        for key in list(self._entries):
            if self._used.get(device, 0) <= self.budget(device):
                break
            entry = self._entries[key]
            if entry.pins or device not in entry.sizes:
                continue
            if offload:
                self._account(entry.sizes, -1)
                entry.outputs = to_cpu(entry.outputs)
                entry.sizes = measure((entry.outputs, entry.ui))
                self._account(entry.sizes, +1)
                self.stats.offloads += 1
            else:
                self._drop(key)
