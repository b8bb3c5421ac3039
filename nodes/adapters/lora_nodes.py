"""LoRA nodes: a LoRA file from the loras folder as a patch on MODEL (and CLIP)."""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.folders import ModelChoices, model_file_stamp
from graphcore.inputs import Combo, Float, Socket
from graphcore.node import Alias, Node, Output


def _strength(tooltip: str) -> Float:
    return Float(1.0, min=-100.0, max=100.0, step=0.01, tooltip=tooltip)


_LORA_NAME = Combo(ModelChoices("loras"), tooltip="A LoRA in the loras folder (kohya, LoCon or diffusers/peft)")


class LoRA(Node):
    display_name = "Load LoRA"
    category = "loaders"
    description = (
        "Applies a LoRA to the model and the text encoder(s) for the samplers downstream; the loaded checkpoint "
        "is never changed (other branches see it without the LoRA). Several LoRA nodes in a row add up."
    )
    inputs = {
        "model": Socket(types.MODEL),
        "clip": Socket(types.CLIP),
        "lora_name": _LORA_NAME,
        "strength_model": _strength("How strongly the LoRA changes the denoising model (0: not at all)"),
        "strength_clip": _strength("How strongly the LoRA changes the text encoder (0: not at all)"),
    }
    outputs = (Output(types.MODEL), Output(types.CLIP))
    aliases = (Alias("LoraLoader"),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("loras", constants["lora_name"])

    def run(self, ctx, model, clip, lora_name, strength_model, strength_clip):
        from nodes.adapters.lora import apply_lora, read_lora

        lora = read_lora(ctx.folders.resolve_model("loras", lora_name))
        return apply_lora(lora, model, clip, strength_model, strength_clip)


class LoRAModelOnly(Node):
    display_name = "Load LoRA (model only)"
    category = "loaders"
    description = "Applies the UNet part of a LoRA to the model (its text-encoder layers, if any, are not used)."
    inputs = {
        "model": Socket(types.MODEL),
        "lora_name": _LORA_NAME,
        "strength_model": _strength("How strongly the LoRA changes the denoising model (0: not at all)"),
    }
    outputs = (Output(types.MODEL),)
    aliases = (Alias("LoraLoaderModelOnly"),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("loras", constants["lora_name"])

    def run(self, ctx, model, lora_name, strength_model):
        from nodes.adapters.lora import apply_lora, read_lora

        lora = read_lora(ctx.folders.resolve_model("loras", lora_name))
        return (apply_lora(lora, model, None, strength_model, 0.0)[0],)


NODES = (LoRA, LoRAModelOnly)
