"""What ComfyUI's KSampler does around a sampler: noise the start, blend an inpaint mask, pass the seed.

All latents here are in the model's latent space (VAE latents already multiplied by the scaling factor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from nodes.samplers._common import Denoiser, StepCallback
from nodes.samplers.k_samplers import get_sampler
from nodes.samplers.model_sigmas import ModelSigmas, is_max_denoise
from nodes.samplers.noise import inpaint_noise

Tensor = torch.Tensor


def prepare_mask(mask: Tensor, shape: torch.Size | tuple[int, ...], device: torch.device) -> Tensor:
    """A noise mask ([H, W], [B, H, W] or [B, 1, H, W], any size) at the latent's shape [B, C, h, w].

    Bilinear resize to the latent size, repeated over channels and batch (ComfyUI's reshape_mask).
    """
    if mask.ndim < 2:
        raise ValueError(f"denoise_mask: expected [H, W], [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
    flat = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    resized = torch.nn.functional.interpolate(flat, size=tuple(shape[2:]), mode="bilinear")
    if resized.shape[1] < shape[1]:
        resized = resized.repeat(1, shape[1], 1, 1)[:, : shape[1]]
    batch = shape[0]
    if resized.shape[0] > batch:
        resized = resized[:batch]
    elif resized.shape[0] < batch:
        resized = resized.repeat(math.ceil(batch / resized.shape[0]), 1, 1, 1)[:batch]
    return resized.to(device)


class _InpaintDenoiser:
    """KSamplerX0Inpaint: before each call the kept region (mask 0) is reset to the input latent re-noised to
    the current σ; after it, the kept region of the estimate is the input latent itself."""

    def __init__(self, model: Denoiser, latent_image: Tensor, noise: Tensor, mask: Tensor | None):
        self.model = model
        self.latent_image = latent_image
        self.noise = noise
        self.mask = mask

    def __call__(self, x: Tensor, sigma: Tensor, **extra_args: Any) -> Tensor:
        extra_args.pop("seed", None)
        if self.mask is None:
            return self.model(x, sigma, **extra_args)
        keep = 1.0 - self.mask
        sigma_b = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
        x = x * self.mask + (self.latent_image + self.noise * sigma_b) * keep
        out = self.model(x, sigma, **extra_args)
        return out * self.mask + self.latent_image * keep


def sample(
    model: Denoiser,
    noise: Tensor | None,
    latent_image: Tensor,
    sigmas: Tensor,
    sampler_name: str,
    seed: int,
    callback: StepCallback | None = None,
    add_noise: bool = True,
    denoise_mask: Tensor | None = None,
    extra_args: Mapping[str, Any] | None = None,
    model_sigmas: ModelSigmas | None = None,
    sampler_options: Mapping[str, Any] | None = None,
) -> Tensor:
    """Run one sampler over `sigmas` from `latent_image` plus `noise`; returns the final latent.

    - model(x, sigma_batch, **extra_args) → denoised x̂₀ (the caller's UNet + CFG), same device as x;
    - noise: the initial noise (`prepare_noise`), unscaled; ignored (zeros) when add_noise is False;
    - start: x = latent_image + noise·sqrt(1 + σ₀²) when σ₀ is the model's σ_max (a run from pure noise,
      ComfyUI's rule), else latent_image + noise·σ₀ (img2img, KSamplerAdvanced from a later step);
    - denoise_mask: 1 = regenerate, 0 = keep the input latent (ComfyUI's KSamplerX0Inpaint at every call);
    - seed: seeds the per-step noise of ancestral/SDE samplers (passed as extra_args["seed"]);
    - model_sigmas: needed to decide the start scaling; taken from `model.model_sigmas` when not given.
    An empty schedule returns `latent_image` unchanged.
    """
    spec = get_sampler(sampler_name)
    if len(sigmas) == 0:
        return latent_image
    if model_sigmas is None:
        model_sigmas = getattr(model, "model_sigmas", None)
        if model_sigmas is None:
            raise ValueError("sample: pass model_sigmas (the model's σ table) or give the model a .model_sigmas")
    device = latent_image.device
    latent_image = latent_image.float()
    if not add_noise or noise is None:
        noise = torch.zeros_like(latent_image)
    noise = noise.to(device=device, dtype=torch.float32)
    if noise.shape != latent_image.shape:
        raise ValueError(f"sample: noise shape {tuple(noise.shape)} differs from latent {tuple(latent_image.shape)}")
    sigmas = sigmas.to(device=device, dtype=torch.float32)

    mask = None if denoise_mask is None else prepare_mask(denoise_mask, latent_image.shape, device)
    blend_noise = noise
    if spec.inpaint_random_noise:
        blend_noise = inpaint_noise(noise.shape, seed, like=noise)
    denoiser = _InpaintDenoiser(model, latent_image, blend_noise, mask)

    sigma_0 = sigmas[0]
    if is_max_denoise(model_sigmas, float(sigma_0)):
        x = noise * torch.sqrt(1.0 + sigma_0**2.0)
    else:
        x = noise * sigma_0
    x = x + latent_image

    args = {**dict(extra_args or {}), "seed": seed}
    out = spec.function(denoiser, x, sigmas, args, callback, None, **dict(sampler_options or {}))
    if mask is not None and float(sigmas[-1]) == 0.0:
        # Analytically the kept region already equals the input latent when the run ends at σ = 0; this
        # removes the last float rounding so "keep" means bit-for-bit.
        out = out * mask + latent_image * (1.0 - mask)
    return out
