"""Empty latents, VAE encode/decode (whole and tiled)."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Int, Socket
from graphcore.node import Alias, Node, Output

MAX_RESOLUTION = 16384


class EmptyLatent(Node):
    display_name = "Empty Latent Image"
    category = "latent"
    description = "A batch of empty (zero) latents of the given pixel size: where text-to-image sampling starts."
    inputs = {
        "width": Int(512, min=16, max=MAX_RESOLUTION, step=8),
        "height": Int(512, min=16, max=MAX_RESOLUTION, step=8),
        "batch_size": Int(1, min=1, max=4096),
    }
    outputs = (Output(types.LATENT),)
    aliases = (Alias("EmptyLatentImage"),)

    def run(self, ctx, width, height, batch_size):
        import torch

        from nodes.values import Latent

        return (Latent(torch.zeros(batch_size, 4, height // 8, width // 8)),)


class VAEDecode(Node):
    display_name = "VAE Decode"
    category = "latent"
    description = "Latents to images."
    inputs = {"samples": Socket(types.LATENT), "vae": Socket(types.VAE)}
    outputs = (Output(types.IMAGE),)

    def run(self, ctx, samples, vae):
        from nodes.sd.vae_ops import decode

        return (decode(vae, samples.samples),)


class VAEEncode(Node):
    display_name = "VAE Encode"
    category = "latent"
    description = "Images to latents (for img2img: sample with denoise < 1 from these)."
    inputs = {"pixels": Socket(types.IMAGE), "vae": Socket(types.VAE)}
    outputs = (Output(types.LATENT),)

    def run(self, ctx, pixels, vae):
        from nodes.sd.vae_ops import encode
        from nodes.values import Latent

        return (Latent(encode(vae, pixels)),)


def _tile_problems(constants: dict) -> dict[str, str]:
    if constants.get("overlap", 0) >= constants.get("tile_size", 512) // 2:
        return {"overlap": "must be less than half the tile size"}
    return {}


class VAEDecodeTiled(Node):
    display_name = "VAE Decode (Tiled)"
    category = "latent"
    description = "Decode in overlapping tiles to bound memory on large images; seams are blended."
    inputs = {
        "samples": Socket(types.LATENT),
        "vae": Socket(types.VAE),
        "tile_size": Int(512, min=64, max=4096, step=32),
        "overlap": Int(64, min=0, max=4096, step=32),
    }
    outputs = (Output(types.IMAGE),)

    check = classmethod(lambda cls, constants: _tile_problems(constants))

    def run(self, ctx, samples, vae, tile_size=512, overlap=64):
        from nodes.sd.vae_ops import decode_tiled

        return (decode_tiled(vae, samples.samples, tile_size, overlap),)


class VAEEncodeTiled(Node):
    display_name = "VAE Encode (Tiled)"
    category = "latent"
    description = "Encode in overlapping tiles to bound memory on large images."
    inputs = {
        "pixels": Socket(types.IMAGE),
        "vae": Socket(types.VAE),
        "tile_size": Int(512, min=64, max=4096, step=64),
        "overlap": Int(64, min=0, max=4096, step=32),
    }
    outputs = (Output(types.LATENT),)

    check = classmethod(lambda cls, constants: _tile_problems(constants))

    def run(self, ctx, pixels, vae, tile_size=512, overlap=64):
        from nodes.sd.vae_ops import encode_tiled
        from nodes.values import Latent

        return (Latent(encode_tiled(vae, pixels, tile_size, overlap)),)


NODES = (EmptyLatent, VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled)
