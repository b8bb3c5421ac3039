"""Mask shaping for inpainting: resize to an image or latent, grow, and the grey fill before encoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def as_nchw(mask: torch.Tensor) -> torch.Tensor:
    """[H,W], [B,H,W] or [B,1,H,W] → [B,1,H,W] float."""
    mask = mask.float()
    if mask.dim() == 2:
        return mask[None, None]
    if mask.dim() == 3:
        return mask[:, None]
    return mask[:, :1]


def resize(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    mask = as_nchw(mask)
    if mask.shape[-2:] == (height, width):
        return mask
    return F.interpolate(mask, size=(height, width), mode="bilinear")


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate a [B,1,H,W] mask by a box of `pixels` (after rounding it to 0/1)."""
    if pixels <= 0:
        return mask
    kernel = torch.ones(1, 1, pixels, pixels)
    padding = math.ceil((pixels - 1) / 2)
    grown = F.conv2d(mask.round(), kernel, padding=padding)
    return grown[..., : mask.shape[-2], : mask.shape[-1]].clamp(0.0, 1.0)


def crop_to_multiple(image: torch.Tensor, mask: torch.Tensor, multiple: int = 8):
    """Centre-crop IMAGE [B,H,W,C] (and a [B,1,H,W] mask) to sides divisible by `multiple`."""
    h, w = image.shape[1] // multiple * multiple, image.shape[2] // multiple * multiple
    oy, ox = (image.shape[1] % multiple) // 2, (image.shape[2] % multiple) // 2
    return image[:, oy:oy + h, ox:ox + w], mask[..., oy:oy + h, ox:ox + w]


def grey_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked pixels (mask ≥ 0.5) become mid-grey, so the encoder does not see what will be replaced."""
    keep = (1.0 - mask.round())[:, 0, :, :, None]
    return (image - 0.5) * keep + 0.5
