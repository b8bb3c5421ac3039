"""The shipped diffusers configs describe the real models: parameter counts on the meta device, agreement with the
original LDM/SGM yamls (as diffusers itself translates them), and consistency between components."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from nodes.sd.ldm_layout_yaml import ldm_yaml_config

DATA = Path(__file__).resolve().parent.parent / "nodes" / "data"
CONFIGS = DATA / "configs"
LDM_YAML = DATA / "ldm_yaml"

FAMILY_COMPONENTS = {
    "sd15": {"unet", "vae", "text_encoder", "scheduler"},
    "sd15_inpaint": {"unet", "vae", "text_encoder", "scheduler"},
    "sd2_base": {"unet", "vae", "text_encoder", "scheduler"},
    "sd2_v": {"unet", "vae", "text_encoder", "scheduler"},
    "sd2_inpaint": {"unet", "vae", "text_encoder", "scheduler"},
    "sdxl_base": {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"},
    "sdxl_refiner": {"unet", "vae", "text_encoder_2", "scheduler"},
    "sdxl_inpaint": {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"},
}

# Published sizes of the real models (SD1.5 UNet 859.52 M, SD2 UNet 865.91 M, SDXL UNet 2.567 B, CLIP ViT-L/14 text
# 123.06 M, OpenCLIP ViT-H/14 text without its last block 340.39 M, OpenCLIP bigG/14 text 694.66 M, SD VAE 83.65 M).
SD1_UNET, SD2_UNET, SDXL_UNET = 859_520_964, 865_910_724, 2_567_463_684
CLIP_L, OPEN_CLIP_H_23, OPEN_CLIP_BIG_G, SD_VAE = 123_060_480, 340_387_840, 694_659_840, 83_653_863
INPAINT_EXTRA = 5 * 320 * 3 * 3  # 5 more input channels (mask + masked-image latents) into a 320-wide 3×3 conv_in
# Counted from these configs (no independently published figure checked): guards against edits.
SDXL_REFINER_UNET, CONTROLNET_SD15, CONTROLNET_SDXL = 2_259_526_660, 361_279_120, 1_251_014_160

EXPECTED_PARAMETERS = {
    ("sd15", "unet"): SD1_UNET,
    ("sd15_inpaint", "unet"): SD1_UNET + INPAINT_EXTRA,
    ("sd2_base", "unet"): SD2_UNET,
    ("sd2_v", "unet"): SD2_UNET,
    ("sd2_inpaint", "unet"): SD2_UNET + INPAINT_EXTRA,
    ("sdxl_base", "unet"): SDXL_UNET,
    ("sdxl_inpaint", "unet"): SDXL_UNET + INPAINT_EXTRA,
    ("sdxl_refiner", "unet"): SDXL_REFINER_UNET,
    **{(family, "vae"): SD_VAE for family in FAMILY_COMPONENTS},
    **{(family, "text_encoder"): CLIP_L for family in ("sd15", "sd15_inpaint", "sdxl_base", "sdxl_inpaint")},
    **{(family, "text_encoder"): OPEN_CLIP_H_23 for family in ("sd2_base", "sd2_v", "sd2_inpaint")},
    **{(family, "text_encoder_2"): OPEN_CLIP_BIG_G for family in ("sdxl_base", "sdxl_refiner", "sdxl_inpaint")},
    ("controlnet_sd15", ""): CONTROLNET_SD15,
    ("controlnet_sdxl", ""): CONTROLNET_SDXL,
}

# Family → (original yaml, keys whose presence makes diffusers infer that family's nominal image size).
YAML_OF = {
    "sd15": "v1-inference",
    "sd15_inpaint": "v1-inpainting-inference",
    "sd2_base": "v2-inference",
    "sd2_v": "v2-inference-v",
    "sd2_inpaint": "v2-inpainting-inference",
    "sdxl_base": "sd_xl_base",
    "sdxl_refiner": "sd_xl_refiner",
}
LAYOUT_OF = {"sd15": "sd1", "sd15_inpaint": "sd1", "sd2_base": "sd2", "sd2_v": "sd2", "sd2_inpaint": "sd2",
             "sdxl_base": "sdxl", "sdxl_refiner": "sdxl_refiner"}  # fmt: skip


def load(family: str, component: str = "") -> dict[str, Any]:
    folder = CONFIGS / family / component
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((folder / name).read_text())


def plain(value: Any) -> Any:
    """Tuples → lists, recursively, so diffusers' output compares with JSON."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def effective(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """A config with the class's defaults for every key it leaves out."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {key: plain(value) for key, value in {**defaults, **config}.items()}


def build_on_meta(config: dict[str, Any]) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    classes = {"UNet2DConditionModel": UNet2DConditionModel, "AutoencoderKL": AutoencoderKL,
               "ControlNetModel": ControlNetModel}  # fmt: skip
    with init_empty_weights():
        if config.get("_class_name") in classes:
            return classes[config["_class_name"]].from_config(config)
        text_class = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
        return text_class[config["architectures"][0]](CLIPTextConfig(**config))


def test_every_family_ships_its_components() -> None:
    for family, components in FAMILY_COMPONENTS.items():
        assert {path.name for path in (CONFIGS / family).iterdir()} == components, family
    assert (CONFIGS / "controlnet_sd15" / "config.json").is_file()
    assert (CONFIGS / "controlnet_sdxl" / "config.json").is_file()


@pytest.mark.parametrize(("family", "component"), sorted(EXPECTED_PARAMETERS))
def test_parameter_count_on_meta_device(family: str, component: str) -> None:
    model = build_on_meta(load(family, component))
    assert sum(parameter.numel() for parameter in model.parameters()) == EXPECTED_PARAMETERS[family, component]


@pytest.mark.parametrize("family", sorted(FAMILY_COMPONENTS))
def test_scheduler_config(family: str) -> None:
    import diffusers

    config = load(family, "scheduler")
    scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
    expected = "v_prediction" if family == "sd2_v" else "epsilon"
    assert scheduler.config.prediction_type == expected
    assert (scheduler.config.beta_start, scheduler.config.beta_end) == (0.00085, 0.012)
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.num_train_timesteps == 1000


def test_sdxl_configs_agree_with_each_other() -> None:
    for family, time_ids in (("sdxl_base", 6), ("sdxl_inpaint", 6), ("sdxl_refiner", 5)):
        unet, big_g = load(family, "unet"), load(family, "text_encoder_2")
        text_width = big_g["hidden_size"] + (load(family, "text_encoder")["hidden_size"] if time_ids == 6 else 0)
        assert unet["cross_attention_dim"] == text_width
        pooled = big_g["projection_dim"] + time_ids * unet["addition_time_embed_dim"]
        assert unet["projection_class_embeddings_input_dim"] == pooled
        assert load(family, "vae")["scaling_factor"] == 0.13025


@pytest.mark.parametrize(("controlnet", "family"), [("controlnet_sd15", "sd15"), ("controlnet_sdxl", "sdxl_base")])
def test_controlnet_matches_its_unet(controlnet: str, family: str) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    control = effective(ControlNetModel, load(controlnet))
    unet = effective(UNet2DConditionModel, load(family, "unet"))
    shared = ("block_out_channels", "down_block_types", "layers_per_block", "cross_attention_dim",
              "attention_head_dim", "use_linear_projection", "addition_embed_type", "addition_time_embed_dim",
              "projection_class_embeddings_input_dim", "transformer_layers_per_block")  # fmt: skip
    assert {key: control[key] for key in shared} == {key: unet[key] for key in shared}


def family_signature(family: str) -> dict[str, torch.Tensor]:
    """The keys diffusers' infer_diffusers_model_type looks at, so it picks this family's nominal image size."""
    meta = lambda *shape: torch.empty(*shape, device="meta")  # noqa: E731
    signature: dict[str, torch.Tensor] = {}
    if family.startswith("sd2"):
        signature["model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"] = meta(320, 1024)
    if family.endswith("inpaint"):
        signature["model.diffusion_model.input_blocks.0.0.weight"] = meta(320, 9, 3, 3)
    if family == "sdxl_base":
        signature["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] = meta(1280)
    if family == "sdxl_refiner":
        signature["conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"] = meta(1280)
    return signature


# Not in the yaml: sample_size is the family's nominal resolution, which diffusers takes from its own family table;
# upcast_attention (SD2.1-768: true) is a from_single_file argument (the original code reads an environment flag).
NOT_IN_YAML = {"sample_size", "upcast_attention"}


@pytest.mark.parametrize("family", sorted(YAML_OF))
def test_original_yaml_translates_to_the_shipped_configs(family: str) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    original = yaml.safe_load((LDM_YAML / f"{YAML_OF[family]}.yaml").read_text())
    signature = family_signature(family)
    for cls, translate, component in (
        (UNet2DConditionModel, create_unet_diffusers_config_from_ldm, "unet"),
        (AutoencoderKL, create_vae_diffusers_config_from_ldm, "vae"),
    ):
        translated = effective(cls, translate(original, signature))
        shipped = effective(cls, load(family, component))
        differing = {
            key: (translated[key], shipped[key])
            for key in translated
            if key not in NOT_IN_YAML and translated[key] != shipped[key]
        }
        assert differing == {}, f"{family} {component}"


@pytest.mark.parametrize("family", sorted(YAML_OF))
def test_yaml_writer_reproduces_the_original_yaml(family: str) -> None:
    """ldm_yaml_config on the shipped configs gives the original yaml's architecture values."""
    encoders = ("text_encoder", "text_encoder_2")
    texts = {name: load(family, name) for name in encoders if name in FAMILY_COMPONENTS[family]}
    written = ldm_yaml_config(
        LAYOUT_OF[family], load(family, "unet"), load(family, "vae"), texts, load(family, "scheduler")
    )["model"]["params"]
    original = yaml.safe_load((LDM_YAML / f"{YAML_OF[family]}.yaml").read_text())["model"]["params"]
    network = "unet_config" if "unet_config" in original else "network_config"
    original_unet = original[network]["params"]
    if isinstance(original_unet["context_dim"], list):  # the refiner lists it per level; diffusers reads the first
        original_unet = {**original_unet, "context_dim": original_unet["context_dim"][0]}
    for key, value in written[network]["params"].items():
        assert original_unet.get(key) == value, f"{family}: {key}"
    # attn_type only picks an attention implementation (xformers or not) in SGM.
    ddconfig = {k: v for k, v in original["first_stage_config"]["params"]["ddconfig"].items() if k != "attn_type"}
    assert written["first_stage_config"]["params"]["ddconfig"] == ddconfig
    assert written["scale_factor"] == original["scale_factor"]
    assert written.get("parameterization") == original.get("parameterization")
    if "conditioning_key" in original:
        assert written["conditioning_key"] == original["conditioning_key"]
        assert written["cond_stage_config"] == original["cond_stage_config"]
    else:
        written_embedders = written["conditioner_config"]["params"]["emb_models"]
        original_embedders = original["conditioner_config"]["params"]["emb_models"]
        assert [(e["input_key"], e["target"]) for e in written_embedders] == [
            (e["input_key"], e["target"]) for e in original_embedders
        ]
