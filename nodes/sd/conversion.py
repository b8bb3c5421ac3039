"""Single-file (original LDM/SGM) state dicts → diffusers/transformers module state dicts.

UNet and VAE go through diffusers' own converters. Text encoders are converted here: CLIP is a prefix
strip; OpenCLIP needs its fused in_proj split, and diffusers' converter would drop SD2's last block
(which clip skip −1 reads) and split by the projection width instead of the model width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from nodes.sd.families import TextEncoderSpec


def unet_state_dict(checkpoint: Mapping[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(dict(checkpoint), config)


def vae_state_dict(checkpoint: Mapping[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(dict(checkpoint), config)


def clip_state_dict(checkpoint: Mapping[str, torch.Tensor], spec: TextEncoderSpec) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel names with the `text_model.` prefix (drop it for the flattened CLIPTextModel)."""
    out = {}
    for key, value in checkpoint.items():
        if key.startswith(spec.prefix):
            name = key[len(spec.prefix):]
            if not name.startswith("text_model."):
                name = "text_model." + name
            out[name] = value
    out.pop("text_model.embeddings.position_ids", None)
    return out


_OPEN_CLIP_RENAMES = (
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.out_proj.", "self_attn.out_proj."),
)
_RESBLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")


def open_clip_state_dict(checkpoint: Mapping[str, torch.Tensor], spec: TextEncoderSpec) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower (resblocks, fused in_proj) → HF CLIPTextModel(WithProjection) names."""
    p = spec.prefix
    out: dict[str, torch.Tensor] = {
        "text_model.embeddings.token_embedding.weight": checkpoint[p + "token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": checkpoint[p + "positional_embedding"],
        "text_model.final_layer_norm.weight": checkpoint[p + "ln_final.weight"],
        "text_model.final_layer_norm.bias": checkpoint[p + "ln_final.bias"],
    }
    if spec.with_projection and p + "text_projection" in checkpoint:
        out["text_projection.weight"] = checkpoint[p + "text_projection"].T.contiguous()
    for key, value in checkpoint.items():
        if not key.startswith(p):
            continue
        match = _RESBLOCK.match(key[len(p):])
        if not match:
            continue
        layer, rest = match.groups()
        base = f"text_model.encoder.layers.{layer}."
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = "weight" if rest.endswith("weight") else "bias"
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{base}self_attn.{name}.{kind}"] = chunk.contiguous()
            continue
        for old, new in _OPEN_CLIP_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        out[base + rest] = value
    return out


TEXT_CONVERTERS = {"clip": clip_state_dict, "open_clip": open_clip_state_dict}
