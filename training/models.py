"""The demo model's sizes (one table) and constructors for its diffusers / transformers modules.

Real SD1.x architecture at small width: the numbers below are all that differs from Stable Diffusion 1.5.
"""

from __future__ import annotations

from typing import Any

VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (32, 32, 64, 64),  # 4 levels: f = 8, as in SD (ControlNet's hint encoder needs it)
    "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 64,
}
TEXT = {
    "vocab_size": 49408,  # the real CLIP tokenizer
    "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    "max_position_embeddings": 77, "hidden_act": "quick_gelu",
}
UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4,
    # 8x8 and 4x4 levels with cross-attention, a 2x2 level (and middle block) that sees the whole layout.
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (64, 64, 128), "layers_per_block": 1,
    "cross_attention_dim": TEXT["hidden_size"], "attention_head_dim": 4,  # diffusers' name for the head count
    "norm_num_groups": 32,
}
# The standard SD1 noise schedule, so every sampler and schedule of diffgraph applies unchanged.
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
TOKENS = 77


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE)


def build_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**TEXT))


def build_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET)


def build_noise_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE, prediction_type="epsilon", clip_sample=False)


def tokenizer() -> Any:
    """The real CLIP tokenizer (diffgraph's offline one: the ids any SD1 checkpoint expects)."""
    from nodes.sd.tokenizers import clip_tokenizer

    return clip_tokenizer()
