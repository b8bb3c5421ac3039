"""Sampler and scheduler names for node widgets, importable without torch (ComfyUI's order).

`tests/test_samplers.py` checks these lists against the tables in `k_samplers.py` and `schedules.py`.
"""

from __future__ import annotations

SAMPLER_NAMES: tuple[str, ...] = (
    "euler", "euler_ancestral", "heun", "heunpp2", "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_sde_gpu",
    "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
    "res_multistep_ancestral", "gradient_estimation", "er_sde", "seeds_2", "seeds_3",
    "ddim", "uni_pc", "uni_pc_bh2",
)

SCHEDULER_NAMES: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
)
