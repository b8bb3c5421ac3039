"""Masks made and combined in the graph (ComfyUI's core mask nodes: names, inputs and defaults)."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Combo, Float, Int, Socket
from graphcore.node import Node, Output

MAX_RESOLUTION = 16384
CHANNELS = ("red", "green", "blue", "alpha")
OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


def _batched(mask):
    return mask if mask.dim() == 3 else mask.reshape(-1, *mask.shape[-2:])


class SolidMask(Node):
    display_name = "Solid Mask"
    category = "mask"
    description = "A mask of one value everywhere (1 = regenerate)."
    inputs = {
        "value": Float(1.0, min=0.0, max=1.0, step=0.01),
        "width": Int(512, min=1, max=MAX_RESOLUTION, step=1),
        "height": Int(512, min=1, max=MAX_RESOLUTION, step=1),
    }
    outputs = (Output(types.MASK),)

    def run(self, ctx, value, width, height):
        import torch

        return (torch.full((1, height, width), value, dtype=torch.float32),)


class InvertMask(Node):
    display_name = "Invert Mask"
    category = "mask"
    description = "1 − mask: swaps what is regenerated and what is kept."
    inputs = {"mask": Socket(types.MASK)}
    outputs = (Output(types.MASK),)

    def run(self, ctx, mask):
        return (1.0 - _batched(mask),)


def _combine(operation: str, a, b):
    import torch

    table = {
        "multiply": lambda: a * b,
        "add": lambda: a + b,
        "subtract": lambda: a - b,
        "and": lambda: torch.bitwise_and(a.round().bool(), b.round().bool()).float(),
        "or": lambda: torch.bitwise_or(a.round().bool(), b.round().bool()).float(),
        "xor": lambda: torch.bitwise_xor(a.round().bool(), b.round().bool()).float(),
    }
    return table[operation]().clamp(0.0, 1.0)


class MaskComposite(Node):
    display_name = "Mask Composite"
    category = "mask"
    description = "Combines `source` into `destination` at (x, y) with an operation; the rest of destination stays."
    inputs = {
        "destination": Socket(types.MASK),
        "source": Socket(types.MASK),
        "x": Int(0, min=0, max=MAX_RESOLUTION, step=1),
        "y": Int(0, min=0, max=MAX_RESOLUTION, step=1),
        "operation": Combo(OPERATIONS, default="multiply"),
    }
    outputs = (Output(types.MASK),)

    def run(self, ctx, destination, source, x, y, operation):
        out = _batched(destination).clone()
        source = _batched(source)
        height = max(0, min(source.shape[-2], out.shape[-2] - y))
        width = max(0, min(source.shape[-1], out.shape[-1] - x))
        if height and width:
            region = out[:, y:y + height, x:x + width]
            out[:, y:y + height, x:x + width] = _combine(operation, region, source[:, :height, :width])
        return (out,)


class ImageToMask(Node):
    display_name = "Convert Image to Mask"
    category = "mask"
    description = "One channel of an image as a mask."
    inputs = {"image": Socket(types.IMAGE), "channel": Combo(CHANNELS, default="red")}
    outputs = (Output(types.MASK),)

    def run(self, ctx, image, channel):
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise ValueError(f"the image has no {channel} channel ({image.shape[-1]} channels)")
        return (image[..., index].clone(),)


class MaskToImage(Node):
    display_name = "Convert Mask to Image"
    category = "mask"
    description = "A mask as a grey image (to preview or save it)."
    inputs = {"mask": Socket(types.MASK)}
    outputs = (Output(types.IMAGE),)

    def run(self, ctx, mask):
        return (_batched(mask)[..., None].expand(-1, -1, -1, 3).contiguous(),)


class GrowMask(Node):
    display_name = "Grow Mask"
    category = "mask"
    description = "Dilates (positive expand) or erodes (negative) a mask by whole pixels."
    inputs = {
        "mask": Socket(types.MASK),
        "expand": Int(0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1),
        "tapered_corners": Combo(("true", "false"), default="true", optional=True,
                                 aliases=(("True", "true"), ("False", "false"))),
    }
    outputs = (Output(types.MASK),)

    def run(self, ctx, mask, expand, tapered_corners="true"):
        import torch
        import torch.nn.functional as F

        out = _batched(mask)[:, None].float()
        corner = 0.0 if tapered_corners == "true" else 1.0
        kernel = torch.tensor([[corner, 1.0, corner], [1.0, 1.0, 1.0], [corner, 1.0, corner]])[None, None]
        for _ in range(abs(expand)):
            if expand > 0:
                out = (F.conv2d(out, kernel, padding=1) > 0).float()
            else:
                out = 1.0 - (F.conv2d(1.0 - out, kernel, padding=1) > 0).float()
        return (out[:, 0],)


NODES = (SolidMask, InvertMask, MaskComposite, ImageToMask, MaskToImage, GrowMask)
