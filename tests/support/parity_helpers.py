"""Helpers for parity tests against diffusers and for ComfyUI-convention reference loops.

- `Capture`: an output node that keeps the IMAGE / LATENT / CONDITIONING it receives, so a test can run a real
  workflow through the executor and read the float result (no PNG quantisation in between).
- `executor()` / `run_ok()`: the built-in node catalog plus `Capture`, run with the test's folders.
- Workflow builders in API format with our node names (ComfyUI's names are aliases and tested elsewhere).
- `comfy_schedule(scheduler, sigmas)`: make a diffusers scheduler visit exactly the given σ table with ComfyUI's
  nearest-integer UNet timesteps. Only the *schedule* is replaced; every solver update stays diffusers' own.
- `diffusers_latents(noise, sigma_0, scheduler)`: ComfyUI's initial sample (noise·sqrt(1 + σ₀²)) expressed in the
  scheduler's sample space (σ-space schedulers scale by init_noise_sigma; VP schedulers take x / sqrt(1 + σ²)).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from graphcore import types
from graphcore.executor import Executor, RunResult
from graphcore.inputs import Socket, String
from graphcore.node import Node, Result
from graphcore.registry import Registry
from nodes.samplers.model_sigmas import ModelSigmas


class Capture(Node):
    """Test-only output node: `Capture.values[tag]` is the last value received under that tag."""

    category = "testing"
    output_node = True
    not_deterministic = True
    inputs = {"value": Socket("*"), "tag": String("out")}
    values: ClassVar[dict[str, Any]] = {}

    def run(self, ctx, value, tag="out"):
        Capture.values[tag] = value
        return Result((), {"captured": [tag]})


def _any_socket_capture(type_name: str) -> type[Node]:
    """A Capture variant typed for one socket type (validation checks link types)."""
    return type(f"Capture{type_name.title().replace('_', '')}", (Capture,), {
        "inputs": {"value": Socket(type_name), "tag": String("out")},
    })


CAPTURE_TYPES = (types.IMAGE, types.LATENT, types.CONDITIONING, types.MODEL, types.CLIP, types.VAE)
CAPTURES = {t: _any_socket_capture(t) for t in CAPTURE_TYPES}


def registry() -> Registry:
    from nodes.catalog import all_node_classes

    reg = Registry()
    reg.add_all(all_node_classes())
    reg.add_all(CAPTURES.values())
    return reg


def executor() -> Executor:
    return Executor(registry())


def run_ok(ex: Executor, workflow: Mapping[str, Any], **kwargs: Any) -> RunResult:
    result = ex.run(dict(workflow), **kwargs)
    if not result.ok:
        error = result.error
        detail = f"{error.node_type} #{error.node_id}: {error.exception_message}" if error else result.status
        raise AssertionError(f"workflow failed: {detail}\n{''.join(error.traceback) if error else ''}")
    return result


def captured(tag: str = "out") -> Any:
    return Capture.values[tag]


# ----------------------------------------------------------------------------------------------- workflows
def capture(workflow: dict, node_id: str, source: list, type_name: str, tag: str = "out") -> dict:
    workflow[node_id] = {"class_type": CAPTURES[type_name].__name__, "inputs": {"value": source, "tag": tag}}
    return workflow


def txt2img(
    ckpt: str, prompt: str = "a red circle", negative: str = "", *, seed: int = 5, steps: int = 10, cfg: float = 7.0,
    sampler: str = "euler", scheduler: str = "simple", width: int = 64, height: int = 64, denoise: float = 1.0,
    batch: int = 1,
) -> dict:
    """LoadCheckpoint → CLIPEncode ×2 → EmptyLatent → KSampler → VAEDecode → Capture(IMAGE "image"),
    plus Capture(LATENT "latent") of the sampler's output."""
    wf = {
        "1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatent", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
            "scheduler": scheduler, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "denoise": denoise}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    }
    capture(wf, "90", ["6", 0], types.IMAGE, "image")
    return capture(wf, "91", ["5", 0], types.LATENT, "latent")


# ------------------------------------------------------------------------------------- diffusers schedules
def nearest_timesteps(ms: ModelSigmas, sigmas: torch.Tensor) -> torch.Tensor:
    """ComfyUI's σ → timestep: the nearest integer timestep in log σ (computed here by brute force)."""
    log_table = ms.sigmas.double().log()
    return torch.stack([(log_table - torch.tensor(float(s)).double().log()).abs().argmin() for s in sigmas])


def _layout_plain(sigmas: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return sigmas, timesteps


def _layout_heun(sigmas: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # diffusers' Heun visits every inner σ twice (predictor, corrector) and ends with a plain Euler step to 0.
    interleaved = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    steps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
    return interleaved, steps


# scheduler class name → how its σ / timestep arrays are laid out
SCHEDULE_LAYOUTS = {
    "EulerDiscreteScheduler": _layout_plain,
    "EulerAncestralDiscreteScheduler": _layout_plain,
    "DPMSolverMultistepScheduler": _layout_plain,
    "UniPCMultistepScheduler": _layout_plain,
    "HeunDiscreteScheduler": _layout_heun,
}


def reference_scheduler(base: Any, cls_name: str, **overrides: Any) -> Any:
    """A diffusers scheduler of class `cls_name` with `base`'s training betas and `overrides`.

    The config's private keys are dropped first: diffusers' `from_config` discards every key listed in
    `_use_default_values`, which would silently undo an override such as timestep_spacing.
    """
    import diffusers

    config = {k: v for k, v in dict(base.config).items() if not k.startswith("_")}
    scheduler = getattr(diffusers, cls_name).from_config({**config, **overrides})
    wrong = {k: scheduler.config[k] for k, v in overrides.items() if scheduler.config[k] != v}
    if wrong:
        raise AssertionError(f"{cls_name}: overrides not applied: {wrong}")
    return scheduler


def comfy_schedule(scheduler: Any, sigmas: torch.Tensor, ms: ModelSigmas) -> Any:
    """A copy of `scheduler` whose `set_timesteps` installs `sigmas` (ending in 0, or ComfyUI's UniPC end) and
    the nearest-integer timesteps of its non-final entries. diffusers' own set_timesteps runs first, so every
    other piece of solver state is reset the way diffusers resets it."""
    layout = SCHEDULE_LAYOUTS[type(scheduler).__name__]
    sigmas = sigmas.float().cpu()
    timesteps = nearest_timesteps(ms, sigmas[:-1])

    base = type(scheduler)

    class ComfyScheduled(base):  # type: ignore[misc, valid-type]
        installed = False  # Heun's __init__ calls set_timesteps itself: leave that call alone

        def set_timesteps(self, num_inference_steps=None, device=None, *args, **kwargs):
            super().set_timesteps(num_inference_steps, device, *args, **kwargs)
            if not self.installed:
                return
            if num_inference_steps != len(sigmas) - 1:
                raise AssertionError(f"pipeline asked for {num_inference_steps} steps, schedule has {len(sigmas) - 1}")
            new_sigmas, new_steps = layout(sigmas, timesteps)
            self.sigmas = new_sigmas.clone()
            self.timesteps = new_steps.to(device=device, dtype=self.timesteps.dtype)

    ComfyScheduled.__name__ = base.__name__
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    scheduled = ComfyScheduled.from_config(copy.deepcopy(config))
    scheduled.installed = True
    return scheduled


def diffusers_latents(x_start: torch.Tensor, sigmas: torch.Tensor, scheduler: Any) -> torch.Tensor:
    """ComfyUI's starting sample `x_start` (σ space, e.g. noise·sqrt(1 + σ₀²)) as the `latents=` a diffusers
    pipeline wants with this scheduler.

    σ-space schedulers (Euler, Heun …) multiply the given latents by `init_noise_sigma` (known only after
    set_timesteps), so pass x / init_noise_sigma. VP schedulers (DDIM, DPM-Solver, UniPC; init_noise_sigma 1)
    hold x / sqrt(1 + σ₀²), which at full denoise is the noise itself.
    """
    sigma_0 = float(sigmas[0])
    if _is_vp(scheduler):
        return x_start / (1.0 + sigma_0**2) ** 0.5
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(len(sigmas) - 1)
    return x_start / float(probe.init_noise_sigma)


def _is_vp(scheduler: Any) -> bool:
    return type(scheduler).__name__ in ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max())


def link_formats(checkpoint: Any, directory: Path, formats: Iterable[str], name: str) -> dict[str, str]:
    """Link a tiny checkpoint's formats into a models folder; returns format → ckpt_name for LoadCheckpoint."""
    links = checkpoint.link_into(directory, formats, name=name)
    return {fmt: path.relative_to(directory).as_posix() for fmt, path in links.items()}
