"""Deterministic solvers of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ (no noise after the start)."""

from __future__ import annotations

import torch

from nodes.samplers._common import Stepper, is_zero, lagrange_integral, lambda_of, sigma_of, to_d

Tensor = torch.Tensor


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Euler's method in σ: Karras et al. (2022), "Elucidating the design space…", Algorithm 2 without churn."""
    run = Stepper(model, x, extra_args, callback)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 2); an Euler step onto σ = 0."""
    run = Stepper(model, x, extra_args, callback)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        d = to_d(x, sigma, denoised)
        dt = sigma_next - sigma
        if is_zero(sigma_next):
            x = x + d * dt
            continue
        x_euler = x + d * dt
        d_next = to_d(x_euler, sigma_next, run.denoise(x_euler, sigma_next))
        x = x + (d + d_next) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Heun++ (Carzit, sd-webui-samplers-scheduler): up to three slope evaluations per step, weighted by σ/σ₀.

    Steps that end at the schedule's last σ use Euler; the one before uses a 2-slope blend.
    """
    run = Stepper(model, x, extra_args, callback)
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        d = to_d(x, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, run.denoise(x_2, sigma_next))
            w2 = sigma_next / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, run.denoise(x_2, sigma_next))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigma_next)
            d_3 = to_d(x_3, sigmas[i + 2], run.denoise(x_3, sigmas[i + 2]))
            w2 = sigma_next / (3 * sigmas[0])
            w3 = sigmas[i + 2] / (3 * sigmas[0])
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """DPM-Solver-2-like midpoint method in σ (k-diffusion): slope at the log-σ midpoint, 2 calls per step."""
    run = Stepper(model, x, extra_args, callback)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        d = to_d(x, sigma, denoised)
        if is_zero(sigma_next):
            x = x + d * (sigma_next - sigma)
            continue
        sigma_mid = sigma.log().lerp(sigma_next.log(), 0.5).exp()
        x_mid = x + d * (sigma_mid - sigma)
        d_mid = to_d(x_mid, sigma_mid, run.denoise(x_mid, sigma_mid))
        x = x + d_mid * (sigma_next - sigma)
    return x


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, order: int = 4):
    """Linear multistep (Adams–Bashforth in σ with Lagrange weights over past slopes), order 4 (k-diffusion)."""
    run = Stepper(model, x, extra_args, callback)
    nodes = [float(s) for s in sigmas]
    slopes: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        slopes.append(to_d(x, sigmas[i], denoised))
        slopes = slopes[-order:]
        run.report(i, x, sigmas[i], denoised)
        if is_zero(sigmas[i + 1]):
            x = denoised
            continue
        cur_order = min(i + 1, order)
        history = [nodes[i - k] for k in range(cur_order)]
        weights = [lagrange_integral(history, j, nodes[i], nodes[i + 1]) for j in range(cur_order)]
        x = x + sum(w * d for w, d in zip(weights, reversed(slopes), strict=False))
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """DPM-Solver++(2M), Lu et al. (2022) arXiv:2211.01095, Algorithm 2: 2nd-order multistep in λ = −log σ."""
    run = Stepper(model, x, extra_args, callback)
    previous = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], denoised)
        t, t_next = lambda_of(sigmas[i]), lambda_of(sigmas[i + 1])
        h = t_next - t
        if previous is None or is_zero(sigmas[i + 1]):
            estimate = denoised
        else:
            r = (t - lambda_of(sigmas[i - 1])) / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * estimate
        previous = denoised
    return x


def _adams_coefficients(h: list[Tensor], order: int) -> list[Tensor]:
    """iPNDM-v weights on (d_cur, d_prev1, …) for variable steps h_n, h_{n−1}, … (Zhang & Chen 2023)."""
    if order == 2:
        q = h[0] / h[1]
        return [(2 + q) / 2, -q / 2]
    h_n, h_1, h_2 = h[0], h[1], h[2]
    temp1 = (1 - h_n / (3 * (h_n + h_1)) * (h_n * (h_n + h_1)) / (h_1 * (h_1 + h_2))) / 2
    if order == 3:
        return [
            (2 + h_n / h_1) / 2 + temp1,
            -(h_n / h_1) / 2 - (1 + h_1 / h_2) * temp1,
            temp1 * h_1 / h_2,
        ]
    h_3 = h[3]
    ratio = h_1 * (h_1 + h_2) / (h_2 * (h_2 + h_3))
    temp2 = ((1 - h_n / (3 * (h_n + h_1))) / 2 + (1 - h_n / (2 * (h_n + h_1))) * h_n / (6 * (h_n + h_1 + h_2))) * (
        h_n * (h_n + h_1) * (h_n + h_1 + h_2)
    ) / (h_1 * (h_1 + h_2) * (h_1 + h_2 + h_3))
    return [
        (2 + h_n / h_1) / 2 + temp1 + temp2,
        -(h_n / h_1) / 2 - (1 + h_1 / h_2) * temp1 - (1 + h_1 / h_2 + ratio) * temp2,
        temp1 * h_1 / h_2 + (h_1 / h_2 + ratio * (1 + h_2 / h_3)) * temp2,
        -temp2 * ratio * h_1 / h_2,
    ]


# Fixed-step Adams–Bashforth weights used by iPNDM for orders 1–4.
_AB_WEIGHTS = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def _multistep(model, x, sigmas, extra_args, callback, max_order, combine):
    """Shared loop of iPNDM / iPNDM-v / DEIS: x_{n+1} = x_n + combine(i, order, slopes newest first)."""
    run = Stepper(model, x, extra_args, callback)
    slopes: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, denoised)
        d = (x - denoised) / sigma
        order = min(max_order, i + 1)
        if is_zero(sigma_next):
            x_next = denoised
        else:
            x_next = x + combine(i, order, [d, *reversed(slopes)])
        slopes = [*slopes, d][-(max_order - 1) :] if max_order > 1 else []
        x = x_next
    return x


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, max_order: int = 4):
    """Improved PNDM (Zhang & Chen 2023, "Fast sampling… exponential integrator"): fixed Adams weights in σ."""

    def combine(i, order, d):
        step = sigmas[i + 1] - sigmas[i]
        return step * sum(w * dk for w, dk in zip(_AB_WEIGHTS[order], d, strict=False))

    return _multistep(model, x, sigmas, extra_args, callback, max_order, combine)


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, max_order: int = 4):
    """iPNDM with variable-step Adams weights (Zhang & Chen 2023; zju-pi diff-solvers)."""

    def combine(i, order, d):
        step = sigmas[i + 1] - sigmas[i]
        if order == 1:
            return step * d[0]
        h = [step] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(order - 1)]
        return step * sum(w * dk for w, dk in zip(_adams_coefficients(h, order), d, strict=False))

    return _multistep(model, x, sigmas, extra_args, callback, max_order, combine)


def deis_coefficients(sigmas: Tensor, max_order: int, points: int = 10000) -> list[list[Tensor]]:
    """DEIS "tAB" weights (Zhang & Chen 2023): ∫ of Lagrange polynomials in VP time against the EI kernel.

    σ is mapped to the time of a VP-SDE fitted to σ ∈ [0.002, 80] (EDM's range, as zju-pi's code and
    ComfyUI do); the integral is a Riemann sum on `points` nodes, as there.
    """
    eps_s, s_min, s_max = 1e-3, torch.tensor(0.002), torch.tensor(80.0)
    beta_d = 2 * (torch.log(s_min**2 + 1) / eps_s - torch.log(s_max**2 + 1)) / (eps_s - 1)
    beta_min = torch.log(s_max**2 + 1) - 0.5 * beta_d
    vp_t = ((beta_min**2 + 2 * beta_d * (sigmas.cpu() ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    beta_0, beta_1 = beta_min, beta_d + beta_min
    coefficients: list[list[Tensor]] = []
    for i in range(len(vp_t) - 1):
        order = min(i + 1, max_order)
        if order == 1 or is_zero(sigmas[i + 1]):
            coefficients.append([])
            continue
        taus = torch.linspace(float(vp_t[i]), float(vp_t[i + 1]), points)
        dtau = (vp_t[i + 1] - vp_t[i]) / points
        log_alpha = -0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0
        alpha = log_alpha.exp()
        kernel = -0.5 * (-taus * (beta_1 - beta_0) - beta_0) / torch.sqrt(alpha * (1 - alpha))
        history = vp_t[[i - k for k in range(order)]]
        row = []
        for j in range(order):
            basis = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    basis = basis * (taus - history[k]) / (history[j] - history[k])
            row.append(torch.sum(kernel * basis) * dtau)
        coefficients.append(row)
    return coefficients


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, max_order: int = 3):
    """DEIS, diffusion exponential integrator sampler (Zhang & Chen 2023, arXiv:2204.13902), tAB order 3."""
    table = deis_coefficients(sigmas, max_order)

    def combine(i, order, d):
        if order == 1:
            return (sigmas[i + 1] - sigmas[i]) * d[0]
        return sum(c.to(d[0].device) * dk for c, dk in zip(table[i], d, strict=False))

    return _multistep(model, x, sigmas, extra_args, callback, max_order, combine)


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                               ge_gamma: float = 2.0):
    """Gradient-estimation sampler (Permenter & Yuan 2024, "Interpreting and improving diffusion models…")."""
    run = Stepper(model, x, extra_args, callback)
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        d = to_d(x, sigmas[i], denoised)
        run.report(i, x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if is_zero(sigmas[i + 1]):
            x = denoised
        else:
            x = x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x
