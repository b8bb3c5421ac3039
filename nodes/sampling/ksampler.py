"""The samplers as ComfyUI users know them: KSampler and KSamplerAdvanced (same names, inputs, defaults)."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Combo, Float, Int, Socket
from graphcore.node import Node, Output
from nodes.samplers.names import SAMPLER_NAMES, SCHEDULER_NAMES

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def switch_step(steps: int, fraction: float) -> int:
    """The step where a base run hands over to a refiner (the same rule on both sides)."""
    return int(round(steps * fraction))


def _sampling_inputs(seed_name: str) -> dict:
    return {
        seed_name: Int(0, min=0, max=MAX_SEED, control_after_generate=True,
                       tooltip="The noise seed; the same seed gives the same picture"),
        "steps": Int(20, min=1, max=10000, tooltip="Denoising steps"),
        "cfg": Float(8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                     tooltip="Classifier-free guidance: how strongly to follow the prompt (1 = no negative pass)"),
        "sampler_name": Combo(SAMPLER_NAMES, default="euler", tooltip="The solver"),
        "scheduler": Combo(SCHEDULER_NAMES, default="normal", tooltip="Which noise levels to visit"),
        "positive": Socket(types.CONDITIONING),
        "negative": Socket(types.CONDITIONING),
        "latent_image": Socket(types.LATENT),
    }


class KSampler(Node):
    display_name = "KSampler"
    category = "sampling"
    description = (
        "Denoises a latent: from noise (denoise 1.0, text-to-image) or from an encoded image (denoise < 1, "
        "image-to-image). Same seeds, samplers and schedules give the same picture as in ComfyUI."
    )
    inputs = {
        "model": Socket(types.MODEL),
        **_sampling_inputs("seed"),
        "denoise": Float(1.0, min=0.0, max=1.0, step=0.01, tooltip="How much of the schedule to run"),
        "end_at": Float(1.0, min=0.0, max=1.0, step=0.01, optional=True,
                        tooltip="Stop at this fraction of the steps and return the latent with its remaining "
                                "noise — e.g. 0.8 for an SDXL base whose Refiner has switch_at 0.8"),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
            denoise=1.0, end_at=1.0):
        from nodes.sd.ksampler import SamplerSettings, run

        end = switch_step(steps, end_at) if end_at < 1.0 else None
        settings = SamplerSettings(seed, steps, cfg, sampler_name, scheduler, denoise, end_at_step=end,
                                   return_with_leftover_noise=end is not None)
        return (run(ctx, model, positive, negative, latent_image, settings),)


class KSamplerAdvanced(Node):
    display_name = "KSampler (Advanced)"
    category = "sampling"
    description = (
        "KSampler with control over the schedule: run only steps start_at_step…end_at_step, with or without "
        "adding noise, and optionally return the latent with its leftover noise (SDXL base → refiner)."
    )
    inputs = {
        "model": Socket(types.MODEL),
        "add_noise": Combo(("enable", "disable"), default="enable"),
        **_sampling_inputs("noise_seed"),
        "start_at_step": Int(0, min=0, max=10000),
        "end_at_step": Int(10000, min=0, max=10000),
        "return_with_leftover_noise": Combo(("disable", "enable"), default="disable"),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
            latent_image, start_at_step, end_at_step, return_with_leftover_noise):
        from nodes.sd.ksampler import SamplerSettings, run

        settings = SamplerSettings(
            noise_seed, steps, cfg, sampler_name, scheduler, 1.0, add_noise == "enable", start_at_step,
            end_at_step, return_with_leftover_noise == "enable",
        )
        return (run(ctx, model, positive, negative, latent_image, settings),)


NODES = (KSampler, KSamplerAdvanced)
