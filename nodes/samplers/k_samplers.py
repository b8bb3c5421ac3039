"""The sampler table: ComfyUI's sampler names → solver functions with k-diffusion's uniform signature.

    fn(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None) -> x

See `_common.py` for the contract. "ddim" is ComfyUI's name for Euler with a separately seeded inpaint
noise (its DDIM is the deterministic η = 0 DDIM, which on σ is exactly Euler's method).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from nodes.samplers import ancestral_samplers as anc
from nodes.samplers import dpm_solver, ode_samplers, sde_samplers, unipc
from nodes.samplers.noise import BrownianTreeNoiseSampler

SamplerFunction = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    function: SamplerFunction
    # Model evaluations per step on a schedule ending in 0 (the final step may take fewer); None: adaptive.
    model_calls_per_step: int | None
    stochastic: bool  # adds noise after the start (ancestral / SDE): the seed matters beyond the initial noise
    description: str
    # ComfyUI re-noises the kept region of an inpaint with a second noise drawn from seed + 1 ("ddim").
    inpaint_random_noise: bool = False


def _on_device_tree(sampler: SamplerFunction) -> SamplerFunction:
    """The "_gpu" variants: the same solver with its Brownian tree built on the latent's device."""

    def run(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, **options):
        if noise_sampler is None and len(sigmas) > 1:
            positive = sigmas[sigmas > 0]
            seed = None if extra_args is None else extra_args.get("seed")
            noise_sampler = BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=False)
        return sampler(model, x, sigmas, extra_args, callback, noise_sampler, **options)

    run.__doc__ = f"{sampler.__doc__} Brownian tree on the latent's device."
    run.__name__ = f"{sampler.__name__}_gpu"
    return run


_S = SamplerSpec
SAMPLERS: dict[str, SamplerSpec] = {
    "euler": _S(ode_samplers.sample_euler, 1, False, "Euler, 1st-order ODE (Karras et al. 2022)"),
    "euler_ancestral": _S(anc.sample_euler_ancestral, 1, True, "Euler ancestral: Euler step plus fresh noise"),
    "heun": _S(ode_samplers.sample_heun, 2, False, "Heun, 2nd-order ODE, 2 calls per step"),
    "heunpp2": _S(ode_samplers.sample_heunpp2, 3, False, "Heun++: up to 3 slope evaluations per step"),
    "exp_heun_2_x0": _S(sde_samplers.sample_exp_heun_2_x0, 2, False, "exponential Heun, data prediction"),
    "exp_heun_2_x0_sde": _S(sde_samplers.sample_exp_heun_2_x0_sde, 2, True, "stochastic exponential Heun"),
    "dpm_2": _S(ode_samplers.sample_dpm_2, 2, False, "DPM-2: log-σ midpoint method, 2 calls per step"),
    "dpm_2_ancestral": _S(anc.sample_dpm_2_ancestral, 2, True, "DPM-2 ancestral"),
    "lms": _S(ode_samplers.sample_lms, 1, False, "linear multistep, order 4"),
    "dpm_fast": _S(dpm_solver.sample_dpm_fast, 1, False, "DPM-Solver-fast (orders 3/2/1), stops at σ_min"),
    "dpm_adaptive": _S(dpm_solver.sample_dpm_adaptive, None, False, "DPM-Solver-23 with adaptive steps"),
    "dpmpp_2s_ancestral": _S(anc.sample_dpmpp_2s_ancestral, 2, True, "DPM-Solver++(2S) ancestral"),
    "dpmpp_sde": _S(sde_samplers.sample_dpmpp_sde, 2, True, "DPM-Solver++ SDE (Brownian noise)"),
    "dpmpp_sde_gpu": _S(_on_device_tree(sde_samplers.sample_dpmpp_sde), 2, True, "dpmpp_sde, tree on device"),
    "dpmpp_2m": _S(ode_samplers.sample_dpmpp_2m, 1, False, "DPM-Solver++(2M), 2nd-order multistep"),
    "dpmpp_2m_sde": _S(sde_samplers.sample_dpmpp_2m_sde, 1, True, "DPM-Solver++(2M) SDE, midpoint"),
    "dpmpp_2m_sde_gpu": _S(_on_device_tree(sde_samplers.sample_dpmpp_2m_sde), 1, True, "2M SDE, tree on device"),
    "dpmpp_2m_sde_heun": _S(sde_samplers.sample_dpmpp_2m_sde_heun, 1, True, "DPM-Solver++(2M) SDE, Heun"),
    "dpmpp_2m_sde_heun_gpu": _S(
        _on_device_tree(sde_samplers.sample_dpmpp_2m_sde_heun), 1, True, "2M SDE Heun, tree on device"
    ),
    "dpmpp_3m_sde": _S(sde_samplers.sample_dpmpp_3m_sde, 1, True, "DPM-Solver++(3M) SDE"),
    "dpmpp_3m_sde_gpu": _S(_on_device_tree(sde_samplers.sample_dpmpp_3m_sde), 1, True, "3M SDE, tree on device"),
    "ddpm": _S(anc.sample_ddpm, 1, True, "DDPM ancestral sampling"),
    "lcm": _S(anc.sample_lcm, 1, True, "LCM: predict x0, re-noise to the next σ"),
    "ipndm": _S(ode_samplers.sample_ipndm, 1, False, "improved PNDM, 4th-order Adams"),
    "ipndm_v": _S(ode_samplers.sample_ipndm_v, 1, False, "improved PNDM, variable-step Adams"),
    "deis": _S(ode_samplers.sample_deis, 1, False, "DEIS tAB, order 3"),
    "res_multistep": _S(anc.sample_res_multistep, 1, False, "RES 2nd-order multistep"),
    "res_multistep_ancestral": _S(anc.sample_res_multistep_ancestral, 1, True, "RES multistep with noise"),
    "gradient_estimation": _S(ode_samplers.sample_gradient_estimation, 1, False, "gradient estimation"),
    "er_sde": _S(anc.sample_er_sde, 1, True, "ER-SDE-Solver-3"),
    "seeds_2": _S(sde_samplers.sample_seeds_2, 2, True, "SEEDS-2 stochastic exponential solver"),
    "seeds_3": _S(sde_samplers.sample_seeds_3, 3, True, "SEEDS-3 stochastic exponential solver"),
    "ddim": _S(partial(ode_samplers.sample_euler), 1, False, "DDIM (η = 0), i.e. Euler in σ",
               inpaint_random_noise=True),
    "uni_pc": _S(unipc.sample_uni_pc, 1, False, "UniPC bh1, order 3 predictor–corrector"),
    "uni_pc_bh2": _S(unipc.sample_uni_pc_bh2, 1, False, "UniPC bh2, order 3 predictor–corrector"),
}


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}") from None
