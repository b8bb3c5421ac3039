"""Notation shared by the samplers (k-diffusion's): a denoiser D(x, σ) → x̂₀ and the σ-ODE dx/dσ = (x − D)/σ.

Every sampler has the signature

    fn(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, **options) -> x

- `model(x, sigma_batch, **extra_args)` returns the denoised estimate D(x, σ) (σ is a [B] tensor);
- `sigmas` is the schedule, a 1-D tensor from σ₀ down to (usually) 0; x starts at noise level σ₀;
- `extra_args["seed"]` seeds the per-step noise when no `noise_sampler` is given;
- `callback` receives one dict per step: {"i", "x", "sigma", "sigma_hat", "denoised"}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from nodes.samplers.noise import NoiseSampler, default_noise_sampler, sde_noise_sampler

Tensor = torch.Tensor
Denoiser = Callable[..., Tensor]
StepCallback = Callable[[dict[str, Any]], None]


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Add trailing singleton dimensions so a per-item value broadcasts over x."""
    return v[(...,) + (None,) * (ndim - v.ndim)]


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The Karras ODE derivative dx/dσ = (x − D(x, σ)) / σ."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor | float]:
    """Split a step σ_from → σ_to into a deterministic step to σ_down plus fresh noise of std σ_up.

    σ_up = min(σ_to, η·sqrt(σ_to²(σ_from² − σ_to²)/σ_from²)) and σ_down = sqrt(σ_to² − σ_up²), so that the
    marginal noise level after the step is σ_to (DDPM's posterior variance for η = 1).
    """
    if not eta:
        return sigma_to, 0.0
    sigma_up = torch.minimum(
        sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    )
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def lambda_of(sigma: Tensor) -> Tensor:
    """Half log-SNR λ = log(α/σ_vp) = −log σ for the variance-exploding σ used here."""
    return sigma.log().neg()


def sigma_of(lam: Tensor) -> Tensor:
    """Inverse of `lambda_of`."""
    return lam.neg().exp()


def phi1(h: Tensor) -> Tensor:
    """h·φ₁(h) = e^h − 1, the exponential-integrator weight."""
    return torch.expm1(h)


def phi2(h: Tensor) -> Tensor:
    """h·φ₂(h) = (e^h − 1 − h) / h."""
    return (torch.expm1(h) - h) / h


def seed_of(extra_args: Mapping[str, Any] | None) -> int | None:
    return None if extra_args is None else extra_args.get("seed")


def step_noise(x: Tensor, extra_args: Mapping[str, Any] | None, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """The per-step noise of ancestral samplers: the given one, or the default stream for the seed."""
    return noise_sampler if noise_sampler is not None else default_noise_sampler(x, seed_of(extra_args))


def brownian_noise(
    x: Tensor, sigmas: Tensor, extra_args: Mapping[str, Any] | None, noise_sampler: NoiseSampler | None
) -> NoiseSampler:
    """The noise of SDE samplers: the given one, or a Brownian tree over the run's σ range for the seed."""
    return noise_sampler if noise_sampler is not None else sde_noise_sampler(x, sigmas, seed_of(extra_args))


class Stepper:
    """Calls the denoiser with a batch of σ and reports steps; keeps the loops close to the papers."""

    def __init__(self, model: Denoiser, x: Tensor, extra_args: Mapping[str, Any] | None, callback: StepCallback | None):
        self.model = model
        self.extra_args = dict(extra_args or {})
        self.callback = callback
        self.ones = x.new_ones([x.shape[0]])

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.model(x, sigma * self.ones, **self.extra_args)

    def report(self, i: int, x: Tensor, sigma: Tensor, denoised: Tensor, sigma_hat: Tensor | None = None) -> None:
        if self.callback is not None:
            hat = sigma if sigma_hat is None else sigma_hat
            self.callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": hat, "denoised": denoised})


def is_zero(sigma: Tensor | float) -> bool:
    return float(sigma) == 0.0


def lagrange_integral(nodes: list[float], j: int, start: float, end: float) -> float:
    """∫_start^end ℓ_j(τ) dτ for the Lagrange basis polynomial ℓ_j on `nodes` (exact, float64)."""
    import numpy as np

    poly = np.poly1d([1.0])
    for k, node in enumerate(nodes):
        if k != j:
            poly *= np.poly1d([1.0, -node]) / (nodes[j] - node)
    antiderivative = poly.integ()
    return float(antiderivative(end) - antiderivative(start))
