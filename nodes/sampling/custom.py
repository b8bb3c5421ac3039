"""Custom sampling, as ComfyUI's nodes of the same names: the KSampler taken apart into a sampler (SAMPLER), a
schedule (SIGMAS), the starting noise (NOISE) and the guidance (GUIDER), run by SamplerCustom(Advanced).

Values on the links: SAMPLER is a `SamplerChoice` (a name from the sampler table), SIGMAS a 1-D float tensor
ending in 0, NOISE a `NoiseSource`, GUIDER a `Guider`. They all run on the same sampler stack as KSampler
(nodes.samplers, nodes.sd.denoiser), so KSamplerSelect + BasicScheduler + CFGGuider + RandomNoise give
exactly KSampler's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphcore import types
from graphcore.context import NodeContext
from graphcore.inputs import Boolean, Combo, Float, Int, Socket
from graphcore.node import Node, Output
from nodes.samplers.names import SAMPLER_NAMES, SCHEDULER_NAMES

MAX_SEED = 0xFFFFFFFFFFFFFFFF
CUSTOM = "sampling/custom_sampling"


@dataclass(frozen=True)
class SamplerChoice:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoiseSource:
    seed: int
    enabled: bool = True  # False: start from the latent as it is (DisableNoise); the seed still drives SDE noise


@dataclass(frozen=True)
class Guider:
    model: Any  # ModelHandle
    positive: tuple
    negative: tuple = ()
    cfg: float = 1.0


def _seed() -> Int:
    return Int(0, min=0, max=MAX_SEED, control_after_generate=True, tooltip="The noise seed")


def _cfg() -> Float:
    return Float(8.0, min=0.0, max=100.0, step=0.1, round=0.01)


class KSamplerSelect(Node):
    display_name = "KSamplerSelect"
    category = f"{CUSTOM}/samplers"
    description = "Picks a sampler (solver) by name for SamplerCustom."
    inputs = {"sampler_name": Combo(SAMPLER_NAMES, default="euler")}
    outputs = (Output(types.SAMPLER),)

    def run(self, ctx: NodeContext, sampler_name: str) -> tuple[SamplerChoice]:
        return (SamplerChoice(sampler_name),)


class BasicScheduler(Node):
    display_name = "BasicScheduler"
    category = f"{CUSTOM}/schedulers"
    description = "The noise levels a KSampler with this scheduler, steps and denoise would visit."
    inputs = {
        "model": Socket(types.MODEL),
        "scheduler": Combo(SCHEDULER_NAMES, default="normal"),
        "steps": Int(20, min=1, max=10000),
        "denoise": Float(1.0, min=0.0, max=1.0, step=0.01),
    }
    outputs = (Output(types.SIGMAS),)

    def run(self, ctx: NodeContext, model: Any, scheduler: str, steps: int, denoise: float) -> tuple[Any]:
        from nodes.samplers.schedules import schedule_sigmas
        from nodes.sd.ksampler import model_sigmas

        return (schedule_sigmas(model_sigmas(model), scheduler, steps, denoise),)


class KarrasScheduler(Node):
    display_name = "KarrasScheduler"
    category = f"{CUSTOM}/schedulers"
    description = "Karras et al. (2022) noise levels between sigma_max and sigma_min, independent of a model."
    inputs = {
        "steps": Int(20, min=1, max=10000),
        "sigma_max": Float(14.614642, min=0.0, max=5000.0, step=0.01),
        "sigma_min": Float(0.0291675, min=0.0, max=5000.0, step=0.01),
        "rho": Float(7.0, min=0.0, max=100.0, step=0.01),
    }
    outputs = (Output(types.SIGMAS),)

    @classmethod
    def check(cls, constants: dict[str, Any]) -> dict[str, str]:
        if constants.get("sigma_min", 1.0) <= 0.0 or constants.get("rho", 1.0) <= 0.0:
            return {"sigma_min": "sigma_min and rho must be greater than 0"}
        return {}

    def run(self, ctx: NodeContext, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[Any]:
        from types import SimpleNamespace

        from nodes.samplers.schedules import karras_schedule

        # karras_schedule reads only the two ends of a model's σ table.
        return (karras_schedule(SimpleNamespace(sigma_max=sigma_max, sigma_min=sigma_min), steps, rho),)


class SplitSigmas(Node):
    display_name = "SplitSigmas"
    category = f"{CUSTOM}/sigmas"
    description = "Cuts a schedule at a step: the high part (steps 0…step) and the low part (step…end) share it."
    inputs = {"sigmas": Socket(types.SIGMAS), "step": Int(0, min=0, max=10000)}
    outputs = (Output(types.SIGMAS, "high_sigmas"), Output(types.SIGMAS, "low_sigmas"))

    def run(self, ctx: NodeContext, sigmas: Any, step: int) -> tuple[Any, Any]:
        return (sigmas[: step + 1], sigmas[step:])


class SplitSigmasDenoise(Node):
    display_name = "SplitSigmasDenoise"
    category = f"{CUSTOM}/sigmas"
    description = "Cuts a schedule so that the low part is the last `denoise` fraction of its steps."
    inputs = {"sigmas": Socket(types.SIGMAS), "denoise": Float(1.0, min=0.0, max=1.0, step=0.01)}
    outputs = (Output(types.SIGMAS, "high_sigmas"), Output(types.SIGMAS, "low_sigmas"))

    def run(self, ctx: NodeContext, sigmas: Any, denoise: float) -> tuple[Any, Any]:
        steps = max(sigmas.shape[-1] - 1, 0)
        low_steps = round(steps * denoise)
        # At denoise 0 the high part is the whole schedule (ComfyUI's slice gives an empty one there).
        return (sigmas[: len(sigmas) - low_steps], sigmas[len(sigmas) - low_steps - 1:])


class RandomNoise(Node):
    display_name = "RandomNoise"
    category = f"{CUSTOM}/noise"
    description = "Seeded starting noise (the same seed gives KSampler's noise)."
    inputs = {"noise_seed": _seed()}
    outputs = (Output(types.NOISE),)

    def run(self, ctx: NodeContext, noise_seed: int) -> tuple[NoiseSource]:
        return (NoiseSource(noise_seed),)


class DisableNoise(Node):
    display_name = "DisableNoise"
    category = f"{CUSTOM}/noise"
    description = "No starting noise: sample the latent as it is (e.g. a latent returned with leftover noise)."
    inputs = {}
    outputs = (Output(types.NOISE),)

    def run(self, ctx: NodeContext) -> tuple[NoiseSource]:
        return (NoiseSource(0, enabled=False),)


class BasicGuider(Node):
    display_name = "BasicGuider"
    category = f"{CUSTOM}/guiders"
    description = "Guidance by one conditioning only (cfg 1, no negative pass): for distilled or turbo models."
    inputs = {"model": Socket(types.MODEL), "conditioning": Socket(types.CONDITIONING)}
    outputs = (Output(types.GUIDER),)

    def run(self, ctx: NodeContext, model: Any, conditioning: tuple) -> tuple[Guider]:
        return (Guider(model, tuple(conditioning)),)


class CFGGuider(Node):
    display_name = "CFGGuider"
    category = f"{CUSTOM}/guiders"
    description = "Classifier-free guidance between a positive and a negative conditioning."
    inputs = {
        "model": Socket(types.MODEL),
        "positive": Socket(types.CONDITIONING),
        "negative": Socket(types.CONDITIONING),
        "cfg": _cfg(),
    }
    outputs = (Output(types.GUIDER),)

    def run(self, ctx: NodeContext, model: Any, positive: tuple, negative: tuple, cfg: float) -> tuple[Guider]:
        return (Guider(model, tuple(positive), tuple(negative), cfg),)


class SamplerCustom(Node):
    display_name = "SamplerCustom"
    category = CUSTOM
    description = "Samples with a chosen sampler and schedule; also returns the last step's denoised estimate."
    inputs = {
        "model": Socket(types.MODEL),
        "add_noise": Boolean(True),
        "noise_seed": _seed(),
        "cfg": _cfg(),
        "positive": Socket(types.CONDITIONING),
        "negative": Socket(types.CONDITIONING),
        "sampler": Socket(types.SAMPLER),
        "sigmas": Socket(types.SIGMAS),
        "latent_image": Socket(types.LATENT),
    }
    outputs = (Output(types.LATENT, "output"), Output(types.LATENT, "denoised_output"))

    def run(self, ctx: NodeContext, model: Any, add_noise: bool, noise_seed: int, cfg: float, positive: tuple,
            negative: tuple, sampler: SamplerChoice, sigmas: Any, latent_image: Any) -> tuple[Any, Any]:
        from nodes.sampling.custom_run import sample_custom

        guider = Guider(model, tuple(positive), tuple(negative), cfg)
        return sample_custom(ctx, guider, sampler, sigmas, latent_image, NoiseSource(noise_seed, add_noise))


class SamplerCustomAdvanced(Node):
    display_name = "SamplerCustomAdvanced"
    category = CUSTOM
    description = "Samples from noise, guider, sampler and schedule; also returns the last denoised estimate."
    inputs = {
        "noise": Socket(types.NOISE),
        "guider": Socket(types.GUIDER),
        "sampler": Socket(types.SAMPLER),
        "sigmas": Socket(types.SIGMAS),
        "latent_image": Socket(types.LATENT),
    }
    outputs = (Output(types.LATENT, "output"), Output(types.LATENT, "denoised_output"))

    def run(self, ctx: NodeContext, noise: NoiseSource, guider: Guider, sampler: SamplerChoice, sigmas: Any,
            latent_image: Any) -> tuple[Any, Any]:
        from nodes.sampling.custom_run import sample_custom

        return sample_custom(ctx, guider, sampler, sigmas, latent_image, noise)


NODES = (
    KSamplerSelect,
    BasicScheduler,
    KarrasScheduler,
    SplitSigmas,
    SplitSigmasDenoise,
    RandomNoise,
    DisableNoise,
    BasicGuider,
    CFGGuider,
    SamplerCustom,
    SamplerCustomAdvanced,
)
