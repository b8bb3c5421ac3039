"""Sampling mathematics: σ tables, schedules, k-diffusion samplers, seeded noise, the KSampler run.

Importing this package does not import torch; the names below load their module on first use, and
`nodes.samplers.names` gives the widget choices without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SAMPLERS": "nodes.samplers.k_samplers",
    "SamplerSpec": "nodes.samplers.k_samplers",
    "SCHEDULERS": "nodes.samplers.schedules",
    "schedule_sigmas": "nodes.samplers.schedules",
    "advanced_sigmas": "nodes.samplers.schedules",
    "ModelSigmas": "nodes.samplers.model_sigmas",
    "sd_model_sigmas": "nodes.samplers.model_sigmas",
    "sample": "nodes.samplers.run",
    "prepare_mask": "nodes.samplers.run",
    "prepare_noise": "nodes.samplers.noise",
    "SAMPLER_NAMES": "nodes.samplers.names",
    "SCHEDULER_NAMES": "nodes.samplers.names",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nodes.samplers' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
