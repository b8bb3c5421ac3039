"""diffusers → original single-file layout, checked against diffusers' own ldm → diffusers conversion functions:
every tensor comes back exactly, with no key missing or extra (small random models), and real-size models (on the
meta device) produce the keys and shapes diffusers expects and detects as their family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from nodes.sd.ldm_layout import (
    clip_text_to_ldm,
    controlnet_to_ldm,
    open_clip_text_to_ldm,
    pipeline_to_single_file,
    unet_to_ldm,
    vae_to_ldm,
)

CONFIGS = Path(__file__).resolve().parent.parent / "nodes" / "data" / "configs"


def assert_same_tensors(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    unequal = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert unequal == []


def assert_same_shapes(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    assert {k: tuple(v.shape) for k, v in actual.items()} == {k: tuple(v.shape) for k, v in expected.items()}


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every tensor distinct (norms are 1/0 and ControlNet zero convolutions 0 at init)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return module


SMALL_UNETS = {
    "sd1": dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2),
    "sd2_one_layer_per_block": dict(block_out_channels=(32, 64, 64), layers_per_block=1,
                                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                    cross_attention_dim=48, attention_head_dim=(2, 4, 4), use_linear_projection=True),
    "sdxl_inpaint": dict(block_out_channels=(32, 64), in_channels=9,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 3),
                         cross_attention_dim=96, attention_head_dim=(2, 4), use_linear_projection=True,
                         addition_embed_type="text_time", addition_time_embed_dim=8,
                         projection_class_embeddings_input_dim=96),
    "class_projection": dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                             attention_head_dim=2, class_embed_type="projection",
                             projection_class_embeddings_input_dim=16),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMALL_UNETS))
def test_unet_round_trip(name: str) -> None:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = randomized(UNet2DConditionModel(sample_size=8, **SMALL_UNETS[name]))
    original = unet_to_ldm(unet.state_dict(), unet.config)
    assert all(key.startswith("model.diffusion_model.") for key in original)
    assert_same_tensors(unet.state_dict(), convert_ldm_unet_checkpoint(original, unet.config))


def test_unet_known_original_names() -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, **SMALL_UNETS["sdxl_inpaint"])
    original = unet_to_ldm(unet.state_dict(), unet.config, prefix="")
    assert original["input_blocks.0.0.weight"].shape[1] == 9
    assert torch.equal(original["label_emb.0.0.weight"], unet.add_embedding.linear_1.weight)
    assert torch.equal(original["input_blocks.1.0.in_layers.0.weight"], unet.down_blocks[0].resnets[0].norm1.weight)
    assert torch.equal(original["input_blocks.3.0.op.weight"], unet.down_blocks[0].downsamplers[0].conv.weight)
    block = unet.down_blocks[1].attentions[0].transformer_blocks[2].attn2.to_k.weight
    assert torch.equal(original["input_blocks.4.1.transformer_blocks.2.attn2.to_k.weight"], block)
    assert torch.equal(original["output_blocks.2.2.conv.weight"], unet.up_blocks[0].upsamplers[0].conv.weight)
    assert torch.equal(original["out.2.bias"], unet.conv_out.bias)


@pytest.mark.parametrize(("levels", "layers"), [(4, 1), (2, 2)])
def test_vae_round_trip(levels: int, layers: int) -> None:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = randomized(AutoencoderKL(block_out_channels=(32,) * levels, down_block_types=("DownEncoderBlock2D",) * levels,
                                   up_block_types=("UpDecoderBlock2D",) * levels, layers_per_block=layers))  # fmt: skip
    original = vae_to_ldm(vae.state_dict())
    # The original attention is made of 1×1 convolutions; the decoder counts levels from the bottom.
    assert original["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (32, 32, 1, 1)
    top = vae.decoder.up_blocks[0].resnets[0].conv1.weight
    assert torch.equal(original[f"first_stage_model.decoder.up.{levels - 1}.block.0.conv1.weight"], top)
    assert_same_tensors(vae.state_dict(), convert_ldm_vae_checkpoint(original, vae.config))


def test_controlnet_round_trip() -> None:
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    sizes = {key: value for key, value in SMALL_UNETS["sd1"].items() if key != "up_block_types"}
    controlnet = randomized(ControlNetModel(**sizes, conditioning_embedding_out_channels=(8, 16, 16, 32)))
    original = controlnet_to_ldm(controlnet.state_dict(), controlnet.config)
    assert {"control_model.input_hint_block.14.weight", "control_model.zero_convs.5.0.weight",
            "control_model.middle_block_out.0.bias"} <= set(original)  # fmt: skip
    assert_same_tensors(controlnet.state_dict(), convert_controlnet_checkpoint(original, controlnet.config))


def text_encoder(with_projection: bool, **sizes: Any) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(**{"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                               "num_hidden_layers": 2, "max_position_embeddings": 77, **sizes})  # fmt: skip
    return randomized((CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config))


@pytest.mark.parametrize("with_text_model_level", [False, True])
@pytest.mark.parametrize("prefix", ["cond_stage_model.transformer.", "conditioner.embedders.0.transformer."])
def test_clip_round_trip(prefix: str, with_text_model_level: bool) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    weights = text_encoder(False).state_dict()
    given = {f"text_model.{key}": value for key, value in weights.items()} if with_text_model_level else weights
    original = clip_text_to_ldm(given, prefix)
    assert f"{prefix}text_model.embeddings.token_embedding.weight" in original
    back = {key.removeprefix("text_model."): value for key, value in convert_ldm_clip_checkpoint(original).items()}
    assert_same_tensors(weights, back)


@pytest.mark.parametrize(
    "prefix", ["cond_stage_model.model.", "conditioner.embedders.1.model.", "conditioner.embedders.0.model."]
)
def test_open_clip_round_trip_with_projection(prefix: str) -> None:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    model = text_encoder(True, hidden_size=64, num_attention_heads=4, projection_dim=48, hidden_act="gelu")
    original = open_clip_text_to_ldm(model.state_dict(), prefix)
    assert original[prefix + "text_projection"].shape == (64, 48)  # stored as x @ P
    assert torch.equal(original[prefix + "text_projection"], model.text_projection.weight.T)
    fused = original[prefix + "transformer.resblocks.1.attn.in_proj_weight"]
    attention = model.text_model.encoder.layers[1].self_attn
    assert torch.equal(fused, torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
    expected = model.state_dict()
    if prefix == "cond_stage_model.model.":  # diffusers' SD2 text encoder has no projection: it skips that key
        del expected["text_projection.weight"]
    assert_same_tensors(expected, convert_open_clip_checkpoint(model, original, prefix=prefix))


def test_open_clip_round_trip_without_projection() -> None:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    model = text_encoder(False, hidden_size=64, num_attention_heads=4, hidden_act="gelu")
    original = open_clip_text_to_ldm(model.state_dict(), "cond_stage_model.model.")
    back = convert_open_clip_checkpoint(model, original, prefix="cond_stage_model.model.")
    assert_same_tensors(model.state_dict(), {key.removeprefix("text_model."): value for key, value in back.items()})


def test_unknown_keys_are_named() -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, **SMALL_UNETS["sd1"])
    weights = {**unet.state_dict(), "lora_unet_down.alpha": torch.zeros(())}
    with pytest.raises(ValueError, match="lora_unet_down.alpha"):
        unet_to_ldm(weights, unet.config)
    with pytest.raises(ValueError, match="layers_per_block"):
        unet_to_ldm(unet.state_dict(), {**unet.config, "layers_per_block": [2, 2]})


def test_text_encoder_errors() -> None:
    model = text_encoder(True)
    with pytest.raises(ValueError, match="text_projection"):
        clip_text_to_ldm(model.state_dict(), "cond_stage_model.transformer.")
    incomplete = {k: v for k, v in model.state_dict().items() if "layers.0.self_attn.k_proj" not in k}
    with pytest.raises(ValueError, match="k_proj"):
        open_clip_text_to_ldm(incomplete, "cond_stage_model.model.")
    with pytest.raises(ValueError, match="vision_model"):
        clip_text_to_ldm({"vision_model.embeddings.patch_embedding.weight": torch.zeros(1)}, "x.")


def test_pipeline_to_single_file_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="unknown family 'sd3'"):
        pipeline_to_single_file({}, "sd3")
    with pytest.raises(ValueError, match="text_encoder_2"):
        pipeline_to_single_file({"unet": object(), "vae": {}, "text_encoder": {}}, "sdxl")


# --- real sizes, on the meta device -------------------------------------------------------------------------------

# Shipped family → (single-file layout, what diffusers' infer_diffusers_model_type must call the file).
REAL_FAMILIES = {
    "sd15": ("sd1", "v1"), "sd15_inpaint": ("sd1", "inpainting"), "sd2_base": ("sd2", "v2"), "sd2_v": ("sd2", "v2"),
    "sd2_inpaint": ("sd2", "inpainting_v2"), "sdxl_base": ("sdxl", "xl_base"),
    "sdxl_inpaint": ("sdxl", "xl_inpaint"), "sdxl_refiner": ("sdxl_refiner", "xl_refiner"),
}  # fmt: skip


def meta_components(family: str) -> dict[str, Any]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(component: str) -> dict[str, Any]:
        return json.loads((CONFIGS / family / component / "config.json").read_text())

    components: dict[str, Any] = {}
    with init_empty_weights():
        components["unet"] = UNet2DConditionModel.from_config(config("unet"))
        components["vae"] = AutoencoderKL.from_config(config("vae"))
        for name in ("text_encoder", "text_encoder_2"):
            if (CONFIGS / family / name).is_dir():
                text = config(name)
                if family.startswith("sd2"):  # the file holds the whole 24-block OpenCLIP-H tower with projection
                    tower = {**text, "num_hidden_layers": text["num_hidden_layers"] + 1, "projection_dim": 1024}
                    components[name] = CLIPTextModelWithProjection(CLIPTextConfig(**tower))
                else:
                    cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
                    components[name] = cls(CLIPTextConfig(**text))
    return components


@pytest.mark.parametrize("family", sorted(REAL_FAMILIES))
def test_real_size_layout(family: str) -> None:
    from diffusers.loaders import single_file_utils as sfu

    layout, diffusers_name = REAL_FAMILIES[family]
    components = meta_components(family)
    checkpoint = pipeline_to_single_file(components, family)
    assert sfu.infer_diffusers_model_type(checkpoint) == diffusers_name

    unet, vae = components["unet"], components["vae"]
    assert_same_shapes(unet.state_dict(), sfu.convert_ldm_unet_checkpoint(checkpoint, unet.config))
    assert_same_shapes(vae.state_dict(), sfu.convert_ldm_vae_checkpoint(checkpoint, vae.config))
    if layout == "sd1":
        text = {k.removeprefix("text_model."): v for k, v in sfu.convert_ldm_clip_checkpoint(checkpoint).items()}
        assert_same_shapes(components["text_encoder"].state_dict(), text)
    elif layout == "sd2":
        # diffusers drops block 23 and the projection: what remains is its 23-block text encoder.
        assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in checkpoint
        tower = components["text_encoder"]
        back = sfu.convert_open_clip_checkpoint(tower, checkpoint, prefix="cond_stage_model.model.")
        kept = {k: v for k, v in tower.state_dict().items() if "layers.23." not in k and "text_projection" not in k}
        assert_same_shapes(kept, back)
    else:
        prefix = "conditioner.embedders.1.model." if layout == "sdxl" else "conditioner.embedders.0.model."
        big_g = components["text_encoder_2"]
        assert_same_shapes(big_g.state_dict(), sfu.convert_open_clip_checkpoint(big_g, checkpoint, prefix=prefix))
    if layout == "sdxl":
        clip_l = {k: v for k, v in checkpoint.items() if k.startswith("conditioner.embedders.0.")}
        text = {k.removeprefix("text_model."): v for k, v in sfu.convert_ldm_clip_checkpoint(clip_l).items()}
        assert_same_shapes(components["text_encoder"].state_dict(), text)
    prefixes = {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders."}
    assert all(key.startswith(tuple(prefixes)) for key in checkpoint)


def test_real_size_controlnet_layout() -> None:
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel
    from diffusers.loaders import single_file_utils as sfu

    with init_empty_weights():
        controlnet = ControlNetModel.from_config(json.loads((CONFIGS / "controlnet_sd15" / "config.json").read_text()))
    checkpoint = controlnet_to_ldm(controlnet.state_dict(), controlnet.config)
    assert sfu.infer_diffusers_model_type(checkpoint) == "controlnet"
    assert_same_shapes(controlnet.state_dict(), sfu.convert_controlnet_checkpoint(checkpoint, controlnet.config))
    assert checkpoint["control_model.input_hint_block.14.weight"].shape == (320, 256, 3, 3)
