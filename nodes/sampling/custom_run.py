"""SamplerCustom / SamplerCustomAdvanced: one sampling run from a guider, sampler, schedule and noise source.

The same steps as nodes.sd.ksampler.run (model patches, inpainting channels, ControlNet residuals, CFG
denoiser, seeded noise, previews), with the schedule and the solver given instead of derived from names.
Returns (output, denoised_output): the sampled latent and the denoised estimate of the last step.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch

from nodes.samplers.noise import prepare_noise
from nodes.samplers.run import sample
from nodes.sampling.custom import Guider, NoiseSource, SamplerChoice
from nodes.sd.denoiser import CFGDenoiser
from nodes.sd.ksampler import inpaint_concat, model_sigmas, residual_hooks_for
from nodes.sd.model_manager import manager
from nodes.sd.preview import latent_preview
from nodes.values import Latent


def _as_sigmas(sigmas: Any) -> torch.Tensor:
    tensor = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    if len(tensor) and (tensor[:-1] < tensor[1:]).any():
        raise ValueError(f"sigmas must not increase along the schedule; got {tensor.tolist()}")
    return tensor


def sample_custom(
    ctx: Any, guider: Guider, sampler: SamplerChoice, sigmas: Any, latent: Latent, noise: NoiseSource
) -> tuple[Latent, Latent]:
    model = guider.model
    ms = model_sigmas(model)
    sigmas = _as_sigmas(sigmas)
    steps = max(0, len(sigmas) - 1)
    raw = latent.samples.float()
    initial = prepare_noise(raw, noise.seed, latent.batch_index) if noise.enabled else None
    sdxl = bool(model.family.size_conditioning)
    last_denoised: list[torch.Tensor] = []

    def on_step(info: dict) -> None:
        last_denoised[:] = [info["denoised"].detach().clone()]
        if ctx is not None:
            ctx.progress(info["i"] + 1, steps, latent_preview(info["denoised"], sdxl=sdxl))

    call_state: dict[str, Any] = {"percent_to_sigma": ms.percent_to_sigma}
    with ExitStack() as stack:
        (unet,) = stack.enter_context(manager().use(model.unet))
        device = next(unet.parameters()).device
        for patch in model.patches:
            stack.enter_context(patch.applied(unet, {"role": "unet", "call_state": call_state, "model": model}))
        stack.enter_context(torch.no_grad())
        latent_in = ((raw - model.latent_shift) * model.latent_scale).to(device)
        concat = inpaint_concat(model, guider.positive, latent, latent_in) if model.family.is_inpaint else None
        denoiser = CFGDenoiser(
            unet, model, guider.positive, guider.negative, guider.cfg, ms.timestep, ms.percent_to_sigma,
            concat=concat, residual_hooks=residual_hooks_for(guider.positive, guider.negative), call_state=call_state,
        )
        if ctx is not None:
            ctx.check_interrupt()
        out = sample(
            denoiser, None if initial is None else initial.to(device), latent_in, sigmas, sampler.name, noise.seed,
            callback=on_step, add_noise=noise.enabled,
            denoise_mask=None if latent.noise_mask is None else latent.noise_mask.to(device), model_sigmas=ms,
            sampler_options=sampler.options,
        )

    def to_raw(x: torch.Tensor) -> torch.Tensor:
        return (x.float().cpu() / model.latent_scale) + model.latent_shift

    output = latent.replace(samples=to_raw(out))
    denoised = latent.replace(samples=to_raw(last_denoised[0])) if last_denoised else output
    return output, denoised
