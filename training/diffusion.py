"""Pieces the three diffusion trainings share: cached latents, captions, the weighted ε-loss, LR schedule."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import dataset
from training.common import images_to_tensor
from training.models import TOKENS, build_noise_scheduler, tokenizer

EMPTY_CAPTION = 0.1  # condition dropout: the model also learns the unconditional prediction (for CFG)
WARMUP_STEPS = 200


@functools.cache
def token_ids(caption: str) -> torch.Tensor:
    ids = tokenizer()(caption, padding="max_length", max_length=TOKENS, truncation=True).input_ids
    return torch.tensor(ids, dtype=torch.long)


def load_vae(work_dir: Path) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(work_dir / "vae" / "final").eval()


def load_base(work_dir: Path) -> tuple[Any, Any, Any]:
    """The trained (EMA) VAE, text encoder and UNet, frozen, for the ControlNet and LoRA trainings."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    final = work_dir / "unet" / "final"
    text_encoder = CLIPTextModel.from_pretrained(final / "text_encoder").eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(final / "unet").eval().requires_grad_(False)
    return load_vae(work_dir), text_encoder, unet


@torch.no_grad()
def encode_latents(work_dir: Path, count: int, style: str, seed: int) -> torch.Tensor:
    """Scaled VAE latents of items 0..count-1 of the data set (seed, style), cached in the work folder."""
    path = work_dir / f"latents_{style}_{seed}_{count}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    vae = load_vae(work_dir)
    chunks = []
    for start in tqdm(range(0, count, 256), desc=f"encoding {style} latents"):
        images = np.stack([dataset.render(dataset.sample_spec(seed, i, style))
                           for i in range(start, min(count, start + 256))])
        chunks.append(vae.encode(images_to_tensor(images)).latent_dist.mode() * vae.config.scaling_factor)
    latents = torch.cat(chunks).half()
    torch.save(latents, path)
    return latents


def training_captions(seed: int, step: int, specs: list[dataset.Spec], empty: float = EMPTY_CAPTION,
                      drop_position: float = dataset.DROP_POSITION) -> list[str]:
    """Captions of one batch: sometimes empty, sometimes without position or background."""
    rng = np.random.default_rng([seed, step, 7])
    captions = []
    for spec in specs:
        u_empty, u_position, u_background = rng.random(3)
        if u_empty < empty:
            captions.append("")
        else:
            captions.append(dataset.caption(spec, u_position >= drop_position,
                                            u_background >= dataset.DROP_BACKGROUND))
    return captions


class WeightedEpsilonLoss:
    """ε-MSE weighted by 1/ᾱ_t (normalised to mean 1): the v-prediction loss, for an ε-prediction model.

    With plain ε-loss the high-noise steps, where the layout is decided, carry almost no weight: swapping the
    position words does not change the loss, and the model learns to ignore them.
    """

    def __init__(self) -> None:
        self.noise_scheduler = build_noise_scheduler()
        inverse = 1.0 / self.noise_scheduler.alphas_cumprod
        self.weights = inverse / inverse.mean()
        self.timesteps = self.noise_scheduler.config.num_train_timesteps

    def noisy(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, self.timesteps, (x0.shape[0],), generator=generator)
        return self.noise_scheduler.add_noise(x0, noise, timesteps), noise, timesteps

    def __call__(self, prediction: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        return (per_sample * self.weights[timesteps]).mean()


def cosine_with_warmup(total_steps: int, floor: float = 0.05):
    """LR multiplier: linear warm-up, then cosine from 1 down to `floor`."""

    def multiplier(step: int) -> float:
        progress = min(1.0, step / total_steps)
        warm = min(1.0, (step + 1) / WARMUP_STEPS)
        return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    return multiplier
