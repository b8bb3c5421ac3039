"""Diffusers-format configs for a single-file checkpoint: from the LDM .yaml beside it (A1111's convention
for non-standard models) or from the configs shipped for its family; text-encoder sizes from the weights."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from nodes.sd.families import Family, TextEncoderSpec
from nodes.sd.state_dicts import UNET_PREFIX, ModelFileError


def yaml_beside(path: Path) -> dict[str, Any] | None:
    for suffix in (".yaml", ".yml"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ModelFileError(f"{candidate.name}: not valid YAML ({exc})") from None
            if not isinstance(data, dict) or "model" not in data:
                raise ModelFileError(f"{candidate.name}: not an LDM config (no 'model' section)")
            return data
    return None


def yaml_prediction(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    params = config["model"].get("params", {}) or {}
    if params.get("parameterization") == "v":
        return "v_prediction"
    denoiser = (params.get("denoiser_config") or {}).get("params", {}) or {}
    scaling = str((denoiser.get("scaling_config") or {}).get("target", ""))
    if scaling.endswith("VScaling"):
        return "v_prediction"
    return "epsilon" if params else None


def shipped_config(family: Family, component: str) -> dict[str, Any]:
    path = family.config_path / component / "config.json"
    if not path.is_file():
        raise ModelFileError(f"no shipped {component} config for {family.title} ({path}); the install is incomplete")
    return json.loads(path.read_text(encoding="utf-8"))


def unet_config(family: Family, ldm: Mapping[str, Any] | None, state_dict: Mapping[str, torch.Tensor]) -> dict:
    if ldm is None:
        return shipped_config(family, "unet")
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    config = create_unet_diffusers_config_from_ldm(ldm, state_dict)
    if family.is_sdxl:
        # diffusers recognises SDXL only by the full-size context width; set the size conditioning from
        # the weights so scaled-down SDXL-layout models load as what they are.
        adm_in = int(state_dict[UNET_PREFIX + "label_emb.0.0.weight"].shape[1])
        pooled = _pooled_width(family, state_dict)
        n_ids = 6 if family.size_conditioning == "sdxl" else 5
        config.update(
            class_embed_type=None,
            addition_embed_type="text_time",
            addition_time_embed_dim=(adm_in - pooled) // n_ids,
            projection_class_embeddings_input_dim=adm_in,
        )
    return config


def _pooled_width(family: Family, state_dict: Mapping[str, torch.Tensor]) -> int:
    spec = family.text_encoders[-1]
    projection = state_dict.get(spec.prefix + "text_projection")
    if projection is None:
        raise ModelFileError("SDXL-layout checkpoint without the bigG text_projection")
    return int(projection.shape[1])


def vae_config(family: Family, ldm: Mapping[str, Any] | None, state_dict: Mapping[str, torch.Tensor]) -> dict:
    if ldm is None:
        return shipped_config(family, "vae")
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    return create_vae_diffusers_config_from_ldm(ldm, state_dict)


def _yaml_text_encoder_params(ldm: Mapping[str, Any] | None, index: int) -> dict[str, Any]:
    """`params` of the index-th text encoder entry in an LDM (cond_stage_config) or SGM (conditioner) yaml."""
    if not ldm:
        return {}
    params = ldm["model"].get("params", {}) or {}
    if "cond_stage_config" in params:
        return dict((params["cond_stage_config"] or {}).get("params", {}) or {})
    embedders = ((params.get("conditioner_config") or {}).get("params", {}) or {}).get("emb_models", [])
    text = [e for e in embedders if "Embedder" in str(e.get("target", "")) and "Timestep" not in str(e["target"])]
    return dict(text[index].get("params", {}) or {}) if index < len(text) else {}


def _count_layers(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in state_dict if (m := regex.match(key))}
    return max(indices) + 1 if indices else 0


def text_encoder_config(
    family: Family, spec: TextEncoderSpec, index: int, ldm: Mapping[str, Any] | None,
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """A CLIPTextConfig dict whose sizes come from the weights (so scaled-down models load too)."""
    p = spec.prefix
    if spec.layout == "clip":
        inner = p + "text_model." if p + "text_model.embeddings.token_embedding.weight" in state_dict else p
        token = state_dict[inner + "embeddings.token_embedding.weight"]
        positions = state_dict[inner + "embeddings.position_embedding.weight"]
        layers = _count_layers(state_dict, re.escape(inner) + r"encoder\.layers\.(\d+)\.")
        intermediate = state_dict[inner + "encoder.layers.0.mlp.fc1.weight"].shape[0]
        act, projection = "quick_gelu", int(token.shape[1])
    else:
        token = state_dict[p + "token_embedding.weight"]
        positions = state_dict[p + "positional_embedding"]
        layers = _count_layers(state_dict, re.escape(p) + r"transformer\.resblocks\.(\d+)\.")
        intermediate = state_dict[p + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        act = "gelu"
        proj = state_dict.get(p + "text_projection")
        projection = int(proj.shape[1]) if proj is not None else int(token.shape[1])
    hidden = int(token.shape[1])
    heads = int(_yaml_text_encoder_params(ldm, index).get("heads", max(1, hidden // 64)))
    if hidden % heads:
        raise ModelFileError(f"text encoder width {hidden} is not divisible by {heads} attention heads")
    return {
        "vocab_size": int(token.shape[0]),
        "hidden_size": hidden,
        "intermediate_size": int(intermediate),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": int(positions.shape[0]),
        "hidden_act": act,
        "projection_dim": projection,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
    }
