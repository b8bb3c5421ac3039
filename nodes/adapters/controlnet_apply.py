"""ControlNet at sampling time: attaching controls to conditioning, and the residual hook of the denoiser.

Before every UNet call the denoiser calls ``control_residual_hook(kwargs, x_in, context, jobs, state)``. The rows of
``x_in`` are the jobs' chunks (``batch`` rows each). Jobs whose conditioning carries the same chain of controls
(ControlNetApplyAdvanced puts one chain on both positive and negative) share one ControlNet call over their rows.
Each control is active while end_sigma ≤ σ ≤ start_sigma, the σ of its start/end percent by ComfyUI's rule
(``ModelSigmas.percent_to_sigma``); its residuals are scaled by its strength, several controls add up, and rows
without controls get zeros. The hint image is resized to the latent's pixel size (center crop to the aspect ratio,
nearest-exact, as ComfyUI does).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nodes.sd.model_manager import manager
from nodes.values import CondEntry, ControlApplication

_hints: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_hints_lock = threading.Lock()


def attach(conditioning: Sequence[CondEntry], application: ControlApplication) -> tuple[CondEntry, ...]:
    """Each entry with `application` appended to its controls (the same object for all: one shared call)."""
    return tuple(entry.replace(controls=(*entry.controls, application)) for entry in conditioning)


def _fit(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, C, h, w] → [B, C, height, width]: center crop to the target aspect ratio, then nearest-exact."""
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image
    if h * width > w * height:  # too tall
        keep = round(w * height / width)
        top = (h - keep) // 2
        image = image[..., top:top + keep, :]
    elif h * width < w * height:  # too wide
        keep = round(h * width / height)
        left = (w - keep) // 2
        image = image[..., left:left + keep]
    return F.interpolate(image, size=(height, width), mode="nearest-exact")


def prepared_hint(hint: torch.Tensor, height: int, width: int, device: torch.device, dtype: torch.dtype):
    """The IMAGE hint as [B, C, height, width] on the device, cached while the same tensor is used."""
    key = (id(hint), height, width, str(device), dtype)
    with _hints_lock:
        found = _hints.get(key)
        if found is not None and found[0] is hint:
            return found[1]
    image = hint if hint.dim() == 4 else hint.unsqueeze(0)
    prepared = _fit(image.movedim(-1, 1).float(), height, width).to(device, dtype)
    with _hints_lock:
        _hints[key] = (hint, prepared)
        while len(_hints) > 16:
            _hints.popitem(last=False)
    return prepared


def _broadcast(hint: torch.Tensor, rows: int) -> torch.Tensor:
    """A hint batch for `rows` latents: one image for all, or the images repeated in order (ComfyUI's rule)."""
    if hint.shape[0] == rows:
        return hint
    if hint.shape[0] == 1:
        return hint.expand(rows, -1, -1, -1)
    repeats = -(-rows // hint.shape[0])
    return hint.repeat(repeats, 1, 1, 1)[:rows]


def _active(application: ControlApplication, sigma: float, percent_to_sigma: Any) -> bool:
    if percent_to_sigma is None:
        return True
    return percent_to_sigma(application.end_percent) <= sigma <= percent_to_sigma(application.start_percent)


def _run_control(
    application: ControlApplication, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
    added: dict[str, torch.Tensor] | None, rows_per_job: int, jobs: int,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    handle = application.control
    if context.shape[-1] != handle.context_dim:
        raise ValueError(
            f"ControlNet {handle.source!r} reads {handle.context_dim}-wide text conditioning; this model's is "
            f"{context.shape[-1]}: the ControlNet is for another model family"
        )
    if handle.size_conditioning and added is None:
        raise ValueError(f"ControlNet {handle.source!r} is an SDXL ControlNet; this model is not SDXL")
    with manager().use(handle.record) as (controlnet,):
        parameter = next(controlnet.parameters())
        device, dtype = parameter.device, parameter.dtype
        height, width = x.shape[-2] * 8, x.shape[-1] * 8
        hint = _broadcast(prepared_hint(application.hint, height, width, device, dtype), rows_per_job)
        kwargs: dict[str, Any] = {}
        if handle.size_conditioning:
            kwargs["added_cond_kwargs"] = {k: v.to(device, dtype) for k, v in added.items()}
        down, mid = controlnet(
            x[:, : controlnet.config.in_channels].to(device, dtype), timestep.to(device),
            encoder_hidden_states=context.to(device, dtype), controlnet_cond=hint.repeat(jobs, 1, 1, 1),
            conditioning_scale=float(application.strength), return_dict=False, **kwargs,
        )
    return list(down), mid


def _rows(job_indices: list[int], rows_per_job: int, total_jobs: int) -> torch.Tensor | slice:
    if job_indices == list(range(total_jobs)):
        return slice(None)
    return torch.cat([torch.arange(i * rows_per_job, (i + 1) * rows_per_job) for i in job_indices])


def control_residual_hook(kwargs: dict[str, Any], x_in: torch.Tensor, context: torch.Tensor, jobs: list, state) -> None:
    """Add the active ControlNets' residuals for this UNet call to `kwargs` (the UNet's keyword arguments)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, job in enumerate(jobs):
        if job.entry.controls:
            groups.setdefault(tuple(id(c) for c in job.entry.controls), []).append(index)
    if not groups:
        return
    sigma = float(state.sigma.reshape(-1)[0])
    percent_to_sigma = getattr(state, "percent_to_sigma", None)
    rows_per_job = x_in.shape[0] // len(jobs)
    added_all = kwargs.get("added_cond_kwargs")
    down_total: list[torch.Tensor] | None = None
    mid_total: torch.Tensor | None = None
    for job_indices in groups.values():
        controls = jobs[job_indices[0]].entry.controls
        active = [c for c in controls if _active(c, sigma, percent_to_sigma)]
        if not active:
            continue
        rows = _rows(job_indices, rows_per_job, len(jobs))
        added = {k: v[rows] for k, v in added_all.items()} if added_all else None
        for application in active:
            down, mid = _run_control(application, x_in[rows], state.timestep[rows], context[rows], added,
                                     rows_per_job, len(job_indices))
            if down_total is None and isinstance(rows, slice):  # the usual case: every row, one call
                down_total, mid_total = down, mid
                continue
            if down_total is None:
                down_total = [torch.zeros((x_in.shape[0], *d.shape[1:]), dtype=d.dtype, device=d.device) for d in down]
                mid_total = torch.zeros((x_in.shape[0], *mid.shape[1:]), dtype=mid.dtype, device=mid.device)
            for total, residual in zip(down_total, down, strict=True):
                total[rows] += residual
            mid_total[rows] += mid
    if down_total is None:
        return
    target = dict(device=context.device, dtype=context.dtype)
    previous_down = kwargs.get("down_block_additional_residuals")
    previous_mid = kwargs.get("mid_block_additional_residual")
    down_out = [d.to(**target) for d in down_total]
    mid_out = mid_total.to(**target)
    if previous_down is not None:
        down_out = [a + b for a, b in zip(previous_down, down_out, strict=True)]
        mid_out = previous_mid + mid_out
    kwargs["down_block_additional_residuals"] = tuple(down_out)
    kwargs["mid_block_additional_residual"] = mid_out
