"""Process-wide hooks that node packages register and the engine/server call, without graphcore
importing them: freeing memory (unload models) and describing compute devices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

FreeHook = Callable[[bool, bool], None]  # (unload_models, free_memory)
DeviceStats = Callable[[], list[dict[str, Any]]]

_free_hooks: list[FreeHook] = []
_device_stats: list[DeviceStats] = []


def on_free(hook: FreeHook) -> FreeHook:
    if hook not in _free_hooks:
        _free_hooks.append(hook)
    return hook


def remove_free(hook: FreeHook) -> None:
    if hook in _free_hooks:
        _free_hooks.remove(hook)


def on_device_stats(provider: DeviceStats) -> DeviceStats:
    if provider not in _device_stats:
        _device_stats.append(provider)
    return provider


def free(unload_models: bool = True, free_memory: bool = True) -> None:
    for hook in list(_free_hooks):
        try:
            hook(unload_models, free_memory)
        except Exception:
            log.exception("free hook %r failed", hook)


def device_stats() -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = []
    for provider in list(_device_stats):
        try:
            devices.extend(provider())
        except Exception:
            log.exception("device stats provider %r failed", provider)
    return devices
