"""SDXL prompts with full control of the size conditioning (base) and the aesthetic score (refiner)."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Float, Int, Socket, String
from graphcore.node import Alias, Node, Output

MAX_RESOLUTION = 16384


def _size(default: int) -> Int:
    return Int(default, min=0, max=MAX_RESOLUTION)


class CLIPEncodeSDXL(Node):
    display_name = "CLIP Text Encode (SDXL)"
    category = "conditioning/sdxl"
    description = (
        "SDXL base prompt: text_l for CLIP-L, text_g for OpenCLIP bigG, and the size conditioning the model "
        "was trained with (original size, crop offset, target size). Use the image's size for all three."
    )
    inputs = {
        "clip": Socket(types.CLIP),
        "width": _size(1024),
        "height": _size(1024),
        "crop_w": _size(0),
        "crop_h": _size(0),
        "target_width": _size(1024),
        "target_height": _size(1024),
        "text_g": String("", multiline=True, tooltip="Prompt for the OpenCLIP bigG encoder"),
        "text_l": String("", multiline=True, tooltip="Prompt for the CLIP-L encoder"),
    }
    outputs = (Output(types.CONDITIONING),)
    aliases = (Alias("CLIPTextEncodeSDXL"),)

    def run(self, ctx, clip, width, height, crop_w, crop_h, target_width, target_height, text_g, text_l):
        from nodes.sd.text_encoding import encode

        if len(clip.encoders) != 2:
            raise ValueError(f"CLIPEncodeSDXL needs an SDXL base CLIP (two text encoders); got {clip.family.title}")
        entry = encode(clip, (text_l, text_g))
        extras = {"width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h,
                  "target_width": target_width, "target_height": target_height}
        return ((entry.replace(extras=extras),),)


class CLIPEncodeSDXLRefiner(Node):
    display_name = "CLIP Text Encode (SDXL Refiner)"
    category = "conditioning/sdxl"
    description = (
        "SDXL refiner prompt with its aesthetic score (6.0 is typical for the positive prompt, 2.5 for the "
        "negative) and the image size."
    )
    inputs = {
        "ascore": Float(6.0, min=0.0, max=1000.0, step=0.01, tooltip="Aesthetic score to condition on"),
        "width": _size(1024),
        "height": _size(1024),
        "text": String("", multiline=True),
        "clip": Socket(types.CLIP),
    }
    outputs = (Output(types.CONDITIONING),)
    aliases = (Alias("CLIPTextEncodeSDXLRefiner"),)

    def run(self, ctx, ascore, width, height, text, clip):
        from nodes.sd.text_encoding import encode

        if clip.family.size_conditioning != "refiner":
            raise ValueError(f"CLIPEncodeSDXLRefiner needs the SDXL refiner's CLIP; got {clip.family.title}")
        entry = encode(clip, text)
        return ((entry.replace(extras={"aesthetic_score": ascore, "width": width, "height": height}),),)


NODES = (CLIPEncodeSDXL, CLIPEncodeSDXLRefiner)
