"""Loading checkpoints and VAEs, and clip skip."""

from __future__ import annotations

from graphcore import types
from graphcore.folders import ModelChoices, model_file_stamp
from graphcore.inputs import Combo, Int, Socket
from graphcore.node import Alias, Node, Output


class LoadCheckpoint(Node):
    display_name = "Load Checkpoint"
    category = "loaders"
    description = (
        "Loads an SD1.x/SD2.x/SDXL checkpoint (single .safetensors/.ckpt file or diffusers folder) from the "
        "checkpoints folder: the denoising model, the text encoder(s) and the VAE."
    )
    inputs = {"ckpt_name": Combo(ModelChoices("checkpoints"), tooltip="A checkpoint in the checkpoints folder")}
    outputs = (
        Output(types.MODEL, "MODEL", "The denoising UNet"),
        Output(types.CLIP, "CLIP", "The text encoder(s) for prompts"),
        Output(types.VAE, "VAE", "Converts between images and latents"),
    )
    aliases = (Alias("CheckpointLoaderSimple"),)

    @classmethod
    def fingerprint(cls, constants):
        return model_file_stamp("checkpoints", constants["ckpt_name"])

    def run(self, ctx, ckpt_name):
        from nodes.sd.loading import load_checkpoint

        return load_checkpoint(ctx.folders.resolve_model("checkpoints", ckpt_name), ckpt_name)


class VAELoader(Node):
    display_name = "Load VAE"
    category = "loaders"
    description = "Loads a VAE (single file or diffusers folder) from the vae folder, to use instead of a checkpoint's."
    inputs = {"vae_name": Combo(ModelChoices("vae"))}
    outputs = (Output(types.VAE),)
    aliases = (Alias("VAELoader"),)

    @classmethod
    def fingerprint(cls, constants):
        return model_file_stamp("vae", constants["vae_name"])

    def run(self, ctx, vae_name):
        from nodes.sd.loading import load_vae

        return (load_vae(ctx.folders.resolve_model("vae", vae_name), vae_name),)


class CLIPSetLastLayer(Node):
    display_name = "CLIP Set Last Layer"
    category = "conditioning"
    description = "Clip skip: read the text encoder output this many layers from the end (-1 last, -2 clip skip 2)."
    inputs = {"clip": Socket(types.CLIP), "stop_at_clip_layer": Int(-1, min=-24, max=-1, step=1)}
    outputs = (Output(types.CLIP),)

    def run(self, ctx, clip, stop_at_clip_layer):
        return (clip.replace(stop_at_layer=stop_at_clip_layer),)


NODES = (LoadCheckpoint, VAELoader, CLIPSetLastLayer)
