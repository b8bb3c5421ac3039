"""SDE solvers in λ = −log σ (data prediction). Their noise is Brownian: increments of one path, seeded."""

from __future__ import annotations

import torch

from nodes.samplers._common import (
    Stepper,
    ancestral_step,
    brownian_noise,
    is_zero,
    lambda_of,
    phi1,
    phi2,
    sigma_of,
    step_noise,
)

Tensor = torch.Tensor


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                     eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5):
    """DPM-Solver++ SDE (k-diffusion): a 2-stage stochastic single-step solver, stage at λ_s + r·h."""
    if len(sigmas) <= 1:
        return x
    run = Stepper(model, x, extra_args, callback)
    noise = brownian_noise(x, sigmas, extra_args, noise_sampler)
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_next):
            x = denoised
            continue
        lam_s, lam_t = lambda_of(sigma), lambda_of(sigma_next)
        h = lam_t - lam_s
        lam_mid = lam_s + r * h
        sigma_mid = sigma_of(lam_mid)
        alpha_s = sigma * lam_s.exp()
        alpha_mid = sigma_mid * lam_mid.exp()
        alpha_t = sigma_next * lam_t.exp()
        # stage 1: ancestral step to the intermediate level
        sd, su = ancestral_step(lam_s.neg().exp(), lam_mid.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        x_mid = (alpha_mid / alpha_s) * (-h_).exp() * x - alpha_mid * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_mid = x_mid + alpha_mid * noise(sigma, sigma_mid) * s_noise * su
        denoised_mid = run.denoise(x_mid, sigma_mid)
        # stage 2: full step with the blended estimate
        sd, su = ancestral_step(lam_s.neg().exp(), lam_t.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        blended = (1 - fac) * denoised + fac * denoised_mid
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * blended
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigma, sigma_next) * s_noise * su
    return x


def _multistep_sde(model, x, sigmas, extra_args, callback, noise_sampler, eta, s_noise, max_order, solver_type):
    """DPM-Solver++(2M/3M) SDE (Lu et al. 2022, §4; k-diffusion's 2M SDE and ComfyUI's 3M SDE)."""
    if len(sigmas) <= 1:
        return x
    run = Stepper(model, x, extra_args, callback)
    noise = brownian_noise(x, sigmas, extra_args, noise_sampler)
    history: list[Tensor] = []  # previous denoised, newest first
    steps: list[Tensor] = []  # previous h, newest first
    h = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_next):
            x = denoised
        else:
            lam_s, lam_t = lambda_of(sigma), lambda_of(sigma_next)
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            alpha_t = sigma_next * lam_t.exp()
            x = sigma_next / sigma * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            known = [s for s in steps if s is not None]
            if max_order == 3 and len(history) >= 2 and len(known) >= 2:
                r0, r1 = steps[0] / h, steps[1] / h
                d1_0 = (denoised - history[0]) / r0
                d1_1 = (history[0] - history[1]) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif history and known:
                r = steps[0] / h
                if solver_type == "heun":
                    x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - history[0])
                else:  # midpoint
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - history[0])
            if eta > 0 and s_noise > 0:
                x = x + noise(sigma, sigma_next) * sigma_next * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        history = [denoised, *history][:2]
        steps = [h, *steps][:2]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                        eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint"):
    """DPM-Solver++(2M) SDE, midpoint variant (k-diffusion)."""
    return _multistep_sde(model, x, sigmas, extra_args, callback, noise_sampler, eta, s_noise, 2, solver_type)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                             eta: float = 1.0, s_noise: float = 1.0):
    """DPM-Solver++(2M) SDE, Heun variant (k-diffusion)."""
    return _multistep_sde(model, x, sigmas, extra_args, callback, noise_sampler, eta, s_noise, 2, "heun")


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                        eta: float = 1.0, s_noise: float = 1.0):
    """DPM-Solver++(3M) SDE: 3rd-order multistep with exponential-integrator weights φ₂, φ₃."""
    # Its 2nd-order start-up step is the Heun form of the 2M SDE update.
    return _multistep_sde(model, x, sigmas, extra_args, callback, noise_sampler, eta, s_noise, 3, "heun")


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, eta: float = 1.0,
                   s_noise: float = 1.0, r: float = 0.5, solver_type: str = "phi_1"):
    """SEEDS-2 (Gonzalez et al. 2023, arXiv:2305.14267): stochastic explicit exponential, 2 stages."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_next):
            x = denoised
            continue
        lam_s, lam_t = lambda_of(sigma), lambda_of(sigma_next)
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1 = torch.lerp(lam_s, lam_t, r)
        sigma_1 = sigma_of(lam_1)
        alpha_1, alpha_t = sigma_1 * lam_1.exp(), sigma_next * lam_t.exp()
        x_1 = sigma_1 / sigma * (-r * h * eta).exp() * x - alpha_1 * phi1(-r * h_eta) * denoised
        if inject:
            path = (-2 * r * h * eta).expm1().neg().sqrt() * noise(sigma, sigma_1)
            x_1 = x_1 + path * sigma_1 * s_noise
        denoised_1 = run.denoise(x_1, sigma_1)
        if solver_type == "phi_1":
            estimate = torch.lerp(denoised, denoised_1, 1 / (2 * r))
            x = sigma_next / sigma * (-h * eta).exp() * x - alpha_t * phi1(-h_eta) * estimate
        else:
            b2 = phi2(-h_eta) / r
            b1 = phi1(-h_eta) - b2
            x = sigma_next / sigma * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised_1)
        if inject:
            segment = (r - 1) * h * eta
            path = path * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise(sigma_1, sigma_next)
            x = x + path * sigma_next * s_noise
    return x


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, eta: float = 1.0,
                   s_noise: float = 1.0, r_1: float = 1.0 / 3, r_2: float = 2.0 / 3):
    """SEEDS-3 (Gonzalez et al. 2023, arXiv:2305.14267): stochastic explicit exponential, 3 stages."""
    run = Stepper(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        if is_zero(sigma_next):
            x = denoised
            continue
        lam_s, lam_t = lambda_of(sigma), lambda_of(sigma_next)
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1, lam_2 = torch.lerp(lam_s, lam_t, r_1), torch.lerp(lam_s, lam_t, r_2)
        sigma_1, sigma_2 = sigma_of(lam_1), sigma_of(lam_2)
        alpha_1, alpha_2 = sigma_1 * lam_1.exp(), sigma_2 * lam_2.exp()
        alpha_t = sigma_next * lam_t.exp()
        x_1 = sigma_1 / sigma * (-r_1 * h * eta).exp() * x - alpha_1 * phi1(-r_1 * h_eta) * denoised
        if inject:
            path = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise(sigma, sigma_1)
            x_1 = x_1 + path * sigma_1 * s_noise
        denoised_1 = run.denoise(x_1, sigma_1)
        a3_2 = r_2 / r_1 * phi2(-r_2 * h_eta)
        a3_1 = phi1(-r_2 * h_eta) - a3_2
        x_2 = sigma_2 / sigma * (-r_2 * h * eta).exp() * x - alpha_2 * (a3_1 * denoised + a3_2 * denoised_1)
        if inject:
            segment = (r_1 - r_2) * h * eta
            path = path * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise(sigma_1, sigma_2)
            x_2 = x_2 + path * sigma_2 * s_noise
        denoised_2 = run.denoise(x_2, sigma_2)
        b3 = phi2(-h_eta) / r_2
        b1 = phi1(-h_eta) - b3
        x = sigma_next / sigma * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_2)
        if inject:
            segment = (r_2 - 1) * h * eta
            path = path * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise(sigma_2, sigma_next)
            x = x + path * sigma_next * s_noise
    return x


@torch.no_grad()
def sample_exp_heun_2_x0(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Deterministic exponential Heun, 2nd order in data prediction and λ (SEEDS-2 with r = 1, η = 0)."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, None, eta=0.0, s_noise=0.0, r=1.0,
                          solver_type="phi_2")


@torch.no_grad()
def sample_exp_heun_2_x0_sde(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                             eta: float = 1.0, s_noise: float = 1.0):
    """Stochastic exponential Heun, 2nd order in data prediction and λ (SEEDS-2 with r = 1)."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, noise_sampler, eta=eta, s_noise=s_noise, r=1.0,
                          solver_type="phi_2")
