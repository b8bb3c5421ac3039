"""Loading an upscale model file safely and upscaling pictures with it in overlapping tiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.upscale.archs import Built, StateDict, build

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")  # BasicSR / training checkpoints nest the weights
TILE = 512
OVERLAP = 32


@dataclass(frozen=True)
class UpscaleModel:
    """UPSCALE_MODEL: an eval-mode module that maps [B, 3, H, W] in [0, 1] to [B, 3, H·scale, W·scale]."""

    module: Any
    scale: int
    architecture: str
    name: str

    def cache_nbytes(self) -> dict[str, int]:
        return {"cpu": sum(p.numel() * p.element_size() for p in self.module.parameters())}


def read_state_dict(path: Path) -> StateDict:
    """Tensors of a .safetensors file, or of a pickled .pth/.pt/.ckpt/.bin read with weights_only (no code runs)."""
    try:
        if path.suffix.lower() in (".safetensors", ".sft"):
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or a pickle that needs code: all the same to the user
        raise ValueError(f"{path.name}: not a readable model file ({type(exc).__name__}: {exc})") from None
    for key in WRAPPER_KEYS:
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path.name}: expected a dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _with_spandrel(sd: StateDict) -> Built | None:
    try:
        import spandrel
    except ImportError:
        return None
    descriptor = spandrel.ModelLoader().load_from_state_dict(sd)
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError("the model is not an image-to-image upscaler")
    return Built(descriptor.model, descriptor.scale, f"{descriptor.architecture.name} (spandrel)")


def load_upscale_model(path: Path, name: str) -> UpscaleModel:
    sd = read_state_dict(path)
    try:
        built = build(sd) or _with_spandrel(sd)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{name}: the weights do not fit the architecture they look like ({exc})") from None
    if built is None:
        raise ValueError(
            f"{name}: not an ESRGAN (RRDBNet) or Real-ESRGAN Compact model; other architectures need the "
            "'spandrel' package (with torchvision) installed"
        )
    return UpscaleModel(built.module.eval().requires_grad_(False), built.scale, built.architecture, name)


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1 inside, rising linearly over `fade` pixels from a side that another tile overlaps."""
    position = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if fade > 0 and fade_start:
        weight = torch.minimum(weight, (position + 1) / (fade + 1))
    if fade > 0 and fade_end:
        weight = torch.minimum(weight, (length - position) / (fade + 1))
    return weight


def upscale(model: UpscaleModel, image: torch.Tensor, tile: int = TILE, overlap: int = OVERLAP,
            progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """IMAGE [B, H, W, C] → IMAGE upscaled by the model, in tiles blended across their overlap, clamped to [0, 1]."""
    x = image.movedim(-1, 1).float()
    batch, _, height, width = x.shape
    s = model.scale
    ys, xs = _starts(height, tile, tile - overlap), _starts(width, tile, tile - overlap)
    out = torch.zeros(batch, 3, height * s, width * s)
    weights = torch.zeros(1, 1, height * s, width * s)
    done, total = 0, len(ys) * len(xs)
    with torch.no_grad():
        for y in ys:
            for x0 in xs:
                h, w = min(tile, height - y), min(tile, width - x0)
                piece = model.module(x[:, :, y:y + h, x0:x0 + w]).float()
                mask = _ramp(h * s, overlap * s, y > 0, y + h < height)[:, None] * _ramp(
                    w * s, overlap * s, x0 > 0, x0 + w < width)[None, :]
                out[:, :, y * s:(y + h) * s, x0 * s:(x0 + w) * s] += piece[:, :3] * mask
                weights[:, :, y * s:(y + h) * s, x0 * s:(x0 + w) * s] += mask
                done += 1
                if progress is not None:
                    progress(done, total)
    return (out / weights).clamp(0.0, 1.0).movedim(1, -1).contiguous()
