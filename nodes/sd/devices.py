"""Which device computes, and in which dtype. CUDA, then MPS, then CPU; DIFFGRAPH_DEVICE overrides."""

from __future__ import annotations

import os
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def compute_device() -> torch.device:
    forced = os.environ.get("DIFFGRAPH_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def offload_device() -> torch.device:
    return torch.device("cpu")


def default_dtype(device: torch.device | None = None) -> torch.dtype:
    """fp16 on accelerators, fp32 on the CPU (fp16 matmuls on CPU are slow and imprecise)."""
    device = device or compute_device()
    forced = os.environ.get("DIFFGRAPH_DTYPE")
    if forced:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[forced]
    return torch.float32 if device.type == "cpu" else torch.float16


def vae_dtype(device: torch.device | None = None, sdxl: bool = False) -> torch.dtype:
    """SDXL's VAE overflows in fp16 (NaNs): bf16 where supported, else fp32."""
    device = device or compute_device()
    if device.type == "cpu":
        return torch.float32
    if sdxl:
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return default_dtype(device)


def device_stats() -> list[dict]:
    """For /system_stats: the compute device with its memory (ComfyUI's shape)."""
    device = compute_device()
    entry = {"name": str(device), "type": device.type, "index": device.index or 0,
             "vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device)
        allocated = torch.cuda.memory_allocated(device)
        entry.update(name=torch.cuda.get_device_name(device), vram_total=total, vram_free=free,
                     torch_vram_total=reserved, torch_vram_free=reserved - allocated)
    return [entry]
