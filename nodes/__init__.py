"""diffgraph's node library. Importing it (and listing its nodes) never imports torch or diffusers."""

from __future__ import annotations

import os

# Before any diffusers/transformers import anywhere in the process: never reach for a model hub. A
# missing file then fails at once with a clear error instead of a ~24 s network time-out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def node_classes() -> list[type]:
    """Every node class of the built-in library (the `diffgraph.nodes` entry point)."""
    from nodes.catalog import all_node_classes

    return all_node_classes()
