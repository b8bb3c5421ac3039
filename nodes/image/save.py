"""Output nodes writing PNGs: SaveImage (output folder) and PreviewImage (temp folder).

Each PNG carries ComfyUI's text chunks (`prompt`, and every `extra_pnginfo` entry such as `workflow`), an
A1111-style `parameters` text read off the graph, and `Software: diffgraph`.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import numpy as np

from graphcore import folders as folder_config
from graphcore import metadata, types
from graphcore.context import NodeContext
from graphcore.folders import PathEscape
from graphcore.inputs import Socket, String
from graphcore.node import Node, Result
from nodes.image import files, generation_info

CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA


def image_batch_array(images: Any, node: str) -> np.ndarray:
    """An IMAGE tensor as a float32 array [B, H, W, C]; a single [H, W, C] picture becomes a batch of one."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) == 3:
        images, shape = images[None], (1, *shape)
    if len(shape) != 4 or shape[-1] not in CHANNEL_COUNTS or 0 in shape:
        raise ValueError(f"{node}: images must be an IMAGE tensor [batch, height, width, 1|3|4], got shape {shape}")
    return images.detach().cpu().float().numpy()


def image_texts(ctx: NodeContext, width: int, height: int) -> dict[str, str]:
    extra = ctx.extra_data.get("extra_pnginfo") if isinstance(ctx.extra_data, dict) else None
    texts = metadata.comfy_texts(ctx.prompt or None, extra if isinstance(extra, dict) else None)
    parameters = generation_info.parameters_text(ctx.prompt, ctx.node_id, width, height) if ctx.prompt else None
    if parameters:
        texts["parameters"] = parameters
    texts[metadata.SOFTWARE_KEY] = metadata.SOFTWARE_NAME
    return texts


def save_images(ctx: NodeContext, images: Any, prefix: str, root: Path, folder_type: str,
                compress_level: int) -> Result:
    pixels = image_batch_array(images, ctx.class_type)
    _, height, width, _ = pixels.shape
    try:
        target = files.save_target(root, prefix, width, height)
    except (PathEscape, files.ImageFileError) as exc:
        raise ValueError(f"{ctx.class_type}: filename_prefix {prefix!r} is not allowed: {exc}") from None
    texts = image_texts(ctx, width, height)
    counter = files.next_counter(target.folder, target.name)
    saved = []
    for picture in pixels:
        ctx.check_interrupt()
        file_name, counter = files.write_png(target, counter, files.to_uint8(picture), texts, compress_level)
        saved.append({"filename": file_name, "subfolder": target.subfolder, "type": folder_type})
        counter += 1
    return Result((), {"images": saved})


class SaveImage(Node):
    display_name = "Save Image"
    category = "image"
    description = (
        "Saves the images as PNG files in the output folder, named {prefix}_{counter:05}_.png, with the workflow "
        "embedded so the file can be dropped back onto the canvas."
    )
    inputs = {
        "images": Socket(types.IMAGE, tooltip="The images to save."),
        "filename_prefix": String(
            "diffgraph",
            tooltip="File name start; may name a sub-folder ('portraits/x') and use %width%, %height%, %year%…",
        ),
    }
    outputs = ()
    output_node = True
    hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}

    @classmethod
    def check(cls, constants: dict[str, Any]) -> dict[str, str]:
        prefix = constants.get("filename_prefix")
        if not isinstance(prefix, str):
            return {}
        problem = files.check_prefix(folder_config.current().output_dir, files.expand_prefix(prefix, 1, 1))
        return {"filename_prefix": f"filename prefix {prefix!r} is not allowed: {problem}"} if problem else {}

    def run(self, ctx: NodeContext, images: Any, filename_prefix: str = "diffgraph") -> Result:
        return save_images(ctx, images, filename_prefix, ctx.folders.output_dir, "output", compress_level=4)


class PreviewImage(Node):
    display_name = "Preview Image"
    category = "image"
    description = "Shows the images on the canvas; the files go to the temp folder, not the output folder."
    inputs = {"images": Socket(types.IMAGE, tooltip="The images to preview.")}
    outputs = ()
    output_node = True
    hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}

    def run(self, ctx: NodeContext, images: Any) -> Result:
        prefix = "diffgraph_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))
        return save_images(ctx, images, prefix, ctx.folders.temp_dir, "temp", compress_level=1)


NODES = (SaveImage, PreviewImage)
