"""Sizes of the tiny test models: the real Stable Diffusion layouts, scaled down (a table, one row per family).

What is kept from the real models, because loaders and converters depend on it: the block structure and its
attention placement, 2 ResNets per UNet level, SD1's conv transformer projection vs SD2/SDXL's linear one,
9-channel inpainting UNets, a 4-level (f = 8) VAE with 32 norm groups, the 49,408-token vocabulary and 77
positions, CLIP-L's quick-GELU vs OpenCLIP's GELU, SD2's 24-block OpenCLIP tower of which diffusers keeps 23,
SDXL's two text encoders of *different* widths with ≥ 10 blocks in the second (diffusers detects SDXL by
``resblocks.9``), a ``text_projection`` narrower than its encoder (so a transposed projection cannot pass), and
the size conditioning (6 time ids for the base, 5 with the aesthetic score for the refiner).

Head counts deliberately differ from ``hidden_size // 64`` (the default loaders assume), so the yaml's
``heads`` entries are exercised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TEXT_COMMON: dict[str, Any] = {
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
CLIP_L = {**_TEXT_COMMON, "hidden_size": 32, "intermediate_size": 128, "num_attention_heads": 2,
          "num_hidden_layers": 3, "hidden_act": "quick_gelu", "projection_dim": 32}  # fmt: skip
# The whole OpenCLIP ViT-H text tower as it sits in SD2 files; diffusers' text_encoder drops the last block.
OPEN_CLIP_H_TOWER = {**_TEXT_COMMON, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
                     "num_hidden_layers": 24, "hidden_act": "gelu", "projection_dim": 64}  # fmt: skip
OPEN_CLIP_BIG_G = {**_TEXT_COMMON, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
                   "num_hidden_layers": 10, "hidden_act": "gelu", "projection_dim": 48}  # fmt: skip

TIME_EMBED = 8  # SDXL addition_time_embed_dim (256 in the real models)

_SD1_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": CLIP_L["hidden_size"],
    "attention_head_dim": 2,
}
_SD2_UNET = {**_SD1_UNET, "attention_head_dim": (2, 4), "use_linear_projection": True,
             "cross_attention_dim": OPEN_CLIP_H_TOWER["hidden_size"]}  # fmt: skip
_SDXL_UNET = {
    **_SD1_UNET,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "cross_attention_dim": CLIP_L["hidden_size"] + OPEN_CLIP_BIG_G["hidden_size"],
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED,
    "projection_class_embeddings_input_dim": OPEN_CLIP_BIG_G["projection_dim"] + 6 * TIME_EMBED,
}
# Like the real refiner, the last level has no attention; one transformer depth for every level.
_REFINER_UNET = {
    **_SDXL_UNET,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": 2,
    "attention_head_dim": (2, 4, 4),
    "cross_attention_dim": OPEN_CLIP_BIG_G["hidden_size"],
    "projection_class_embeddings_input_dim": OPEN_CLIP_BIG_G["projection_dim"] + 5 * TIME_EMBED,
}

VAE: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (32, 32, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
}

CONTROLNET_EMBEDDING_CHANNELS = (8, 16, 16, 32)  # four entries: the hint encoder downsamples 8×, like the VAE


@dataclass(frozen=True)
class TinySpec:
    """One tiny family: its single-file layout, shipped configs to borrow the scheduler from, and sizes."""

    family: str  # diffgraph family name (nodes.sd.families.FAMILIES)
    layout: str  # single-file layout (nodes.sd.ldm_layout.SINGLE_FILE_LAYOUTS)
    config_family: str  # nodes/data/configs/<config_family>: scheduler config
    pipeline: str  # diffusers pipeline class for reference runs
    unet: dict[str, Any]
    text_encoders: dict[str, dict[str, Any]]  # pipeline name → CLIPTextConfig kwargs (single-file tower)
    scaling_factor: float
    pipeline_options: dict[str, Any] = field(default_factory=dict)


TINY_SPECS: dict[str, TinySpec] = {
    spec.family: spec
    for spec in (
        TinySpec("sd1", "sd1", "sd15", "StableDiffusionPipeline", _SD1_UNET, {"text_encoder": CLIP_L}, 0.18215,
                 {"requires_safety_checker": False}),
        TinySpec("sd1_inpaint", "sd1", "sd15_inpaint", "StableDiffusionInpaintPipeline",
                 {**_SD1_UNET, "in_channels": 9}, {"text_encoder": CLIP_L}, 0.18215,
                 {"requires_safety_checker": False}),
        TinySpec("sd2_v", "sd2", "sd2_v", "StableDiffusionPipeline", _SD2_UNET, {"text_encoder": OPEN_CLIP_H_TOWER},
                 0.18215, {"requires_safety_checker": False}),
        TinySpec("sdxl", "sdxl", "sdxl_base", "StableDiffusionXLPipeline", _SDXL_UNET,
                 {"text_encoder": CLIP_L, "text_encoder_2": OPEN_CLIP_BIG_G}, 0.13025),
        TinySpec("sdxl_refiner", "sdxl_refiner", "sdxl_refiner", "StableDiffusionXLImg2ImgPipeline", _REFINER_UNET,
                 {"text_encoder_2": OPEN_CLIP_BIG_G}, 0.13025,
                 {"requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False}),
    )
}  # fmt: skip
FAMILY_ALIASES = {"sdxl_base": "sdxl", "sd15": "sd1", "sd15_inpaint": "sd1_inpaint"}


def tiny_spec(family: str) -> TinySpec:
    name = FAMILY_ALIASES.get(family, family)
    if name not in TINY_SPECS:
        known = sorted(TINY_SPECS) + sorted(FAMILY_ALIASES)
        raise ValueError(f"no tiny model for family {family!r}; known: {known}")
    return TINY_SPECS[name]
