"""ControlNet: original-layout files (with/without prefix, .pth), diffusers folders, SD1.5 and SDXL; parity with
diffusers' ControlNet pipelines (strength, start/end, several ControlNets); the σ rule for start/end; hint
resizing; rows without controls; clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from support import adapter_harness as ah
from support import tiny_adapters as ta
from support.fixtures import tiny_checkpoint, tiny_controlnet  # noqa: F401
from support.tiny_models import make_corrupt_file

from graphcore.executor import Executor
from nodes.adapters.controlnet_apply import control_residual_hook, prepared_hint
from nodes.adapters.controlnet_loading import complete_config, load_controlnet
from nodes.sd.denoiser import COND, UNCOND, SamplingState
from nodes.sd.state_dicts import ModelFileError
from nodes.values import CondEntry, ControlApplication

CKPT = "tiny_sd1.safetensors"


def draw_hint(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, min(size), 4))
        draw.line((x0, y0, x1, y1), fill=(255, 255, 255), width=2)
    draw.ellipse((size[0] // 5, size[1] // 5, size[0] * 4 // 5, size[1] * 4 // 5), outline=(255, 255, 255), width=2)
    return image


@pytest.fixture(scope="module")
def files(tiny_checkpoint, tiny_controlnet, tmp_path_factory):  # noqa: F811
    sd1, sdxl = tiny_checkpoint("sd1"), tiny_checkpoint("sdxl")
    dest = tmp_path_factory.mktemp("controlnets")
    sdxl_controlnet = ta.build_sdxl_controlnet(sdxl, dest / "sdxl")
    return {
        "original": ta.place_controlnet(tiny_controlnet, sd1, dest, "cn"),
        "no_prefix": ta.place_controlnet(tiny_controlnet, sd1, dest, "cn_bare", prefix=False),
        "pth": ta.place_controlnet(tiny_controlnet, sd1, dest, "cn_pth", fmt="pth"),
        "no_yaml": ta.place_controlnet(tiny_controlnet, sd1, dest, "cn_no_yaml", with_yaml=False),
        "folder": tiny_controlnet.paths["diffusers"],
        "sdxl_file": ta.place_controlnet(sdxl_controlnet, sdxl, dest, "cn_sdxl"),
        "sdxl_folder": sdxl_controlnet.paths["diffusers"],
        "sdxl_module": sdxl_controlnet.controlnet,
    }


@pytest.fixture
def models(tiny_checkpoint, isolated_folders, files):  # noqa: F811
    tiny_checkpoint("sd1").link_into(isolated_folders.models_dir / "checkpoints")
    tiny_checkpoint("sdxl").link_into(isolated_folders.models_dir / "checkpoints")
    for key in ("original", "no_prefix", "pth", "no_yaml", "folder", "sdxl_file", "sdxl_folder"):
        path = files[key]
        (isolated_folders.models_dir / "controlnet" / path.name).symlink_to(path)
        if path.with_suffix(".yaml").is_file():
            (isolated_folders.models_dir / "controlnet" / f"{path.stem}.yaml").symlink_to(path.with_suffix(".yaml"))
    for index, size in enumerate(((64, 64), (64, 64), (128, 128), (96, 64))):
        draw_hint(size, index).save(isolated_folders.input_dir / f"hint{index}.png")
    return isolated_folders


def controlled(graph: dict, controls: list[tuple[str, str, float, float, float]], canny: bool = False) -> dict:
    """`graph` with ControlNetApplyAdvanced nodes in a row: (controlnet name, hint file, strength, start, end)."""
    graph = copy.deepcopy(graph)
    positive, negative = ["pos", 0], ["neg", 0]
    for index, (name, hint, strength, start, end) in enumerate(controls):
        graph[f"load{index}"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
        graph[f"image{index}"] = {"class_type": "LoadImage", "inputs": {"image": hint}}
        image = [f"image{index}", 0]
        if canny:
            graph[f"canny{index}"] = {"class_type": "Canny", "inputs": {
                "image": image, "low_threshold": 0.2, "high_threshold": 0.5}}
            graph[f"grab_hint{index}"] = {"class_type": "Grab", "inputs": {"value": [f"canny{index}", 0],
                                                                           "tag": f"hint{index}"}}
            image = [f"canny{index}", 0]
        graph[f"apply{index}"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": positive, "negative": negative, "control_net": [f"load{index}", 0], "image": image,
            "strength": strength, "start_percent": start, "end_percent": end}}
        positive, negative = [f"apply{index}", 0], [f"apply{index}", 1]
    graph["sampler"]["inputs"]["positive"] = positive
    graph["sampler"]["inputs"]["negative"] = negative
    return graph


def run(graph: dict) -> torch.Tensor:
    ah.run_graph(Executor(ah.registry()), graph)
    return ah.Grab.values["out"]


def controlnet_pipe(checkpoint, controlnet, sdxl: bool = False):
    import diffusers

    kwargs = checkpoint.pipeline_kwargs()
    kwargs.pop("requires_safety_checker", None)
    name = "StableDiffusionXLControlNetPipeline" if sdxl else "StableDiffusionControlNetPipeline"
    return getattr(diffusers, name)(**{**kwargs, "controlnet": controlnet})


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))


def test_original_layout_controlnet_matches_diffusers(models, tiny_checkpoint, tiny_controlnet, files):  # noqa: F811
    """Strength 0.8 from 0.0 to 0.5 of 2 steps: diffusers keeps step i while (i+1)/2 ≤ 0.5 (step 0), ComfyUI's rule
    while σ ≥ σ(t = 0.5·999) (t = 999; t = 499 is just below): the same step."""
    graph = ah.txt2img(CKPT, steps=2)
    ours = run(controlled(graph, [(files["original"].name, "hint0.png", 0.8, 0.0, 0.5)], canny=True))
    hint = ah.Grab.values["hint0"]
    assert set(hint.unique().tolist()) == {0.0, 1.0}  # a real Canny edge map drives it
    pipe = controlnet_pipe(tiny_checkpoint("sd1"), tiny_controlnet.controlnet)
    reference = ah.reference_image(pipe, steps=2, image=to_pil(hint), controlnet_conditioning_scale=0.8,
                                   control_guidance_start=0.0, control_guidance_end=0.5)
    assert (ours - reference).abs().max().item() < 1e-4
    whole_schedule = ah.reference_image(pipe, steps=2, image=to_pil(hint), controlnet_conditioning_scale=0.8)
    assert (ours - whole_schedule).abs().max().item() > 1e-3  # end_percent matters


def test_end_percent_is_measured_on_sigma_not_on_step_count(models, tiny_checkpoint, tiny_controlnet, files):  # noqa: F811
    """end 0.6 of 2 steps: ComfyUI's σ rule keeps t = 999 and 499 (σ ≥ σ(t = 399.6)); diffusers' step rule keeps
    only step 0 ((i+1)/2 ≤ 0.6). Its end 1.0 selects our two steps: that is the reference."""
    hint = Image.open(models.input_dir / "hint1.png")
    ours = run(controlled(ah.txt2img(CKPT, steps=2), [(files["original"].name, "hint1.png", 1.0, 0.0, 0.6)]))
    pipe = controlnet_pipe(tiny_checkpoint("sd1"), tiny_controlnet.controlnet)
    same_steps = ah.reference_image(pipe, steps=2, image=hint, control_guidance_end=1.0)
    step_rule = ah.reference_image(pipe, steps=2, image=hint, control_guidance_end=0.6)
    assert (ours - same_steps).abs().max().item() < 1e-4
    assert (ours - step_rule).abs().max().item() > 1e-3


def test_two_controlnets_add_up_like_diffusers_multi_controlnet(models, tiny_checkpoint, tiny_controlnet, files):  # noqa: F811
    hints = [Image.open(models.input_dir / f"hint{i}.png") for i in (0, 1)]
    ours = run(controlled(ah.txt2img(CKPT, steps=2), [(files["original"].name, "hint0.png", 0.5, 0.0, 1.0),
                                                      (files["folder"].name, "hint1.png", 0.3, 0.0, 1.0)]))
    pipe = controlnet_pipe(tiny_checkpoint("sd1"), [tiny_controlnet.controlnet, tiny_controlnet.controlnet])
    reference = ah.reference_image(pipe, steps=2, image=hints, controlnet_conditioning_scale=[0.5, 0.3])
    assert (ours - reference).abs().max().item() < 1e-4


def test_sdxl_controlnet_matches_diffusers(models, tiny_checkpoint, files):  # noqa: F811
    checkpoint = tiny_checkpoint("sdxl")
    hint = Image.open(models.input_dir / "hint0.png")
    graph = ah.txt2img("tiny_sdxl.safetensors", steps=2)
    ours = run(controlled(graph, [(files["sdxl_file"].name, "hint0.png", 0.9, 0.0, 1.0)]))
    pipe = controlnet_pipe(checkpoint, files["sdxl_module"], sdxl=True)
    # ComfyUI's size conditioning for a plain prompt is 768×768 (see nodes.sd.denoiser).
    reference = ah.reference_image(pipe, steps=2, image=hint, controlnet_conditioning_scale=0.9,
                                   original_size=(768, 768), target_size=(768, 768))
    assert (ours - reference).abs().max().item() < 1e-4
    folder = run(controlled(graph, [(files["sdxl_folder"].name, "hint0.png", 0.9, 0.0, 1.0)]))
    assert (folder - ours).abs().max().item() < 1e-5


@pytest.mark.parametrize("key", ["no_prefix", "pth", "folder"])
def test_every_layout_loads_the_same_weights(models, tiny_controlnet, files, key):  # noqa: F811
    handle = load_controlnet(models.models_dir / "controlnet" / files[key].name)
    reference = tiny_controlnet.controlnet.state_dict()
    loaded = handle.record.module.state_dict()
    assert sorted(loaded) == sorted(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert (handle.context_dim, handle.size_conditioning) == (32, False)


@pytest.mark.parametrize("family", ["controlnet_sd15", "controlnet_sdxl"])
def test_real_sizes_need_no_yaml(family, tmp_path):
    """The shapes of the real SD1.5/SDXL ControlNets (on the meta device) give back the shipped configs."""
    import json

    from diffusers import ControlNetModel

    from nodes.sd.families import CONFIG_ROOT
    from nodes.sd.ldm_layout import controlnet_to_ldm

    shipped = json.loads((CONFIG_ROOT / family / "config.json").read_text())
    with torch.device("meta"):
        module = ControlNetModel.from_config(shipped)
    state = controlnet_to_ldm(module.state_dict(), module.config, prefix="")
    config = complete_config(state, tmp_path / "real.safetensors")
    levels = len(shipped["block_out_channels"])

    def per_level(value):  # diffusers allows one value for all levels or one per level
        return list(value) if isinstance(value, (list, tuple)) else [value] * levels

    assert len(config) >= 10
    for key, value in config.items():
        expected = module.config[key]
        if isinstance(value, (list, tuple)) or isinstance(expected, (list, tuple)):
            value, expected = per_level(value), per_level(expected)
        assert value == expected, key


def test_hint_is_cropped_to_the_aspect_and_resized_nearest_exact():
    hint = torch.arange(2 * 6 * 4 * 3, dtype=torch.float32).reshape(2, 6, 4, 3) / 144  # [B, H=6, W=4, C]
    prepared = prepared_hint(hint, 2, 2, torch.device("cpu"), torch.float32)  # square: crop rows 1..4
    expected = hint[:, 1:5].movedim(-1, 1)[..., 1::2, 1::2]  # nearest-exact samples pixel centres
    assert prepared.shape == (2, 3, 2, 2) and torch.equal(prepared, expected)
    assert prepared_hint(hint, 2, 2, torch.device("cpu"), torch.float32) is prepared  # cached


def test_a_larger_hint_is_resized_to_the_latent(models, files):
    """A 128×128 hint on a 64×64 picture gives what its nearest-exact 64×64 version gives."""
    small = Image.open(models.input_dir / "hint2.png").resize((64, 64), Image.Resampling.NEAREST)
    expected = torch.from_numpy(np.asarray(Image.open(models.input_dir / "hint2.png"))[1::2, 1::2].copy())
    assert torch.equal(torch.from_numpy(np.asarray(small)), expected)  # PIL nearest = every other pixel
    small.save(models.input_dir / "small.png")
    big = run(controlled(ah.txt2img(CKPT, steps=2), [(files["original"].name, "hint2.png", 1.0, 0.0, 1.0)]))
    resized = run(controlled(ah.txt2img(CKPT, steps=2), [(files["original"].name, "small.png", 1.0, 0.0, 1.0)]))
    assert torch.equal(big, resized)


class _Job:
    def __init__(self, entry: CondEntry, branch: int) -> None:
        self.entry, self.branch = entry, branch


def test_rows_without_controls_get_no_residuals(models, files):
    handle = load_controlnet(models.models_dir / "controlnet" / files["original"].name)
    hint = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    application = ControlApplication(handle, hint, 0.7, 0.0, 1.0)
    embeds = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    jobs = [_Job(CondEntry(embeds, controls=(application,)), COND), _Job(CondEntry(embeds), UNCOND)]
    x_in = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))  # batch 2 per job
    timestep = torch.tensor([500, 500, 500, 500])
    context = embeds.expand(4, -1, -1).contiguous()
    kwargs: dict = {}
    state = SamplingState(torch.tensor([3.0, 3.0]), timestep, (8, 8), percent_to_sigma=lambda p: 14.6 * (1 - p))
    control_residual_hook(kwargs, x_in, context, jobs, state)
    down, mid = kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"]
    cond_hint = hint.movedim(-1, 1).expand(2, -1, -1, -1)
    direct_down, direct_mid = handle.record.module(
        x_in[:2], timestep[:2], encoder_hidden_states=context[:2], controlnet_cond=cond_hint, conditioning_scale=0.7,
        return_dict=False)
    assert all(torch.equal(d[2:], torch.zeros_like(d[2:])) for d in (*down, mid))
    pairs = zip((*down, mid), (*direct_down, direct_mid), strict=True)
    assert max((ours[:2] - direct).abs().max().item() for ours, direct in pairs) < 1e-6
    quiet: dict = {}
    late = SamplingState(torch.tensor([20.0, 20.0]), timestep, (8, 8), percent_to_sigma=lambda p: 14.6 * (1 - p))
    control_residual_hook(quiet, x_in, context, jobs, late)  # σ above start_percent's σ: inactive
    assert quiet == {}


def test_controlnet_apply_on_one_conditioning(models, files):
    graph = ah.txt2img(CKPT, steps=2, cfg=1.0)
    advanced = run(controlled(graph, [(files["original"].name, "hint0.png", 0.6, 0.0, 1.0)]))
    single = copy.deepcopy(graph)
    single["load"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": files["original"].name}}
    single["image"] = {"class_type": "LoadImage", "inputs": {"image": "hint0.png"}}
    single["apply"] = {"class_type": "ControlNetApply", "inputs": {
        "conditioning": ["pos", 0], "control_net": ["load", 0], "image": ["image", 0], "strength": 0.6}}
    single["sampler"]["inputs"]["positive"] = ["apply", 0]
    assert torch.equal(run(single), advanced)  # cfg 1: only the positive is evaluated


def run_error(graph: dict) -> str:
    result = Executor(ah.registry()).run(graph)
    assert result.status == "error"
    return result.error.exception_message


def test_a_controlnet_for_another_family_is_a_clear_error(models, files):
    graph = controlled(ah.txt2img("tiny_sdxl.safetensors", steps=1), [(files["original"].name, "hint0.png", 1, 0, 1)])
    message = run_error(graph)
    assert files["original"].name in message and "another model family" in message


def test_a_non_standard_controlnet_without_yaml_asks_for_one(models, files):
    message = run_error(controlled(ah.txt2img(CKPT), [(files["no_yaml"].name, "hint0.png", 1.0, 0.0, 1.0)]))
    assert "cn_no_yaml.safetensors" in message and "cn_no_yaml.yaml" in message


@pytest.mark.parametrize("corruption", ["truncated", "garbage"])
def test_a_corrupt_or_wrong_file_is_a_clear_error(models, files, corruption, tiny_checkpoint):  # noqa: F811
    folder = models.models_dir / "controlnet"
    broken = make_corrupt_file(files["original"], folder / "broken.safetensors", corruption)
    assert "broken.safetensors" in run_error(controlled(ah.txt2img(CKPT), [(broken.name, "hint0.png", 1, 0, 1)]))
    (folder / "checkpoint.safetensors").symlink_to(tiny_checkpoint("sd1").paths["safetensors"])
    with pytest.raises(ModelFileError, match="checkpoint.safetensors: not a ControlNet"):
        load_controlnet(folder / "checkpoint.safetensors")


def test_aliases_and_object_info():
    registry = ah.registry()
    assert registry.resolve("ControlNetApplyAdvanced").cls.__name__ == "ControlNet"
    info = registry.object_info_for("ControlNetApplyAdvanced")
    assert list(info["input"]["required"]) == ["positive", "negative", "control_net", "image", "strength",
                                               "start_percent", "end_percent"]
    assert info["output"] == ["CONDITIONING", "CONDITIONING"]
