"""Loaded modules shared by identity, moved to the compute device when used, offloaded when over budget.

Loading the same file with the same dtype twice returns the same `LoadedModule`. Nodes hold handles
(nodes.values) that point at these records; the sampler asks `use(...)` for the modules it needs, which
puts them on the compute device and, if the device's budget is exceeded, moves the least recently used
others back to the CPU.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from nodes.sd import devices


@dataclass(eq=False)
class LoadedModule:
    key: tuple[Any, ...]
    module: torch.nn.Module
    label: str
    nbytes: int = 0
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.module.parameters():
            return tensor.dtype
        return torch.float32

    def cache_nbytes(self) -> dict[str, int]:
        return {}


def module_nbytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.parameters()) + sum(
        t.numel() * t.element_size() for t in module.buffers()
    )


def _budget_from_env() -> int | None:
    text = os.environ.get("DIFFGRAPH_VRAM_BUDGET_MB")
    return int(text) * 1024 * 1024 if text else None


class ModelManager:
    def __init__(self, device: torch.device | None = None, budget_bytes: int | None = None) -> None:
        self.device = device or devices.compute_device()
        self.budget_bytes = budget_bytes if budget_bytes is not None else _budget_from_env()
        self._loaded: dict[tuple[Any, ...], LoadedModule] = {}
        self._lock = threading.RLock()
        self.loads = 0  # how many times a factory ran (for benchmarks and tests)
        self.offloads = 0

    def load(self, key: tuple[Any, ...], label: str, factory: Callable[[], torch.nn.Module]) -> LoadedModule:
        """The module for `key`, built by `factory` the first time (on the CPU, in eval mode)."""
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                return found
            module = factory()
            module.eval().requires_grad_(False)
            loaded = LoadedModule(key, module, label, module_nbytes(module))
            self._loaded[key] = loaded
            self.loads += 1
            return loaded

    def loaded(self) -> list[LoadedModule]:
        return list(self._loaded.values())

    @contextmanager
    def use(self, *records: LoadedModule) -> Iterator[tuple[torch.nn.Module, ...]]:
        """The records' modules on the compute device for the duration of the block."""
        with self._lock:
            for record in records:
                record.users += 1
                record.last_used = time.monotonic()
            self._make_room(sum(r.nbytes for r in records if r.device != self.device), keep=records)
            for record in records:
                if record.device != self.device:
                    record.module.to(self.device)
        try:
            yield tuple(r.module for r in records)
        finally:
            with self._lock:
                for record in records:
                    record.users -= 1
                    record.last_used = time.monotonic()

    def resident_bytes(self) -> int:
        return sum(r.nbytes for r in self._loaded.values() if r.device == self.device)

    def _make_room(self, incoming: int, keep: tuple[LoadedModule, ...]) -> None:
        if self.budget_bytes is None or self.device.type == "cpu":
            return
        candidates = sorted(
            (r for r in self._loaded.values() if r.device == self.device and r.users == 0 and r not in keep),
            key=lambda r: r.last_used,
        )
        for record in candidates:
            if self.resident_bytes() + incoming <= self.budget_bytes:
                break
            record.module.to(devices.offload_device())
            self.offloads += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def unload_all(self) -> None:
        """Forget every module not in use (handles still referencing them keep them alive)."""
        with self._lock:
            for key in [k for k, r in self._loaded.items() if r.users == 0]:
                record = self._loaded.pop(key)
                record.module.to(devices.offload_device())
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


_manager: ModelManager | None = None
_manager_lock = threading.Lock()


def manager() -> ModelManager:
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = ModelManager()
        return _manager


def free(unload_models: bool, free_memory: bool) -> None:
    if unload_models and _manager is not None:
        _manager.unload_all()
