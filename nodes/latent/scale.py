"""Resizing latents (hires-fix: upscale the latent, then sample it again at denoise < 1).

The interpolation modes and the centre crop are the image nodes' (nodes.image.ops); latents are not clamped
to [0, 1] the way pictures are, so the resize itself is torch's interpolate on [B, C, h, w]. ComfyUI's extra
"bislerp" mode is not offered.
"""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.context import NodeContext
from graphcore.inputs import Combo, Float, Int, Socket
from graphcore.node import Node, Output

MAX_RESOLUTION = 16384
LATENT_UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic")
CROP_METHODS = ("disabled", "center")
MIN_SIDE = 64  # ComfyUI's smallest upscale target, in pixels


def resize_latent(samples: Any, width: int, height: int, method: str, crop: str = "disabled") -> Any:
    """[B, C, h, w] latents resized to width × height latent cells."""
    import torch.nn.functional as F

    from nodes.image.ops import INTERPOLATE_MODES, center_crop

    if method not in LATENT_UPSCALE_METHODS:
        known = ", ".join(LATENT_UPSCALE_METHODS)
        raise ValueError(f"unknown latent upscale method {method!r}; expected one of {known}")
    if crop == "center":
        samples = center_crop(samples, width, height)
    return F.interpolate(samples.float(), size=(height, width), mode=INTERPOLATE_MODES[method])


def target_size(latent_height: int, latent_width: int, width: int, height: int) -> tuple[int, int]:
    """LatentUpscale's pixel size: a 0 side follows the other's scale; each side at least 64 pixels."""
    if width == 0:
        height = max(MIN_SIDE, height)
        width = max(MIN_SIDE, round(latent_width * height / latent_height))
    elif height == 0:
        width = max(MIN_SIDE, width)
        height = max(MIN_SIDE, round(latent_height * width / latent_width))
    else:
        width, height = max(MIN_SIDE, width), max(MIN_SIDE, height)
    return width, height


class LatentUpscale(Node):
    display_name = "Upscale Latent"
    category = "latent"
    description = "Resizes latents to width × height pixels (÷ 8 latent cells); a side at 0 keeps the aspect ratio."
    inputs = {
        "samples": Socket(types.LATENT),
        "upscale_method": Combo(LATENT_UPSCALE_METHODS, default="nearest-exact"),
        "width": Int(512, min=0, max=MAX_RESOLUTION, step=8),
        "height": Int(512, min=0, max=MAX_RESOLUTION, step=8),
        "crop": Combo(CROP_METHODS, default="disabled"),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx: NodeContext, samples: Any, upscale_method: str, width: int, height: int,
            crop: str) -> tuple[Any]:
        if width == 0 and height == 0:
            return (samples,)
        latent = samples.samples
        width, height = target_size(latent.shape[2], latent.shape[3], width, height)
        return (samples.replace(samples=resize_latent(latent, width // 8, height // 8, upscale_method, crop)),)


class LatentUpscaleBy(Node):
    display_name = "Upscale Latent By"
    category = "latent"
    description = "Resizes latents by a factor (each side rounded to whole latent cells)."
    inputs = {
        "samples": Socket(types.LATENT),
        "upscale_method": Combo(LATENT_UPSCALE_METHODS, default="nearest-exact"),
        "scale_by": Float(1.5, min=0.01, max=8.0, step=0.01),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx: NodeContext, samples: Any, upscale_method: str, scale_by: float) -> tuple[Any]:
        latent = samples.samples
        width, height = round(latent.shape[3] * scale_by), round(latent.shape[2] * scale_by)
        return (samples.replace(samples=resize_latent(latent, max(1, width), max(1, height), upscale_method)),)


NODES = (LatentUpscale, LatentUpscaleBy)
