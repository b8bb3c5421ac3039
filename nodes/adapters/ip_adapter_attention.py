"""IP-Adapter as a model patch: decoupled cross-attention installed for one sampling run.

On enter, every cross-attention layer of the UNet (diffusers' processor order, which is the order of the file's
``ip_adapter.{1,3,5,…}``) gets a processor computing

    out = to_out( Attn(Q, K_text, V_text) + Σ_adapters weight · Attn(Q, K_img, V_img) )

with Q computed once, K_img/V_img = to_k_ip/to_v_ip(image tokens). Each row of the UNet batch reads the cond or
uncond image tokens according to the denoiser's ``call_state["branches"]``; an adapter acts only while
end_sigma ≤ σ ≤ start_sigma (ComfyUI's percent → σ rule). On exit the original processor objects are put back.
Several IP-Adapters stack: the second patch extends the first one's processor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from nodes.adapters.ip_adapter import CONTEXT_FAMILY, IPAdapterHandle
from nodes.sd.model_manager import manager

COND = 1


def cross_attention_layers(unet: torch.nn.Module) -> list[tuple[str, Any]]:
    """(name, Attention) of every cross-attention layer, in diffusers' attn_processors order."""
    names = [key.removesuffix(".processor") for key in unet.attn_processors if not key.endswith("attn1.processor")]
    return [(name, unet.get_submodule(name)) for name in names]


@dataclass
class _Branch:
    """One IP-Adapter's part of every patched layer during a run."""

    weights: Any  # IPAdapterWeights on the compute device
    cond: torch.Tensor  # [1, T, context] on the device
    uncond: torch.Tensor
    weight: float
    start_percent: float
    end_percent: float
    call_state: Mapping[str, Any]
    _tokens: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def active(self) -> bool:
        to_sigma = self.call_state.get("percent_to_sigma")
        sigma = self.call_state.get("sigma")
        if to_sigma is None or sigma is None:
            return True
        return to_sigma(self.end_percent) <= sigma <= to_sigma(self.start_percent)

    def tokens(self, rows: int, dtype: torch.dtype) -> torch.Tensor:
        """[rows, T, context]: cond tokens for cond rows, uncond tokens for uncond rows."""
        branches = tuple(self.call_state.get("branches") or ())
        batch = int(self.call_state.get("batch") or 0)
        if not branches or batch * len(branches) != rows:
            branches, batch = (COND,), rows
        key = (branches, batch, dtype)
        found = self._tokens.get(key)
        if found is None:
            parts = [(self.cond if b == COND else self.uncond).expand(batch, -1, -1) for b in branches]
            found = torch.cat(parts).to(dtype)
            self._tokens[key] = found
        return found


class DecoupledCrossAttention:
    """A diffusers attention processor: text attention plus the image attention of each branch."""

    def __init__(self, layer_index: int, branches: tuple[_Branch, ...]) -> None:
        self.layer_index = layer_index
        self.branches = branches

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size = context.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        for branch in self.branches:
            if branch.weight == 0 or not branch.active():
                continue
            tokens = branch.tokens(batch_size, query.dtype)
            ip_key = heads(branch.weights.to_k_ip[self.layer_index](tokens))
            ip_value = heads(branch.weights.to_v_ip[self.layer_index](tokens))
            image = F.scaled_dot_product_attention(query, ip_key, ip_value, attn_mask=None, dropout_p=0.0)
            out = out + branch.weight * image.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(
                query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class IPAdapterPatch:
    """MODEL patch: decoupled cross-attention with fixed image tokens, for the runs that use this handle."""

    def __init__(self, adapter: IPAdapterHandle, cond: torch.Tensor, uncond: torch.Tensor, weight: float,
                 start_percent: float = 0.0, end_percent: float = 1.0) -> None:
        self.adapter = adapter
        self.cond, self.uncond = cond, uncond
        self.weight = float(weight)
        self.start_percent, self.end_percent = float(start_percent), float(end_percent)

    def __repr__(self) -> str:
        return f"IPAdapterPatch({self.adapter.source!r}, weight={self.weight})"

    @staticmethod
    def check_model(adapter: IPAdapterHandle, unet: torch.nn.Module, model_name: str) -> None:
        """A clear error when the adapter was made for another model family."""
        layers = cross_attention_layers(unet)
        widths = [(int(attn.to_k.out_features), int(attn.to_k.in_features)) for _, attn in layers]
        mine = [(int(k.out_features), int(k.in_features)) for k in adapter.record.module.to_k_ip]
        if widths != mine:
            made_for = CONTEXT_FAMILY.get(adapter.context_dim)
            hint = f" It looks like an IP-Adapter for {made_for}." if made_for else ""
            raise ValueError(
                f"IP-Adapter {adapter.source!r} has {len(mine)} layers of (width, context) {mine[:2]}…; the "
                f"model {model_name!r} has {len(widths)} cross-attention layers of {widths[:2]}….{hint}"
            )

    @contextmanager
    def applied(self, module: torch.nn.Module, context: Mapping[str, Any]) -> Iterator[None]:
        if context.get("role", "unet") != "unet":
            yield
            return
        layers = cross_attention_layers(module)
        saved: list[tuple[Any, Any]] = []
        with manager().use(self.adapter.record) as (weights,):
            parameter = next(weights.parameters())
            branch = _Branch(
                weights, self.cond.to(parameter.device, parameter.dtype), self.uncond.to(parameter.device,
                                                                                           parameter.dtype),
                self.weight, self.start_percent, self.end_percent, context.get("call_state") or {},
            )
            try:
                for index, (_, attn) in enumerate(layers):
                    previous = attn.processor
                    earlier = previous.branches if isinstance(previous, DecoupledCrossAttention) else ()
                    saved.append((attn, previous))
                    attn.set_processor(DecoupledCrossAttention(index, (*earlier, branch)))
                yield
            finally:
                for attn, previous in reversed(saved):
                    attn.set_processor(previous)
