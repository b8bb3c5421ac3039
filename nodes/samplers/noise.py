"""Where the randomness of a sampling run comes from, seeded exactly as ComfyUI seeds it.

- Initial noise: a CPU generator seeded with the seed draws N(0, 1) at the latent's shape in float32,
  then the result moves to the latent's dtype and device, so a seed gives the same noise on any machine.
  With a `batch_index` (latents split from a batch), item k gets the k-th draw of that stream.
- Per-step noise of ancestral samplers ("default" noise sampler): a generator on the latent's device seeded
  with the seed (seed + 1 on the CPU, so the stream does not repeat the initial noise, which was drawn
  from the same seed on the same kind of generator — ComfyUI's behaviour since its PR #11528).
- SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde): a Brownian tree over σ from torchsde with the
  seed as its entropy, built on the CPU, so increments are the same for any query order and device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
NoiseSampler = Callable[[Tensor, Tensor], Tensor]  # (σ, σ_next) -> N(0, I) at x's shape


def prepare_noise(latent: Tensor, seed: int, batch_index: Sequence[int] | None = None) -> Tensor:
    """The initial noise for a latent batch (ComfyUI's `comfy.sample.prepare_noise`), on the CPU."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    if batch_index is None:
        draw = torch.randn(latent.shape, dtype=torch.float32, layout=latent.layout, generator=generator)
        return draw.to(dtype=latent.dtype)
    indices = [int(i) for i in batch_index]
    if len(indices) != latent.shape[0] or min(indices) < 0:
        raise ValueError(f"batch_index {indices} does not describe a batch of {latent.shape[0]} non-negative indices")
    wanted = set(indices)
    draws: dict[int, Tensor] = {}
    item_shape = (1, *latent.shape[1:])
    for k in range(max(indices) + 1):  # the stream is drawn item by item; skipped items still consume it
        draw = torch.randn(item_shape, dtype=torch.float32, layout=latent.layout, generator=generator)
        if k in wanted:
            draws[k] = draw.to(dtype=latent.dtype)
    return torch.cat([draws[k] for k in indices], dim=0)


def inpaint_noise(shape: Sequence[int], seed: int, like: Tensor) -> Tensor:
    """The separate noise ComfyUI's "ddim" uses to re-noise the kept region of an inpaint: seed + 1, CPU."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    return torch.randn(tuple(shape), generator=generator).to(dtype=like.dtype, device=like.device)


def default_noise_sampler(x: Tensor, seed: int | None = None) -> NoiseSampler:
    """Fresh N(0, I) at x's shape on every call, from a generator on x's device (see module docstring)."""
    generator = None
    if seed is not None:
        device_seed = int(seed) + 1 if x.device.type == "cpu" else int(seed)
        generator = torch.Generator(device=x.device).manual_seed(device_seed)

    def sample(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return torch.randn(x.shape, dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


class BrownianTreeNoiseSampler:
    """Normalised Brownian increments (W(σ_next) − W(σ)) / sqrt|σ_next − σ| from a fixed-entropy tree.

    The tree (torchsde.BrownianTree, the same as ComfyUI's) spans [σ_min, σ_max] of the run; querying
    any sub-interval, in any order, gives increments consistent with one Brownian path, which is what
    the SDE solvers need when they split a step at an intermediate σ.
    """

    def __init__(self, x: Tensor, sigma_min: float | Tensor, sigma_max: float | Tensor, seed: int | None = None,
                 cpu: bool = True) -> None:
        try:
            import torchsde
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "the SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde) need the 'torchsde' package"
            ) from exc
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self._sign = 1 if t0 < t1 else -1
        t0, t1 = (t0, t1) if t0 < t1 else (t1, t0)
        self._cpu = cpu
        w0 = torch.zeros_like(x)
        if cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        entropy = int(seed) if seed is not None else int(torch.randint(0, 2**63 - 1, ()).item())
        self._tree = torchsde.BrownianTree(t0, w0, t1, entropy=entropy)

    def __call__(self, sigma: Tensor | float, sigma_next: Tensor | float) -> Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (a, b, 1) if a < b else (b, a, -1)
        device, dtype = lo.device, lo.dtype
        if self._cpu:
            lo, hi = lo.detach().cpu().float(), hi.detach().cpu().float()
        increment = self._tree(lo, hi).to(device=device, dtype=dtype) * (self._sign * sign)
        return increment / (b - a).abs().sqrt()


def sde_noise_sampler(x: Tensor, sigmas: Tensor, seed: int | None) -> NoiseSampler:
    """The Brownian-tree sampler over the run's σ range, as ComfyUI builds it for its SDE samplers."""
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=True)
