"""Schedules: which noise levels a sampling run visits. Each returns a 1-D float32 tensor of σ ending in 0.

A schedule knows nothing about the solver (k-diffusion's split), so any scheduler pairs with any sampler.
The definitions are ComfyUI's (the compatibility target), name for name:

- simple: every (T/steps)-th entry of the model's σ table from the top.
- sgm_uniform: like normal over steps+1 timesteps, dropping the last ("trailing" spacing).
- karras: Karras et al. (2022) eq. 5, ρ = 7, from σ_max to σ_min.
- exponential: uniform in log σ from σ_max to σ_min.
- ddim_uniform: the DDIM paper's uniform timestep stride (entries 1, 1+c, 1+2c, … of the table).
- beta: timesteps at the quantiles of a Beta(0.6, 0.6) distribution (Lee et al. 2024, arXiv:2407.12173).
- normal: timesteps linspace(t(σ_max), t(σ_min), steps), each mapped back to σ by log-σ interpolation.
- linear_quadratic: linear then quadratic in σ/σ_max (Mochi's schedule; threshold 0.025).
- kl_optimal: tan-linear between atan(σ_max) and atan(σ_min) (Sabour et al. 2024, "Align your steps").

A schedule may hold fewer than steps+1 values where the definition merges equal timesteps (beta).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nodes.samplers.model_sigmas import ModelSigmas

Tensor = torch.Tensor
Schedule = Callable[[ModelSigmas, int], Tensor]


def _with_zero(sigmas: list[float] | Tensor) -> Tensor:
    head = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    return torch.cat([head, head.new_zeros(1)])


def simple_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    stride = ms.num_timesteps / steps
    return _with_zero([float(ms.sigmas[-(1 + int(k * stride))]) for k in range(steps)])


def ddim_uniform_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    table = ms.sigmas
    start = 1
    # A table that reaches σ = 0 already ends in zero (zero-terminal-SNR models): take one more step.
    ends_in_zero = math.isclose(float(table[start]), 0.0, abs_tol=1e-5)
    stride = max(ms.num_timesteps // (steps + 1 if ends_in_zero else steps), 1)
    picked = [float(table[t]) for t in range(start, ms.num_timesteps, stride)]
    values = picked if ends_in_zero else [0.0, *picked]
    return torch.tensor(values[::-1], dtype=torch.float32)


def _timestep_schedule(ms: ModelSigmas, steps: int, trailing: bool) -> Tensor:
    first = ms.timestep(torch.tensor(ms.sigma_max))
    last = ms.timestep(torch.tensor(ms.sigma_min))
    if trailing:
        return _with_zero([float(ms.sigma(t)) for t in torch.linspace(first, last, steps + 1)[:-1]])
    reaches_zero = math.isclose(float(ms.sigma(last)), 0.0, abs_tol=1e-5)
    timesteps = torch.linspace(first, last, steps + 1 if reaches_zero else steps)
    values = [float(ms.sigma(t)) for t in timesteps]
    return torch.tensor(values, dtype=torch.float32) if reaches_zero else _with_zero(values)


def normal_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    return _timestep_schedule(ms, steps, trailing=False)


def sgm_uniform_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    return _timestep_schedule(ms, steps, trailing=True)


def karras_schedule(ms: ModelSigmas, steps: int, rho: float = 7.0) -> Tensor:
    ramp = torch.linspace(0, 1, steps)
    inv_max, inv_min = ms.sigma_max ** (1 / rho), ms.sigma_min ** (1 / rho)
    return _with_zero((inv_max + ramp * (inv_min - inv_max)) ** rho)


def exponential_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    return _with_zero(torch.linspace(math.log(ms.sigma_max), math.log(ms.sigma_min), steps).exp())


def beta_schedule(ms: ModelSigmas, steps: int, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    import numpy as np
    from scipy import stats

    last_timestep = ms.num_timesteps - 1
    quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
    timesteps = np.rint(stats.beta.ppf(quantiles, alpha, beta) * last_timestep)
    values: list[float] = []
    previous = -1.0
    for t in timesteps:
        if t != previous:  # neighbouring quantiles that round to one timestep are visited once
            values.append(float(ms.sigmas[int(t)]))
        previous = t
    return _with_zero(values)


def linear_quadratic_schedule(ms: ModelSigmas, steps: int, threshold_noise: float = 0.025) -> Tensor:
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        linear_steps = steps // 2
        linear_part = [k * threshold_noise / linear_steps for k in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = step_diff / (linear_steps * quadratic_steps**2)
        lin_coef = threshold_noise / linear_steps - 2 * step_diff / quadratic_steps**2
        const = quad_coef * linear_steps**2
        quadratic_part = [quad_coef * k**2 + lin_coef * k + const for k in range(linear_steps, steps)]
        fractions = [1.0 - v for v in [*linear_part, *quadratic_part, 1.0]]
    return torch.tensor(fractions, dtype=torch.float32) * ms.sigmas[-1]


def kl_optimal_schedule(ms: ModelSigmas, steps: int) -> Tensor:
    # ComfyUI divides by steps − 1, which is NaN for one step; one step starts at σ_max like the others.
    ramp = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    out = ramp.new_zeros(steps + 1)
    out[:-1] = (ramp * math.atan(ms.sigma_min) + (1 - ramp) * math.atan(ms.sigma_max)).tan_()
    return out


# ComfyUI's order (its KSampler combo lists them in this order).
SCHEDULERS: dict[str, Schedule] = {
    "simple": simple_schedule,
    "sgm_uniform": sgm_uniform_schedule,
    "karras": karras_schedule,
    "exponential": exponential_schedule,
    "ddim_uniform": ddim_uniform_schedule,
    "beta": beta_schedule,
    "normal": normal_schedule,
    "linear_quadratic": linear_quadratic_schedule,
    "kl_optimal": kl_optimal_schedule,
}

# Samplers that ComfyUI runs on a schedule of steps+1 with the next-to-last σ removed (they take a
# second model evaluation between σ_i and σ_{i+1}; the extra point makes the final step small).
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def full_schedule(ms: ModelSigmas, scheduler: str, steps: int, sampler_name: str | None = None) -> Tensor:
    """The schedule of `steps` steps for a sampler (ComfyUI's KSampler.calculate_sigmas)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler {scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    discard_penultimate = sampler_name in DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigmas = SCHEDULERS[scheduler](ms, steps + 1 if discard_penultimate else steps)
    if discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def schedule_sigmas(
    ms: ModelSigmas, scheduler: str, steps: int, denoise: float = 1.0, sampler_name: str | None = None
) -> Tensor:
    """The σ a KSampler run visits, with ComfyUI's rule for denoise < 1.

    denoise d < 1 builds the schedule of int(steps / d) steps and keeps its last steps+1 values, so the
    run starts part-way down the full schedule (img2img). d ≤ 0 gives an empty schedule (nothing to do).
    """
    if denoise is None or denoise > 0.9999:
        return full_schedule(ms, scheduler, steps, sampler_name)
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    longer = full_schedule(ms, scheduler, int(steps / denoise), sampler_name)
    return longer[-(steps + 1) :]


def advanced_sigmas(
    sigmas: Tensor,
    start_at_step: int | None = None,
    end_at_step: int | None = None,
    return_with_leftover_noise: bool = False,
) -> Tensor:
    """KSamplerAdvanced's slice of a schedule (ComfyUI's KSampler.sample rule).

    Ending early keeps σ[0 … end_at_step] and, unless the leftover noise is to be returned, sets the
    last of them to 0 so the run finishes fully denoised. Starting at or past the last step leaves
    nothing to do: the result is an empty tensor, for which `sample` returns its input latent.
    """
    out = sigmas.clone()
    if end_at_step is not None and end_at_step < len(out) - 1:
        out = out[: end_at_step + 1]
        if not return_with_leftover_noise:
            out[-1] = 0
    if start_at_step is not None:
        if start_at_step >= len(out) - 1:
            return out[:0]
        out = out[start_at_step:]
    return out
