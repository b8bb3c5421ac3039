"""img2img and inpainting: parity with diffusers where the semantics agree, a reference computation where ours
deliberately follow ComfyUI instead. Workflows run through the executor; images compared as decoded floats.

Deliberate differences from diffusers, and how each test bridges them:
- Encoding: VAEEncode returns the posterior's mean (deterministic, cacheable); diffusers samples the posterior. The
  diffusers pipelines therefore get our encoded latents (× scaling factor) as `image` / `masked_image_latents`.
- Denoise: ComfyUI's denoise d with n steps builds a schedule of int(n/d) steps and runs its last n; diffusers'
  strength s runs the last int(N·s) of N steps. The reference pipeline gets N = int(n/d), s = n/N, which is the same
  truncation (and the test shows diffusers' own mapping N = n, s = d visits other σ).
- Full-denoise start: ComfyUI starts from latent + noise·sqrt(1 + σ₀²), also when inpainting; diffusers'
  inpaint pipeline starts from noise·σ₀ alone. It is given ComfyUI's start as `latents`.
- VAEEncodeForInpaint / noise masks: ComfyUI re-noises the kept region before every model call and keeps the input
  latent in the denoised estimate; diffusers blends after each step. No diffusers pipeline does ComfyUI's, so that
  test compares against an Euler loop written here with the tiny UNet.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support import parity_helpers as ph

from graphcore import types
from nodes.samplers.model_sigmas import ModelSigmas
from nodes.samplers.schedules import schedule_sigmas

TOLERANCE = 1e-4
PROMPT, NEGATIVE = "a red circle", "blurry"
SIZE = 64
HOLE = (slice(16, 40), slice(24, 56))  # rows, columns regenerated (on the 8-pixel grid, see the inpaint test)


def source_image() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    return torch.stack([xx, yy, 0.5 + 0.5 * torch.sin(6 * xx * yy)], -1)


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("img2img_models")
    built = {family: tiny_checkpoint(family) for family in ("sd1", "sd1_inpaint")}
    for family, checkpoint in built.items():
        ph.link_formats(checkpoint, root, ["safetensors"], f"i_{family}")
    return root, built


@pytest.fixture
def workspace(models, isolated_folders):
    target = isolated_folders.models_dir / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for entry in models[0].iterdir():
        (target / entry.name).symlink_to(entry)
    pixels = (source_image().numpy() * 255).round().astype(np.uint8)
    alpha = np.full((SIZE, SIZE, 1), 255, np.uint8)
    alpha[HOLE] = 0  # LoadImage's MASK is 1 − alpha: regenerate the hole
    Image.fromarray(np.concatenate([pixels, alpha], -1), "RGBA").save(isolated_folders.input_dir / "src.png")
    return ph.executor(), models[1]


def base_workflow(ckpt: str) -> dict:
    return {
        "1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        "7": {"class_type": "LoadImage", "inputs": {"image": "src.png"}},
    }


def ksampler(latent: list, sampler: str, scheduler: str, steps: int, seed: int, cfg: float, denoise: float = 1.0,
             positive: list | None = None, negative: list | None = None) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "positive": positive or ["2", 0], "negative": negative or ["3", 0], "latent_image": latent,
        "denoise": denoise}}


def finish(wf: dict) -> dict:
    wf["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    ph.capture(wf, "90", ["6", 0], types.IMAGE, "image")
    return wf


# img2img: sampler → (scheduler class, overrides, diffusers' configuration gives our table by itself)
IMG2IMG = {
    "euler": ("EulerDiscreteScheduler", {}, False),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True, "solver_order": 2}, True),
}


@pytest.mark.parametrize("sampler", sorted(IMG2IMG))
def test_img2img_matches_diffusers_with_comfyui_truncation(workspace, sampler):
    from diffusers import StableDiffusionImg2ImgPipeline

    ex, built = workspace
    checkpoint = built["sd1"]
    steps, denoise, seed, cfg = 10, 0.6, 11, 6.0
    wf = base_workflow("i_sd1.safetensors")
    wf["4"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}}
    wf["5"] = ksampler(["4", 0], sampler, "karras", steps, seed, cfg, denoise)
    ph.capture(finish(wf), "91", ["4", 0], types.LATENT, "encoded")
    ph.capture(wf, "92", ["7", 0], types.IMAGE, "pixels")
    ph.run_ok(ex, wf)
    ours, encoded = ph.captured("image"), ph.captured("encoded").samples
    with torch.no_grad():  # VAEEncode is the posterior mean of the loaded pixels
        mean = checkpoint.vae.encode(ph.captured("pixels").permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
    assert ph.max_abs_diff(encoded, mean) < 1e-6

    ms = ModelSigmas.from_betas()
    total = int(steps / denoise)  # 16
    full = schedule_sigmas(ms, "karras", total)
    assert torch.equal(schedule_sigmas(ms, "karras", steps, denoise), full[-(steps + 1):])
    assert not torch.allclose(schedule_sigmas(ms, "karras", steps)[-7:], full[-7:])  # diffusers' own mapping
    cls, overrides, native = IMG2IMG[sampler]
    scheduler = ph.reference_scheduler(checkpoint.scheduler, cls, **overrides)
    if native:
        probe = ph.reference_scheduler(checkpoint.scheduler, cls, **overrides)
        probe.set_timesteps(total)
        assert torch.allclose(probe.sigmas, full, rtol=1e-5, atol=1e-6)
    else:
        scheduler = ph.comfy_schedule(scheduler, full, ms)
    pipe = StableDiffusionImg2ImgPipeline(**checkpoint.pipeline_kwargs({**checkpoint.components,
                                                                         "scheduler": scheduler}))
    with torch.no_grad():  # the generator's first draw is the initial noise, as ComfyUI's seeded CPU noise
        reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=encoded * checkpoint.vae.config.scaling_factor,
                         strength=steps / total, num_inference_steps=total, guidance_scale=cfg,
                         generator=torch.Generator().manual_seed(seed), output_type="pt").images.permute(0, 2, 3, 1)
    delta = ph.max_abs_diff(ours, reference)
    print(f"img2img {sampler}/karras denoise {denoise}: max |Δ| = {delta:.2e}")
    assert delta < TOLERANCE


def test_nine_channel_inpaint_matches_diffusers(workspace):
    """InpaintModelConditioning(noise_mask=False) on the 9-channel UNet vs StableDiffusionInpaintPipeline.

    The hole lies on the 8-pixel grid: diffusers shrinks the mask to latent size by nearest neighbour, ComfyUI by
    bilinear + round; they agree on such masks. The masked image is grey (0.5) under the mask in both."""
    from diffusers import StableDiffusionInpaintPipeline

    ex, built = workspace
    checkpoint = built["sd1_inpaint"]
    steps, seed, cfg = 10, 11, 6.0
    wf = base_workflow("i_sd1_inpaint.safetensors")
    wf["8"] = {"class_type": "InpaintModelConditioning", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "pixels": ["7", 0], "mask": ["7", 1],
        "noise_mask": False}}
    wf["5"] = ksampler(["8", 2], "euler", "karras", steps, seed, cfg, positive=["8", 0], negative=["8", 1])
    ph.capture(finish(wf), "91", ["8", 0], types.CONDITIONING, "cond")
    ph.capture(wf, "92", ["8", 2], types.LATENT, "latent")
    ph.capture(wf, "93", ["7", 0], types.IMAGE, "pixels")
    ph.run_ok(ex, wf)
    ours, (entry,), latent, pixels = (ph.captured(t) for t in ("image", "cond", "latent", "pixels"))
    assert latent.noise_mask is None
    mask = entry.extras["concat_mask"].reshape(1, 1, SIZE, SIZE)
    expected_mask = torch.zeros(1, 1, SIZE, SIZE)
    expected_mask[0, 0][HOLE] = 1.0
    assert torch.equal(mask, expected_mask)
    grey = pixels.clone()
    grey[0][HOLE] = 0.5
    with torch.no_grad():
        assert ph.max_abs_diff(entry.extras["concat_latent"], checkpoint.vae.encode(
            grey.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()) < 1e-6

    ms = ModelSigmas.from_betas()
    sigmas = schedule_sigmas(ms, "karras", steps)
    scheduler = ph.comfy_schedule(ph.reference_scheduler(checkpoint.scheduler, "EulerDiscreteScheduler"), sigmas, ms)
    scale = checkpoint.vae.config.scaling_factor
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    start = latent.samples * scale + noise * (1 + float(sigmas[0]) ** 2) ** 0.5
    pipe = StableDiffusionInpaintPipeline(**checkpoint.pipeline_kwargs({**checkpoint.components,
                                                                         "scheduler": scheduler}))
    with torch.no_grad():
        reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=pixels.permute(0, 3, 1, 2), mask_image=mask,
                         masked_image_latents=entry.extras["concat_latent"] * scale,
                         latents=ph.diffusers_latents(start, sigmas, scheduler), num_inference_steps=steps,
                         guidance_scale=cfg, strength=1.0, output_type="pt").images.permute(0, 2, 3, 1)
    delta = ph.max_abs_diff(ours, reference)
    print(f"inpaint (9-channel) euler/karras: max |Δ| = {delta:.2e}")
    assert delta < TOLERANCE


def _unet_denoiser(unet, positive, negative, cfg: float, ms: ModelSigmas):
    """D(x, σ) with CFG, written from the definitions: ε = UNet(x / sqrt(σ² + 1), nearest t); x̂₀ = x − σ·ε."""
    context = torch.cat([negative, positive])
    log_table = ms.sigmas.double().log()

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = int((log_table - np.log(sigma)).abs().argmin())
        with torch.no_grad():
            eps = unet(torch.cat([x, x]) / (sigma**2 + 1) ** 0.5, t, encoder_hidden_states=context).sample
        uncond, cond = (x - sigma * eps).chunk(2)
        return uncond + cfg * (cond - uncond)

    return denoise


def test_vae_encode_for_inpaint_follows_comfyui(workspace):
    """VAEEncodeForInpaint (grey fill, mask grown by 6 px) + KSampler on the 4-channel model vs an Euler loop that
    re-noises the kept region before each call and keeps the input latent in the estimate (ComfyUI's
    KSamplerX0Inpaint)."""
    ex, built = workspace
    checkpoint = built["sd1"]
    steps, seed, cfg = 8, 4, 5.0
    wf = base_workflow("i_sd1.safetensors")
    wf["4"] = {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["7", 0], "vae": ["1", 2], "mask": ["7", 1],
                                                               "grow_mask_by": 6}}
    wf["5"] = ksampler(["4", 0], "euler", "karras", steps, seed, cfg)
    ph.capture(finish(wf), "91", ["4", 0], types.LATENT, "encoded")
    ph.capture(wf, "92", ["5", 0], types.LATENT, "sampled")
    ph.capture(wf, "93", ["2", 0], types.CONDITIONING, "positive")
    ph.capture(wf, "94", ["3", 0], types.CONDITIONING, "negative")
    ph.capture(wf, "95", ["7", 0], types.IMAGE, "pixels")
    ph.run_ok(ex, wf)
    encoded, sampled = ph.captured("encoded"), ph.captured("sampled").samples

    # The grown mask: a 6×6 box dilation padded by 3 covers rows 16−2 … 39+3 and columns 24−2 … 55+3.
    grown = torch.zeros(SIZE, SIZE)
    grown[14:43, 22:59] = 1.0
    assert torch.equal(encoded.noise_mask.reshape(SIZE, SIZE), grown)
    grey = ph.captured("pixels").clone()
    grey[0][HOLE] = 0.5  # the un-grown mask is greyed
    with torch.no_grad():
        expected_latent = checkpoint.vae.encode(grey.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
    assert ph.max_abs_diff(encoded.samples, expected_latent) < 1e-6

    ms = ModelSigmas.from_betas()
    sigmas = [float(s) for s in schedule_sigmas(ms, "karras", steps)]
    scale = checkpoint.vae.config.scaling_factor
    kept = expected_latent * scale
    mask = torch.nn.functional.interpolate(grown[None, None], size=(8, 8), mode="bilinear").expand(1, 4, 8, 8)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    denoise = _unet_denoiser(checkpoint.unet, ph.captured("positive")[0].embeds, ph.captured("negative")[0].embeds,
                             cfg, ms)
    x = kept + noise * (1 + sigmas[0] ** 2) ** 0.5
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        blended = x * mask + (kept + noise * sigma) * (1 - mask)
        estimate = denoise(blended, sigma) * mask + kept * (1 - mask)
        x = x + (x - estimate) / sigma * (sigma_next - sigma)
    reference = x / scale
    delta = ph.max_abs_diff(sampled, reference)
    print(f"VAEEncodeForInpaint loop: max |Δ| latent {delta:.2e} (max |latent| {float(reference.abs().max()):.0f})")
    assert delta < 1e-5 * max(1.0, float(reference.abs().max()))
    outside = mask[0, 0] == 0
    # kept where the mask is 0, up to the ×scale ÷scale round trip
    assert ph.max_abs_diff(sampled[0][:, outside], expected_latent[0][:, outside]) < 1e-6


def test_vae_encode_crops_odd_sizes_at_the_centre(workspace, isolated_folders):
    """A 70×67 image encodes as its centred 64×64 crop (rows 3…66, columns 1…64), as ComfyUI's VAE.encode crops."""
    ex, built = workspace
    pixels = (np.random.default_rng(0).random((70, 67, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(isolated_folders.input_dir / "odd.png")
    wf = {"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "i_sd1.safetensors"}},
          "7": {"class_type": "LoadImage", "inputs": {"image": "odd.png"}},
          "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}}}
    ph.capture(wf, "91", ["4", 0], types.LATENT, "encoded")
    ph.run_ok(ex, wf)
    crop = torch.from_numpy(pixels[3:67, 1:65].astype(np.float32) / 255.0)[None]
    with torch.no_grad():
        expected = built["sd1"].vae.encode(crop.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
    assert ph.max_abs_diff(ph.captured("encoded").samples, expected) < 1e-6
