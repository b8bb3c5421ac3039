"""Cheap live previews: a linear map from latent channels to RGB (no VAE), per latent format."""

from __future__ import annotations

import torch

# Least-squares fits of RGB on the scaled latents of each family's VAE (published community factors).
LATENT_RGB = {
    "sd1": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
         [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
}


def latent_preview(latent: torch.Tensor, sdxl: bool = False, min_size: int = 64):
    """A PIL image of the first latent in the batch (model latent space), nearest-upscaled to ≥ min_size."""
    from PIL import Image

    factors, bias = LATENT_RGB["sdxl" if sdxl else "sd1"]
    x = latent[0].float().cpu()
    if x.shape[0] != len(factors):
        x = x[:3] if x.shape[0] >= 3 else x.repeat(3, 1, 1)[:3]
        rgb = x.permute(1, 2, 0)
    else:
        rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(factors)) + torch.tensor(bias)
    pixels = (((rgb + 1.0) / 2.0).clamp(0, 1) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    scale = max(1, -(-min_size // max(image.size)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image
