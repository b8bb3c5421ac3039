"""Inpainting: encode with the area to regenerate greyed out, or mark a latent's area to regenerate."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Boolean, Int, Socket
from graphcore.node import Node, Output


class VAEEncodeForInpaint(Node):
    display_name = "VAE Encode (for Inpainting)"
    category = "latent/inpaint"
    description = (
        "Greys out the masked area, encodes, and marks the (grown) mask as the area to regenerate. Sample "
        "at denoise 1.0; the unmasked area is kept."
    )
    inputs = {
        "pixels": Socket(types.IMAGE),
        "vae": Socket(types.VAE),
        "mask": Socket(types.MASK),
        "grow_mask_by": Int(6, min=0, max=64, tooltip="Grow the mask by this many pixels for smoother seams"),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx, pixels, vae, mask, grow_mask_by=6):
        from nodes.sd import masks
        from nodes.sd.vae_ops import encode
        from nodes.values import Latent

        mask = masks.resize(mask, pixels.shape[1], pixels.shape[2])
        pixels, mask = masks.crop_to_multiple(pixels, mask)
        grown = masks.grow(mask, grow_mask_by)
        latent = encode(vae, masks.grey_fill(pixels, mask))
        return (Latent(latent, noise_mask=grown.round()),)


class SetLatentNoiseMask(Node):
    display_name = "Set Latent Noise Mask"
    category = "latent/inpaint"
    description = "Regenerate only where the mask is 1; elsewhere every step restores the (re-noised) input latent."
    inputs = {"samples": Socket(types.LATENT), "mask": Socket(types.MASK)}
    outputs = (Output(types.LATENT),)

    def run(self, ctx, samples, mask):
        from nodes.sd.masks import as_nchw

        return (samples.replace(noise_mask=as_nchw(mask)),)


class InpaintModelConditioning(Node):
    display_name = "Inpaint Model Conditioning"
    category = "conditioning/inpaint"
    description = (
        "For inpainting models (9-channel UNets): gives the model the mask and the greyed-out image through "
        "the conditioning, and returns the encoded original image to sample from."
    )
    inputs = {
        "positive": Socket(types.CONDITIONING),
        "negative": Socket(types.CONDITIONING),
        "vae": Socket(types.VAE),
        "pixels": Socket(types.IMAGE),
        "mask": Socket(types.MASK),
        "noise_mask": Boolean(True, tooltip="Also keep the unmasked area exactly (noise mask on the latent)"),
    }
    outputs = (Output(types.CONDITIONING, "positive"), Output(types.CONDITIONING, "negative"),
               Output(types.LATENT, "latent"))

    def run(self, ctx, positive, negative, vae, pixels, mask, noise_mask=True):
        from nodes.sd import masks
        from nodes.sd.vae_ops import encode
        from nodes.values import Latent

        mask = masks.resize(mask, pixels.shape[1], pixels.shape[2])
        pixels, mask = masks.crop_to_multiple(pixels, mask)
        concat_latent = encode(vae, masks.grey_fill(pixels, mask))
        original = encode(vae, pixels)
        extras = {"concat_latent": concat_latent, "concat_mask": mask}

        def with_concat(conditioning):
            return tuple(e.replace(extras={**e.extras, **extras}) for e in conditioning)

        latent = Latent(original, noise_mask=mask if noise_mask else None)
        return (with_concat(positive), with_concat(negative), latent)


NODES = (VAEEncodeForInpaint, SetLatentNoiseMask, InpaintModelConditioning)
