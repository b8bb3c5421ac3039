"""The ComfyUI core nodes added for imported workflows: conditioning arithmetic and regions, latent upscaling,
custom sampling pieces. Values checked against the definitions (no model), then a few runs on the tiny SD1."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.fixtures import tiny_checkpoint  # noqa: F401

from nodes.conditioning import combine
from nodes.latent import scale
from nodes.sampling import custom
from nodes.values import CondEntry, Latent


def entry(seed: int, tokens: int = 77, pooled: bool = True) -> CondEntry:
    g = torch.Generator().manual_seed(seed)
    return CondEntry(torch.randn(1, tokens, 8, generator=g), torch.randn(1, 8, generator=g) if pooled else None)


# ------------------------------------------------------------------------------------------- conditioning


def test_combine_keeps_every_entry_in_order():
    a, b, c = entry(1), entry(2), entry(3)
    (out,) = combine.ConditioningCombine().run(None, (a,), (b, c))
    assert out == (a, b, c)


def test_average_blends_cuts_and_pads_from_the_first_source_entry():
    to, source, ignored = entry(1, tokens=154), entry(2, tokens=77), entry(3)
    (out,) = combine.ConditioningAverage().run(None, (to,), (source, ignored), 0.25)
    padded = torch.cat([source.embeds, torch.zeros(1, 77, 8)], dim=1)
    torch.testing.assert_close(out[0].embeds, to.embeds * 0.25 + padded * 0.75)
    torch.testing.assert_close(out[0].pooled, to.pooled * 0.25 + source.pooled * 0.75)
    (cut,) = combine.ConditioningAverage().run(None, (entry(4, tokens=77),), (entry(5, tokens=154),), 0.5)
    assert cut[0].embeds.shape == (1, 77, 8)
    (taken,) = combine.ConditioningAverage().run(None, (entry(6, pooled=False),), (source,), 0.5)
    assert taken[0].pooled is source.pooled  # 'to' has no pooled output: the source's is used
    with pytest.raises(ValueError, match="conditioning_from is empty"):
        combine.ConditioningAverage().run(None, (to,), (), 0.5)


def test_zero_out_zeroes_embeds_and_pooled_without_touching_the_input():
    a = entry(1)
    before = a.embeds.clone()
    (out,) = combine.ConditioningZeroOut().run(None, (a, entry(2, pooled=False)))
    assert torch.count_nonzero(out[0].embeds) == 0 and torch.count_nonzero(out[0].pooled) == 0
    assert out[1].pooled is None and out[0].embeds.shape == a.embeds.shape
    torch.testing.assert_close(a.embeds, before)


def test_area_strength_and_timestep_range_are_set_on_every_entry():
    (area,) = combine.ConditioningSetArea().run(None, (entry(1), entry(2)), 256, 128, 64, 32, 1.5)
    assert [(e.area, e.strength) for e in area] == [((128, 256, 32, 64), 1.5)] * 2
    (strength,) = combine.ConditioningSetAreaStrength().run(None, (entry(1),), 0.3)
    assert strength[0].strength == 0.3 and strength[0].area is None
    (timed,) = combine.ConditioningSetTimestepRange().run(None, (entry(1),), 0.2, 0.7)
    assert (timed[0].start_percent, timed[0].end_percent) == (0.2, 0.7)


def test_set_mask_default_and_mask_bounds():
    mask = torch.zeros(1, 64, 64)
    mask[0, 10:21, 17:41] = 1.0
    (plain,) = combine.ConditioningSetMask().run(None, (entry(1),), mask, 0.8, "default")
    assert plain[0].mask is mask and plain[0].mask_strength == 0.8 and plain[0].area is None
    (bounded,) = combine.ConditioningSetMask().run(None, (entry(1),), mask[0], 0.8, "mask bounds")
    assert bounded[0].area == (16, 32, 8, 16)  # rows 10–20 → 8–24, columns 17–40 → 16–48, whole 8-pixel cells
    torch.testing.assert_close(bounded[0].mask, mask[:, 8:24, 16:48])
    (empty,) = combine.ConditioningSetMask().run(None, (entry(1),), torch.zeros(1, 64, 64), 1.0, "mask bounds")
    assert empty[0].area is None


# ------------------------------------------------------------------------------------------------- latents


def latent(h: int = 8, w: int = 6) -> Latent:
    return Latent(torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(0)) * 3)


def test_latent_upscale_sizes_and_values():
    source = latent()
    (out,) = scale.LatentUpscale().run(None, source, "bilinear", 96, 0, "disabled")
    assert out.samples.shape == (2, 4, 16, 12)  # width 96 → height follows: round(8 · 96 / 6) = 128 pixels
    torch.testing.assert_close(out.samples, F.interpolate(source.samples, size=(16, 12), mode="bilinear"))
    assert out.samples.abs().max() > 1.0  # latents are not clamped like pictures
    (small,) = scale.LatentUpscale().run(None, source, "nearest-exact", 16, 16, "disabled")
    assert small.samples.shape == (2, 4, 8, 8)  # each side at least 64 pixels
    (cropped,) = scale.LatentUpscale().run(None, source, "nearest-exact", 64, 64, "center")
    torch.testing.assert_close(cropped.samples, F.interpolate(source.samples[:, :, 1:7, :], size=(8, 8),
                                                              mode="nearest-exact"))
    (same,) = scale.LatentUpscale().run(None, source, "bicubic", 0, 0, "disabled")
    assert same is source


def test_latent_upscale_by_rounds_each_side_and_keeps_the_mask():
    source = latent().replace(noise_mask=torch.ones(1, 1, 64, 48))
    (out,) = scale.LatentUpscaleBy().run(None, source, "area", 1.5)
    assert out.samples.shape == (2, 4, 12, 9) and out.noise_mask is source.noise_mask
    torch.testing.assert_close(out.samples, F.interpolate(source.samples, size=(12, 9), mode="area"))


# ------------------------------------------------------------------------------------------- custom sampling


def test_karras_scheduler_is_karras_formula():
    (sigmas,) = custom.KarrasScheduler().run(None, 4, 14.6, 0.03, 7.0)
    ramp = np.linspace(0, 1, 4)
    expected = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigmas.numpy(), [*expected, 0.0], rtol=1e-5)
    assert custom.KarrasScheduler.check({"sigma_min": 0.0, "rho": 7.0})


def test_basic_scheduler_is_the_ksampler_schedule():
    from nodes.samplers.model_sigmas import ModelSigmas
    from nodes.samplers.schedules import schedule_sigmas

    family = SimpleNamespace(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_timesteps=1000)
    model = SimpleNamespace(family=family, prediction="epsilon")
    (sigmas,) = custom.BasicScheduler().run(None, model, "karras", 10, 0.6)
    expected = schedule_sigmas(ModelSigmas.from_betas(), "karras", 10, 0.6)
    torch.testing.assert_close(sigmas, expected)
    assert len(sigmas) == 11 and float(sigmas[-1]) == 0.0


def test_split_sigmas():
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    high, low = custom.SplitSigmas().run(None, sigmas, 2)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    high, low = custom.SplitSigmasDenoise().run(None, sigmas, 0.25)
    assert high.tolist() == [10.0, 5.0, 2.0, 1.0] and low.tolist() == [1.0, 0.0]


def test_noise_guider_and_sampler_values():
    assert custom.RandomNoise().run(None, 9) == (custom.NoiseSource(9),)
    assert custom.DisableNoise().run(None) == (custom.NoiseSource(0, enabled=False),)
    assert custom.KSamplerSelect().run(None, "heun") == (custom.SamplerChoice("heun"),)
    a, b = entry(1), entry(2)
    (basic,) = custom.BasicGuider().run(None, "model", (a,))
    assert (basic.negative, basic.cfg) == ((), 1.0)
    (cfg,) = custom.CFGGuider().run(None, "model", (a,), (b,), 4.5)
    assert (cfg.positive, cfg.negative, cfg.cfg) == ((a,), (b,), 4.5)


def test_increasing_sigmas_are_refused():
    from nodes.sampling.custom_run import sample_custom

    family = SimpleNamespace(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_timesteps=1000,
                             size_conditioning="")
    guider = custom.Guider(SimpleNamespace(family=family, prediction="epsilon"), (entry(1),))
    with pytest.raises(ValueError, match="must not increase"):
        sample_custom(None, guider, custom.SamplerChoice("euler"), torch.tensor([1.0, 2.0, 0.0]), latent(),
                      custom.NoiseSource(1))


# ------------------------------------------------------------------------------------------ tiny-model runs


@pytest.fixture(scope="module")
def tiny_parts(tiny_checkpoint):  # noqa: F811
    from nodes.sd.loading import load_checkpoint
    from nodes.sd.text_encoding import encode

    checkpoint = tiny_checkpoint("sd1")
    model, clip, _vae = load_checkpoint(checkpoint.paths["safetensors"], "tiny_sd1")
    return model, encode(clip, "a red barn"), encode(clip, "a blue sea"), encode(clip, "")


def _sample(model, positive, negative, sampler="euler", seed=3, steps=3, cfg=5.0, noise=True):
    from nodes.samplers.schedules import schedule_sigmas
    from nodes.sampling.custom_run import sample_custom
    from nodes.sd.ksampler import model_sigmas

    sigmas = schedule_sigmas(model_sigmas(model), "normal", steps)
    empty = Latent(torch.zeros(1, 4, 8, 8))
    guider = custom.Guider(model, tuple(positive), tuple(negative), cfg)
    return sample_custom(None, guider, custom.SamplerChoice(sampler), sigmas, empty, custom.NoiseSource(seed, noise))


def test_custom_sampler_equals_ksampler_and_returns_the_last_denoised(tiny_parts):
    from nodes.sd.ksampler import SamplerSettings, run

    model, barn, _sea, empty_prompt = tiny_parts
    output, denoised = _sample(model, (barn,), (empty_prompt,))
    reference = run(None, model, (barn,), (empty_prompt,), Latent(torch.zeros(1, 4, 8, 8)),
                    SamplerSettings(3, 3, 5.0, "euler", "normal"))
    torch.testing.assert_close(output.samples, reference.samples, rtol=0, atol=0)
    torch.testing.assert_close(denoised.samples, output.samples, rtol=1e-4, atol=1e-4)  # euler ends at σ = 0
    no_noise, _ = _sample(model, (barn,), (empty_prompt,), noise=False)
    assert not torch.allclose(no_noise.samples, output.samples)


def test_conditioning_nodes_change_sampling_as_defined(tiny_parts):
    model, barn, sea, empty_prompt = tiny_parts
    base, _ = _sample(model, (barn,), (empty_prompt,))
    (averaged,) = combine.ConditioningAverage().run(None, (barn,), (sea,), 1.0)
    torch.testing.assert_close(_sample(model, averaged, (empty_prompt,))[0].samples, base.samples, rtol=0, atol=0)
    (doubled,) = combine.ConditioningCombine().run(None, (barn,), (barn,))
    # Same prediction twice, averaged: equal up to float rounding of a bigger UNet batch.
    torch.testing.assert_close(_sample(model, doubled, (empty_prompt,))[0].samples, base.samples,
                               rtol=0, atol=2e-3)
    (whole,) = combine.ConditioningSetArea().run(None, (barn,), 64, 64, 0, 0, 1.0)
    torch.testing.assert_close(_sample(model, whole, (empty_prompt,))[0].samples, base.samples, rtol=0, atol=2e-3)
    (mixed,) = combine.ConditioningAverage().run(None, (barn,), (sea,), 0.0)
    sea_only, _ = _sample(model, (sea,), (empty_prompt,))
    torch.testing.assert_close(_sample(model, mixed, (empty_prompt,))[0].samples, sea_only.samples, rtol=0, atol=0)
    (zero,) = combine.ConditioningZeroOut().run(None, (barn,))
    assert (_sample(model, zero, (empty_prompt,))[0].samples - base.samples).abs().mean() > 2e-2
