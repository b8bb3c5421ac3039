"""Model calls per 20-step run and wall time relative to euler, for every sampler (printed, not asserted).

    python bench/samplers.py [--steps 20] [--size 64] [--repeats 3]

The denoiser is a small random conv net on a 4×size/8×size/8 latent (size = pixel side), so the time
reflects solver overhead plus a cheap model; with a real UNet the model-call count dominates.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from nodes.samplers.k_samplers import SAMPLERS
from nodes.samplers.model_sigmas import sd_model_sigmas
from nodes.samplers.schedules import schedule_sigmas


class ToyConvDenoiser(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, 4, 3, padding=1)
        )
        self.calls = 0

    @torch.no_grad()
    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        self.calls += 1
        s = sigma.reshape(-1, 1, 1, 1)
        eps = self.net(x / (s**2 + 1) ** 0.5)
        return x - s * eps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="pixel side; the latent is size/8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Should have")
    torch.set_num_threads(1)
    ms = sd_model_sigmas()
    side = args.size // 8
    model = ToyConvDenoiser()
    rows = []
    for name, spec in SAMPLERS.items():
        sigmas = schedule_sigmas(ms, "karras", args.steps, sampler_name=name)
        x = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(0)) * (1 + sigmas[0] ** 2) ** 0.5
        best = float("inf")
        for _ in range(args.repeats):
            model.calls = 0
            start = time.perf_counter()
            spec.function(model, x, sigmas, {"seed": 0})
            best = min(best, time.perf_counter() - start)
        rows.append((name, model.calls, best))
    euler_time = next(t for n, _, t in rows if n == "euler")
    print(f"{args.steps}-step runs on a 1×4×{side}×{side} latent, toy conv denoiser, best of {args.repeats}")
    print(f"{'sampler':26s} {'model calls':>11s} {'time/euler':>10s} {'ms':>8s}")
    for name, calls, seconds in rows:
        print(f"{name:26s} {calls:11d} {seconds / euler_time:10.2f} {seconds * 1000:8.1f}")


if __name__ == "__main__":
    main()
