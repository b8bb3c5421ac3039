"""UpscaleModelLoader and ImageUpscaleWithModel (ComfyUI's names and inputs)."""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.context import NodeContext
from graphcore.folders import ModelChoices, model_file_stamp
from graphcore.inputs import Combo, Socket
from graphcore.node import Node, Output


class UpscaleModelLoader(Node):
    display_name = "Load Upscale Model"
    category = "loaders"
    description = (
        "Loads an ESRGAN-family upscaler (4x-UltraSharp, RealESRGAN x4plus/x2plus, Real-ESRGAN Compact…) from the "
        "upscale_models folder (.safetensors, or .pth read without running code)."
    )
    inputs = {"model_name": Combo(ModelChoices("upscale_models"), tooltip="A file in the upscale_models folder")}
    outputs = (Output(types.UPSCALE_MODEL),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("upscale_models", constants["model_name"])

    def run(self, ctx: NodeContext, model_name: str) -> tuple[Any]:
        from nodes.upscale.run import load_upscale_model

        return (load_upscale_model(ctx.folders.resolve_model("upscale_models", model_name), model_name),)


class ImageUpscaleWithModel(Node):
    display_name = "Upscale Image (using Model)"
    category = "image/upscaling"
    description = "Upscales pictures with an upscale model, in overlapping 512-pixel tiles to bound memory."
    inputs = {"upscale_model": Socket(types.UPSCALE_MODEL), "image": Socket(types.IMAGE)}
    outputs = (Output(types.IMAGE),)

    def run(self, ctx: NodeContext, upscale_model: Any, image: Any) -> tuple[Any]:
        from nodes.upscale.run import upscale

        return (upscale(upscale_model, image, progress=ctx.progress if ctx is not None else None),)


NODES = (UpscaleModelLoader, ImageUpscaleWithModel)
