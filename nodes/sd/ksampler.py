"""KSampler / KSamplerAdvanced implementation: schedule, noise, UNet + CFG, patches, progress previews."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from nodes.samplers.model_sigmas import ModelSigmas
from nodes.samplers.noise import prepare_noise
from nodes.samplers.run import sample
from nodes.samplers.schedules import advanced_sigmas, schedule_sigmas
from nodes.sd.denoiser import CFGDenoiser
from nodes.sd.model_manager import manager
from nodes.sd.preview import latent_preview
from nodes.values import CondEntry, Latent, ModelHandle


@dataclass(frozen=True)
class SamplerSettings:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    add_noise: bool = True
    start_at_step: int | None = None
    end_at_step: int | None = None
    return_with_leftover_noise: bool = False


def model_sigmas(model: ModelHandle) -> ModelSigmas:
    family = model.family
    return ModelSigmas.from_betas(
        family.beta_schedule, family.beta_start, family.beta_end, family.num_timesteps, model.prediction
    )


def sigmas_for(model: ModelHandle, settings: SamplerSettings) -> torch.Tensor:
    ms = model_sigmas(model)
    sigmas = schedule_sigmas(ms, settings.scheduler, settings.steps, settings.denoise, settings.sampler_name)
    if settings.start_at_step is None and settings.end_at_step is None:
        return sigmas
    return advanced_sigmas(sigmas, settings.start_at_step, settings.end_at_step, settings.return_with_leftover_noise)


def inpaint_concat(model: ModelHandle, positive: tuple[CondEntry, ...], latent: Latent, latent_in: torch.Tensor):
    """The extra input channels of a 9-channel inpainting UNet: [mask, masked-image latent]."""
    extras = positive[0].extras if positive else {}
    mask = extras.get("concat_mask", latent.noise_mask)
    image = extras.get("concat_latent")
    image = latent_in if image is None else (image - model.latent_shift) * model.latent_scale
    size = latent_in.shape[-2:]
    if mask is None:
        mask = torch.ones(latent_in.shape[0], 1, *size)
    else:
        from nodes.sd.masks import as_nchw

        mask = torch.nn.functional.interpolate(as_nchw(mask), size=size, mode="bilinear").round()
    batch = latent_in.shape[0]
    mask = mask.repeat(max(1, batch // mask.shape[0]), 1, 1, 1)[:batch]
    image = image.repeat(max(1, batch // image.shape[0]), 1, 1, 1)[:batch].to(latent_in.device)
    return torch.cat([mask.to(latent_in.device, latent_in.dtype), image.to(latent_in.dtype)], dim=1)


def run(
    ctx: Any,
    model: ModelHandle,
    positive: tuple[CondEntry, ...],
    negative: tuple[CondEntry, ...],
    latent: Latent,
    settings: SamplerSettings,
) -> Latent:
    ms = model_sigmas(model)
    sigmas = sigmas_for(model, settings)
    steps = max(0, len(sigmas) - 1)
    raw = latent.samples.float()
    noise = prepare_noise(raw, settings.seed, latent.batch_index) if settings.add_noise else None
    sdxl = bool(model.family.size_conditioning)

    def on_step(info: dict) -> None:
        preview = latent_preview(info["denoised"], sdxl=sdxl) if ctx is not None else None
        if ctx is not None:
            ctx.progress(info["i"] + 1, steps, preview)

    call_state: dict[str, Any] = {"percent_to_sigma": ms.percent_to_sigma}
    with ExitStack() as stack:
        (unet,) = stack.enter_context(manager().use(model.unet))
        device = next(unet.parameters()).device
        for patch in model.patches:
            stack.enter_context(patch.applied(unet, {"role": "unet", "call_state": call_state, "model": model}))
        stack.enter_context(torch.no_grad())
        latent_in = ((raw - model.latent_shift) * model.latent_scale).to(device)
        concat = inpaint_concat(model, positive, latent, latent_in) if model.family.is_inpaint else None
        denoiser = CFGDenoiser(
            unet, model, positive, negative, settings.cfg, ms.timestep, ms.percent_to_sigma, concat=concat,
            residual_hooks=residual_hooks_for(positive, negative), call_state=call_state,
        )
        if ctx is not None:
            ctx.check_interrupt()
        out = sample(
            denoiser, None if noise is None else noise.to(device), latent_in, sigmas, settings.sampler_name,
            settings.seed, callback=on_step, add_noise=settings.add_noise,
            denoise_mask=None if latent.noise_mask is None else latent.noise_mask.to(device), model_sigmas=ms,
        )
    samples = (out.float().cpu() / model.latent_scale) + model.latent_shift
    return latent.replace(samples=samples)


def residual_hooks_for(positive: tuple[CondEntry, ...], negative: tuple[CondEntry, ...]) -> tuple:
    """ControlNet residuals for the UNet call, when any entry carries controls."""
    if not any(e.controls for e in (*positive, *negative)):
        return ()
    from nodes.adapters.controlnet_apply import control_residual_hook

    return (control_residual_hook,)
