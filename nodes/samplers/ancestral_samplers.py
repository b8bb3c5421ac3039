"""Ancestral samplers: each step goes down to σ_down deterministically, then adds fresh noise of std σ_up.

Their noise comes from the default noise sampler (a seeded generator, see `noise.py`), so a seed fixes the
picture; the result never converges to one image as the number of steps grows.
"""

from __future__ import annotations

import torch

from nodes.samplers._common import (
    Stepper,
    ancestral_step,
    is_zero,
    lambda_of,
    sigma_of,
    step_noise,
    to_d,
)

Tensor = torch.Tensor


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                           eta: float = 1.0, s_noise: float = 1.0):
    """Euler ancestral ("Euler a", k-diffusion): Euler step to σ_down, then noise of std σ_up."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_down):
            x = denoised
        else:
            x = x + to_d(x, sigma, denoised) * (sigma_down - sigma) + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                           eta: float = 1.0, s_noise: float = 1.0):
    """DPM-2 ancestral (k-diffusion): the log-σ midpoint step of `dpm_2` to σ_down, then noise of std σ_up."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        run.report(i, x, sigma, denoised)
        d = to_d(x, sigma, denoised)
        if is_zero(sigma_down):
            x = x + d * (sigma_down - sigma)
            continue
        sigma_mid = sigma.log().lerp(sigma_down.log(), 0.5).exp()
        x_mid = x + d * (sigma_mid - sigma)
        d_mid = to_d(x_mid, sigma_mid, run.denoise(x_mid, sigma_mid))
        x = x + d_mid * (sigma_down - sigma)
        x = x + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                              eta: float = 1.0, s_noise: float = 1.0):
    """DPM-Solver++(2S) ancestral: single-step 2nd order (Lu et al. 2022, Algorithm 1) to σ_down, plus noise."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_down):
            x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        else:
            t, t_next = lambda_of(sigma), lambda_of(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_mid = (sigma_of(s) / sigma_of(t)) * x - (-h / 2).expm1() * denoised
            denoised_mid = run.denoise(x_mid, sigma_of(s))
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised_mid
        if sigma_next > 0:
            x = x + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


def _ddpm_posterior_step(x_vp: Tensor, sigma: Tensor, sigma_next: Tensor, eps: Tensor, noise) -> Tensor:
    """One DDPM ancestral step (Ho et al. 2020, eq. 11) in variance-preserving coordinates."""
    abar = 1 / (sigma * sigma + 1)
    abar_next = 1 / (sigma_next * sigma_next + 1)
    alpha = abar / abar_next
    mean = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - abar).sqrt())
    if sigma_next > 0:
        mean = mean + ((1 - alpha) * (1.0 - abar_next) / (1.0 - abar)).sqrt() * noise(sigma, sigma_next)
    return mean


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """DDPM ancestral sampling (Ho et al. 2020) on the given σ steps, with the posterior variance β̃."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        x_vp = x / torch.sqrt(1.0 + sigma**2.0)
        x = _ddpm_posterior_step(x_vp, sigma, sigma_next, (x - denoised) / sigma, noise)
        if not is_zero(sigma_next):
            x = x * torch.sqrt(1.0 + sigma_next**2.0)
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Latent Consistency Model sampling (Luo et al. 2023): jump to x̂₀, re-noise to the next σ."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] + x
    return x


def _res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta: float, s_noise: float):
    """RES 2nd-order multistep exponential integrator (Zhang et al. 2023, arXiv:2308.02157), optional noise."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler) if eta else None
    old_denoised, old_sigma_down = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_down) or old_denoised is None:
            x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        else:
            t, t_old, t_next = lambda_of(sigma), lambda_of(old_sigma_down), lambda_of(sigma_down)
            t_prev = lambda_of(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1_val = torch.expm1(-h) / -h
            phi2_val = (phi1_val - 1.0) / -h
            b1 = torch.nan_to_num(phi1_val - phi2_val / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2_val / c2, nan=0.0)
            x = sigma_of(h) * x + h * (b1 * denoised + b2 * old_denoised)
        if noise is not None and sigma_next > 0:
            x = x + noise(sigma, sigma_next) * s_noise * sigma_up
        old_denoised, old_sigma_down = denoised, sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, s_noise: float = 1.0):
    """RES multistep, deterministic (η = 0)."""
    return _res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, 0.0, s_noise)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                                   eta: float = 1.0, s_noise: float = 1.0):
    """RES multistep with ancestral noise (η = 1)."""
    return _res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta, s_noise)


def _er_sde_noise_scaler(v: Tensor) -> Tensor:
    return v * ((v**0.3).exp() + 10.0)


@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, s_noise: float = 1.0,
                  max_stage: int = 3):
    """Extended reverse-time SDE solver, VP ER-SDE-Solver-3 (Cui et al. 2023, arXiv:2309.06169)."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    points = 200.0
    point_index = torch.arange(0, points, dtype=torch.float32, device=x.device)
    er_lambdas = sigmas  # σ/α = σ for the variance-exploding σ (λ = −log σ)
    old_denoised, old_denoised_d = None, None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if is_zero(sigmas[i + 1]):
            x = denoised
        else:
            lam_s, lam_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s = sigmas[i] / lam_s
            alpha_t = sigmas[i + 1] / lam_t
            r = _er_sde_noise_scaler(lam_t) / _er_sde_noise_scaler(lam_s)
            x = alpha_t / alpha_s * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lam_t - lam_s
                positions = lam_t + point_index * (-dt / points)
                scaled = _er_sde_noise_scaler(positions)
                s = torch.sum(1 / scaled) * (-dt / points)
                denoised_d = (denoised - old_denoised) / (lam_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * _er_sde_noise_scaler(lam_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((positions - lam_s) / scaled) * (-dt / points)
                    denoised_u = (denoised_d - old_denoised_d) / ((lam_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt**2) / 2 + s_u * _er_sde_noise_scaler(lam_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                spread = (lam_t**2 - lam_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * spread
        old_denoised = denoised
    return x
