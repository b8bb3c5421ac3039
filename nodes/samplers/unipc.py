"""UniPC (Zhao et al. 2023, arXiv:2302.04867): unified predictor–corrector, multistep, data prediction.

ComfyUI's "uni_pc" is variant B(h) = h ("bh1") and "uni_pc_bh2" is B(h) = e^h − 1, both of order
min(3, steps − 1) with lower orders on the last steps, one model call per step (the corrector reuses the
evaluation the next predictor needs). Its run ends at σ = 0.001 instead of 0 when the schedule ends in 0.

The solver is written here in k-diffusion coordinates (x = x₀ + σε, λ = −log σ); ComfyUI runs the same
update in variance-preserving coordinates (x_vp = x / sqrt(1 + σ²)), which is the same map up to
floating-point rounding.
"""

from __future__ import annotations

import torch

from nodes.samplers._common import Stepper

Tensor = torch.Tensor

FINAL_SIGMA = 0.001  # where ComfyUI's UniPC stops when the schedule ends at σ = 0


def _b_of_h(variant: str, hh: Tensor) -> Tensor:
    return {"bh1": lambda v: v, "bh2": torch.expm1}[variant](hh)


def _update(run: Stepper, x: Tensor, history: list[Tensor], sigmas_hist: list[Tensor], sigma: Tensor, order: int,
            variant: str, use_corrector: bool) -> tuple[Tensor, Tensor | None]:
    """One UniPC step from sigmas_hist[-1] to `sigma` with the newest `order` denoised values."""
    sigma_prev, m0 = sigmas_hist[-1], history[-1]
    lam_prev, lam_t = -sigma_prev.log(), -sigma.log()
    h = lam_t - lam_prev
    rks, d1s = [], []
    for i in range(1, order):
        rk = (-sigmas_hist[-(i + 1)].log() - lam_prev) / h
        rks.append(rk)
        d1s.append((history[-(i + 1)] - m0) / rk)
    rks.append(torch.ones_like(h))
    rks_t = torch.stack(rks).to(x.device)

    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = _b_of_h(variant, hh)
    rows, b = [], []
    factorial = 1
    for i in range(1, order + 1):
        rows.append(torch.pow(rks_t, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_mat = torch.stack(rows)
    b_vec = torch.stack(b).to(x.device)

    # x at σ by the first-order (DDIM) step, then the predictor's higher-order correction.
    x_base = (sigma / sigma_prev) * x - h_phi_1 * m0
    d1_stack = torch.stack(d1s, dim=1) if d1s else None
    if d1_stack is not None:
        rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(r_mat[:-1, :-1], b_vec[:-1])
        x_t = x_base - b_h * torch.einsum("k,bk...->b...", rhos_p.to(x.dtype), d1_stack)
    else:
        x_t = x_base
    if not use_corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_mat, b_vec)
    model_t = run.denoise(x_t, sigma)
    correction = rhos_c[-1] * (model_t - m0)
    if d1_stack is not None:
        correction = torch.einsum("k,bk...->b...", rhos_c[:-1].to(x.dtype), d1_stack) + correction
    return x_base - b_h * correction, model_t


def _sample_unipc(model, x, sigmas, extra_args, callback, variant: str):
    run = Stepper(model, x, extra_args, callback)
    targets = sigmas.clone()
    if float(sigmas[-1]) == 0.0:
        targets[-1] = FINAL_SIGMA
    steps = len(targets) - 1
    order = min(3, steps - 1)
    if steps < 1:
        return x
    history = [run.denoise(x, targets[0])]
    sigma_hist = [targets[0]]
    run.report(0, x, targets[0], history[-1])
    if steps == 1:
        # ComfyUI's UniPC takes no step at all for a 1-step schedule: it returns its input, rescaled
        # from σ₀ to σ = 0.001 in VP coordinates. Kept for parity.
        return x * (1.0 + targets[-1] ** 2) ** 0.5 / (1.0 + targets[0] ** 2) ** 0.5
    for i in range(1, steps):
        if i < order:  # warm-up: raise the order one step at a time
            x, model_x = _update(run, x, history, sigma_hist, targets[i], i, variant, use_corrector=True)
            history.append(model_x)
            sigma_hist.append(targets[i])
        else:
            last = [i, steps] if i == steps - 1 else [i]
            for step in last:
                step_order = min(order, steps + 1 - step)
                corrector = step != steps  # no evaluation after the final step
                x, model_x = _update(run, x, history, sigma_hist, targets[step], step_order, variant, corrector)
                history = [*history[1:], history[-1]] if len(history) > 1 else history
                sigma_hist = [*sigma_hist[1:], targets[step]] if len(sigma_hist) > 1 else [targets[step]]
                if step < steps:
                    history[-1] = model_x
        run.report(i, x, targets[i], history[-1])
    return x


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """UniPC with B(h) = h (bh1), order 3 multistep, predictor–corrector."""
    return _sample_unipc(model, x, sigmas, extra_args, callback, "bh1")


@torch.no_grad()
def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """UniPC with B(h) = e^h − 1 (bh2), order 3 multistep, predictor–corrector."""
    return _sample_unipc(model, x, sigmas, extra_args, callback, "bh2")
