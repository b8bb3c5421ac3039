"""Seeded noise (initial, per-step, Brownian) and the KSampler run around a sampler (`sample`)."""

from __future__ import annotations

import pytest
import torch

from nodes.samplers.model_sigmas import sd_model_sigmas
from nodes.samplers.noise import BrownianTreeNoiseSampler, default_noise_sampler, prepare_noise
from nodes.samplers.run import prepare_mask, sample
from nodes.samplers.schedules import schedule_sigmas

pytestmark = pytest.mark.filterwarnings("ignore:Should have")

MS = sd_model_sigmas()


# --- initial noise ----------------------------------------------------------------------------------
def test_initial_noise_is_the_seeded_cpu_stream():
    latent = torch.zeros(2, 4, 8, 8)
    with torch.random.fork_rng():
        torch.manual_seed(1234)  # what ComfyUI does
        expected = torch.randn(2, 4, 8, 8)
    assert torch.equal(prepare_noise(latent, 1234), expected)
    assert not torch.equal(prepare_noise(latent, 1235), expected)


def test_initial_noise_accepts_64_bit_seeds():
    latent = torch.zeros(1, 4, 2, 2)
    big = 0xFFFFFFFFFFFFFFFF
    expected = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(big))
    assert torch.equal(prepare_noise(latent, big), expected)


def test_initial_noise_with_batch_index_takes_items_of_the_stream():
    latent = torch.zeros(2, 4, 3, 3)
    g = torch.Generator().manual_seed(7)
    stream = [torch.randn(1, 4, 3, 3, generator=g) for _ in range(4)]
    got = prepare_noise(latent, 7, batch_index=[3, 1])
    assert torch.equal(got, torch.cat([stream[3], stream[1]]))
    with pytest.raises(ValueError, match="batch_index"):
        prepare_noise(latent, 7, batch_index=[0])


def test_initial_noise_is_drawn_in_float32_then_cast():
    latent = torch.zeros(1, 4, 4, 4, dtype=torch.float16)
    got = prepare_noise(latent, 3)
    assert got.dtype == torch.float16
    assert torch.equal(got, prepare_noise(latent.float(), 3).half())


# --- per-step noise -----------------------------------------------------------------------------------
def test_default_noise_sampler_on_cpu_uses_seed_plus_one():
    x = torch.zeros(1, 4, 4, 4)
    ns = default_noise_sampler(x, seed=42)
    g = torch.Generator().manual_seed(43)
    first, second = ns(torch.tensor(2.0), torch.tensor(1.0)), ns(torch.tensor(1.0), torch.tensor(0.5))
    assert torch.equal(first, torch.randn(1, 4, 4, 4, generator=g))
    assert torch.equal(second, torch.randn(1, 4, 4, 4, generator=g))
    assert not torch.equal(first, prepare_noise(x, 42)), "step noise must not repeat the initial noise"


def _brownian_w(tree: BrownianTreeNoiseSampler, a: float, b: float) -> torch.Tensor:
    """Un-normalised increment W(b) − W(a)."""
    return tree(torch.tensor(a), torch.tensor(b)) * abs(b - a) ** 0.5


def test_brownian_tree_increments_are_one_path():
    x = torch.zeros(4, 2, 8, 8)
    tree = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=11)
    whole = _brownian_w(tree, 5.0, 1.0)
    parts = _brownian_w(tree, 5.0, 2.5) + _brownian_w(tree, 2.5, 1.0)
    assert torch.allclose(whole, parts, atol=1e-5)
    # the same query in another order and on another tree with the same seed gives the same values
    fresh = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=11)
    later = fresh(torch.tensor(2.5), torch.tensor(1.0))
    assert torch.allclose(later, tree(torch.tensor(2.5), torch.tensor(1.0)), atol=1e-6)
    other = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=12)(torch.tensor(5.0), torch.tensor(1.0))
    assert not torch.allclose(other, tree(torch.tensor(5.0), torch.tensor(1.0)), atol=1e-2)


def test_brownian_increments_are_standard_normal():
    x = torch.zeros(1, 1, 128, 128)
    n = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=3)(torch.tensor(4.0), torch.tensor(3.0))
    assert float(n.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(n.std()) == pytest.approx(1.0, abs=0.03)


# --- the KSampler run ---------------------------------------------------------------------------------
class Recorder:
    """A denoiser that remembers its inputs and pulls everything toward `target`."""

    def __init__(self, target: float = 0.25):
        self.inputs: list[tuple[torch.Tensor, torch.Tensor, dict]] = []
        self.target = target
        self.model_sigmas = MS

    def __call__(self, x, sigma, **kwargs):
        self.inputs.append((x.clone(), sigma.clone(), kwargs))
        return torch.full_like(x, self.target) + 0.1 * torch.tanh(x)


def test_full_denoise_scales_noise_by_sqrt_one_plus_sigma_squared():
    latent = torch.zeros(1, 4, 8, 8)
    noise = prepare_noise(latent, 5)
    sigmas = schedule_sigmas(MS, "karras", 4)
    model = Recorder()
    sample(model, noise, latent, sigmas, "euler", seed=5)
    first_x, first_sigma, kwargs = model.inputs[0]
    assert float(first_sigma[0]) == pytest.approx(MS.sigma_max)
    assert torch.allclose(first_x, noise * (1 + sigmas[0] ** 2) ** 0.5)
    assert "seed" not in kwargs, "the seed is for the sampler, not the denoiser"


def test_img2img_adds_noise_at_the_first_sigma():
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = prepare_noise(latent, 5)
    sigmas = schedule_sigmas(MS, "karras", 10, denoise=0.6)
    model = Recorder()
    sample(model, noise, latent, sigmas, "euler", seed=5)
    assert torch.allclose(model.inputs[0][0], latent + noise * sigmas[0])


def test_no_added_noise_starts_from_the_latent():
    latent = torch.randn(1, 4, 8, 8)
    model = Recorder()
    sigmas = schedule_sigmas(MS, "normal", 10)[6:]
    sample(model, prepare_noise(latent, 1), latent, sigmas, "euler", seed=1, add_noise=False)
    assert torch.equal(model.inputs[0][0], latent)


def test_empty_schedule_returns_the_latent():
    latent = torch.randn(1, 4, 8, 8)
    model = Recorder()
    out = sample(model, prepare_noise(latent, 1), latent, torch.zeros(0), "euler", seed=1)
    assert out is latent and not model.inputs


def test_model_sigmas_are_required():
    latent = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="model_sigmas"):
        sample(lambda x, s, **k: x, None, latent, schedule_sigmas(MS, "normal", 2), "euler", seed=1)


def _half_mask(h: int = 8, w: int = 8) -> torch.Tensor:
    mask = torch.zeros(1, h, w)
    mask[:, :, : w // 2] = 1.0  # regenerate the left half, keep the right
    return mask


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "uni_pc"])
def test_noise_mask_keeps_the_unmasked_latent(sampler):
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    noise = prepare_noise(latent, 9)
    model = Recorder()
    sigmas = schedule_sigmas(MS, "karras", 8, sampler_name=sampler)
    out = sample(model, noise, latent, sigmas, sampler, seed=9, denoise_mask=_half_mask())
    assert torch.equal(out[..., 4:], latent[..., 4:])
    assert not torch.allclose(out[..., :4], latent[..., :4], atol=1e-2)
    for x, sigma, _ in model.inputs:  # every call sees the kept region re-noised to its σ
        assert torch.allclose(x[..., 4:], latent[..., 4:] + noise[..., 4:] * sigma[0], atol=1e-5)


def test_ddim_renoises_the_kept_region_with_seed_plus_one():
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    noise = prepare_noise(latent, 9)
    other = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(10))
    model = Recorder()
    sample(model, noise, latent, schedule_sigmas(MS, "karras", 4), "ddim", seed=9, denoise_mask=_half_mask())
    x, sigma, _ = model.inputs[1]
    assert torch.allclose(x[..., 4:], latent[..., 4:] + other[..., 4:] * sigma[0], atol=1e-5)


def test_pixel_size_mask_is_resized_to_the_latent():
    mask = torch.zeros(64, 64)
    mask[:, :32] = 1.0
    prepared = prepare_mask(mask, (2, 4, 8, 8), torch.device("cpu"))
    assert prepared.shape == (2, 4, 8, 8)
    assert torch.equal(prepared[..., :4], torch.ones(2, 4, 8, 4))
    assert torch.equal(prepared[..., 4:], torch.zeros(2, 4, 8, 4))
    with pytest.raises(ValueError, match="denoise_mask"):
        prepare_mask(torch.ones(8), (1, 4, 8, 8), torch.device("cpu"))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_sde"])
def test_seeds_reproduce_and_differ(sampler):
    latent = torch.zeros(1, 4, 8, 8)
    sigmas = schedule_sigmas(MS, "karras", 6)

    def run(seed):
        return sample(Recorder(), prepare_noise(latent, seed), latent, sigmas, sampler, seed=seed)

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4), atol=1e-3)


def test_step_noise_depends_on_the_seed_argument():
    latent = torch.zeros(1, 4, 8, 8)
    noise = prepare_noise(latent, 3)
    sigmas = schedule_sigmas(MS, "karras", 6)
    a = sample(Recorder(), noise, latent, sigmas, "euler_ancestral", seed=3)
    b = sample(Recorder(), noise, latent, sigmas, "euler_ancestral", seed=4)
    assert not torch.allclose(a, b, atol=1e-3)
    c = sample(Recorder(), noise, latent, sigmas, "euler", seed=4)
    assert torch.equal(c, sample(Recorder(), noise, latent, sigmas, "euler", seed=3))
