"""The noise levels a discrete-time diffusion model was trained on, and the maps between them.

A DDPM-family model (SD1.x, SD2.x, SDXL) is trained on T = 1000 timesteps with betas β_t. In
k-diffusion's variance-exploding notation a noisy latent is x = x₀ + σ·ε with
σ_t = sqrt((1 − ᾱ_t) / ᾱ_t), ᾱ_t = Π_{s≤t} (1 − β_s). The UNet sees c_in·x and the timestep t(σ);
its output becomes the denoised estimate D(x, σ) = c_skip·x + c_out·F (ε- or v-prediction).

Conventions follow ComfyUI's `ModelSamplingDiscrete` (the compatibility target):
- betas in float64, σ table stored in float32, log σ computed in float64 then cast;
- σ → timestep is the nearest integer timestep in log σ (not an interpolation);
- timestep → σ interpolates linearly in log σ between the two neighbouring table entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor


def _scaled_linear_betas(start: float, end: float, steps: int) -> Tensor:
    # Linear in sqrt(β): what SD calls "scaled_linear" (ComfyUI's and the original LDM's "linear").
    return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2


def _linear_betas(start: float, end: float, steps: int) -> Tensor:
    # Linear in β (diffusers' "linear", the LDM repository's "sqrt_linear").
    return torch.linspace(start, end, steps, dtype=torch.float64)


BETA_SCHEDULES: dict[str, Callable[[float, float, int], Tensor]] = {
    "scaled_linear": _scaled_linear_betas,
    "linear": _linear_betas,
}


def _eps_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor]:
    c_skip = torch.ones_like(sigma)
    c_out = -sigma
    c_in = 1.0 / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out, c_in


def _v_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor]:
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = -sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    c_in = 1.0 / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out, c_in


# prediction type → (σ, σ_data) ↦ (c_skip, c_out, c_in)   (Karras et al. 2022, table 1; v: Salimans & Ho 2022)
PREDICTION_SCALINGS: dict[str, Callable[[Tensor, float], tuple[Tensor, Tensor, Tensor]]] = {
    "epsilon": _eps_scalings,
    "v_prediction": _v_scalings,
}


def _append_dims(v: Tensor, ndim: int) -> Tensor:
    return v.reshape(v.shape[:1] + (1,) * (ndim - 1)) if v.ndim else v


@dataclass(frozen=True)
class ModelSigmas:
    """The σ table of a discrete-time model and its conversions. Build it with `from_betas`."""

    sigmas: Tensor  # [T] float32, increasing: sigmas[t] is the noise level of timestep t
    log_sigmas: Tensor = field(repr=False)  # [T] float32
    prediction_type: str = "epsilon"
    sigma_data: float = 1.0

    @classmethod
    def from_betas(
        cls,
        beta_schedule: str = "scaled_linear",
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        timesteps: int = 1000,
        prediction_type: str = "epsilon",
    ) -> ModelSigmas:
        """SD1.x/SD2.x/SDXL all use the defaults (scaled_linear 0.00085 → 0.012, 1000 steps)."""
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule {beta_schedule!r}: expected one of {sorted(BETA_SCHEDULES)}")
        if prediction_type not in PREDICTION_SCALINGS:
            raise ValueError(f"prediction_type {prediction_type!r}: expected one of {sorted(PREDICTION_SCALINGS)}")
        if timesteps < 2:
            raise ValueError(f"timesteps must be at least 2, got {timesteps}")
        betas = BETA_SCHEDULES[beta_schedule](linear_start, linear_end, timesteps)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas64 = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return cls(sigmas64.float(), sigmas64.log().float(), prediction_type)

    # --- the table -------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return int(self.sigmas.shape[0])

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def timestep(self, sigma: Tensor | float) -> Tensor:
        """Nearest integer timestep in log σ (ComfyUI). Same shape as `sigma`, int64."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigma = sigma.log().to(self.log_sigmas.device)
        distances = (log_sigma.reshape(1, -1) - self.log_sigmas[:, None]).abs()
        return distances.argmin(dim=0).reshape(sigma.shape).to(sigma.device)

    def sigma(self, timestep: Tensor | float) -> Tensor:
        """σ of a (fractional) timestep: linear interpolation of log σ between neighbouring entries."""
        t = torch.as_tensor(timestep).float().clamp(0, self.num_timesteps - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the sampling run (ControlNet/cond start and end percent; ComfyUI's rule)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    # --- denoiser parameterisation ---------------------------------------------------------------
    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) for a batch of σ, so that D(x, σ) = c_skip·x + c_out·F(c_in·x, t(σ))."""
        return PREDICTION_SCALINGS[self.prediction_type](sigma, self.sigma_data)

    def scale_input(self, x: Tensor, sigma: Tensor) -> Tensor:
        """c_in·x: what the UNet is fed (x / sqrt(σ² + σ_data²))."""
        c_in = self.scalings(sigma)[2]
        return x * _append_dims(c_in, x.ndim).to(x.dtype)

    def denoised(self, x: Tensor, sigma: Tensor, model_output: Tensor) -> Tensor:
        """D(x, σ) from the UNet's raw output (ε or v), in the model's latent space."""
        if self.prediction_type == "epsilon":
            # x − σ·ε, written as ComfyUI does so fp32 results agree bit for bit.
            return x - model_output * _append_dims(sigma, x.ndim)
        c_skip, c_out, _ = self.scalings(_append_dims(sigma, x.ndim))
        return x * c_skip + model_output * c_out

    def noise_prediction(self, x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
        """ε̂ = (x − D) / σ: the noise a denoised estimate implies (for ε-space guidance tricks)."""
        return (x - denoised) / _append_dims(sigma, x.ndim)


def sd_model_sigmas(prediction_type: str = "epsilon") -> ModelSigmas:
    """The σ table shared by SD1.x, SD2.x and SDXL (scaled_linear 0.00085 → 0.012, 1000 steps)."""
    return ModelSigmas.from_betas(prediction_type=prediction_type)


def is_max_denoise(model_sigmas: ModelSigmas, first_sigma: float) -> bool:
    """ComfyUI's test for "the run starts from pure noise": σ₀ ≥ σ_max (relative tolerance 1e-5)."""
    sigma_max = model_sigmas.sigma_max
    return math.isclose(sigma_max, first_sigma, rel_tol=1e-05) or first_sigma > sigma_max
