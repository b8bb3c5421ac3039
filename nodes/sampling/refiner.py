"""The SDXL refiner stage as one node: continue a base run's leftover-noise latent to the end."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Combo, Float, Int, Socket
from graphcore.node import Node, Output
from nodes.samplers.names import SAMPLER_NAMES, SCHEDULER_NAMES
from nodes.sampling.ksampler import MAX_SEED, switch_step


class Refiner(Node):
    display_name = "SDXL Refiner"
    category = "sampling"
    description = (
        "Finishes an image with the SDXL refiner. Wire a base KSampler with end_at = switch_at (same steps, "
        "sampler and scheduler) into latent_image: the refiner continues the same schedule from that step, "
        "on the latent with its remaining noise, adding no new noise."
    )
    inputs = {
        "model": Socket(types.MODEL, tooltip="The refiner checkpoint's MODEL"),
        "positive": Socket(types.CONDITIONING, tooltip="Prompt encoded with the refiner's CLIP"),
        "negative": Socket(types.CONDITIONING),
        "latent_image": Socket(types.LATENT, tooltip="The base KSampler's output (end_at < 1)"),
        "seed": Int(0, min=0, max=MAX_SEED, control_after_generate=True),
        "steps": Int(25, min=1, max=10000, tooltip="Total steps of base + refiner (same as the base)"),
        "switch_at": Float(0.8, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the steps done by the base"),
        "sampler_name": Combo(SAMPLER_NAMES, default="euler"),
        "scheduler": Combo(SCHEDULER_NAMES, default="normal"),
        "cfg": Float(7.0, min=0.0, max=100.0, step=0.1, round=0.01),
    }
    outputs = (Output(types.LATENT),)

    def run(self, ctx, model, positive, negative, latent_image, seed, steps, switch_at, sampler_name, scheduler,
            cfg):
        from nodes.sd.ksampler import SamplerSettings, run

        settings = SamplerSettings(seed, steps, cfg, sampler_name, scheduler, 1.0, add_noise=False,
                                   start_at_step=switch_step(steps, switch_at), end_at_step=10000)
        return (run(ctx, model, positive, negative, latent_image, settings),)


NODES = (Refiner,)
