"""How many bytes a cached value holds, per device, and how to move it off an accelerator.

Duck-typed so the engine needs no torch: a tensor is anything with `untyped_storage()` and `device`.
Objects that manage their own memory (model handles) define `cache_nbytes()` → {device: bytes}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

CPU = "cpu"


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "untyped_storage") and hasattr(value, "device") and hasattr(value, "to")


_SCALARS = frozenset({type(None), bool, int, float, str})


def measure(value: Any) -> dict[str, int]:
    if type(value) is tuple and all(
        type(item) in _SCALARS or (type(item) is tuple and all(type(x) in _SCALARS for x in item)) for item in value
    ):
        return {}  # (outputs, ui) of plain values: the common case for small nodes, decided without recursion
    sizes: dict[str, int] = {}
    seen: set[int] = set()
    _measure(value, sizes, seen)
    return sizes


def _add(sizes: dict[str, int], device: str, nbytes: int) -> None:
    if nbytes:
        sizes[device] = sizes.get(device, 0) + nbytes


def _measure(value: Any, sizes: dict[str, int], seen: set[int]) -> None:
    if type(value) in _SCALARS:
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    custom = getattr(value, "cache_nbytes", None)
    if callable(custom):
        for device, nbytes in custom().items():
            _add(sizes, device, nbytes)
        return
    if _is_tensor(value):
        storage = value.untyped_storage()
        key = storage.data_ptr()
        if key and key in seen:
            return
        seen.add(key)
        _add(sizes, str(value.device), storage.nbytes())
        return
    if isinstance(value, (bytes, bytearray)):
        _add(sizes, CPU, len(value))
    elif hasattr(value, "nbytes") and hasattr(value, "dtype"):  # numpy arrays
        _add(sizes, CPU, int(value.nbytes))
    elif hasattr(value, "size") and hasattr(value, "getbands"):  # PIL images
        width, height = value.size
        _add(sizes, CPU, width * height * len(value.getbands()))
    elif isinstance(value, Mapping):
        for item in value.values():
            _measure(item, sizes, seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _measure(item, sizes, seen)
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _measure(getattr(value, f.name), sizes, seen)


def to_cpu(value: Any) -> Any:
    """A copy of `value` with every accelerator tensor moved to the CPU (containers rebuilt)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    custom = getattr(value, "offloaded", None)
    if callable(custom):
        return custom()
    if _is_tensor(value):
        return value if str(value.device) == CPU else value.to(CPU)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: to_cpu(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value
