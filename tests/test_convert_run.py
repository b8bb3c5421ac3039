"""Converted ComfyUI UI workflows run on a tiny SD1 checkpoint, file names remapped, and give the pictures of the
equivalent plain API graph (so primitives, reroutes, bypass, subgraphs and custom sampling really did what the
file meant, down to the pixel)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.fixtures import tiny_checkpoint  # noqa: F401

from graphcore.convert import ui_to_api
from graphcore.executor import Executor
from graphcore.registry import Registry

DATA = Path(__file__).parent / "data" / "comfy_ui"
TINY = "tiny_sd1.safetensors"
MODEL_MAP = {"v1-5-pruned-emaonly.safetensors": TINY}


def full_registry() -> Registry:
    from nodes.catalog import all_node_classes
    from nodes.conditioning import combine
    from nodes.image import load, save, transform
    from nodes.latent import scale
    from nodes.sampling import custom

    classes = [*all_node_classes(), *load.NODES, *save.NODES, *transform.NODES, *combine.NODES, *scale.NODES,
               *custom.NODES]
    return Registry().add_all(dict.fromkeys(classes))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return full_registry()


@pytest.fixture
def models(tiny_checkpoint, isolated_folders):  # noqa: F811
    tiny_checkpoint("sd1").link_into(isolated_folders.models_dir / "checkpoints")
    return isolated_folders


def txt2img(text: str, negative: str, seed: int, steps: int, cfg: float, sampler: str, scheduler: str,
            size: tuple[int, int] = (64, 64), prefix: str = "reference") -> dict:
    """The plain API graph that the UI files are equivalent to."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size[0], "height": size[1], "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


def run_pixels(registry: Registry, prompt: dict, folders) -> np.ndarray:
    result = Executor(registry).run(prompt)
    assert result.ok, result.error and result.error.exception_message
    images = [img for ui in result.outputs.values() for img in ui.get("images", [])]
    assert len(images) == 1
    with Image.open(folders.output_dir / images[0]["subfolder"] / images[0]["filename"]) as image:
        return np.asarray(image.convert("RGB"))


def converted(name: str, registry: Registry) -> dict:
    result = ui_to_api(json.loads((DATA / name).read_text()), registry, model_map=MODEL_MAP)
    assert result.report.missing_models == [] and result.report.unknown == {}
    return result.prompt


def test_default_ui_workflow_runs_on_the_tiny_checkpoint(registry, models):
    pixels = run_pixels(registry, converted("txt2img_v04.json", registry), models)
    reference = run_pixels(registry, txt2img(
        "beautiful scenery nature glass bottle landscape, purple galaxy bottle", "text, watermark",
        156680208700286, 3, 8.0, "euler", "normal"), models)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 1.0
    np.testing.assert_array_equal(pixels, reference)


def test_primitives_and_reroutes_reach_the_sampler(registry, models):
    pixels = run_pixels(registry, converted("primitive_reroute.json", registry), models)
    reference = run_pixels(registry, txt2img("a red fox in the snow", "ugly", 424242, 3, 7.0, "dpmpp_2m", "karras"),
                           models)
    np.testing.assert_array_equal(pixels, reference)
    stale = run_pixels(registry, txt2img("a red fox in the snow", "ugly", 1, 3, 7.0, "euler", "karras"), models)
    assert np.abs(pixels.astype(int) - stale).mean() > 1.0  # the widget values the primitives replaced differ


def test_bypassed_hires_pass_gives_the_first_pass_picture(registry, models):
    pixels = run_pixels(registry, converted("bypass.json", registry), models)
    reference = run_pixels(registry, txt2img("a quiet harbour", "fog", 5, 3, 7.0, "euler", "normal"), models)
    np.testing.assert_array_equal(pixels, reference)


def test_nested_subgraphs_run_like_the_flat_graph(registry, models):
    pixels = run_pixels(registry, converted("subgraph.json", registry), models)
    reference = run_pixels(registry, txt2img("a castle on a hill", "blurry", 99, 3, 6.0, "euler", "normal"), models)
    np.testing.assert_array_equal(pixels, reference)


def test_custom_sampling_matches_ksampler(registry, models):
    pixels = run_pixels(registry, converted("custom_sampling.json", registry), models)
    reference = run_pixels(registry, txt2img("an old tram in the rain", "sunny", 7, 3, 6.5, "dpmpp_2m", "karras"),
                           models)
    np.testing.assert_array_equal(pixels, reference)


def test_img2img_with_mask_from_load_image_nodes(registry, models):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, 32:, 3] = 0  # the right half transparent: LoadImageMask(alpha) marks it for regeneration
    Image.fromarray(rgba, "RGBA").save(models.input_dir / "example.png")
    pixels = run_pixels(registry, converted("load_image.json", registry), models)
    assert pixels.shape == (48, 64, 3)
