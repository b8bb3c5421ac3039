"""σ tables and schedules: reference values printed by ComfyUI itself, and independent re-derivations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodes.samplers.model_sigmas import ModelSigmas, is_max_denoise, sd_model_sigmas
from nodes.samplers.schedules import SCHEDULERS, advanced_sigmas, full_schedule, schedule_sigmas

REFERENCE = {  # ComfyUI v0.3.64: comfy.samplers.calculate_sigmas(SD1.x model_sampling, name, steps), rounded
    ("simple", 4): [14.6146, 4.0817, 1.6129, 0.6932, 0],
    ("sgm_uniform", 4): [14.6146, 4.0861, 1.6156, 0.6951, 0],
    ("karras", 4): [14.6146, 3.1686, 0.4469, 0.0292, 0],
    ("karras", 10): [14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292, 0],
    ("exponential", 4): [14.6146, 1.8400, 0.2317, 0.0292, 0],
    ("ddim_uniform", 4): [4.1167, 1.6237, 0.6984, 0.0413, 0],
    ("beta", 4): [14.6146, 5.6866, 1.6183, 0.5154, 0],
    ("normal", 4): [14.6146, 2.9183, 0.9324, 0.0292, 0],
    ("normal", 10): [14.6146, 7.8399, 4.6092, 2.9183, 1.9502, 1.3449, 0.9324, 0.6250, 0.3687, 0.0292, 0],
    ("linear_quadratic", 4): [14.6146, 14.4320, 14.2493, 10.5956, 0],
    ("kl_optimal", 4): [14.6146, 1.5971, 0.5729, 0.0292, 0],
}


@pytest.fixture(scope="module")
def ms() -> ModelSigmas:
    return sd_model_sigmas()


# --- an independent float64 re-derivation of the definitions --------------------------------------
def table() -> np.ndarray:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    return np.sqrt((1 - abar) / abar)


TABLE = table()
LOG_TABLE = np.log(TABLE)
SMIN, SMAX = TABLE[0], TABLE[-1]


def t_of(sigma: float) -> int:
    return int(np.argmin(np.abs(LOG_TABLE - math.log(sigma))))


def sigma_at(t: float) -> float:
    return float(np.exp(np.interp(t, np.arange(1000), LOG_TABLE)))


def ref_simple(n):
    return [TABLE[999 - int(k * 1000 / n)] for k in range(n)] + [0.0]


def ref_normal(n):
    return [sigma_at(t) for t in np.linspace(t_of(SMAX), t_of(SMIN), n)] + [0.0]


def ref_sgm(n):
    return [sigma_at(t) for t in np.linspace(t_of(SMAX), t_of(SMIN), n + 1)[:-1]] + [0.0]


def ref_karras(n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    return list((SMAX ** (1 / rho) + ramp * (SMIN ** (1 / rho) - SMAX ** (1 / rho))) ** rho) + [0.0]


def ref_exponential(n):
    return list(np.exp(np.linspace(math.log(SMAX), math.log(SMIN), n))) + [0.0]


def ref_ddim_uniform(n):
    stride = max(1000 // n, 1)
    return [TABLE[t] for t in range(1, 1000, stride)][::-1] + [0.0]


def ref_beta(n):
    from scipy.special import betaincinv

    ts = np.rint(betaincinv(0.6, 0.6, 1 - np.arange(n) / n) * 999)
    out = []
    for k, t in enumerate(ts):
        if k == 0 or t != ts[k - 1]:
            out.append(TABLE[int(t)])
    return out + [0.0]


def ref_linear_quadratic(n, tau=0.025):
    if n == 1:
        return [SMAX, 0.0]
    m = n // 2
    q = n - m
    values = [1 - k * tau / m for k in range(m)]
    # the quadratic part joins the linear ramp at k = m and reaches 1 at k = n
    a = (m - tau * n) / (m * q**2)
    b = tau / m - 2 * (m - tau * n) / q**2
    c = a * m**2
    values += [1 - (a * k**2 + b * k + c) for k in range(m, n)]
    return [v * SMAX for v in values] + [0.0]


def ref_kl_optimal(n):
    ramp = np.arange(n) / max(n - 1, 1)
    return list(np.tan(ramp * math.atan(SMIN) + (1 - ramp) * math.atan(SMAX))) + [0.0]


REFERENCE_FUNCTIONS = {
    "simple": ref_simple, "sgm_uniform": ref_sgm, "karras": ref_karras, "exponential": ref_exponential,
    "ddim_uniform": ref_ddim_uniform, "beta": ref_beta, "normal": ref_normal,
    "linear_quadratic": ref_linear_quadratic, "kl_optimal": ref_kl_optimal,
}


# --- the model's σ table -------------------------------------------------------------------------
def test_sd_sigma_range(ms):
    assert ms.sigma_min == pytest.approx(0.029167, abs=1e-5)
    assert ms.sigma_max == pytest.approx(14.614641, abs=1e-4)
    assert np.allclose(ms.sigmas.double().numpy(), TABLE, rtol=1e-6)
    assert ms.sigmas.dtype == torch.float32


@pytest.mark.parametrize(("sigma", "timestep"), [(14.6146, 999), (3.1686, 687), (0.4469, 146), (0.0292, 0)])
def test_sigma_to_nearest_timestep(ms, sigma, timestep):
    assert int(ms.timestep(torch.tensor(sigma))) == timestep


def test_timestep_to_sigma_interpolates_log_sigma(ms):
    assert float(ms.sigma(torch.tensor(687.0))) == pytest.approx(TABLE[687], rel=1e-6)
    mid = float(ms.sigma(torch.tensor(687.25)))
    assert mid == pytest.approx(math.exp(0.75 * LOG_TABLE[687] + 0.25 * LOG_TABLE[688]), rel=1e-5)
    assert float(ms.sigma(torch.tensor(-5.0))) == pytest.approx(TABLE[0], rel=1e-6)  # clamped


def test_linear_beta_schedule_differs():
    linear = ModelSigmas.from_betas("linear", 0.0001, 0.02)
    abar = np.cumprod(1 - np.linspace(0.0001, 0.02, 1000))
    assert linear.sigma_max == pytest.approx(math.sqrt((1 - abar[-1]) / abar[-1]), rel=1e-5)
    with pytest.raises(ValueError, match="beta_schedule"):
        ModelSigmas.from_betas("cosine-ish")


def test_eps_and_v_prediction_to_denoised():
    x = torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([2.0, 0.5])
    out = torch.randn(2, 4, 3, 3)
    s = sigma.reshape(2, 1, 1, 1)
    eps = sd_model_sigmas("epsilon")
    assert torch.allclose(eps.denoised(x, sigma, out), x - s * out)
    assert torch.allclose(eps.scale_input(x, sigma), x / (s**2 + 1) ** 0.5)
    v = sd_model_sigmas("v_prediction")
    expected = x / (s**2 + 1) - out * s / (s**2 + 1) ** 0.5
    assert torch.allclose(v.denoised(x, sigma, out), expected, atol=1e-6)
    # a perfect v-prediction of a known x0 gives x0 back
    x0, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    alpha, sig_vp = 1 / (s**2 + 1) ** 0.5, s / (s**2 + 1) ** 0.5
    v_target = alpha * noise - sig_vp * x0
    assert torch.allclose(v.denoised(x0 + s * noise, sigma, v_target), x0, atol=1e-5)


# --- schedules -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("scheduler", "steps"), sorted(REFERENCE))
def test_comfyui_reference_tables(ms, scheduler, steps):
    got = schedule_sigmas(ms, scheduler, steps).tolist()
    assert got == pytest.approx(REFERENCE[(scheduler, steps)], abs=1e-4)


def test_karras_denoise_06_truncation(ms):
    got = schedule_sigmas(ms, "karras", 10, denoise=0.6).tolist()
    expected = [2.2322, 1.5437, 1.0459, 0.6926, 0.4469, 0.2801, 0.1698, 0.0990, 0.0552, 0.0292, 0]
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("steps", [1, 2, 25, 50])
def test_schedules_match_definitions(ms, scheduler, steps):
    got = SCHEDULERS[scheduler](ms, steps)
    expected = REFERENCE_FUNCTIONS[scheduler](steps)
    assert got.dtype == torch.float32 and got.ndim == 1
    assert got.tolist() == pytest.approx(expected, rel=2e-5, abs=1e-5)
    assert float(got[-1]) == 0.0
    if scheduler != "beta":  # beta merges quantiles that round to one timestep
        assert len(got) == steps + 1
    assert bool((got[:-1] >= got[1:]).all()), "a schedule goes down"


def test_unknown_scheduler_is_a_clear_error(ms):
    with pytest.raises(ValueError, match="scheduler 'nope'"):
        schedule_sigmas(ms, "nope", 10)


def test_denoise_zero_and_full(ms):
    assert len(schedule_sigmas(ms, "normal", 10, denoise=0.0)) == 0
    assert torch.equal(schedule_sigmas(ms, "normal", 10, denoise=1.0), full_schedule(ms, "normal", 10))
    part = schedule_sigmas(ms, "normal", 8, denoise=0.5)
    assert torch.equal(part, full_schedule(ms, "normal", 16)[-9:])


@pytest.mark.parametrize("sampler", ["dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"])
def test_discard_penultimate_sigma_samplers(ms, sampler):
    got = schedule_sigmas(ms, "karras", 10, sampler_name=sampler)
    longer = full_schedule(ms, "karras", 11)
    assert len(got) == 11
    assert torch.equal(got, torch.cat([longer[:-2], longer[-1:]]))
    assert not torch.equal(got, schedule_sigmas(ms, "karras", 10, sampler_name="euler"))


def test_advanced_slicing(ms):
    full = schedule_sigmas(ms, "normal", 20)
    base = advanced_sigmas(full, 0, 16, return_with_leftover_noise=True)
    assert torch.equal(base, full[:17])
    finished = advanced_sigmas(full, 0, 16, return_with_leftover_noise=False)
    assert torch.equal(finished[:-1], full[:16]) and float(finished[-1]) == 0.0
    refiner = advanced_sigmas(full, 16, 10000)
    assert torch.equal(refiner, full[16:])
    assert len(advanced_sigmas(full, 20, 10000)) == 0  # start at/after the last step: nothing to do
    assert torch.equal(advanced_sigmas(full, None, 10000), full)
    assert float(full[16]) != 0.0  # the slicing did not modify its input


def test_max_denoise_rule(ms):
    assert is_max_denoise(ms, ms.sigma_max)
    assert is_max_denoise(ms, ms.sigma_max * (1 + 5e-6))
    assert is_max_denoise(ms, 20.0)
    assert not is_max_denoise(ms, 14.0)
