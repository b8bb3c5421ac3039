"""DPM-Solver (Lu et al. 2022, arXiv:2206.00927) in noise prediction, with fixed or adaptive step sizes.

These two pick their own steps in t = −log σ between the schedule's first σ and its smallest non-zero σ
(ComfyUI's wrapping): `dpm_fast` spends exactly len(sigmas) − 1 model calls, `dpm_adaptive` as many as its
error controller needs. Neither ends at σ = 0: they stop at the schedule's smallest positive σ.
"""

from __future__ import annotations

import math

import torch

from nodes.samplers._common import Stepper, ancestral_step, step_noise

Tensor = torch.Tensor


class _DPMSolver:
    def __init__(self, run: Stepper, report):
        self.run = run
        self.report = report

    @staticmethod
    def t(sigma: Tensor) -> Tensor:
        return -sigma.log()

    @staticmethod
    def sigma(t: Tensor) -> Tensor:
        return t.neg().exp()

    def eps(self, cache: dict, key: str, x: Tensor, t: Tensor) -> Tensor:
        if key not in cache:
            cache[key] = (x - self.run.denoise(x, self.sigma(t))) / self.sigma(t)
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        return x - self.sigma(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def fast(self, x, t_start, t_end, nfe, eta, s_noise, noise):
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(float(t_start), float(t_end), m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        steppers = {1: self.step_1, 2: self.step_2, 3: self.step_3}
        for i, order in enumerate(orders):
            cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            t_target, su = t_next, 0.0
            if eta:
                sd, _ = ancestral_step(self.sigma(t), self.sigma(t_next), eta)
                t_target = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t_next) ** 2 - self.sigma(t_target) ** 2) ** 0.5
            eps = self.eps(cache, "eps", x, t)
            self.report(i, x, self.sigma(t), x - self.sigma(t) * eps)
            x = steppers[order](x, t, t_target, cache)
            if eta:
                x = x + su * s_noise * noise(self.sigma(t), self.sigma(t_next))
        return x

    def adaptive(self, x, t_start, t_end, order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety,
                 eta, s_noise, noise):
        forward = t_end > t_start
        h_init = abs(h_init) * (1 if forward else -1)
        atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
        s, x_prev, steps = t_start, x, 0
        pid = _PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
            cache: dict = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            t_target, su = t, 0.0
            if eta:
                sd, _ = ancestral_step(self.sigma(s), self.sigma(t), eta)
                t_target = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t) ** 2 - self.sigma(t_target) ** 2) ** 0.5
            eps = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low = self.step_1(x, s, t_target, cache)
                x_high = self.step_2(x, s, t_target, cache)
            else:
                x_low = self.step_2(x, s, t_target, cache, r1=1 / 3)
                x_high = self.step_3(x, s, t_target, cache)
            delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise(self.sigma(s), self.sigma(t))
                s = t
            self.report(steps, x, self.sigma(s), denoised)
            steps += 1
        return x


class _PIDStepSizeController:
    """PID control of the step size from the embedded error estimate (Söderlind 2003, as in k-diffusion)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


def _span(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    sigma_min = sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]
    return sigmas[0], sigma_min


def _solver(model, x, extra_args, callback) -> _DPMSolver:
    run = Stepper(model, x, extra_args, callback)
    return _DPMSolver(run, lambda i, xi, sigma, denoised: run.report(i, xi, sigma, denoised))


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                    eta: float = 0.0, s_noise: float = 1.0):
    """DPM-Solver-fast: orders 3,3,…,(2,1) with len(sigmas) − 1 model calls, uniform in t = −log σ."""
    if len(sigmas) <= 1:
        return x
    sigma_max, sigma_min = _span(sigmas)
    solver = _solver(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    return solver.fast(x, solver.t(sigma_max.float().cpu()), solver.t(sigma_min.float().cpu()),
                       len(sigmas) - 1, eta, s_noise, noise)


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, order: int = 3,
                        rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, pcoeff: float = 0.0,
                        icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81,
                        eta: float = 0.0, s_noise: float = 1.0):
    """DPM-Solver-12/23 with adaptive step size (embedded lower-order error estimate, PID control)."""
    if len(sigmas) <= 1:
        return x
    sigma_max, sigma_min = _span(sigmas)
    solver = _solver(model, x, extra_args, callback)
    noise = step_noise(x, extra_args, noise_sampler)
    return solver.adaptive(x, solver.t(sigma_max.float().cpu()), solver.t(sigma_min.float().cpu()), order, rtol,
                           atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise, noise)
