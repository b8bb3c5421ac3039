"""The tiny test checkpoints are real-layout models: every format holds the same tensors, diffusers' own conversion
and ``from_single_file`` read the single files back exactly, and the yaml beside them describes their sizes."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from support import fixtures
from support.tiny_models import (
    CORRUPTIONS,
    FORMATS,
    TINY_SPECS,
    build,
    build_components,
    make_corrupt_file,
    write_config_dir,
)

tiny_checkpoint = fixtures.tiny_checkpoint
tiny_controlnet = fixtures.tiny_controlnet

FAMILIES = sorted(TINY_SPECS)
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
# (single-file layout, text encoder) → (key layout, prefix in the file).
TEXT_LAYOUTS = {
    ("sd1", "text_encoder"): ("clip", "cond_stage_model.transformer."),
    ("sd2", "text_encoder"): ("open_clip", "cond_stage_model.model."),
    ("sdxl", "text_encoder"): ("clip", "conditioner.embedders.0.transformer."),
    ("sdxl", "text_encoder_2"): ("open_clip", "conditioner.embedders.1.model."),
    ("sdxl_refiner", "text_encoder_2"): ("open_clip", "conditioner.embedders.0.model."),
}


def assert_same_tensors(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], what: str) -> None:
    assert sorted(actual) == sorted(expected), what
    assert [key for key in expected if not torch.equal(expected[key], actual[key])] == [], what


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_format_holds_the_same_tensors(tiny_checkpoint, family: str) -> None:
    from safetensors.torch import load_file

    checkpoint = tiny_checkpoint(family, FORMATS)
    assert checkpoint.paths["yaml"] == checkpoint.paths["safetensors"].with_suffix(".yaml")
    assert checkpoint.paths["yaml"].with_suffix(".ckpt") == checkpoint.paths["ckpt"]
    single = load_file(checkpoint.paths["safetensors"])
    assert_same_tensors(checkpoint.single_file, single, "safetensors")
    legacy = torch.load(checkpoint.paths["ckpt"], map_location="cpu", weights_only=True)
    assert list(legacy) == ["state_dict"]
    assert_same_tensors(checkpoint.single_file, legacy["state_dict"], "ckpt")

    import diffusers

    pipeline_class = getattr(diffusers, checkpoint.spec.pipeline)
    folder = pipeline_class.from_pretrained(checkpoint.paths["diffusers"], local_files_only=True)
    for name in ("unet", "vae", *TEXT_ENCODERS):
        if name in checkpoint.components:
            expected = module_tensors(checkpoint.components[name])
            assert_same_tensors(expected, module_tensors(getattr(folder, name)), f"diffusers folder {name}")
    for name in ("tokenizer", "tokenizer_2"):
        if name in checkpoint.components:
            assert getattr(folder, name).pad_token == checkpoint.components[name].pad_token


@pytest.mark.parametrize("family", FAMILIES)
def test_single_file_converts_back_through_diffusers(tiny_checkpoint, family: str) -> None:
    from diffusers.loaders import single_file_utils as sfu

    checkpoint = tiny_checkpoint(family)
    single, components = checkpoint.single_file, checkpoint.components
    unet, vae = components["unet"], components["vae"]
    assert_same_tensors(module_tensors(unet), sfu.convert_ldm_unet_checkpoint(single, unet.config), "unet")
    assert_same_tensors(module_tensors(vae), sfu.convert_ldm_vae_checkpoint(single, vae.config), "vae")
    for name, model in components.items():
        if name not in TEXT_ENCODERS:
            continue
        layout, prefix = TEXT_LAYOUTS[checkpoint.spec.layout, name]
        if layout == "clip":
            back = sfu.convert_ldm_clip_checkpoint({k: v for k, v in single.items() if k.startswith(prefix)})
        else:
            back = sfu.convert_open_clip_checkpoint(model, single, prefix=prefix)
        if not hasattr(model, "text_model"):  # transformers ≥ 5.6 CLIPTextModel has no text_model level
            back = {key.removeprefix("text_model."): value for key, value in back.items()}
        assert_same_tensors(module_tensors(model), back, name)


@pytest.mark.parametrize("family", FAMILIES)
def test_from_single_file_loads_every_component_exactly(tiny_checkpoint, tmp_path: Path, family: str) -> None:
    import diffusers

    checkpoint = tiny_checkpoint(family)
    config_dir = write_config_dir(checkpoint, tmp_path / "config")
    assert not list(config_dir.rglob("*.safetensors")), "the config folder must hold no weights"
    pipeline = getattr(diffusers, checkpoint.spec.pipeline).from_single_file(
        str(checkpoint.paths["safetensors"]), config=str(config_dir), local_files_only=True
    )
    for name in ("unet", "vae", *TEXT_ENCODERS):
        if name in checkpoint.components:
            expected = module_tensors(checkpoint.components[name])
            assert_same_tensors(expected, module_tensors(getattr(pipeline, name)), f"from_single_file {name}")
    assert type(pipeline.scheduler) is type(checkpoint.scheduler)
    assert pipeline.scheduler.config.prediction_type == checkpoint.scheduler.config.prediction_type


def effective_unet_config(config: dict) -> dict:
    from diffusers import UNet2DConditionModel

    defaults = {name: p.default for name, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}  # fmt: skip
    plain = lambda v: [plain(i) for i in v] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return {key: plain(value) for key, value in {**defaults, **config}.items()}


# diffusers gives an SGM-layout UNet SDXL's text_time embedding only when its context is 1280 or 2048 wide (the real
# sizes); for these tiny ones it picks a class projection. A loader must set these from the yaml's size embedders.
SDXL_ADDITION_FIELDS = {"class_embed_type", "addition_embed_type", "addition_time_embed_dim"}


@pytest.mark.parametrize("family", FAMILIES)
def test_yaml_describes_the_tiny_sizes(tiny_checkpoint, family: str) -> None:
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    checkpoint = tiny_checkpoint(family)
    ldm = yaml.safe_load(checkpoint.paths["yaml"].read_text())
    unet_config = checkpoint.unet.config
    translated = effective_unet_config(create_unet_diffusers_config_from_ldm(ldm, checkpoint.single_file))
    actual = effective_unet_config(dict(unet_config))
    skipped = {"sample_size"} | (SDXL_ADDITION_FIELDS if checkpoint.spec.layout.startswith("sdxl") else set())
    differing = {k: (translated[k], actual[k]) for k in translated if k not in skipped and translated[k] != actual[k]}
    assert differing == {}

    vae = create_vae_diffusers_config_from_ldm(ldm, checkpoint.single_file)
    for key, value in vae.items():
        if key != "sample_size":
            expected = checkpoint.vae.config[key]
            assert (list(value) if isinstance(value, tuple) else value) == (
                list(expected) if isinstance(expected, tuple) else expected
            ), key

    params = ldm["model"]["params"]
    texts = _yaml_text_entries(params)
    for entry, name in zip(texts, [n for n in TEXT_ENCODERS if n in checkpoint.spec.text_encoders], strict=True):
        sizes = checkpoint.spec.text_encoders[name]
        assert entry.get("params", {}).get("heads") == sizes["num_attention_heads"]  # all tiny heads are non-default
    if checkpoint.spec.layout.startswith("sdxl"):
        embedders = params["conditioner_config"]["params"]["emb_models"]
        outdims = {e["params"]["outdim"] for e in embedders if e["target"].endswith("ConcatTimestepEmbedderND")}
        assert outdims == {unet_config.addition_time_embed_dim}
        adm_in_channels = params["network_config"]["params"]["adm_in_channels"]
        assert adm_in_channels == unet_config.projection_class_embeddings_input_dim
    prediction = checkpoint.scheduler.config.prediction_type
    assert (params.get("parameterization") == "v") == (prediction == "v_prediction")


def _yaml_text_entries(params: dict) -> list[dict]:
    if "cond_stage_config" in params:
        return [params["cond_stage_config"]]
    return [e for e in params["conditioner_config"]["params"]["emb_models"] if e["input_key"] == "txt"]


def test_builds_are_seeded(tmp_path: Path) -> None:
    _, first, _ = build_components("sd1", seed=3)
    _, again, _ = build_components("sd1", seed=3)
    _, other, _ = build_components("sd1", seed=4)
    for name in ("unet", "vae", "text_encoder"):
        assert_same_tensors(module_tensors(first[name]), module_tensors(again[name]), name)
        assert not torch.equal(first[name].state_dict()[next(iter(first[name].state_dict()))],
                               other[name].state_dict()[next(iter(other[name].state_dict()))])  # fmt: skip


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_no_tensor_is_constant(tiny_checkpoint, family: str) -> None:
    """Norm scales/shifts are randomised too, so a converter that swaps two of them cannot go unnoticed."""
    constant = [key for key, value in tiny_checkpoint(family).single_file.items()
                if value.numel() > 1 and bool((value == value.reshape(-1)[0]).all())]  # fmt: skip
    assert constant == []


def _run_reference(checkpoint) -> np.ndarray:
    pipeline = checkpoint.pipeline()
    pipeline.set_progress_bar_config(disable=True)
    kwargs = {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np",
              "generator": torch.Generator().manual_seed(0)}  # fmt: skip
    image = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    if checkpoint.spec.pipeline == "StableDiffusionInpaintPipeline":
        kwargs.update(image=image, mask_image=Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)))
    if checkpoint.spec.pipeline == "StableDiffusionXLImg2ImgPipeline":
        kwargs.update(image=image, strength=0.6)
    else:
        kwargs.update(height=64, width=64)
    return pipeline(**kwargs).images


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_pipeline_runs(tiny_checkpoint, family: str) -> None:
    first = _run_reference(tiny_checkpoint(family))
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    assert np.array_equal(first, _run_reference(tiny_checkpoint(family)))  # same seed, same image


def test_controlnet_loads_exactly(tiny_controlnet, tiny_checkpoint) -> None:
    from diffusers import ControlNetModel

    expected = module_tensors(tiny_controlnet.controlnet)
    folder = tiny_controlnet.paths["diffusers"]
    single = ControlNetModel.from_single_file(str(tiny_controlnet.paths["safetensors"]), config=str(folder),
                                              local_files_only=True)  # fmt: skip
    assert_same_tensors(expected, module_tensors(single), "from_single_file")
    assert_same_tensors(expected, module_tensors(ControlNetModel.from_pretrained(folder)), "from_pretrained")

    unet = tiny_checkpoint("sd1").unet
    for key in ("block_out_channels", "cross_attention_dim", "down_block_types", "layers_per_block"):
        assert tiny_controlnet.controlnet.config[key] == unet.config[key]
    with torch.no_grad():
        down, mid = tiny_controlnet.controlnet(
            torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=torch.randn(1, 77, 32),
            controlnet_cond=torch.rand(1, 3, 64, 64), return_dict=False,
        )  # fmt: skip
    assert len(down) == 6 and all(residual.abs().sum() > 0 for residual in (*down, mid))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_files_do_not_load(tiny_checkpoint, tmp_path: Path, kind: str) -> None:
    from safetensors.torch import load_file

    source = tiny_checkpoint("sd1").paths["safetensors"]
    broken = make_corrupt_file(source, tmp_path / f"broken-{kind}.safetensors", kind)
    assert broken.read_bytes() != source.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own SafetensorError
        load_file(broken)


def test_link_into(tiny_checkpoint, tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint("sd2_v", ("safetensors", "diffusers"))
    links = checkpoint.link_into(tmp_path / "checkpoints", ("safetensors", "diffusers"), name="my model")
    assert links["safetensors"].name == "my model.safetensors" and links["safetensors"].resolve().is_file()
    assert (tmp_path / "checkpoints" / "my model.yaml").resolve() == checkpoint.paths["yaml"].resolve()
    assert (links["diffusers"] / "unet" / "config.json").is_file()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sd3"):
        build("sd3", tmp_path)
    with pytest.raises(ValueError, match="onnx"):
        build("sd1", tmp_path, formats=("onnx",))
