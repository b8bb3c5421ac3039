"""IP-Adapter nodes: CLIP vision and IP-Adapter loaders, and the image prompt as a MODEL patch."""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.folders import ModelChoices, model_file_stamp
from graphcore.inputs import Combo, Float, Socket
from graphcore.node import Alias, Node, Output


class CLIPVisionLoader(Node):
    display_name = "Load CLIP Vision"
    category = "loaders"
    description = (
        "Loads a CLIP vision encoder (CLIPVisionModelWithProjection) from the clip_vision folder: a transformers "
        "folder or a single .safetensors file. IP-Adapters read its image embeddings."
    )
    inputs = {"clip_name": Combo(ModelChoices("clip_vision"), tooltip="An image encoder in the clip_vision folder")}
    outputs = (Output(types.CLIP_VISION),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("clip_vision", constants["clip_name"])

    def run(self, ctx, clip_name):
        from nodes.adapters.clip_vision import load_clip_vision

        return (load_clip_vision(ctx.folders.resolve_model("clip_vision", clip_name), clip_name),)


class IPAdapterLoader(Node):
    display_name = "Load IP-Adapter"
    category = "loaders"
    description = (
        "Loads an IP-Adapter (SD1.5 or SDXL; base or plus) from the ipadapter folder, .safetensors or .bin "
        "(weights-only)."
    )
    inputs = {"ipadapter_file": Combo(ModelChoices("ipadapter"), tooltip="An IP-Adapter in the ipadapter folder")}
    outputs = (Output(types.IPADAPTER),)
    aliases = (Alias("IPAdapterModelLoader"),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("ipadapter", constants["ipadapter_file"])

    def run(self, ctx, ipadapter_file):
        from nodes.adapters.ip_adapter import load_ip_adapter

        return (load_ip_adapter(ctx.folders.resolve_model("ipadapter", ipadapter_file), ipadapter_file),)


class IPAdapter(Node):
    display_name = "Apply IP-Adapter"
    category = "conditioning/ipadapter"
    description = (
        "An image prompt: the model attends to the reference image through the IP-Adapter's extra cross-attention, "
        "scaled by weight, between start_at and end_at of the schedule. Several images are used together; the "
        "negative image defaults to none (zero embedding, or a black image for plus adapters). Several IP-Adapter "
        "nodes in a row add up; the loaded model itself is not changed."
    )
    inputs = {
        "model": Socket(types.MODEL),
        "ipadapter": Socket(types.IPADAPTER),
        "clip_vision": Socket(types.CLIP_VISION),
        "image": Socket(types.IMAGE, tooltip="The reference image(s)"),
        "weight": Float(1.0, min=-1.0, max=5.0, step=0.05, tooltip="Strength of the image prompt"),
        "start_at": Float(0.0, min=0.0, max=1.0, step=0.001, tooltip="Where in the schedule it starts"),
        "end_at": Float(1.0, min=0.0, max=1.0, step=0.001, tooltip="Where in the schedule it stops"),
        "image_negative": Socket(types.IMAGE, optional=True, tooltip="What the image prompt should move away from"),
        # IPAdapterAdvanced's options, limited to the behaviour implemented (other values fail validation).
        "weight_type": Combo(("linear",), default="linear", optional=True),
        "combine_embeds": Combo(("concat",), default="concat", optional=True),
        "embeds_scaling": Combo(("V only",), default="V only", optional=True),
        "attn_mask": Socket(types.MASK, optional=True, tooltip="Not supported yet: leave unconnected"),
    }
    outputs = (Output(types.MODEL),)
    aliases = (Alias("IPAdapterAdvanced"),)

    def run(self, ctx, model, ipadapter, clip_vision, image, weight, start_at, end_at, image_negative=None,
            weight_type="linear", combine_embeds="concat", embeds_scaling="V only", attn_mask=None):
        if attn_mask is not None:
            raise ValueError("IPAdapter: attn_mask is not supported yet; disconnect it")
        from nodes.adapters.ip_adapter import image_tokens
        from nodes.adapters.ip_adapter_attention import IPAdapterPatch

        IPAdapterPatch.check_model(ipadapter, model.unet.module, model.source)
        cond, uncond = image_tokens(ipadapter, clip_vision, image, image_negative)
        return (model.with_patch(IPAdapterPatch(ipadapter, cond, uncond, weight, start_at, end_at)),)


NODES = (CLIPVisionLoader, IPAdapterLoader, IPAdapter)
