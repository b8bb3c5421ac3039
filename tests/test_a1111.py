"""A1111 `parameters`: parsing real-world-shaped texts, sampler/schedule mapping, txt2img graphs, writing."""

from __future__ import annotations

import pytest
from PIL import Image
from support.fixtures import tiny_checkpoint  # noqa: F401

from graphcore import types
from graphcore.a1111 import (
    A1111ParseError,
    comfy_sampler,
    format_parameters,
    match_checkpoint,
    parse_parameters,
    parse_settings_line,
    txt2img_graph,
)
from graphcore.inputs import Float, Int, Socket, String
from graphcore.node import Node, Output
from graphcore.registry import Registry
from graphcore.validation import validate
from graphcore.workflow import Workflow

MODERN = """masterpiece, best quality, 1girl, (silver hair:1.2), looking at viewer,
cherry blossoms, <lora:detailTweaker:0.6>
Negative prompt: (worst quality, low quality:1.4), bad hands,
extra fingers
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 2441843109, Size: 512x768, \
Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, \
Denoising strength: 0.45, Clip skip: 2, ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, \
Hires upscale: 2, Hires steps: 12, Hires upscaler: Latent (nearest-exact), \
Lora hashes: "detailTweaker: e4c9e8b1b2a5", TI hashes: "easynegative: c74b4e810b03, badhandv4: 5e40d722fe", \
Version: v1.9.4"""

LEGACY = """a photo of an astronaut riding a horse on mars
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, Version: v1.6.0"""

SDXL = """cinematic photo of a lighthouse at dusk, 35mm
Negative prompt: cartoon, painting
Steps: 40, Sampler: DPM++ 2M SDE Karras, CFG scale: 5, Seed: 77, Size: 1024x1024, Model hash: 31e35c80fc, \
Model: sd_xl_base_1.0, Denoising strength: 0.3, Hires upscale: 1.5, Hires upscaler: 4x-UltraSharp, Version: v1.7.0"""


# ------------------------------------------------------------------------------------------------- parsing


def test_modern_text_every_field():
    p = parse_parameters(MODERN)
    assert p["prompt"] == (
        "masterpiece, best quality, 1girl, (silver hair:1.2), looking at viewer,\ncherry blossoms, "
        "<lora:detailTweaker:0.6>"
    )
    assert p["negative_prompt"] == "(worst quality, low quality:1.4), bad hands,\nextra fingers"
    assert (p["steps"], p["sampler"], p["schedule_type"], p["cfg"], p["seed"]) == (
        28, "DPM++ 2M", "Karras", 6.5, 2441843109)
    assert (p["width"], p["height"], p["model"], p["model_hash"]) == (512, 768, "anything-v5", "7f96a1a9ca")
    assert (p["denoise"], p["clip_skip"], p["hires_upscale"], p["hires_steps"]) == (0.45, 2, 2.0, 12)
    assert p["hires_upscaler"] == "Latent (nearest-exact)"
    assert (p["sampler_name"], p["scheduler"]) == ("dpmpp_2m", "karras")
    assert p["extra"] == {
        "VAE hash": "735e4c3a44",
        "ADetailer model": "face_yolov8n.pt",
        "ADetailer confidence": "0.3",
        "Lora hashes": "detailTweaker: e4c9e8b1b2a5",
        "TI hashes": "easynegative: c74b4e810b03, badhandv4: 5e40d722fe",
    }
    assert p["vae"] == "vae-ft-mse-840000-ema-pruned.safetensors" and p["version"] == "v1.9.4"
    assert list(p["settings"])[:3] == ["Steps", "Sampler", "Schedule type"] and len(p["settings"]) == 20
    assert p["warnings"] == []


def test_legacy_text_without_negative_prompt():
    p = parse_parameters(LEGACY)
    assert p["prompt"] == "a photo of an astronaut riding a horse on mars"
    assert p["negative_prompt"] == ""
    assert (p["sampler_name"], p["scheduler"], p["steps"], p["cfg"], p["seed"]) == (
        "euler_ancestral", "normal", 20, 7.0, 1234)
    assert "schedule_type" not in p and "denoise" not in p


@pytest.mark.parametrize(
    ("label", "schedule", "expected"),
    [
        ("Euler a", None, ("euler_ancestral", "normal")),
        ("Euler", "Karras", ("euler", "karras")),
        ("DPM++ 2M Karras", None, ("dpmpp_2m", "karras")),
        ("DPM++ 2M", "Karras", ("dpmpp_2m", "karras")),
        ("DPM++ 2M", None, ("dpmpp_2m", "karras")),  # 1.9+: "Automatic" is Karras for this sampler
        ("DPM++ 2M", "Uniform", ("dpmpp_2m", "normal")),
        ("DPM++ SDE Karras", None, ("dpmpp_sde", "karras")),
        ("DPM++ 2M SDE Exponential", None, ("dpmpp_2m_sde", "exponential")),
        ("DPM++ 2M SDE", "SGM Uniform", ("dpmpp_2m_sde", "sgm_uniform")),
        ("DPM++ 3M SDE", "Automatic", ("dpmpp_3m_sde", "exponential")),
        ("DPM2 a Karras", None, ("dpm_2_ancestral", "karras")),
        ("LMS Karras", None, ("lms", "karras")),
        ("Heun", "Beta", ("heun", "beta")),
        ("DDIM", None, ("ddim", "ddim_uniform")),
        ("UniPC", "Simple", ("uni_pc", "simple")),
        ("LCM", None, ("lcm", "normal")),
        ("dpmpp_2m_sde_gpu", "exponential", ("dpmpp_2m_sde_gpu", "exponential")),  # ComfyUI names pass through
    ],
)
def test_sampler_table(label, schedule, expected):
    warnings: list[str] = []
    assert comfy_sampler(label, schedule, warnings) == expected
    assert warnings == []


def test_unknown_sampler_and_schedule_are_reported():
    warnings: list[str] = []
    assert comfy_sampler("Restart", None, warnings) == (None, "normal")
    assert comfy_sampler("Euler", "Align Your Steps", warnings) == ("euler", "normal")
    assert len(warnings) == 2 and "Restart" in warnings[0] and "Align Your Steps" in warnings[1]


def test_settings_line_quoting_and_bad_values():
    assert parse_settings_line('A: 1, B: "x, y: z", C: plain text, D: "say \\"hi\\""') == [
        ("A", "1"), ("B", "x, y: z"), ("C", "plain text"), ("D", 'say "hi"')]
    p = parse_parameters("cat\nSteps: twenty, Sampler: Euler, Seed: 3, Size: 64x64")
    assert "steps" not in p and p["extra"]["Steps"] == "twenty" and "Steps" in p["warnings"][0]
    assert (p["seed"], p["width"], p["height"]) == (3, 64, 64)


def test_text_without_settings_line_is_all_prompt():
    p = parse_parameters("just a prompt, with commas\nand: a second line")
    assert p["prompt"] == "just a prompt, with commas\nand: a second line"
    assert p["settings"] == {}
    with pytest.raises(A1111ParseError):
        parse_parameters("  \n ")


# ----------------------------------------------------------------------------------------------- the graph


def _stub(name: str, inputs: dict, outputs: tuple[str, ...]) -> type[Node]:
    return type(name, (Node,), {"inputs": inputs, "outputs": tuple(Output(t) for t in outputs)})


def stub_registry() -> Registry:
    """Our built-in names with ComfyUI's input names and output slots: checks links and types of the graphs."""
    from nodes.image.save import SaveImage
    from nodes.image.transform import ImageScale, ImageScaleBy

    latent_in = {"samples": Socket(types.LATENT), "upscale_method": String("")}
    classes = [
        _stub("LoadCheckpoint", {"ckpt_name": String("")}, (types.MODEL, types.CLIP, types.VAE)),
        _stub("CLIPSetLastLayer", {"clip": Socket(types.CLIP), "stop_at_clip_layer": Int(-1, min=-24, max=-1)},
              (types.CLIP,)),
        _stub("CLIPEncode", {"text": String(""), "clip": Socket(types.CLIP)}, (types.CONDITIONING,)),
        _stub("EmptyLatent", {"width": Int(512), "height": Int(512), "batch_size": Int(1)}, (types.LATENT,)),
        _stub("KSampler", {"model": Socket(types.MODEL), "seed": Int(0), "steps": Int(20), "cfg": Float(8.0),
                           "sampler_name": String(""), "scheduler": String(""),
                           "positive": Socket(types.CONDITIONING), "negative": Socket(types.CONDITIONING),
                           "latent_image": Socket(types.LATENT), "denoise": Float(1.0)}, (types.LATENT,)),
        _stub("VAEDecode", {"samples": Socket(types.LATENT), "vae": Socket(types.VAE)}, (types.IMAGE,)),
        _stub("VAEEncode", {"pixels": Socket(types.IMAGE), "vae": Socket(types.VAE)}, (types.LATENT,)),
        _stub("LatentUpscaleBy", {**latent_in, "scale_by": Float(1.5)}, (types.LATENT,)),
        _stub("LatentUpscale", {**latent_in, "width": Int(0), "height": Int(0), "crop": String("")},
              (types.LATENT,)),
        SaveImage, ImageScale, ImageScaleBy,
    ]
    return Registry().add_all(classes)


def assert_valid(graph: dict) -> None:
    report = validate(Workflow.from_api(graph), stub_registry())
    assert report.ok, report.sentences()


def test_txt2img_graph_from_legacy_text():
    warnings: list[str] = []
    graph = txt2img_graph(parse_parameters(LEGACY), checkpoints=["v1-5-pruned-emaonly.safetensors"],
                          warnings=warnings)
    assert_valid(graph)
    assert warnings == []
    assert set(graph) == {"3", "4", "5", "6", "7", "8", "9"}
    assert graph["4"]["inputs"] == {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}
    assert graph["3"]["inputs"] == {
        "seed": 1234, "steps": 20, "cfg": 7.0, "sampler_name": "euler_ancestral", "scheduler": "normal",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1.0}
    assert graph["5"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}
    assert graph["6"]["inputs"] == {"text": "a photo of an astronaut riding a horse on mars", "clip": ["4", 1]}
    assert graph["7"]["inputs"] == {"text": "", "clip": ["4", 1]}
    assert graph["8"]["inputs"] == {"samples": ["3", 0], "vae": ["4", 2]}
    assert graph["9"]["inputs"] == {"images": ["8", 0], "filename_prefix": "diffgraph"}


def test_clip_skip_and_latent_hires_fix():
    graph = txt2img_graph(parse_parameters(MODERN), checkpoints=["anime/anything-v5.safetensors"])
    assert_valid(graph)
    assert graph["4"]["inputs"]["ckpt_name"] == "anime/anything-v5.safetensors"
    assert graph["10"] == {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2},
                           "_meta": {"title": "CLIP Set Last Layer"}}
    assert graph["6"]["inputs"]["clip"] == ["10", 0] and graph["7"]["inputs"]["clip"] == ["10", 0]
    assert graph["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 1}
    assert graph["11"]["class_type"] == "LatentUpscaleBy"
    assert graph["11"]["inputs"] == {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 2.0}
    second = graph["12"]["inputs"]
    assert (second["steps"], second["denoise"], second["seed"], second["latent_image"]) == (12, 0.45, 2441843109,
                                                                                           ["11", 0])
    assert (second["sampler_name"], second["scheduler"], second["cfg"]) == ("dpmpp_2m", "karras", 6.5)
    assert graph["8"]["inputs"]["samples"] == ["12", 0]


def test_model_upscaler_hires_fix_becomes_an_image_upscale():
    warnings: list[str] = []
    graph = txt2img_graph(parse_parameters(SDXL), warnings=warnings)
    assert_valid(graph)
    assert graph["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert (graph["3"]["inputs"]["sampler_name"], graph["3"]["inputs"]["scheduler"]) == ("dpmpp_2m_sde", "karras")
    assert graph["13"]["inputs"] == {"samples": ["3", 0], "vae": ["4", 2]}
    assert graph["14"]["inputs"] == {"image": ["13", 0], "upscale_method": "lanczos", "scale_by": 1.5}
    assert graph["11"] == {"class_type": "VAEEncode", "inputs": {"pixels": ["14", 0], "vae": ["4", 2]},
                           "_meta": {"title": "Hires Encode"}}
    assert graph["12"]["inputs"]["steps"] == 40 and graph["12"]["inputs"]["denoise"] == 0.3
    assert any("4x-UltraSharp" in w for w in warnings)


def test_hires_resize_to_a_size():
    text = ("x\nSteps: 10, Sampler: Euler, Seed: 5, Size: 512x512, Hires resize: 1024x768, Hires upscaler: Latent, "
            "Denoising strength: 0.6")
    graph = txt2img_graph(parse_parameters(text))
    assert_valid(graph)
    assert graph["11"]["inputs"] == {"samples": ["3", 0], "upscale_method": "bilinear", "width": 1024,
                                     "height": 768, "crop": "disabled"}


def test_unknown_sampler_missing_model_and_random_seed_are_warned():
    warnings: list[str] = []
    params = parse_parameters("x\nSteps: 10, Sampler: Restart, Seed: -1, Size: 64x64, Model: nowhere")
    graph = txt2img_graph(params, checkpoints=["other.safetensors"], warnings=warnings)
    assert_valid(graph)
    assert graph["3"]["inputs"]["sampler_name"] == "euler" and graph["3"]["inputs"]["seed"] == 0
    assert graph["4"]["inputs"]["ckpt_name"] == "nowhere.safetensors"
    assert len(warnings) == 4  # no counterpart, replaced by euler, seed, missing checkpoint


def test_checkpoint_matching():
    names = ["SD15/DreamShaper_8.safetensors", "v1-5-pruned-emaonly.ckpt", "sdxl-folder"]
    assert match_checkpoint("dreamshaper_8", names) == "SD15/DreamShaper_8.safetensors"
    assert match_checkpoint("v1-5-pruned-emaonly", names) == "v1-5-pruned-emaonly.ckpt"
    assert match_checkpoint("sdxl-folder", names) == "sdxl-folder"
    assert match_checkpoint("SD15/DreamShaper_8", names) == "SD15/DreamShaper_8.safetensors"
    assert match_checkpoint("dreamshaper", names) is None


# ------------------------------------------------------------------------------------------------- writing


def test_format_then_parse_round_trip():
    settings = {
        "prompt": "a castle, (on a hill:1.3)\nmisty morning", "negative_prompt": "blurry, lowres",
        "steps": 25, "sampler_name": "dpmpp_2m", "scheduler": "karras", "cfg": 7.5, "seed": 123456789012,
        "width": 768, "height": 512, "model": "sd15/dreamshaper_8.safetensors", "denoise": 0.55, "clip_skip": 2,
        "extra": {"Version": "diffgraph", "Note": "a, b: c"},
    }
    text = format_parameters(settings)
    assert text.splitlines()[-1] == (
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 123456789012, Size: 768x512, "
        'Model: dreamshaper_8, Denoising strength: 0.55, Clip skip: 2, Version: diffgraph, Note: "a, b: c"')
    p = parse_parameters(text)
    assert (p["prompt"], p["negative_prompt"]) == (settings["prompt"], settings["negative_prompt"])
    assert (p["sampler_name"], p["scheduler"], p["steps"], p["cfg"], p["seed"]) == ("dpmpp_2m", "karras", 25, 7.5,
                                                                                   123456789012)
    assert (p["width"], p["height"], p["model"], p["denoise"], p["clip_skip"]) == (768, 512, "dreamshaper_8", 0.55, 2)
    assert p["extra"] == {"Note": "a, b: c"}


@pytest.mark.parametrize(("sampler", "scheduler"), [("euler_ancestral", "normal"), ("ipndm", "beta"),
                                                    ("ddim", "ddim_uniform"), ("uni_pc_bh2", "linear_quadratic")])
def test_every_sampler_reads_back(sampler, scheduler):
    text = format_parameters({"prompt": "p", "steps": 4, "sampler_name": sampler, "scheduler": scheduler,
                              "cfg": 8.0, "seed": 0, "width": 64, "height": 64})
    assert "CFG scale: 8," in text and "Denoising" not in text and "Negative prompt" not in text
    p = parse_parameters(text)
    assert (p["sampler_name"], p["scheduler"]) == (sampler, scheduler)


# ---------------------------------------------------------------------- end to end on a tiny SD1.x checkpoint


def test_a1111_text_runs_and_its_png_reads_back(tiny_checkpoint, isolated_folders):  # noqa: F811
    """A1111 text → txt2img graph → real run on a tiny checkpoint → PNG whose `parameters` say the same."""
    from graphcore.executor import Executor
    from graphcore.metadata import png_text_chunks, read_image_workflow
    from nodes.catalog import all_node_classes
    from nodes.image import load, save, transform

    tiny_checkpoint("sd1").link_into(isolated_folders.models_dir / "checkpoints" / "sd15", name="tiny_one")
    registry = Registry().add_all([*all_node_classes(), *load.NODES, *save.NODES, *transform.NODES])
    text = ("a cat on a roof\nNegative prompt: dog, blurry\nSteps: 3, Sampler: DPM++ 2M Karras, CFG scale: 5, "
            "Seed: 7, Size: 64x48, Model: tiny_one, Clip skip: 2")
    warnings: list[str] = []
    graph = txt2img_graph(parse_parameters(text), checkpoints=isolated_folders.list_models("checkpoints"),
                          warnings=warnings)
    assert warnings == [] and graph["4"]["inputs"]["ckpt_name"] == "sd15/tiny_one.safetensors"
    result = Executor(registry).run(graph)
    assert result.ok, result.error and result.error.exception_message
    (saved,) = result.outputs["9"]["images"]
    path = isolated_folders.output_dir / saved["filename"]
    with Image.open(path) as image:
        assert image.size == (64, 48)
    assert png_text_chunks(path)["parameters"] == (
        "a cat on a roof\nNegative prompt: dog, blurry\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 5, Seed: 7, Size: 64x48, Model: tiny_one, Clip skip: 2, Version: diffgraph")
    assert read_image_workflow(path).api == graph
