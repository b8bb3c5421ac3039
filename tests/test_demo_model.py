"""The built-in demo model (nodes/data/demo): found without configuration, its pictures match their prompts on
held-out captions, and every capability changes the picture the way it should. Everything runs through
diffgraph's own executor and nodes on the shipped files; pictures are scored by the exact analytic checker
(training/checker.py), not by eye."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from support import parity_helpers as ph

from graphcore import folders as folder_config
from graphcore import types
from nodes import DEMO_DIR
from training import checker, dataset
from training.diffgraph_generate import CHECKPOINT_NAME, LORA_NAME, txt2img_workflow
from training.generate import score
from training.train_lora import outlined_fraction

CONTROLNET_NAME = "demo_canny_controlnet.safetensors"
WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.fixture(scope="module")
def executor():
    return ph.executor()


def image_of(executor, workflow: dict, source: list) -> np.ndarray:
    """Run `workflow` and return the IMAGE at `source` as floats [B, H, W, 3] in [0, 1]."""
    workflow = copy.deepcopy(workflow)
    ph.capture(workflow, "captured", source, types.IMAGE, "image")
    ph.run_ok(executor, workflow)
    return ph.captured("image").float().numpy()


def txt2img(executor, prompt: str, seed: int, **options) -> np.ndarray:
    workflow = txt2img_workflow(prompt, seed, **options)
    del workflow["preview"]
    return image_of(executor, workflow, ["decode", 0])[0]


def uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def workflow_api(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())["api"]


def foreground(image: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background (the median colour) as much as the checker requires."""
    background = np.median(image.reshape(-1, 3), axis=0)
    return np.linalg.norm(image - background, axis=-1) > checker.FOREGROUND_DISTANCE / 255


def redness(image: np.ndarray) -> float:
    shape = image[foreground(image)]
    return float((shape[:, 0] - (shape[:, 1] + shape[:, 2]) / 2).mean())


# ------------------------------------------------------------------------------------------------ the files
def test_demo_files_are_listed_without_configuration():
    folders = folder_config.current()  # the test's own empty models folder: only the built-in roots hold files
    assert CHECKPOINT_NAME in folders.list_models("checkpoints")
    assert LORA_NAME in folders.list_models("loras")
    assert CONTROLNET_NAME in folders.list_models("controlnet")
    choices = ph.registry().object_info_for("LoadCheckpoint")["input"]["required"]["ckpt_name"][0]
    assert CHECKPOINT_NAME in choices


def test_demo_files_are_small_fp16_in_their_real_formats():
    files = sorted(DEMO_DIR.rglob("*.safetensors"))
    assert {f.name for f in files} == {CHECKPOINT_NAME, LORA_NAME, CONTROLNET_NAME}
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    layouts = {CHECKPOINT_NAME: ("model.diffusion_model.", "first_stage_model.", "cond_stage_model."),
               CONTROLNET_NAME: ("control_model.",), LORA_NAME: ("lora_unet_", "lora_te_")}
    for file in files:
        with safe_open(file, "pt") as handle:
            keys = list(handle.keys())
            dtypes = {str(handle.get_slice(k).get_dtype()) for k in keys if not k.endswith(".alpha")}
        assert dtypes == {"F16"}, (file.name, dtypes)
        for prefix in layouts[file.name]:
            assert any(k.startswith(prefix) for k in keys), (file.name, prefix)
    assert (DEMO_DIR / "checkpoints" / "demo.yaml").is_file()  # the A1111-style config beside the checkpoint


# ------------------------------------------------------------------------------------------ prompt following
def test_held_out_prompts_are_followed(executor):
    """Shape, colour and position combinations never seen together in training (a fixed spread of 24)."""
    attributes = dataset.evaluation_prompts(held_out=True)
    attributes = [attributes[i] for i in np.linspace(0, len(attributes) - 1, 24).round().astype(int)]
    images = np.stack([uint8(txt2img(executor, dataset.full_caption(*a), seed)) for seed, a in enumerate(attributes)])
    metrics = score(images, attributes)
    assert metrics["colour"] >= 0.85, metrics
    assert metrics["shape"] >= 0.70, metrics
    assert metrics["position"] >= 0.80, metrics


def test_cfg_1_and_7_differ_and_guidance_follows_the_prompt(executor):
    prompt = "a yellow square at the bottom right on a black background"
    weak = np.stack([txt2img(executor, prompt, seed, cfg=1.0) for seed in range(4)])
    strong = np.stack([txt2img(executor, prompt, seed, cfg=7.0) for seed in range(4)])
    assert np.abs(weak - strong).mean() > 0.03
    strong_hits = score(uint8(strong), [("square", "yellow", "bottom right", "black")] * 4)
    assert strong_hits["all"] >= 0.75, strong_hits


def test_negative_prompt_red_pushes_away_from_red(executor):
    prompt = "a circle in the center on a white background"  # no colour named: the model picks one
    plain = [redness(txt2img(executor, prompt, seed)) for seed in range(6)]
    away = [redness(txt2img(executor, prompt, seed, negative="red")) for seed in range(6)]
    assert np.mean(away) < np.mean(plain) - 0.05, (plain, away)
    assert all(a < p for a, p in zip(away, plain, strict=True)), (plain, away)


# ----------------------------------------------------------------------------------------------- img2img
def test_img2img_keeps_the_layout_at_low_denoise(executor):
    """Re-painting a centred green square as "a purple triangle at the bottom right": at denoise 0.35 the shape
    stays where it was; at 1.0 the prompt wins."""
    workflow = workflow_api("img2img")
    assert "center" in workflow["6"]["inputs"]["text"]
    runs = {0.35: [], 1.0: []}
    for seed in range(3):
        for denoise, found in runs.items():
            graph = copy.deepcopy(workflow)
            graph["3"]["inputs"]["seed"], graph["12"]["inputs"]["seed"] = seed, seed + 100
            graph["12"]["inputs"]["denoise"] = denoise
            graph["11"]["inputs"]["text"] = "a purple triangle at the bottom right on a white background"
            source = image_of(executor, graph, ["8", 0])[0]
            result = image_of(executor, graph, ["13", 0])[0]
            before, after = foreground(source), foreground(result)
            overlap = (before & after).sum() / max((before | after).sum(), 1)
            found.append((checker.analyse(uint8(source)).position, checker.analyse(uint8(result)).position, overlap))
    assert all(before == after == "center" for before, after, _ in runs[0.35]), runs[0.35]
    assert all(after == "bottom right" for _, after, _ in runs[1.0]), runs[1.0]
    assert min(o for *_, o in runs[0.35]) > 0.5 > max(o for *_, o in runs[1.0])


# ---------------------------------------------------------------------------------------- inpaint/outpaint
def test_inpaint_changes_only_the_masked_area(executor):
    workflow = workflow_api("inpaint")
    mask = np.zeros((64, 64), bool)
    mask[16:48, 32:64] = True  # nodes 20-22: a 32x32 square at x 32, y 16
    source = image_of(executor, workflow, ["8", 0])[0]
    result = image_of(executor, workflow, ["28", 0])[0]  # after the composite, as saved
    assert np.array_equal(result[~mask], source[~mask])
    assert np.abs(result[mask] - source[mask]).mean() > 0.1

    # In latent space, before any compositing: the sampler leaves every latent cell outside the (grown) noise
    # mask as it was encoded.
    graph = copy.deepcopy(workflow)
    ph.capture(graph, "encoded", ["23", 0], types.LATENT, "encoded")
    ph.capture(graph, "sampled", ["25", 0], types.LATENT, "sampled")
    ph.run_ok(executor, graph)
    encoded, sampled = ph.captured("encoded"), ph.captured("sampled")
    noise_mask = encoded.noise_mask.reshape(64, 64).numpy()
    untouched = noise_mask.reshape(8, 8, 8, 8).max(axis=(1, 3)) == 0  # latent cells whose 8x8 pixels are all 0
    assert 10 < untouched.sum() < 64
    kept = (sampled.samples - encoded.samples)[0].abs().amax(0).numpy()
    assert kept[untouched].max() < 1e-4
    assert kept[~untouched].mean() > 0.1


def test_outpaint_fills_the_padded_border(executor):
    workflow = workflow_api("outpaint")
    source = image_of(executor, workflow, ["8", 0])[0]
    padded = image_of(executor, workflow, ["30", 0])[0]
    result = image_of(executor, workflow, ["35", 0])[0]  # after the composite, as saved
    assert result.shape == (96, 96, 3)
    border = np.ones((96, 96), bool)
    border[16:80, 16:80] = False
    background = np.median(source.reshape(-1, 3), axis=0)
    assert np.abs(padded[border] - background).mean() > 0.3  # what the sampler started from: grey, not black
    assert np.abs(np.median(result[border], axis=0) - background).max() < 0.1  # filled with the background
    inner = slice(16 + 8, 80 - 8)  # inside the 8 px feathering the original is kept exactly
    assert np.array_equal(result[inner, inner], source[8:56, 8:56])


# -------------------------------------------------------------------------------------------- ControlNet
def controlnet_graph(image_name: str, prompt: str, seed: int, strength: float) -> dict:
    workflow = txt2img_workflow(prompt, seed, sampler="dpmpp_2m", scheduler="karras")
    del workflow["preview"]
    workflow.update({
        "load": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "edges": {"class_type": "Canny", "inputs": {"image": ["load", 0], "low_threshold": 0.4,
                                                   "high_threshold": 0.8}},
        "cn": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": CONTROLNET_NAME}},
        "apply": {"class_type": "ControlNet", "inputs": {
            "positive": ["pos", 0], "negative": ["neg", 0], "control_net": ["cn", 0], "image": ["edges", 0],
            "strength": strength, "start_percent": 0.0, "end_percent": 1.0}},
    })
    workflow["sample"]["inputs"].update(positive=["apply", 0], negative=["apply", 1])
    return workflow


def test_controlnet_follows_a_given_edge_map(executor, isolated_folders):
    """The edges (our Canny node on a rendered shape) decide where the shape goes: with a prompt that names no
    position, and against a prompt that names the opposite one. Strength 0 is exactly no ControlNet."""
    rng = np.random.default_rng(7)
    triples = [("triangle", "red", "top left"), ("square", "blue", "bottom right"), ("circle", "green", "top"),
               ("diamond", "orange", "left"), ("square", "purple", "bottom"), ("triangle", "black", "right"),
               ("circle", "yellow", "bottom left"), ("diamond", "white", "top right")]
    specs = [dataset.make_spec(rng, t, "gray" if t[1] == "white" else "white") for t in triples]
    opposite = {name: next(n for n, cell in dataset.POSITIONS.items() if cell == (2 - row, 2 - col))
                for name, (row, col) in dataset.POSITIONS.items()}
    without_position, against = [], []
    for seed, spec in enumerate(specs):
        name = f"reference_{seed}.png"
        Image.fromarray(dataset.render(spec)).save(isolated_folders.input_dir / name)
        prompt = f"a {spec.colour} {spec.shape} on a {spec.background} background"
        result = checker.analyse(uint8(image_of(executor, controlnet_graph(name, prompt, seed, 1.0), ["decode", 0])[0]))
        without_position.append((result.position == spec.position, result.shape == spec.shape))
        misleading = dataset.caption(dataset.Spec(spec.shape, spec.colour, opposite[spec.position], spec.background))
        result = checker.analyse(uint8(image_of(executor, controlnet_graph(name, misleading, seed, 1.0),
                                                ["decode", 0])[0]))
        against.append(result.position == spec.position)
        if seed == 0:
            off = controlnet_graph(name, prompt, seed, 0.0)
            plain = txt2img_workflow(prompt, seed, sampler="dpmpp_2m", scheduler="karras")
            del plain["preview"]
            assert np.array_equal(image_of(executor, off, ["decode", 0]), image_of(executor, plain, ["decode", 0]))
    assert sum(p for p, _ in without_position) >= 6, without_position
    assert sum(s for _, s in without_position) >= 6, without_position
    assert sum(against) >= 5, against


# ------------------------------------------------------------------------------------------------- LoRA
def test_lora_changes_the_style_and_strength_zero_is_no_lora(executor):
    attributes = dataset.evaluation_prompts(held_out=True)[::16][:8]
    prompts = [dataset.full_caption(*a) for a in attributes]
    plain = np.stack([uint8(txt2img(executor, p, seed)) for seed, p in enumerate(prompts)])
    styled = np.stack([uint8(txt2img(executor, p, seed, lora_strength=1.0)) for seed, p in enumerate(prompts)])
    zero = txt2img(executor, prompts[0], 0, lora_strength=0.0)
    assert np.array_equal(uint8(zero), plain[0])
    assert outlined_fraction(plain) <= 0.25  # the checker calls ~12% of the plain model's shapes outlined
    assert outlined_fraction(styled) >= 0.75
    assert score(styled, attributes)["colour"] >= 0.75  # the style changes, the content stays
