"""Nodes changing pictures: scaling, outpaint padding, masked compositing, inversion, batching, solid images,
Canny edges.

ComfyUI's class names, input names and defaults; the arithmetic lives in nodes.image.ops.
"""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.context import NodeContext
from graphcore.inputs import Boolean, Combo, Float, Int, Socket
from graphcore.node import Node, Output

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")


def _method(default: str = "nearest-exact") -> Combo:
    return Combo(UPSCALE_METHODS, default=default, tooltip="How new pixels are computed.")


class ImageScale(Node):
    display_name = "Upscale Image"
    category = "image/upscaling"
    description = "Resizes images to width × height; a side left at 0 keeps the aspect ratio."
    inputs = {
        "image": Socket(types.IMAGE),
        "upscale_method": _method(),
        "width": Int(512, min=0, max=MAX_RESOLUTION, step=1, tooltip="0: follow the height's scale."),
        "height": Int(512, min=0, max=MAX_RESOLUTION, step=1, tooltip="0: follow the width's scale."),
        "crop": Combo(CROP_METHODS, default="disabled", tooltip="center: crop to the new aspect before resizing."),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image: Any, upscale_method: str, width: int, height: int,
            crop: str) -> tuple[Any]:
        from nodes.image import ops

        if width == 0 and height == 0:
            return (image,)
        width, height = ops.keep_aspect_size(image.shape[2], image.shape[1], width, height)
        return (ops.resize(image, width, height, upscale_method, crop),)


class ImageScaleBy(Node):
    display_name = "Upscale Image By"
    category = "image/upscaling"
    description = "Resizes images by a factor (each side rounded to whole pixels)."
    inputs = {
        "image": Socket(types.IMAGE),
        "upscale_method": _method(),
        "scale_by": Float(1.0, min=0.01, max=8.0, step=0.01),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image: Any, upscale_method: str, scale_by: float) -> tuple[Any]:
        from nodes.image import ops

        width, height = ops.scale_by_size(image.shape[2], image.shape[1], scale_by)
        return (ops.resize(image, width, height, upscale_method),)


class ImageScaleToTotalPixels(Node):
    display_name = "Scale Image to Total Pixels"
    category = "image/upscaling"
    description = "Resizes images to about this many megapixels (2²⁰ pixels each), keeping the aspect ratio."
    inputs = {
        "image": Socket(types.IMAGE),
        "upscale_method": _method(),
        "megapixels": Float(1.0, min=0.01, max=16.0, step=0.01),
        "resolution_steps": Int(1, min=1, max=256, optional=True, tooltip="Each side becomes a multiple of this."),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image: Any, upscale_method: str, megapixels: float,
            resolution_steps: int = 1) -> tuple[Any]:
        from nodes.image import ops

        width, height = ops.total_pixels_size(image.shape[2], image.shape[1], megapixels, resolution_steps)
        return (ops.resize(image, width, height, upscale_method),)


class ImagePadForOutpaint(Node):
    display_name = "Pad Image for Outpainting"
    category = "image"
    description = (
        "Adds room around images (filled with grey) and a MASK marking it for the sampler; the mask fades "
        "into the picture over `feathering` pixels."
    )
    inputs = {
        "image": Socket(types.IMAGE),
        "left": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "top": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "right": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "bottom": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "feathering": Int(40, min=0, max=MAX_RESOLUTION, step=1),
    }
    outputs = (Output(types.IMAGE, "IMAGE"), Output(types.MASK, "MASK"))

    def run(self, ctx: NodeContext, image: Any, left: int, top: int, right: int, bottom: int,
            feathering: int) -> tuple[Any, Any]:
        from nodes.image import ops

        return ops.pad_for_outpaint(image, left, top, right, bottom, feathering)


class ImageCompositeMasked(Node):
    display_name = "Image Composite Masked"
    category = "image"
    description = (
        "Pastes `source` onto `destination` at (x, y), through the mask where one is given (1 = source). After "
        "inpainting or outpainting, this puts the untouched pixels back exactly."
    )
    inputs = {
        "destination": Socket(types.IMAGE),
        "source": Socket(types.IMAGE),
        "x": Int(0, min=0, max=MAX_RESOLUTION, step=1),
        "y": Int(0, min=0, max=MAX_RESOLUTION, step=1),
        "resize_source": Boolean(False, tooltip="Scale the source to the destination's size first."),
        "mask": Socket(types.MASK, optional=True, tooltip="Where the source shows (scaled to the source's size)."),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, destination: Any, source: Any, x: int, y: int, resize_source: bool,
            mask: Any = None) -> tuple[Any]:
        from nodes.image import ops

        return (ops.composite_masked(destination, source, x, y, mask, resize_source),)


class ImageInvert(Node):
    display_name = "Invert Image"
    category = "image"
    description = "1 − every pixel value."
    inputs = {"image": Socket(types.IMAGE)}
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image: Any) -> tuple[Any]:
        from nodes.image import ops

        return (ops.invert(image),)


class ImageBatch(Node):
    display_name = "Batch Images"
    category = "image"
    description = "image1 followed by image2 in one batch; image2 is resized to image1's size when it differs."
    inputs = {"image1": Socket(types.IMAGE), "image2": Socket(types.IMAGE)}
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image1: Any, image2: Any) -> tuple[Any]:
        from nodes.image import ops

        return (ops.batch(image1, image2),)


class EmptyImage(Node):
    display_name = "Empty Image"
    category = "image"
    description = "A batch of images of one colour."
    inputs = {
        "width": Int(512, min=1, max=MAX_RESOLUTION, step=1),
        "height": Int(512, min=1, max=MAX_RESOLUTION, step=1),
        "batch_size": Int(1, min=1, max=4096),
        "color": Int(0, min=0, max=0xFFFFFF, step=1, display="color", tooltip="0xRRGGBB"),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, width: int, height: int, batch_size: int, color: int) -> tuple[Any]:
        from nodes.image import ops

        return (ops.solid(width, height, batch_size, color),)


class Canny(Node):
    display_name = "Canny"
    category = "image/preprocessors"
    description = "Edges found by the Canny detector, white on black (e.g. a ControlNet hint)."
    inputs = {
        "image": Socket(types.IMAGE),
        "low_threshold": Float(0.4, min=0.01, max=0.99, step=0.01, tooltip="Weaker edges kept next to strong ones."),
        "high_threshold": Float(0.8, min=0.01, max=0.99, step=0.01, tooltip="Gradient that starts an edge."),
    }
    outputs = (Output(types.IMAGE, "IMAGE"),)

    def run(self, ctx: NodeContext, image: Any, low_threshold: float, high_threshold: float) -> tuple[Any]:
        from nodes.image import ops

        return (ops.canny(image, low_threshold, high_threshold),)


NODES = (ImageScale, ImageScaleBy, ImageScaleToTotalPixels, ImagePadForOutpaint, ImageCompositeMasked, ImageInvert,
         ImageBatch, EmptyImage, Canny)
