"""diffgraph's node library. Importing it (and listing its nodes) never imports torch or diffusers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from graphcore import folders, hooks

# Before any diffusers/transformers import anywhere in the process: never reach for a model hub. A
# missing file then fails at once with a clear error instead of a ~24 s network time-out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
for _kind in ("checkpoints", "loras", "controlnet"):
    folders.register_builtin_root(_kind, DEMO_DIR / _kind)


def node_classes() -> list[type]:
    """Every node class of the built-in library (the `diffgraph.nodes` entry point)."""
    from nodes.catalog import all_node_classes

    return all_node_classes()


@hooks.on_free
def _free_models(unload_models: bool, free_memory: bool) -> None:
    manager = sys.modules.get("nodes.sd.model_manager")
    if manager is not None:
        manager.free(unload_models, free_memory)
    torch = sys.modules.get("torch")
    if free_memory and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@hooks.on_device_stats
def _device_stats() -> list[dict]:
    if "torch" not in sys.modules:  # not loaded yet: don't make a status request pay for importing torch
        return [{"name": "cpu (torch not loaded yet)", "type": "cpu", "index": 0, "vram_total": 0,
                 "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]
    from nodes.sd.devices import device_stats

    return device_stats()
