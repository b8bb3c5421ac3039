"""VAE encode/decode between IMAGE ([B,H,W,3] in 0..1) and raw latents ([B,C,H/8,W/8]), whole or tiled."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodes.sd.model_manager import manager
from nodes.values import VaeHandle

SCALE = 8


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def centre_crop(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] cut to sides divisible by 8, centred (ComfyUI crops the same way before encoding)."""
    h, w = image.shape[1] // SCALE * SCALE, image.shape[2] // SCALE * SCALE
    top, left = (image.shape[1] % SCALE) // 2, (image.shape[2] % SCALE) // 2
    return image[:, top:top + h, left:left + w, :3]


def encode(vae: VaeHandle, image: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    """Raw latents (the posterior's mean: deterministic, so cached encodes stay valid)."""
    pixels = centre_crop(image).permute(0, 3, 1, 2)
    with manager().use(vae.vae) as (module,), torch.no_grad():
        device, dtype = next(module.parameters()).device, next(module.parameters()).dtype
        parts = []
        for part in _batches(pixels.shape[0], batch_size):
            x = (pixels[part].to(device, dtype) * 2.0 - 1.0)
            parts.append(module.encode(x).latent_dist.mode().float().cpu())
    return torch.cat(parts)


def decode(vae: VaeHandle, latent: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    with manager().use(vae.vae) as (module,), torch.no_grad():
        device, dtype = next(module.parameters()).device, next(module.parameters()).dtype
        parts = []
        for part in _batches(latent.shape[0], batch_size):
            x = module.decode(latent[part].to(device, dtype)).sample.float()
            parts.append(((x + 1.0) / 2.0).clamp(0.0, 1.0).cpu())
    return torch.cat(parts).permute(0, 2, 3, 1).contiguous()


def _feather(size: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blend weights: a linear ramp over the overlap on sides that touch another tile."""
    weights = torch.ones(size)
    ramp = torch.linspace(0, 1, overlap + 2)[1:-1] if overlap > 0 else torch.empty(0)
    if overlap > 0 and not at_start:
        weights[:overlap] = ramp
    if overlap > 0 and not at_end:
        weights[size - overlap:] = ramp.flip(0)
    return weights


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, scale: float,
    out_channels: int,
) -> torch.Tensor:
    """Apply `fn` (spatial in → spatial·scale out, NCHW) over overlapping tiles, blending the seams."""
    b, _, h, w = x.shape
    out_h, out_w = int(h * scale), int(w * scale)
    out = torch.zeros(b, out_channels, out_h, out_w)
    total = torch.zeros(1, 1, out_h, out_w)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    for y in ys:
        for x0 in xs:
            piece = fn(x[:, :, y:y + tile, x0:x0 + tile]).float().cpu()
            ph, pw = piece.shape[-2:]
            oy, ox = int(y * scale), int(x0 * scale)
            wy = _feather(ph, int(overlap * scale), y == ys[0], y == ys[-1])
            wx = _feather(pw, int(overlap * scale), x0 == xs[0], x0 == xs[-1])
            weight = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, oy:oy + ph, ox:ox + pw] += piece * weight
            total[:, :, oy:oy + ph, ox:ox + pw] += weight
    return out / total.clamp_min(1e-8)


def decode_tiled(vae: VaeHandle, latent: torch.Tensor, tile_size: int = 512, overlap: int = 64) -> torch.Tensor:
    """Decode in pixel tiles of `tile_size` (overlapping by `overlap` px) to bound memory."""
    with manager().use(vae.vae) as (module,), torch.no_grad():
        device, dtype = next(module.parameters()).device, next(module.parameters()).dtype

        def run(z: torch.Tensor) -> torch.Tensor:
            return module.decode(z.to(device, dtype)).sample

        pixels = tiled(run, latent, max(1, tile_size // SCALE), max(0, overlap // SCALE), SCALE, 3)
    return ((pixels + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def encode_tiled(vae: VaeHandle, image: torch.Tensor, tile_size: int = 512, overlap: int = 64) -> torch.Tensor:
    pixels = centre_crop(image).permute(0, 3, 1, 2) * 2.0 - 1.0
    with manager().use(vae.vae) as (module,), torch.no_grad():
        device, dtype = next(module.parameters()).device, next(module.parameters()).dtype

        def run(x: torch.Tensor) -> torch.Tensor:
            return module.encode(x.to(device, dtype)).latent_dist.mode()

        return tiled(run, pixels, tile_size, overlap, 1 / SCALE, vae.latent_channels)
