"""Pixel operations on IMAGE tensors ([B, H, W, C] float32 in [0, 1]) and MASK tensors ([B, H, W]).

Imported inside node runs (it imports torch). Each function mirrors the arithmetic of the ComfyUI node of the
same purpose, so that workflows give the same pixels; where we deliberately differ, the docstring says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nodes.image.files import Frame, to_uint8

# Methods torch's interpolate does as they are; "lanczos" goes through Pillow (as ComfyUI does).
INTERPOLATE_MODES = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area", "bicubic": "bicubic"}
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, the weights kornia's rgb_to_grayscale uses


def frames_to_tensors(frames: Sequence[Frame]) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE [B, H, W, 3] and MASK [B, H, W] (1 − alpha; zeros when a frame has no transparency).

    ComfyUI gives a 64×64 zero mask for an opaque image; ours has the image's size, which is what every
    consumer resizes it to anyway."""
    image = torch.from_numpy(np.stack([frame.rgb for frame in frames]))
    masks = [
        1.0 - frame.alpha if frame.alpha is not None else np.zeros(frame.rgb.shape[:2], dtype=np.float32)
        for frame in frames
    ]
    return image, torch.from_numpy(np.stack(masks).astype(np.float32))


# -------------------------------------------------------------------------------------------------- resizing


def keep_aspect_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """ImageScale's rule: a 0 side follows the other one's scale; both 0 keep the image's size."""
    if target_width == 0 and target_height == 0:
        return width, height
    if target_width == 0:
        target_width = max(1, round(width * target_height / height))
    elif target_height == 0:
        target_height = max(1, round(height * target_width / width))
    return target_width, target_height


def scale_by_size(width: int, height: int, scale_by: float) -> tuple[int, int]:
    return max(1, round(width * scale_by)), max(1, round(height * scale_by))


def total_pixels_size(width: int, height: int, megapixels: float, resolution_steps: int = 1) -> tuple[int, int]:
    """The size with about `megapixels` × 2²⁰ pixels and the same aspect, each side a multiple of the steps."""
    scale = (megapixels * 1024 * 1024 / (width * height)) ** 0.5
    steps = max(1, resolution_steps)
    return (max(steps, round(width * scale / steps) * steps), max(steps, round(height * scale / steps) * steps))


def center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop [B, C, H, W] samples to the target aspect, centred (the same offsets as ComfyUI's)."""
    old_height, old_width = samples.shape[-2:]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_height - 2 * y).narrow(-1, x, old_width - 2 * x)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    from PIL import Image

    out = np.empty((*samples.shape[:2], height, width), dtype=np.float32)
    pixels = to_uint8(samples.detach().cpu().numpy())  # Pillow resamples 8-bit images, as in ComfyUI
    for b in range(pixels.shape[0]):
        for c in range(pixels.shape[1]):
            resized = Image.fromarray(pixels[b, c]).resize((width, height), resample=Image.Resampling.LANCZOS)
            out[b, c] = np.asarray(resized, dtype=np.float32) / 255.0
    return torch.from_numpy(out)


def resize(image: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """IMAGE resized to width × height. Unlike ComfyUI, bicubic overshoot is clamped back into [0, 1]."""
    if method != "lanczos" and method not in INTERPOLATE_MODES:
        known = ", ".join((*INTERPOLATE_MODES, "lanczos"))
        raise ValueError(f"unknown upscale method {method!r}; expected one of {known}")
    samples = image.movedim(-1, 1).float()
    if crop == "center":
        samples = center_crop(samples, width, height)
    if method == "lanczos":
        out = _lanczos(samples, width, height)
    else:
        out = F.interpolate(samples, size=(height, width), mode=INTERPOLATE_MODES[method])
        if method == "bicubic":
            out = out.clamp(0.0, 1.0)
    return out.movedim(1, -1).contiguous()


# ------------------------------------------------------------------------------------------------- outpaint


def outpaint_feather(height: int, width: int, left: int, top: int, right: int, bottom: int,
                     feathering: int) -> torch.Tensor:
    """The mask over the original picture: 0 inside, rising as ((f − d) / f)² towards each padded side,
    d being the distance to that side (ComfyUI's rule, including its off-by-one on the right and bottom).
    No feather when 2·feathering does not fit in the picture."""
    if feathering <= 0 or 2 * feathering >= height or 2 * feathering >= width:
        return torch.zeros((height, width), dtype=torch.float32)
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    distances = [
        np.broadcast_to(rows if top else height, (height, width)),
        np.broadcast_to(height - rows if bottom else height, (height, width)),
        np.broadcast_to(cols if left else width, (height, width)),
        np.broadcast_to(width - cols if right else width, (height, width)),
    ]
    nearest = np.minimum.reduce(distances)
    rise = (feathering - nearest) / feathering
    return torch.from_numpy(np.where(nearest < feathering, rise * rise, 0.0).astype(np.float32))


def pad_for_outpaint(image: torch.Tensor, left: int, top: int, right: int, bottom: int,
                     feathering: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bigger canvas (new room filled with 0.5 grey) and a MASK [1, H, W]: 1 over the new room, the
    feathered edge over the original picture."""
    batch, height, width, channels = image.shape
    canvas = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5, dtype=torch.float32)
    canvas[:, top:top + height, left:left + width, :] = image
    mask = torch.ones((height + top + bottom, width + left + right), dtype=torch.float32)
    mask[top:top + height, left:left + width] = outpaint_feather(height, width, left, top, right, bottom, feathering)
    return canvas, mask.unsqueeze(0)


def composite_masked(destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
                     mask: torch.Tensor | None = None, resize_source: bool = False) -> torch.Tensor:
    """`source` pasted onto a copy of `destination` with its top-left corner at (x, y), blended by `mask`
    (1 = source; scaled bilinearly to the source's size). Batches repeat to the destination's size; the parts
    of the source outside the destination are dropped (ComfyUI's ImageCompositeMasked)."""
    result = destination.detach().clone().float()
    batch, height, width, _ = result.shape
    source = source.to(result.device, torch.float32)
    if resize_source:
        source = resize(source, width, height, "bilinear")
    weight = torch.ones(source.shape[:3], dtype=torch.float32, device=result.device)
    if mask is not None:
        planes = mask.to(result.device, torch.float32).reshape(-1, 1, *mask.shape[-2:])
        weight = torch.nn.functional.interpolate(planes, size=source.shape[1:3], mode="bilinear")[:, 0]
    source, weight = _repeat_to(source, batch), _repeat_to(weight, batch)
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + source.shape[1], height), min(x + source.shape[2], width)
    if bottom <= top or right <= left:
        return result
    rows, cols = slice(top - y, bottom - y), slice(left - x, right - x)
    blend = weight[:, rows, cols, None]
    region = result[:, top:bottom, left:right, :]
    result[:, top:bottom, left:right, :] = blend * source[:, rows, cols, :] + (1 - blend) * region
    return result


def _repeat_to(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """A batch repeated (and cut) to `size` entries."""
    if tensor.shape[0] == size:
        return tensor
    times = -(-size // tensor.shape[0])
    return tensor.repeat(times, *([1] * (tensor.dim() - 1)))[:size]


# ---------------------------------------------------------------------------------------------------- other


def invert(image: torch.Tensor) -> torch.Tensor:
    return 1.0 - image


def canny(image: torch.Tensor, low_threshold: float, high_threshold: float) -> torch.Tensor:
    """Canny edges as an IMAGE of three identical channels (1 on edges, 0 elsewhere).

    The thresholds keep ComfyUI's meaning (fractions of the 0–1 gradient magnitude): the picture is turned to
    luma, blurred with a 5×5 Gaussian (σ = 1), and OpenCV's Canny runs on it in 8 bits with the L2 gradient
    and the thresholds × 255."""
    import cv2

    pixels = image.detach().cpu().float().numpy()
    grey = pixels[..., 0] if pixels.shape[-1] < 3 else np.tensordot(pixels[..., :3], GREY_WEIGHTS, axes=([-1], [0]))
    edges = []
    for picture in grey.astype(np.float32):
        blurred = cv2.GaussianBlur(picture * 255.0, (5, 5), 1.0, borderType=cv2.BORDER_REFLECT_101)
        grey8 = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
        found = cv2.Canny(grey8, low_threshold * 255.0, high_threshold * 255.0, L2gradient=True)
        edges.append(found.astype(np.float32) / 255.0)
    return torch.from_numpy(np.stack(edges))[..., None].repeat(1, 1, 1, 3)


def batch(image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """image2 appended to image1, first resized (bilinear, centre crop) to image1's size when it differs."""
    if image1.shape[-1] != image2.shape[-1]:
        raise ValueError(f"cannot batch images with {image1.shape[-1]} and {image2.shape[-1]} channels")
    if image1.shape[1:] != image2.shape[1:]:
        image2 = resize(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
    return torch.cat((image1.float(), image2.float()), dim=0)


def solid(width: int, height: int, batch_size: int, color: int) -> torch.Tensor:
    """IMAGE of one colour (0xRRGGBB)."""
    rgb = torch.tensor([((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)], dtype=torch.float32)
    return rgb.expand(batch_size, height, width, 3).clone()
