"""The original LDM/SGM ``.yaml`` model config for diffusers component configs (A1111's "yaml beside the file").

A single-file checkpoint whose sizes are not a standard family's needs this yaml next to it: diffusers'
``create_unet_diffusers_config_from_ldm`` / ``create_vae_diffusers_config_from_ldm`` read it back. Text-encoder
sizes are not part of the original schema (loaders infer them from the weights); the head count is written as
``params: {heads: N}`` on the text encoder's entry whenever it differs from ``hidden_size // 64``.

Written in the schema of CompVis/Stability's ``v1-inference.yaml``/``v2-inference.yaml`` (``LatentDiffusion``) and
``sd_xl_base.yaml``/``sd_xl_refiner.yaml`` (SGM ``DiffusionEngine``), with only the inference-relevant keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Config = Mapping[str, Any]

# Every family name used in diffgraph (shipped configs, families table, test fixtures) → its single-file layout.
FAMILY_LAYOUT_NAMES: dict[str, str] = {
    "sd1": "sd1", "sd15": "sd1", "sd1_inpaint": "sd1", "sd15_inpaint": "sd1",
    "sd2": "sd2", "sd2_base": "sd2", "sd2_v": "sd2", "sd2_inpaint": "sd2",
    "sdxl": "sdxl", "sdxl_base": "sdxl", "sdxl_inpaint": "sdxl",
    "sdxl_refiner": "sdxl_refiner",
}  # fmt: skip

# Size-conditioning embedders of SDXL-layout UNets: the input keys whose Fourier features make up `adm_in_channels`.
_SDXL_TIME_INPUTS = {
    "sdxl": ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple"),
    "sdxl_refiner": ("original_size_as_tuple", "crop_coords_top_left", "aesthetic_score"),
}


def _levels_with_attention(unet: Config) -> list[int]:
    return [index for index, kind in enumerate(unet["down_block_types"]) if "CrossAttn" in kind]


def _head_params(unet: Config) -> dict[str, Any]:
    """LDM gives heads as a count (``num_heads``, SD1) or as channels per head (``num_head_channels``, SD2/SDXL)."""
    heads = unet["attention_head_dim"]
    if not unet.get("use_linear_projection"):
        if not isinstance(heads, int):
            raise ValueError(f"an SD1-style UNet needs one attention_head_dim (a head count), got {heads!r}")
        return {"num_heads": heads}
    per_level = [heads] * len(unet["block_out_channels"]) if isinstance(heads, int) else list(heads)
    widths = {channels // count for channels, count in zip(unet["block_out_channels"], per_level, strict=True)}
    if len(widths) != 1:
        raise ValueError(f"attention_head_dim {heads!r} gives different head widths per level: not expressible in LDM")
    return {"num_head_channels": widths.pop()}


def _unet_params(unet: Config, sgm: bool) -> dict[str, Any]:
    channels = list(unet["block_out_channels"])
    base = channels[0]
    if any(width % base for width in channels):
        raise ValueError(f"block_out_channels {channels} are not multiples of the first: not expressible in LDM")
    depth = unet.get("transformer_layers_per_block", 1)
    params: dict[str, Any] = {
        "in_channels": unet.get("in_channels", 4),
        "out_channels": unet.get("out_channels", 4),
        "model_channels": base,
        "attention_resolutions": sorted((2**level for level in _levels_with_attention(unet)), reverse=True),
        "num_res_blocks": unet["layers_per_block"],
        "channel_mult": [width // base for width in channels],
        **_head_params(unet),
        "transformer_depth": depth if isinstance(depth, int) else list(depth),
        "context_dim": unet["cross_attention_dim"],
    }
    if not sgm:  # LDM's UNetModel needs telling; SGM's always uses spatial transformers and the new head maths
        params.update(use_spatial_transformer=True, legacy=False)
    if unet.get("use_linear_projection"):
        params["use_linear_in_transformer"] = True
    if unet.get("addition_embed_type") == "text_time":
        params.update(num_classes="sequential", adm_in_channels=unet["projection_class_embeddings_input_dim"])
    return params


def _first_stage(vae: Config) -> dict[str, Any]:
    channels = list(vae["block_out_channels"])
    base = channels[0]
    latent = vae.get("latent_channels", 4)
    return {
        "target": "ldm.models.autoencoder.AutoencoderKL",
        "params": {
            "embed_dim": latent,
            "ddconfig": {
                "double_z": True,
                "z_channels": latent,
                "resolution": 256,
                "in_channels": vae.get("in_channels", 3),
                "out_ch": vae.get("out_channels", 3),
                "ch": base,
                "ch_mult": [width // base for width in channels],
                "num_res_blocks": vae["layers_per_block"],
                "attn_resolutions": [],
                "dropout": 0.0,
            },
            "lossconfig": {"target": "torch.nn.Identity"},
        },
    }


def _with_heads(params: dict[str, Any], text_encoder: Config) -> dict[str, Any]:
    hidden, heads = text_encoder["hidden_size"], text_encoder["num_attention_heads"]
    return {**params, "heads": heads} if heads != hidden // 64 else params


def _ldm_config(family: str, unet: Config, vae: Config, text_encoders: Mapping[str, Config], scheduler: Config) -> dict:
    inpaint = unet.get("in_channels", 4) == 9
    open_clip = family == "sd2"
    text = text_encoders["text_encoder"]
    cond_stage = (
        {"target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
         "params": _with_heads({"freeze": True, "layer": "penultimate"}, text)}
        if open_clip
        else {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder", "params": _with_heads({}, text)}
    )  # fmt: skip
    if not cond_stage["params"]:
        del cond_stage["params"]
    params: dict[str, Any] = {
        "linear_start": scheduler.get("beta_start", 0.00085),
        "linear_end": scheduler.get("beta_end", 0.012),
        "timesteps": scheduler.get("num_train_timesteps", 1000),
        "first_stage_key": "jpg",
        "cond_stage_key": "txt",
        "image_size": unet.get("sample_size", 64),
        "channels": vae.get("latent_channels", 4),
        "conditioning_key": "hybrid" if inpaint else "crossattn",
        "scale_factor": vae.get("scaling_factor", 0.18215),
        "use_ema": False,
    }
    if scheduler.get("prediction_type") == "v_prediction":
        params = {"parameterization": "v", **params}
    params["unet_config"] = {
        "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
        "params": _unet_params(unet, sgm=False),
    }
    params["first_stage_config"] = _first_stage(vae)
    params["cond_stage_config"] = cond_stage
    target = "LatentInpaintDiffusion" if inpaint else "LatentDiffusion"
    return {"model": {"target": f"ldm.models.diffusion.ddpm.{target}", "params": params}}


def _sgm_config(family: str, unet: Config, vae: Config, text_encoders: Mapping[str, Config], scheduler: Config) -> dict:
    embedders: list[dict[str, Any]] = []
    if family == "sdxl":
        clip_l = text_encoders["text_encoder"]
        embedders.append({
            "is_trainable": False, "input_key": "txt", "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": _with_heads({"layer": "hidden", "layer_idx": clip_l["num_hidden_layers"] - 1}, clip_l),
        })  # fmt: skip
    embedders.append({
        "is_trainable": False, "input_key": "txt", "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
        "params": _with_heads(
            {"freeze": True, "layer": "penultimate", "always_return_pooled": True, "legacy": False},
            text_encoders["text_encoder_2"],
        ),
    })  # fmt: skip
    for input_key in _SDXL_TIME_INPUTS[family]:
        embedders.append({
            "is_trainable": False, "input_key": input_key,
            "target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND",
            "params": {"outdim": unet["addition_time_embed_dim"]},
        })  # fmt: skip
    scaling = "VScaling" if scheduler.get("prediction_type") == "v_prediction" else "EpsScaling"
    first_stage = _first_stage(vae)
    first_stage["target"] = "sgm.models.autoencoder.AutoencoderKL"
    params = {
        "scale_factor": vae.get("scaling_factor", 0.13025),
        "disable_first_stage_autocast": True,
        "denoiser_config": {
            "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
            "params": {
                "num_idx": scheduler.get("num_train_timesteps", 1000),
                "scaling_config": {"target": f"sgm.modules.diffusionmodules.denoiser_scaling.{scaling}"},
                "discretization_config": {
                    "target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"
                },
            },
        },
        "network_config": {
            "target": "sgm.modules.diffusionmodules.openaimodel.UNetModel",
            "params": _unet_params(unet, sgm=True),
        },
        "conditioner_config": {"target": "sgm.modules.GeneralConditioner", "params": {"emb_models": embedders}},
        "first_stage_config": first_stage,
    }
    return {"model": {"target": "sgm.models.diffusion.DiffusionEngine", "params": params}}


_WRITERS = {"sd1": _ldm_config, "sd2": _ldm_config, "sdxl": _sgm_config, "sdxl_refiner": _sgm_config}


def ldm_yaml_config(
    family: str,
    unet: Config,
    vae: Config,
    text_encoders: Mapping[str, Config],
    scheduler: Config | None = None,
) -> dict[str, Any]:
    """The LDM/SGM config (a dict ready for ``yaml.safe_dump``) describing a model of these diffusers configs.

    ``family`` is any name in :data:`FAMILY_LAYOUT_NAMES` (its layout decides the schema); ``text_encoders`` maps
    pipeline names (``text_encoder``, ``text_encoder_2``) to CLIPTextConfig dicts of the *single-file* towers;
    ``scheduler`` gives betas and the prediction type (v-prediction → ``parameterization: v`` / ``VScaling``).
    """
    layout = FAMILY_LAYOUT_NAMES.get(family)
    if layout is None:
        raise ValueError(f"ldm_yaml_config: unknown family {family!r}; known: {sorted(FAMILY_LAYOUT_NAMES)}")
    return _WRITERS[layout](layout, unet, vae, text_encoders, scheduler or {})
