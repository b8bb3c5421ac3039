"""Samplers: exactness against reference loops, convergence on an analytic problem, the name table.

The analytic problem: data x₀ ~ N(μ, s²) per element. Its exact denoiser is
D(x, σ) = μ + s²/(s² + σ²)·(x − μ), and the probability-flow ODE carries x(σ_a) to
x(σ_b) = μ + sqrt((s² + σ_b²)/(s² + σ_a²))·(x(σ_a) − μ).
"""

from __future__ import annotations

import math

import pytest
import torch

from nodes.samplers import names
from nodes.samplers.k_samplers import SAMPLERS, get_sampler
from nodes.samplers.model_sigmas import sd_model_sigmas
from nodes.samplers.noise import default_noise_sampler
from nodes.samplers.schedules import SCHEDULERS, schedule_sigmas

# torchsde warns when a query touches the tree's end in float32 rounding; ComfyUI's trees do the same.
pytestmark = pytest.mark.filterwarnings("ignore:Should have")

MU, S = 0.5, 0.8
MS = sd_model_sigmas()


def gaussian_denoiser(x, sigma, **_):
    sg = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + S**2 / (S**2 + sg**2) * (x - MU)


def exact_flow(x, sigma_from, sigma_to):
    return MU + ((S**2 + sigma_to**2) / (S**2 + sigma_from**2)) ** 0.5 * (x - MU)


def toy_denoiser(x, sigma, **_):
    """Nonlinear, σ-dependent, not a real posterior mean: any formula slip shows."""
    sg = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x) * 0.5 + 0.3 * x / (1 + sg**2) + 0.1 * sg


# --- names -------------------------------------------------------------------------------------------
def test_widget_names_match_tables():
    assert tuple(SAMPLERS) == names.SAMPLER_NAMES
    assert tuple(SCHEDULERS) == names.SCHEDULER_NAMES
    assert len(SAMPLERS) >= 30
    for name, spec in SAMPLERS.items():
        assert spec.function.__doc__, f"{name} names its algorithm"


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler 'euler_b'"):
        get_sampler("euler_b")


# --- reference loops written from the k-diffusion formulas ------------------------------------------
def reference_euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        d = (x - model(x, sigmas[i] * torch.ones(x.shape[0]))) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def reference_euler_ancestral(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, s * torch.ones(x.shape[0]))
        s_up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        s_down = (s_next**2 - s_up**2) ** 0.5
        x = x + (x - denoised) / s * (s_down - s)
        if s_next > 0:
            x = x + noise(s, s_next) * s_up
    return x


def reference_dpmpp_2m(model, x, sigmas):
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * torch.ones(x.shape[0]))
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, t_next = -math.log(sigmas[i]), -math.log(sigmas[i + 1])
            h = t_next - t
            if old is None:
                estimate = denoised
            else:
                r = (t + math.log(sigmas[i - 1])) / h
                estimate = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
            x = sigmas[i + 1] / sigmas[i] * x + (1 - math.exp(-h)) * estimate
        old = denoised
    return x


@pytest.fixture
def start():
    sigmas = schedule_sigmas(MS, "karras", 12)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    return x, sigmas


def test_euler_equals_reference(start):
    x, sigmas = start
    ours = SAMPLERS["euler"].function(toy_denoiser, x, sigmas, {"seed": 1})
    ref = reference_euler(toy_denoiser, x, [float(s) for s in sigmas])
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)


def test_euler_ancestral_equals_reference_with_the_same_noise(start):
    x, sigmas = start
    ours = SAMPLERS["euler_ancestral"].function(toy_denoiser, x, sigmas, {"seed": 9})
    ref = reference_euler_ancestral(toy_denoiser, x, [float(s) for s in sigmas], default_noise_sampler(x, 9))
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)
    other_seed = SAMPLERS["euler_ancestral"].function(toy_denoiser, x, sigmas, {"seed": 10})
    assert not torch.allclose(ours, other_seed, atol=1e-3)


def test_dpmpp_2m_equals_reference(start):
    x, sigmas = start
    ours = SAMPLERS["dpmpp_2m"].function(toy_denoiser, x, sigmas, {"seed": 1})
    ref = reference_dpmpp_2m(toy_denoiser, x, [float(s) for s in sigmas])
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)


def test_ddim_is_euler(start):
    x, sigmas = start
    a = SAMPLERS["ddim"].function(toy_denoiser, x, sigmas, {"seed": 1})
    assert torch.equal(a, SAMPLERS["euler"].function(toy_denoiser, x, sigmas, {"seed": 1}))


# --- callback and call counts -------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "dpm_adaptive"])
def test_one_callback_per_step_and_model_calls(name):
    sigmas = schedule_sigmas(MS, "karras", 6, sampler_name=name)
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    calls, reports = [], []

    def counting(x, sigma, **kw):
        assert "seed" in kw and sigma.shape == (1,)
        calls.append(float(sigma[0]))
        return gaussian_denoiser(x, sigma)

    out = SAMPLERS[name].function(counting, x, sigmas, {"seed": 0}, reports.append)
    assert torch.isfinite(out).all()
    assert [r["i"] for r in reports] == list(range(len(reports)))
    assert {"i", "x", "sigma", "sigma_hat", "denoised"} <= set(reports[0])
    per_step = SAMPLERS[name].model_calls_per_step
    assert len(calls) <= per_step * (len(sigmas) - 1)
    assert len(calls) >= len(sigmas) - 1 - (name in ("uni_pc", "uni_pc_bh2", "dpm_fast"))


# --- convergence on the Gaussian ---------------------------------------------------------------------
ODE_ORDER = {  # observed convergence order on a Karras grid from σ_max to σ_min
    "euler": 1, "ddim": 1, "heun": 2, "dpm_2": 2, "exp_heun_2_x0": 2, "dpmpp_2m": 2, "res_multistep": 2,
    "ipndm": 2, "lms": 3, "deis": 3, "uni_pc": 3, "uni_pc_bh2": 3,
}
ODE_BOUND = {  # methods without a clean order: error at 40 steps
    "heunpp2": 0.1, "gradient_estimation": 0.1, "ipndm_v": 1e-3, "dpm_fast": 1e-3, "dpm_adaptive": 0.15,
}


def _ode_error(name: str, steps: int) -> float:
    sigmas = schedule_sigmas(MS, "karras", steps).double()[:-1]  # stop at σ_min: no irreducible last jump
    x = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    out = SAMPLERS[name].function(gaussian_denoiser, x, sigmas, {"seed": 1})
    return float((out - exact_flow(x, sigmas[0], sigmas[-1])).abs().max())


def test_every_deterministic_sampler_is_covered():
    deterministic = {n for n, spec in SAMPLERS.items() if not spec.stochastic}
    assert deterministic == set(ODE_ORDER) | set(ODE_BOUND)


@pytest.mark.parametrize("name", sorted(ODE_ORDER))
def test_ode_samplers_converge_with_their_order(name):
    coarse, fine = _ode_error(name, 20), _ode_error(name, 40)
    order = ODE_ORDER[name]
    assert math.log2(coarse / fine) > order - 0.3, (coarse, fine)
    assert fine < {1: 0.12, 2: 0.012, 3: 1.5e-3}[order]


@pytest.mark.parametrize("name", sorted(ODE_BOUND))
def test_other_deterministic_samplers_approach_the_flow(name):
    assert _ode_error(name, 40) < ODE_BOUND[name]


def test_full_run_to_zero_lands_on_the_data_distribution():
    sigmas = schedule_sigmas(MS, "karras", 30)
    x = torch.randn(256, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    out = SAMPLERS["dpmpp_2m"].function(gaussian_denoiser, x, sigmas, {"seed": 1})
    exact = MU + S / (S**2 + sigmas[0] ** 2) ** 0.5 * (x - MU)
    assert torch.allclose(out, exact, atol=0.02)


# --- stochastic samplers: the final samples follow N(μ, s²) ------------------------------------------
STOCHASTIC = {  # name: (steps, elements, std tolerance)
    "euler_ancestral": (300, 16 * 1024, 0.02), "ddpm": (300, 16 * 1024, 0.02),
    "dpm_2_ancestral": (60, 16 * 1024, 0.015), "dpmpp_2s_ancestral": (60, 16 * 1024, 0.015),
    "res_multistep_ancestral": (60, 16 * 1024, 0.015), "er_sde": (60, 16 * 1024, 0.015),
    "seeds_2": (60, 16 * 1024, 0.015), "seeds_3": (60, 16 * 1024, 0.02), "exp_heun_2_x0_sde": (60, 16 * 1024, 0.015),
    "dpmpp_sde": (30, 4096, 0.04), "dpmpp_2m_sde": (30, 4096, 0.04), "dpmpp_2m_sde_heun": (30, 4096, 0.04),
    "dpmpp_3m_sde": (30, 4096, 0.04), "dpmpp_sde_gpu": (30, 1024, 0.08), "dpmpp_2m_sde_gpu": (30, 1024, 0.08),
    "dpmpp_2m_sde_heun_gpu": (30, 1024, 0.08), "dpmpp_3m_sde_gpu": (30, 1024, 0.08),
}


def test_every_stochastic_sampler_is_covered():
    stochastic = {n for n, spec in SAMPLERS.items() if spec.stochastic}
    # LCM re-noises around x̂₀: it samples the data only for a consistency-distilled model.
    assert stochastic == set(STOCHASTIC) | {"lcm"}


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_stochastic_samplers_sample_the_data_distribution(name):
    steps, elements, tol = STOCHASTIC[name]
    sigmas = schedule_sigmas(MS, "karras", steps, sampler_name=name)
    x = torch.randn(elements // 16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = x * (1 + sigmas[0] ** 2) ** 0.5
    out = SAMPLERS[name].function(gaussian_denoiser, x, sigmas, {"seed": 5})
    assert float(out.mean()) == pytest.approx(MU, abs=2 * tol)
    assert float(out.std()) == pytest.approx(S, abs=tol)
    again = SAMPLERS[name].function(gaussian_denoiser, x, sigmas, {"seed": 5})
    assert torch.equal(out, again), "a seed fixes the result"


def test_lcm_renoises_to_the_next_sigma():
    sigmas = torch.tensor([14.6146, 2.0, 0.0])
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 14.6146
    seen = []

    def record(x, sigma, **_):
        seen.append(x.clone())
        return torch.zeros_like(x)

    SAMPLERS["lcm"].function(record, x, sigmas, {"seed": 3})
    assert float(seen[1].std()) == pytest.approx(2.0, rel=0.05)  # x̂₀ = 0 plus noise of std σ₁
