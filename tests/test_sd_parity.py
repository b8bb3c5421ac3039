"""txt2img parity with diffusers on the same tiny weights and seed, through our workflow JSON
(LoadCheckpoint → CLIPEncode ×2 → EmptyLatent → KSampler → VAEDecode), compared on the decoded float image.

How the diffusers reference is set up, and why (our KSampler follows ComfyUI's k-diffusion semantics):
- Schedule: the reference scheduler visits exactly our σ table. Where a diffusers configuration produces that table
  natively (euler+simple = Euler "trailing", ddim+simple = DDIM "trailing" with alpha_T = 1, dpmpp_2m+karras =
  DPMSolverMultistep with Karras sigmas) the test uses it as is and asserts its σ and timesteps equal ours. Elsewhere
  (`parity_helpers.comfy_schedule`) a test-side subclass installs our σ table after diffusers' own set_timesteps,
  because diffusers interpolates σ linearly in t ("normal"), feeds fractional timesteps (Heun, Karras), or ends UniPC
  at 0 where ComfyUI stops at σ = 0.001. Timesteps are ComfyUI's nearest integer; the solver updates are diffusers'.
- Initial sample: ComfyUI starts from noise·sqrt(1 + σ₀²) with the seeded CPU noise; diffusers is given that as
  `latents` (divided by init_noise_sigma for σ-space schedulers; VP schedulers take x / sqrt(1 + σ₀²), the noise).
- Ancestral per-step noise: ComfyUI draws it from a CPU generator seeded with seed + 1; the reference pipeline gets
  `generator=torch.Generator().manual_seed(seed + 1)` (its initial latents are given, so the generator is used only
  for the per-step noise, in the same order and shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from support import parity_helpers as ph

from nodes.samplers.model_sigmas import ModelSigmas
from nodes.samplers.schedules import schedule_sigmas

TOLERANCE = 1e-4
PROMPT, NEGATIVE = "a red circle", "blurry"


@dataclass(frozen=True)
class Case:
    scheduler: str  # our schedule name
    reference: str  # diffusers scheduler class
    overrides: dict = field(default_factory=dict)
    native: bool = False  # diffusers' own configuration produces our table (asserted)


CASES = {
    "euler": Case("simple", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, native=True),
    "euler_ancestral": Case("normal", "EulerAncestralDiscreteScheduler"),
    "heun": Case("karras", "HeunDiscreteScheduler"),
    "dpmpp_2m": Case("karras", "DPMSolverMultistepScheduler",
                     {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++", "solver_order": 2}, native=True),
    "ddim": Case("simple", "DDIMScheduler",
                 {"timestep_spacing": "trailing", "set_alpha_to_one": True, "clip_sample": False}, native=True),
    "uni_pc": Case("karras", "UniPCMultistepScheduler", {"solver_type": "bh1", "solver_order": 3}),
    "uni_pc_bh2": Case("normal", "UniPCMultistepScheduler", {"solver_type": "bh2", "solver_order": 3}),
}
UNI_PC_END = 0.001  # ComfyUI's UniPC stops here when the schedule ends at 0


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("parity_models")
    built = {family: tiny_checkpoint(family) for family in ("sd1", "sd2_v")}
    for family, checkpoint in built.items():
        ph.link_formats(checkpoint, root / "checkpoints", ["safetensors"], f"p_{family}")
    return root, built


@pytest.fixture
def run_ours(models, isolated_folders):
    root = models[0]
    target = isolated_folders.models_dir / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for entry in (root / "checkpoints").iterdir():
        (target / entry.name).symlink_to(entry)
    ex = ph.executor()

    def run(family: str, **settings) -> torch.Tensor:
        ph.run_ok(ex, ph.txt2img(f"p_{family}.safetensors", PROMPT, NEGATIVE, **settings))
        return ph.captured("image")

    return run


def reference_sigmas(family: str, sampler: str, scheduler: str, steps: int) -> tuple[ModelSigmas, torch.Tensor]:
    ms = ModelSigmas.from_betas(prediction_type="v_prediction" if family == "sd2_v" else "epsilon")
    sigmas = schedule_sigmas(ms, scheduler, steps, 1.0, sampler)
    if sampler.startswith("uni_pc"):
        sigmas = torch.cat([sigmas[:-1], torch.tensor([UNI_PC_END])])
    return ms, sigmas


def reference_scheduler(checkpoint, case: Case, ms: ModelSigmas, sigmas: torch.Tensor):
    scheduler = ph.reference_scheduler(checkpoint.scheduler, case.reference, **case.overrides)
    if not case.native:
        return ph.comfy_schedule(scheduler, sigmas, ms)
    probe = ph.reference_scheduler(checkpoint.scheduler, case.reference, **case.overrides)
    probe.set_timesteps(len(sigmas) - 1)
    if hasattr(probe, "sigmas"):  # diffusers' betas are float32, ours float64: 1e-5 relative
        assert torch.allclose(probe.sigmas.float(), sigmas, rtol=1e-5, atol=1e-6), probe.sigmas
    else:  # DDIM: σ of the timesteps it visits, then α = 1 at the end
        assert torch.equal(probe.timesteps, ph.nearest_timesteps(ms, sigmas[:-1]))
        assert probe.config.set_alpha_to_one and float(sigmas[-1]) == 0.0
    assert torch.equal(probe.timesteps.long(), ph.nearest_timesteps(ms, sigmas[:-1]))
    return scheduler


def diffusers_image(checkpoint, scheduler, sigmas, seed: int, cfg: float, batch: int = 1, size: int = 64):
    noise = torch.randn((batch, 4, size // 8, size // 8), generator=torch.Generator().manual_seed(seed))
    latents = ph.diffusers_latents(noise * (1.0 + float(sigmas[0]) ** 2) ** 0.5, sigmas, scheduler)
    pipe = checkpoint.pipeline(scheduler=scheduler)
    with torch.no_grad():
        images = pipe([PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, num_inference_steps=len(sigmas) - 1,
                      guidance_scale=cfg, latents=latents, height=size, width=size, output_type="pt",
                      generator=torch.Generator().manual_seed(seed + 1)).images
    return images.permute(0, 2, 3, 1)


@pytest.mark.parametrize("sampler", sorted(CASES))
def test_txt2img_matches_diffusers(models, run_ours, sampler):
    checkpoint = models[1]["sd1"]
    case = CASES[sampler]
    steps, seed, cfg = 10, 5, 7.0
    ours = run_ours("sd1", sampler=sampler, scheduler=case.scheduler, steps=steps, seed=seed, cfg=cfg)
    ms, sigmas = reference_sigmas("sd1", sampler, case.scheduler, steps)
    reference = diffusers_image(checkpoint, reference_scheduler(checkpoint, case, ms, sigmas), sigmas, seed, cfg)
    delta = ph.max_abs_diff(ours, reference)
    print(f"txt2img {sampler}/{case.scheduler}: max |Δ| = {delta:.2e}")
    assert delta < TOLERANCE


def test_batched_txt2img_matches_diffusers(models, run_ours):
    """A batch of two: one noise tensor [2, 4, h, w] from the seed, cond and uncond of both in one UNet call."""
    checkpoint = models[1]["sd1"]
    case = CASES["dpmpp_2m"]
    ours = run_ours("sd1", sampler="dpmpp_2m", scheduler="karras", steps=8, seed=9, cfg=5.0, batch=2)
    ms, sigmas = reference_sigmas("sd1", "dpmpp_2m", "karras", 8)
    reference = diffusers_image(checkpoint, reference_scheduler(checkpoint, case, ms, sigmas), sigmas, 9, 5.0, batch=2)
    assert ours.shape == (2, 64, 64, 3)
    assert ph.max_abs_diff(ours, reference) < TOLERANCE
    assert ph.max_abs_diff(ours[0], ours[1]) > 1e-3  # the two items got different noise


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_v_prediction_txt2img_matches_diffusers(models, run_ours, sampler):
    checkpoint = models[1]["sd2_v"]
    assert checkpoint.scheduler.config.prediction_type == "v_prediction"
    case = Case("karras", CASES[sampler].reference, {**CASES[sampler].overrides, "timestep_spacing": "linspace"},
                native=sampler == "dpmpp_2m")
    ours = run_ours("sd2_v", sampler=sampler, scheduler="karras", steps=8, seed=3, cfg=5.0)
    ms, sigmas = reference_sigmas("sd2_v", sampler, "karras", 8)
    reference = diffusers_image(checkpoint, reference_scheduler(checkpoint, case, ms, sigmas), sigmas, 3, 5.0)
    delta = ph.max_abs_diff(ours, reference)
    print(f"v-prediction {sampler}/karras: max |Δ| = {delta:.2e}")
    assert delta < TOLERANCE


def _euler_pipeline_image(checkpoint, scheduler, latents, **call) -> torch.Tensor:
    with torch.no_grad():
        images = checkpoint.pipeline(scheduler=scheduler)(
            PROMPT, negative_prompt=NEGATIVE, guidance_scale=7.0, latents=latents, height=64, width=64,
            output_type="pt", **call).images
    return images.permute(0, 2, 3, 1)


def test_the_comparison_sees_each_convention(models, run_ours):
    """Negative controls: undoing any one ComfyUI convention the reference reproduces changes the image by more than
    5× the tolerance on this tiny model (the parity cases above land near 1e-6), so the tolerance hides none of them."""
    checkpoint = models[1]["sd1"]
    ours = run_ours("sd1", sampler="euler", scheduler="karras", steps=10, seed=5, cfg=7.0)
    ms, sigmas = reference_sigmas("sd1", "euler", "karras", 10)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    start = noise * (1.0 + float(sigmas[0]) ** 2) ** 0.5

    def euler(**overrides):
        return ph.reference_scheduler(checkpoint.scheduler, "EulerDiscreteScheduler", **overrides)

    comfy = ph.comfy_schedule(euler(), sigmas, ms)
    exact = _euler_pipeline_image(checkpoint, comfy, ph.diffusers_latents(start, sigmas, comfy), num_inference_steps=10)
    assert ph.max_abs_diff(ours, exact) < TOLERANCE
    leading = euler(use_karras_sigmas=True, timestep_spacing="leading")  # SD1.5's own scheduler config
    leading.set_timesteps(10)
    assert float(leading.sigmas[0]) < 10.0  # starts at σ(902) ≈ 8.4, not σ_max = 14.6
    variants = {
        "diffusers karras, leading spacing": _euler_pipeline_image(
            checkpoint, leading, noise, num_inference_steps=10),
        "start noise·σ_max": _euler_pipeline_image(
            checkpoint, comfy, ph.diffusers_latents(noise * float(sigmas[0]), sigmas, comfy), num_inference_steps=10),
        "interpolated timesteps": _euler_pipeline_image(  # our σ, diffusers' fractional t(σ)
            checkpoint, euler(), start / float(sigmas[0]), sigmas=sigmas.tolist()),
    }
    deltas = {name: ph.max_abs_diff(ours, image) for name, image in variants.items()}
    print("negative controls (max |Δ| vs ours):", {k: f"{v:.2e}" for k, v in deltas.items()})
    assert all(delta > 5 * TOLERANCE for delta in deltas.values()), deltas
