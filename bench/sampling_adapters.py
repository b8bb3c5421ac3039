"""SD1.5 (reduced width) with one LoRA + one ControlNet + one IP-Adapter: diffgraph's workflow vs diffusers.

Both sides sample the same weights on the same schedule (euler, "simple" = integer timesteps, ComfyUI's initial
noise), so the first-seed pictures are also compared. Load + first picture is timed in a fresh process per side;
warm runs (new seeds) are timed in one process holding all sides, alternating, so a shared machine's load falls on
them alike. diffusers runs with the LoRA unfused (load_lora_weights + scale, its usual use) and fused (fuse_lora).
Then, on diffgraph's side, only the LoRA strength changes: which nodes re-run, how many modules load, the time.
Run: python bench/sampling_adapters.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the adapter builders of the test support

SIZE, STEPS, CFG, SEED = 128, 10, 7.0, 1
THREADS = 1  # one thread per side: steadier timings on a shared machine
LORA, CONTROL, IP_WEIGHT = 0.7, 0.8, 0.6
PROMPT = "a photo of a red fox in the snow"
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "prediction_type": "epsilon"}  # fmt: skip


def build(root: Path) -> None:
    """Reduced-width SD1.5 (4 levels, 3 with attention) + kohya LoRA + ControlNet + IP-Adapter + CLIP vision."""
    import numpy as np
    import torch
    import yaml
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from PIL import Image
    from safetensors.torch import save_file
    from support import tiny_adapters as ta
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodes.sd.ldm_layout import controlnet_to_ldm, pipeline_to_single_file
    from nodes.sd.ldm_layout_yaml import ldm_yaml_config

    torch.manual_seed(0)
    text_config = CLIPTextConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 8, block_out_channels=(64, 128, 256, 256), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=256, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(64, 64, 128, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4)
    text = CLIPTextModel(text_config)
    components = {"unet": unet, "vae": vae, "text_encoder": text}
    models = root / "models"
    for folder in ("checkpoints", "loras", "controlnet", "ipadapter", "clip_vision"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in pipeline_to_single_file(components, "sd1").items()},
              models / "checkpoints" / "sd15_small.safetensors")
    ldm = ldm_yaml_config("sd1", dict(unet.config), dict(vae.config), {"text_encoder": text_config.to_dict()},
                          SCHEDULER)
    (models / "checkpoints" / "sd15_small.yaml").write_text(yaml.safe_dump(ldm))
    checkpoint = SimpleNamespace(components=components, family="sd1")
    ta.build_lora(checkpoint, models / "loras", rank=16, alpha=8.0, name="lora.safetensors")
    controlnet = ControlNetModel.from_unet(unet)
    save_file({k: v.contiguous() for k, v in controlnet_to_ldm(controlnet.state_dict(), controlnet.config).items()},
              models / "controlnet" / "control.safetensors")
    control_yaml = ta.controlnet_yaml(SimpleNamespace(ldm_config=ldm))
    (models / "controlnet" / "control.yaml").write_text(yaml.safe_dump(control_yaml))
    vision = ta.build_clip_vision(models / "clip_vision")
    ta.build_ip_adapter(unet, models / "ipadapter", name="ip.safetensors")
    inputs = root / "input"
    inputs.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(inputs / "reference.png")
    hint = np.zeros((SIZE, SIZE, 3), np.uint8)
    hint[SIZE // 4: 3 * SIZE // 4, SIZE // 4: SIZE // 4 + 4] = 255
    hint[SIZE // 2, :] = 255
    Image.fromarray(hint).save(inputs / "hint.png")
    for name, module in components.items():
        module.save_pretrained(root / "diffusers" / name)
    controlnet.save_pretrained(root / "diffusers" / "controlnet")
    vision.model.save_pretrained(root / "diffusers" / "image_encoder")
    vision.processor.save_pretrained(root / "diffusers" / "image_encoder")


def graph(seed: int, lora_strength: float = LORA) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_small.safetensors"}},
        "lora": {"class_type": "LoraLoader", "inputs": {
            "model": ["ckpt", 0], "clip": ["ckpt", 1], "lora_name": "lora.safetensors",
            "strength_model": lora_strength, "strength_clip": lora_strength}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["lora", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["lora", 1]}},
        "cn": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "control.safetensors"}},
        "hint": {"class_type": "LoadImage", "inputs": {"image": "hint.png"}},
        "control": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["pos", 0], "negative": ["neg", 0], "control_net": ["cn", 0], "image": ["hint", 0],
            "strength": CONTROL, "start_percent": 0.0, "end_percent": 1.0}},
        "ipl": {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": "ip.safetensors"}},
        "vision": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "tiny_clip_vision"}},
        "reference": {"class_type": "LoadImage", "inputs": {"image": "reference.png"}},
        "ip": {"class_type": "IPAdapter", "inputs": {
            "model": ["lora", 0], "ipadapter": ["ipl", 0], "clip_vision": ["vision", 0], "image": ["reference", 0],
            "weight": IP_WEIGHT, "start_at": 0.0, "end_at": 1.0}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "model": ["ip", 0], "positive": ["control", 0], "negative": ["control", 1], "latent_image": ["empty", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "keep": {"class_type": "Keep", "inputs": {"images": ["decode", 0]}},
    }


def _keep_node() -> type:
    from graphcore.inputs import Socket
    from graphcore.node import Node, Result

    class Keep(Node):
        """Keeps the float images (no PNG encoding: diffusers' side returns tensors too)."""

        output_node = True
        inputs = {"images": Socket("IMAGE")}
        last: ClassVar[Any] = None

        def run(self, ctx, images):
            Keep.last = images
            return Result((), {})

    return Keep


def ours_runner(root: Path):
    """diffgraph's side: run(seed, lora_strength) → (image, RunResult); modules load on the first run."""
    from graphcore import folders
    from graphcore.executor import Executor
    from graphcore.registry import Registry
    from nodes.adapters import controlnet_nodes, ip_adapter_nodes, lora_nodes
    from nodes.catalog import all_node_classes

    keep = _keep_node()
    found = folders.configure(folders.Folders(root / "models", root / "input", root / "output", root / "tmp").create())
    registry = Registry().add_all([*all_node_classes(), *lora_nodes.NODES, *controlnet_nodes.NODES,
                                   *ip_adapter_nodes.NODES, keep])
    executor = Executor(registry, folders=found)

    def run(seed: int, lora_strength: float = LORA):
        result = executor.run(graph(seed, lora_strength))
        assert result.ok, result.error
        return keep.last, result

    return run


def diffusers_runner(root: Path, fused: bool):
    """diffusers' side, loaded now: run(seed) → image."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionModelWithProjection

    from nodes.samplers.noise import prepare_noise
    from nodes.sd.tokenizers import clip_tokenizer

    folder = root / "diffusers"
    pipe = StableDiffusionControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(folder / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"), tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet"),
        controlnet=ControlNetModel.from_pretrained(folder / "controlnet"),
        scheduler=EulerDiscreteScheduler(**SCHEDULER, timestep_spacing="trailing"), safety_checker=None,
        feature_extractor=CLIPImageProcessor.from_pretrained(folder / "image_encoder"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder"),
        requires_safety_checker=False)
    pipe.load_lora_weights(str(root / "models" / "loras" / "lora.safetensors"))
    pipe.load_ip_adapter(str(root / "models" / "ipadapter"), subfolder="", weight_name="ip.safetensors")
    pipe.set_ip_adapter_scale(IP_WEIGHT)
    if fused:
        pipe.fuse_lora(lora_scale=LORA)
    pipe.set_progress_bar_config(disable=True)
    hint = Image.open(root / "input" / "hint.png")
    reference = Image.open(root / "input" / "reference.png")
    scale = {} if fused else {"cross_attention_kwargs": {"scale": LORA}}

    def run(seed: int):
        pipe.scheduler.set_timesteps(STEPS)
        sigma_max = float(pipe.scheduler.sigmas[0])
        noise = prepare_noise(torch.zeros(1, 4, SIZE // 8, SIZE // 8), seed)
        latents = noise * (1 + sigma_max**2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
        images = pipe(PROMPT, negative_prompt="", image=hint, ip_adapter_image=reference, num_inference_steps=STEPS,
                      guidance_scale=CFG, latents=latents, height=SIZE, width=SIZE, output_type="pt",
                      controlnet_conditioning_scale=CONTROL, **scale).images
        return images.permute(0, 2, 3, 1)

    return run


SIDES = ("ours", "unfused", "fused")


def _runner(side: str, root: Path):
    return ours_runner(root) if side == "ours" else diffusers_runner(root, fused=side == "fused")


def first_run(side: str, root: Path) -> dict:
    """A fresh process: loading and the first picture."""
    started = time.perf_counter()
    run = _runner(side, root)
    run(SEED)
    return {"first": time.perf_counter() - started}


def interleaved(root: Path, rounds: int) -> dict:
    """All three sides in one process, their warm runs alternating, so that the machine's load hits them alike."""
    import numpy as np

    from nodes.sd.model_manager import manager

    runs = {side: _runner(side, root) for side in SIDES}
    first = {}
    for side, run in runs.items():
        image = run(SEED)
        first[side] = (image[0] if isinstance(image, tuple) else image).float().numpy()
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for i in range(rounds):
        for side in SIDES:
            started = time.perf_counter()
            runs[side](SEED + 1 + i)
            times[side].append(time.perf_counter() - started)
    loads = manager().loads
    started = time.perf_counter()
    _, result = runs["ours"](SEED + rounds, lora_strength=0.3)
    change = {"executed": result.executed, "loads": manager().loads - loads, "time": time.perf_counter() - started}
    difference = {side: float(np.abs(first["ours"] - first[side]).max()) for side in ("unfused", "fused")}
    return {"times": times, "strength_change": change, "difference": difference}


def child(mode: str, root: Path, arg: str) -> None:
    import torch

    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    print(json.dumps(first_run(arg, root) if mode == "first" else interleaved(root, int(arg))))


def measure(mode: str, root: Path, arg: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(root), arg],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {arg} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import statistics

    rounds = 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root)
        first = {side: measure("first", root, side)["first"] for side in SIDES}
        warm = measure("interleaved", root, str(rounds))
    print(f"SD1.5 (reduced width) {SIZE}x{SIZE}, {STEPS} steps euler simple, cfg {CFG}: LoRA {LORA} (model+clip), "
          f"ControlNet {CONTROL}, IP-Adapter {IP_WEIGHT}; {THREADS} thread(s)")
    print(f"  first run, fresh process (load+sample): ours {first['ours']:.2f} s, diffusers unfused "
          f"{first['unfused']:.2f} s, fused {first['fused']:.2f} s")
    median = {side: statistics.median(values) for side, values in warm["times"].items()}
    best = {side: min(values) for side, values in warm["times"].items()}
    for side, name in (("unfused", "LoRA unfused (load_lora_weights + scale)"), ("fused", "LoRA fused")):
        print(f"  warm runs vs diffusers, {name}: median ours {median['ours']:.2f} s / diffusers "
              f"{median[side]:.2f} s = {median['ours'] / median[side]:.3f}; best {best['ours'] / best[side]:.3f} "
              f"(goal ≤ 1.00; {rounds} interleaved rounds)")
    print(f"  same picture: max |Δ| vs diffusers unfused {warm['difference']['unfused']:.2e}, "
          f"fused {warm['difference']['fused']:.2e}")
    change = warm["strength_change"]
    print(f"  LoRA strength 0.7 → 0.3 only: re-ran {sorted(change['executed'])}, {change['loads']} module loads, "
          f"{change['time']:.2f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4])
    else:
        main()
