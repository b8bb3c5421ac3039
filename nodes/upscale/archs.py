"""The two upscaler architectures most model files people have use, built from a state dict's shapes.

- ESRGAN's RRDBNet (Wang et al. 2018): 4x-UltraSharp, RealESRGAN_x4plus, x4plus_anime_6B, … in the BasicSR key
  layout (`conv_first`, `body.N.rdbM.convK`, `conv_body`, `conv_upK`, `conv_hr`, `conv_last`) or the original
  ESRGAN one (`model.0`, `model.1.sub.N.RDBM.convK.0`, …, which is renamed to the former). Real-ESRGAN's ×2 and
  ×1 variants pixel-unshuffle the input first (12 or 48 input channels).
- Real-ESRGAN's SRVGGNetCompact ("Compact": realesr-general-x4v3, realesr-animevideov3): `body.N` convs and
  PReLUs, pixel shuffle, plus the nearest-upscaled input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

StateDict = dict[str, torch.Tensor]


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        for k in range(4):
            setattr(self, f"conv{k + 1}", nn.Conv2d(nf + k * gc, gc, 3, 1, 1))
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(nf, gc) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, nf: int, nb: int, gc: int, upsamples: int, unshuffle: int) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.upsamples = upsamples
        self.conv_first = nn.Conv2d(in_nc * unshuffle**2, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        for k in range(upsamples):
            setattr(self, f"conv_up{k + 1}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for k in range(self.upsamples):
            conv = getattr(self, f"conv_up{k + 1}")
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class SRVGGNetCompact(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, nf: int, num_conv: int, upscale: int) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(in_nc, nf, 3, 1, 1), nn.PReLU(nf)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(nf)]
        layers.append(nn.Conv2d(nf, out_nc * upscale**2, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return F.pixel_shuffle(out, self.upscale) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


@dataclass(frozen=True)
class Built:
    module: nn.Module
    scale: int
    architecture: str


_OLD_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_CONV = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def esrgan_old_to_new(sd: StateDict) -> StateDict:
    """The original ESRGAN key layout renamed to BasicSR's."""
    blocks = {int(m.group(1)) for k in sd if (m := _OLD_RDB.match(k))}
    nb = max(blocks) + 1 if blocks else 0
    top = sorted({int(m.group(1)) for k in sd if (m := _OLD_CONV.match(k)) and int(m.group(1)) >= 2})
    if len(top) < 2:
        raise ValueError("an ESRGAN file without its final convolutions")
    names = {0: "conv_first", top[-1]: "conv_last", top[-2]: "conv_hr"}
    names.update({index: f"conv_up{k + 1}" for k, index in enumerate(top[:-2])})
    out: StateDict = {}
    for key, value in sd.items():
        if m := _OLD_RDB.match(key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif key.startswith(f"model.1.sub.{nb}."):
            out["conv_body." + key.rsplit(".", 1)[1]] = value
        elif (m := _OLD_CONV.match(key)) and int(m.group(1)) in names:
            out[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            raise ValueError(f"unexpected key {key!r} for an ESRGAN model")
    return out


def _rrdb(sd: StateDict) -> Built:
    if "model.0.weight" in sd:
        sd = esrgan_old_to_new(sd)
    nf, in_channels = sd["conv_first.weight"].shape[:2]
    out_nc = sd["conv_last.weight"].shape[0]
    gc = sd["body.0.rdb1.conv1.weight"].shape[0]
    nb = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    upsamples = len({k.split(".")[0] for k in sd if k.startswith("conv_up")})
    unshuffle = {3: 1, 12: 2, 48: 4}.get(in_channels, 0)
    if not unshuffle:
        raise ValueError(f"an RRDBNet with {in_channels} input channels is not one we know")
    scale = 2**upsamples // unshuffle
    module = RRDBNet(3, out_nc, nf, nb, gc, upsamples, unshuffle)
    module.load_state_dict(sd, strict=True)
    return Built(module, scale, "ESRGAN (RRDBNet)")


def _compact(sd: StateDict) -> Built:
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    nf, in_nc = sd["body.0.weight"].shape[:2]
    out_channels = sd[f"body.{last}.weight"].shape[0]
    scale = math.isqrt(out_channels // in_nc)
    if scale * scale * in_nc != out_channels:
        raise ValueError(f"a Compact model whose last layer has {out_channels} channels is not one we know")
    module = SRVGGNetCompact(in_nc, in_nc, nf, (last - 2) // 2, scale)
    module.load_state_dict(sd, strict=True)
    return Built(module, scale, "Real-ESRGAN Compact (SRVGGNetCompact)")


# (test on the keys, builder) in the order they are tried.
ARCHITECTURES: tuple[tuple[Callable[[StateDict], bool], Callable[[StateDict], Built]], ...] = (
    (lambda sd: "conv_first.weight" in sd and "body.0.rdb1.conv1.weight" in sd, _rrdb),
    (lambda sd: "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd, _rrdb),
    (lambda sd: "body.0.weight" in sd and getattr(sd.get("body.1.weight"), "ndim", 0) == 1, _compact),
)


def build(sd: StateDict) -> Built | None:
    """The model a state dict describes, or None when it is no architecture of ours."""
    for matches, builder in ARCHITECTURES:
        if matches(sd):
            return builder(sd)
    return None
