"""The denoiser D(x, σ) → x̂₀ that every sampler calls: the UNet under classifier-free guidance.

ComfyUI semantics: the UNet sees x·c_in at the nearest integer timestep of σ; ε or v output becomes x̂₀;
the negative prompt is the unconditional branch; cfg = 1 skips it. Several conditioning entries (combined
prompts, areas, masks) are each evaluated and averaged with their strengths. Conditionings of different
token lengths are repeated to a common length, which leaves cross-attention unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nodes.values import CondEntry, ModelHandle

UNCOND, COND = 0, 1
SDXL_DEFAULT_SIZE = 768  # ComfyUI's size conditioning when a plain CLIP encode gave none


@dataclass
class SamplingState:
    """What controls (ControlNet, IP-Adapter) need to know about the current model call."""

    sigma: torch.Tensor
    timestep: torch.Tensor
    latent_size: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)
    # ComfyUI's percent → σ rule of this model (ControlNet start/end percent).
    percent_to_sigma: Callable[[float], float] | None = None


def _time_ids(entry: CondEntry, kind: str, size_conditioning: str, height: int, width: int) -> list[float]:
    e = entry.extras
    if size_conditioning == "refiner":
        default_score = 2.5 if kind == "negative" else 6.0
        return [e.get("height", SDXL_DEFAULT_SIZE), e.get("width", SDXL_DEFAULT_SIZE),
                e.get("crop_h", 0), e.get("crop_w", 0), e.get("aesthetic_score", default_score)]
    h = e.get("height", SDXL_DEFAULT_SIZE)
    w = e.get("width", SDXL_DEFAULT_SIZE)
    return [h, w, e.get("crop_h", 0), e.get("crop_w", 0), e.get("target_height", h), e.get("target_width", w)]


def repeat_to(embeds: torch.Tensor, length: int) -> torch.Tensor:
    return embeds.repeat(1, length // embeds.shape[1], 1)


@dataclass
class _Job:
    entry: CondEntry
    branch: int  # UNCOND or COND
    kind: str


class CFGDenoiser:
    def __init__(
        self,
        unet: torch.nn.Module,
        model: ModelHandle,
        positive: tuple[CondEntry, ...],
        negative: tuple[CondEntry, ...],
        cfg: float,
        timestep_of: Callable[[torch.Tensor], torch.Tensor],
        percent_to_sigma: Callable[[float], float],
        concat: torch.Tensor | None = None,
        residual_hooks: tuple[Callable[..., Any], ...] = (),
        call_state: dict[str, Any] | None = None,
    ) -> None:
        self.unet = unet
        self.model = model
        self.cfg = float(cfg)
        self.timestep_of = timestep_of
        self.percent_to_sigma = percent_to_sigma
        self.concat = concat
        self.residual_hooks = residual_hooks
        # Shared with model patches (IP-Adapter…): what the next UNet call is (σ, which rows are cond).
        self.call_state = call_state if call_state is not None else {}
        parameter = next(unet.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.jobs = [_Job(e, COND, "positive") for e in positive]
        if self.cfg != 1.0:
            self.jobs += [_Job(e, UNCOND, "negative") for e in negative]
        self.calls = 0

    def _active(self, job: _Job, sigma: float) -> bool:
        start = self.percent_to_sigma(job.entry.start_percent)
        end = self.percent_to_sigma(job.entry.end_percent)
        return end <= sigma <= start

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        self.calls += 1
        sigma_value = float(sigma.reshape(-1)[0])
        jobs = [j for j in self.jobs if self._active(j, sigma_value)]
        if not any(j.branch == COND for j in jobs):  # outside every entry's range: use them all
            jobs = [j for j in self.jobs if j.branch == COND]
        if self.cfg != 1.0 and not any(j.branch == UNCOND for j in jobs):
            jobs += [j for j in self.jobs if j.branch == UNCOND]
        sums = [torch.zeros_like(x), torch.zeros_like(x)]
        counts = [torch.zeros_like(x[:, :1]), torch.zeros_like(x[:, :1])]
        for job, weight, denoised, region in self._evaluate(x, sigma, jobs, extra):
            sums[job.branch][region] += denoised * weight
            counts[job.branch][region] += weight
        cond = sums[COND] / counts[COND].clamp_min(1e-8)
        if self.cfg == 1.0:
            return cond
        uncond = sums[UNCOND] / counts[UNCOND].clamp_min(1e-8)
        return uncond + self.cfg * (cond - uncond)

    def _evaluate(self, x: torch.Tensor, sigma: torch.Tensor, jobs: list[_Job], extra: dict[str, Any]):
        """Yield (job, weight map, denoised x̂₀ of its region, region slice) for every job, batching
        full-frame jobs into one UNet call."""
        full = [j for j in jobs if j.entry.area is None]
        areas = [j for j in jobs if j.entry.area is not None]
        everything = (slice(None), slice(None), slice(None), slice(None))
        if full:
            outputs = self._unet_batch(x, sigma, full, extra)
            for job, denoised in zip(full, outputs, strict=True):
                yield job, self._weight(job, x), denoised, everything
        for job in areas:
            h, w, y, x0 = (v // 8 for v in job.entry.area)
            region = (slice(None), slice(None), slice(y, y + h), slice(x0, x0 + w))
            crop = x[region]
            (denoised,) = self._unet_batch(crop, sigma, [job], extra)
            yield job, self._weight(job, crop), denoised, region

    def _weight(self, job: _Job, x: torch.Tensor) -> torch.Tensor:
        weight = torch.full_like(x[:, :1], job.entry.strength)
        if job.entry.mask is not None:
            mask = job.entry.mask.to(x.device, x.dtype)
            mask = mask.reshape(1, 1, *mask.shape[-2:]) if mask.dim() < 4 else mask
            mask = torch.nn.functional.interpolate(mask, size=x.shape[-2:], mode="bilinear")
            weight = weight * (mask * job.entry.mask_strength)
        return weight

    def _unet_batch(self, x: torch.Tensor, sigma: torch.Tensor, jobs: list[_Job], extra: dict[str, Any]):
        batch = x.shape[0]
        sigma_b = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma.reshape(-1)
        c_in = 1.0 / torch.sqrt(sigma_b**2 + 1.0)
        x_in = (x * c_in[:, None, None, None]).repeat(len(jobs), 1, 1, 1)
        if self.concat is not None:
            concat = self.concat.to(x.device, x.dtype)
            if concat.shape[-2:] != x.shape[-2:]:
                concat = torch.nn.functional.interpolate(concat, size=x.shape[-2:], mode="bilinear")
            x_in = torch.cat([x_in, concat.repeat(len(jobs) * batch // concat.shape[0], 1, 1, 1)], dim=1)
        timestep = self.timestep_of(sigma_b).repeat(len(jobs))
        length = math.lcm(*(j.entry.embeds.shape[1] for j in jobs))
        context = torch.cat(
            [repeat_to(j.entry.embeds, length).expand(batch, -1, -1) for j in jobs]
        ).to(self.device, self.dtype)
        kwargs: dict[str, Any] = {}
        family = self.model.family
        if family.size_conditioning:
            pooled = torch.cat([j.entry.pooled.expand(batch, -1) for j in jobs]).to(self.device, self.dtype)
            height, width = x.shape[-2] * 8, x.shape[-1] * 8
            time_ids = torch.tensor(
                [_time_ids(j.entry, j.kind, family.size_conditioning, height, width) for j in jobs],
                dtype=self.dtype, device=self.device,
            ).repeat_interleave(batch, dim=0)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        state = SamplingState(sigma_b, timestep, tuple(x.shape[-2:]), extra, self.percent_to_sigma)
        self.call_state.update(
            sigma=float(sigma_b[0]), batch=batch, branches=[j.branch for j in jobs], jobs=jobs,
        )
        for hook in self.residual_hooks:
            hook(kwargs, x_in, context, jobs, state)
        out = self.unet(
            x_in.to(self.device, self.dtype), timestep.to(self.device), encoder_hidden_states=context,
            return_dict=False, **kwargs,
        )[0].to(x.dtype)
        outputs = out.chunk(len(jobs))
        return [self._to_denoised(x, sigma_b, o) for o in outputs]

    def _to_denoised(self, x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        s = sigma[:, None, None, None].to(x.dtype)
        if self.model.prediction == "v_prediction":
            return x / (s**2 + 1.0) - output * s / torch.sqrt(s**2 + 1.0)
        return x - output * s
