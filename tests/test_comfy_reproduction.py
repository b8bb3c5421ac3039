"""Same workflow, same latent as ComfyUI: KSampler / KSamplerAdvanced against sampling loops written here from the
k-diffusion formulas with ComfyUI's conventions, on the tiny SD1 UNet (called directly, not through our denoiser).

The conventions, each written out below rather than imported:
- σ table from the training betas (scaled_linear 0.00085 → 0.012, 1000 steps, float64 then float32);
- schedules: karras (ρ = 7), normal (timesteps linspace(999, 0, n), σ by log-σ interpolation), simple (every
  1000/n-th table entry from the top); then σ = 0 appended;
- denoise d < 1: a schedule of int(n/d) steps of which the last n + 1 σ are kept;
- KSamplerAdvanced: the full n-step schedule cut to [:end + 1] (its last σ set to 0 unless leftover noise is returned),
  then [start:]; add_noise "disable" means zero noise;
- start: latent + noise·sqrt(1 + σ₀²) when σ₀ is σ_max, latent + noise·σ₀ otherwise; noise = randn(seed) on a CPU
  generator at the latent's shape;
- the UNet sees x / sqrt(σ² + 1) at the nearest integer timestep of σ (in log σ); x̂₀ = x − σ·ε; CFG on x̂₀;
- ancestral noise: a CPU generator seeded with seed + 1, one draw per step that ends above σ = 0.
Latents from the tiny random UNet reach a few hundred, so "equal" is max |Δ| < 1e-5 × max |latent| (float32).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from support import parity_helpers as ph

from graphcore import types

SEED, CFG, STEPS = 21, 4.0, 10
PROMPT, NEGATIVE = "a red circle", "blurry"


# ------------------------------------------------------------------------------------------ reference σ tables
def sigma_table() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, 0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()


TABLE = sigma_table()
LOG_TABLE = TABLE.log()


def sigma_at(t: float) -> float:
    low, high = math.floor(t), math.ceil(t)
    w = t - low
    return float(((1 - w) * LOG_TABLE[low] + w * LOG_TABLE[high]).exp())


def karras(n: int) -> list[float]:
    lo, hi = float(TABLE[0]) ** (1 / 7), float(TABLE[-1]) ** (1 / 7)
    ramp = torch.linspace(0, 1, n)
    return [float(s) for s in (hi + ramp * (lo - hi)) ** 7] + [0.0]


def normal(n: int) -> list[float]:
    return [sigma_at(float(t)) for t in torch.linspace(999, 0, n)] + [0.0]


def simple(n: int) -> list[float]:
    return [float(TABLE[-(1 + int(i * 1000 / n))]) for i in range(n)] + [0.0]


SCHEDULES = {"karras": karras, "normal": normal, "simple": simple}


def schedule(name: str, steps: int, denoise: float = 1.0) -> list[float]:
    if denoise >= 1.0:
        return SCHEDULES[name](steps)
    return SCHEDULES[name](int(steps / denoise))[-(steps + 1):]


def advanced(name: str, steps: int, start: int, end: int, leftover: bool) -> list[float]:
    sigmas = SCHEDULES[name](steps)
    if end < len(sigmas) - 1:
        sigmas = sigmas[:end + 1]
        if not leftover:
            sigmas[-1] = 0.0
    return sigmas[start:]


# ------------------------------------------------------------------------------------------ reference samplers
def make_denoiser(unet, positive: torch.Tensor, negative: torch.Tensor, cfg: float):
    context = torch.cat([positive, negative]) if cfg != 1.0 else positive

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = int((LOG_TABLE.double() - math.log(sigma)).abs().argmin())
        batch = torch.cat([x] * context.shape[0])
        with torch.no_grad():
            eps = unet(batch / (sigma**2 + 1) ** 0.5, t, encoder_hidden_states=context).sample
        if cfg == 1.0:  # ComfyUI skips the unconditional pass
            return x - sigma * eps
        cond, uncond = (x - sigma * eps).chunk(2)
        return uncond + cfg * (cond - uncond)

    return denoise


def euler(denoise, x, sigmas, seed):
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = x + (x - denoise(x, s)) / s * (s_next - s)
    return x


def euler_ancestral(denoise, x, sigmas, seed):
    generator = torch.Generator().manual_seed(seed + 1)
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = denoise(x, s)
        sigma_up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        sigma_down = (s_next**2 - sigma_up**2) ** 0.5
        x = x + (x - d) / s * (sigma_down - s)
        if s_next > 0:
            x = x + torch.randn(x.shape, generator=generator) * sigma_up
    return x


def dpmpp_2m(denoise, x, sigmas, seed):
    old = None
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            h = math.log(s) - math.log(s_next)
            if old is not None:
                r = (math.log(sigmas[i - 1]) - math.log(s)) / h
                d_mix = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
            else:
                d_mix = d
            x = (s_next / s) * x - math.expm1(-h) * d_mix
        old = d
    return x


def heun(denoise, x, sigmas, seed):
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - denoise(x, s)) / s
        x_euler = x + d * (s_next - s)
        if s_next == 0:
            x = x_euler
        else:
            d_next = (x_euler - denoise(x_euler, s_next)) / s_next
            x = x + (d + d_next) / 2 * (s_next - s)
    return x


SAMPLERS = {"euler": euler, "euler_ancestral": euler_ancestral, "dpmpp_2m": dpmpp_2m, "heun": heun}


def reference_run(setup, sampler: str, sigmas: list[float], latent: torch.Tensor, add_noise: bool = True,
                  seed: int = SEED, denoiser: str = "denoise") -> torch.Tensor:
    """Raw (unscaled) latent after sampling `latent` (raw) over `sigmas`."""
    scale = setup["scale"]
    x0 = latent * scale
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)) if add_noise else 0 * x0
    start = sigmas[0]
    full = math.isclose(start, float(TABLE[-1]), rel_tol=1e-5) or start > float(TABLE[-1])
    x = x0 + noise * ((1 + start**2) ** 0.5 if full else start)
    return SAMPLERS[sampler](setup[denoiser], x, sigmas, seed) / scale


# ------------------------------------------------------------------------------------------ our workflow
@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tmp_path_factory):
    checkpoint = tiny_checkpoint("sd1")
    root = tmp_path_factory.mktemp("repro")
    ph.link_formats(checkpoint, root / "checkpoints", ["safetensors"], "repro")
    tokenizer, text_encoder = checkpoint.components["tokenizer"], checkpoint.components["text_encoder"]

    def embed(text: str) -> torch.Tensor:
        ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            return text_encoder(ids).last_hidden_state

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    image = torch.stack([xx, yy, 1 - xx * yy], -1)
    return {
        "root": root, "checkpoint": checkpoint, "scale": checkpoint.vae.config.scaling_factor,
        "denoise": make_denoiser(checkpoint.unet, embed(PROMPT), embed(NEGATIVE), CFG),
        "denoise_cfg1": make_denoiser(checkpoint.unet, embed(PROMPT), embed(NEGATIVE), 1.0),
        "image": (image.numpy() * 255).round().astype(np.uint8),
    }


@pytest.fixture
def run(setup, isolated_folders):
    target = isolated_folders.models_dir / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for entry in (setup["root"] / "checkpoints").iterdir():
        (target / entry.name).symlink_to(entry)
    Image.fromarray(setup["image"]).save(isolated_folders.input_dir / "src.png")
    ex = ph.executor()

    def run_nodes(samplers: dict[str, dict], image_latent: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run sampler nodes (tag → node) on one graph; returns their latents and the starting latent."""
        wf = {
            "1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "repro.safetensors"}},
            "2": {"class_type": "CLIPEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
            "3": {"class_type": "CLIPEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        }
        if image_latent:
            wf["7"] = {"class_type": "LoadImage", "inputs": {"image": "src.png"}}
            wf["4"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}}
        else:
            wf["4"] = {"class_type": "EmptyLatent", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
        ph.capture(wf, "5", ["4", 0], types.LATENT, "start")
        ph.capture(wf, "6", ["1", 0], types.MODEL, "model")
        for index, (tag, node) in enumerate(samplers.items()):
            node_id = str(100 + index)
            wf[node_id] = node
            ph.capture(wf, str(200 + index), [node_id, 0], types.LATENT, tag)
        ph.run_ok(ex, wf)
        return {tag: ph.captured(tag).samples for tag in samplers}, ph.captured("start").samples

    return run_nodes


def ksampler(sampler: str, scheduler: str, denoise: float = 1.0, steps: int = STEPS, latent=("4", 0)) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": SEED, "steps": steps, "cfg": CFG, "sampler_name": sampler, "scheduler": scheduler,
        "positive": ["2", 0], "negative": ["3", 0], "latent_image": list(latent), "denoise": denoise}}


def ksampler_advanced(sampler: str, scheduler: str, start: int, end: int, leftover: bool, add_noise: bool = True,
                      latent=("4", 0)) -> dict:
    return {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["1", 0], "add_noise": "enable" if add_noise else "disable", "noise_seed": SEED, "steps": STEPS,
        "cfg": CFG, "sampler_name": sampler, "scheduler": scheduler, "positive": ["2", 0], "negative": ["3", 0],
        "latent_image": list(latent), "start_at_step": start, "end_at_step": end,
        "return_with_leftover_noise": "enable" if leftover else "disable"}}


def assert_same_latent(ours: torch.Tensor, reference: torch.Tensor, what: str) -> float:
    delta = ph.max_abs_diff(ours, reference)
    relative = delta / float(reference.abs().max())
    print(f"{what}: max |Δ| {delta:.2e}, relative {relative:.1e}")
    assert relative < 1e-5, what
    return relative


# ------------------------------------------------------------------------------------------ the tests
def test_reference_tables_are_comfyui_tables():
    """The hand-written tables reproduce the σ ComfyUI v0.3.64 prints (so the loops below use its σ)."""
    expected = {
        ("karras", 4): [14.6146, 3.1686, 0.4469, 0.0292, 0], ("normal", 4): [14.6146, 2.9183, 0.9324, 0.0292, 0],
        ("simple", 4): [14.6146, 4.0817, 1.6129, 0.6932, 0],
    }  # fmt: skip
    for (name, steps), values in expected.items():
        assert schedule(name, steps) == pytest.approx(values, abs=1e-4)
    assert schedule("karras", 10, 0.6) == pytest.approx(
        [2.2322, 1.5437, 1.0459, 0.6926, 0.4469, 0.2801, 0.1698, 0.0990, 0.0552, 0.0292, 0], abs=1e-4)


@pytest.mark.parametrize("denoise", [1.0, 0.6])
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_ksampler_equals_the_reference_loop(setup, run, sampler, denoise):
    nodes = {scheduler: ksampler(sampler, scheduler, denoise) for scheduler in SCHEDULES}
    ours, start = run(nodes, image_latent=denoise < 1.0)
    for scheduler in SCHEDULES:
        reference = reference_run(setup, sampler, schedule(scheduler, STEPS, denoise), start)
        assert_same_latent(ours[scheduler], reference, f"{sampler}/{scheduler} denoise {denoise}")
    assert ph.max_abs_diff(ours["karras"], ours["normal"]) > 1e-2  # the schedules differ


SLICES = {"first_6_leftover": (0, 6, True), "first_6_clean": (0, 6, False), "from_4": (4, 10000, False)}


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_ksampler_advanced_slices_the_same_table(setup, run, sampler):
    nodes = {f"{tag}_{scheduler}": ksampler_advanced(sampler, scheduler, *cut)
             for tag, cut in SLICES.items() for scheduler in ("karras", "normal")}
    ours, start = run(nodes, image_latent=True)
    for tag, (first, last, leftover) in SLICES.items():
        for scheduler in ("karras", "normal"):
            sigmas = advanced(scheduler, STEPS, first, last, leftover)
            reference = reference_run(setup, sampler, sigmas, start)
            assert_same_latent(ours[f"{tag}_{scheduler}"], reference, f"{sampler}/{scheduler} advanced {tag}")
    assert ph.max_abs_diff(ours["first_6_leftover_karras"], ours["first_6_clean_karras"]) > 1e-2


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral"])
def test_refiner_handoff(setup, run, sampler):
    """Base 0 → E with leftover noise, then E → end without new noise. For one-step deterministic solvers that is one
    uninterrupted run; multistep history (dpmpp_2m) and the ancestral noise stream restart at the handoff, as in
    ComfyUI, which the two-stage reference reproduces."""
    handoff = 6
    nodes = {
        "single": ksampler(sampler, "karras"),
        "base": ksampler_advanced(sampler, "karras", 0, handoff, True),
        # run() numbers the nodes from 100 in this order: "base" is node 101
        "refined": ksampler_advanced(sampler, "karras", handoff, 10000, False, add_noise=False, latent=("101", 0)),
    }
    ours, start = run(nodes, image_latent=False)
    sigmas = karras(STEPS)
    base = reference_run(setup, sampler, sigmas[:handoff + 1], start)
    two_stage = reference_run(setup, sampler, sigmas[handoff:], base, add_noise=False)
    assert_same_latent(ours["base"], base, f"{sampler} base with leftover noise")
    assert_same_latent(ours["refined"], two_stage, f"{sampler} refiner stage")
    single = reference_run(setup, sampler, sigmas, start)
    assert_same_latent(ours["single"], single, f"{sampler} single run")
    if sampler in ("euler", "heun"):
        assert_same_latent(ours["refined"], ours["single"], f"{sampler} handoff == one run")
    else:
        assert ph.max_abs_diff(ours["refined"], ours["single"]) > 1e-3


def test_cfg_one_skips_the_negative_pass(setup, run):
    node = ksampler("euler", "karras")
    node["inputs"]["cfg"] = 1.0
    run({"warm": node}, image_latent=False)
    unet = ph.captured("model").unet.module
    batches: list[int] = []
    hook = unet.register_forward_pre_hook(lambda module, args: batches.append(int(args[0].shape[0])))
    try:
        node["inputs"]["seed"] = SEED + 1  # a new seed: the sampler runs again, now observed
        ours, start = run({"cfg1": node}, image_latent=False)
    finally:
        hook.remove()
    assert batches == [1] * STEPS  # one conditional pass per step, no unconditional batch
    reference = reference_run(setup, "euler", karras(STEPS), start, seed=SEED + 1, denoiser="denoise_cfg1")
    assert_same_latent(ours["cfg1"], reference, "euler/karras cfg 1")
