"""LoadCheckpoint / VAELoader implementation: files and folders → shared modules → light handles."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from nodes.sd import conversion, devices, ldm_configs
from nodes.sd.families import FAMILIES, Family, TextEncoderSpec
from nodes.sd.model_manager import LoadedModule, manager
from nodes.sd.state_dicts import VAE_PREFIX, ModelFileError, detect_family, open_state_dict, read_state_dict
from nodes.values import ClipHandle, ModelHandle, TextEncoderSlot, VaeHandle

# Tensors that may be absent from files without harm (non-persistent buffers in some versions).
_OPTIONAL_KEYS = ("position_ids",)


def file_identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def build_module(
    make_empty: Callable[[], torch.nn.Module], weights: Mapping[str, torch.Tensor], what: str, file: str,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """Instantiate without allocating, check every tensor is present with the right shape, assign weights."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = make_empty()
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights and not k.endswith(_OPTIONAL_KEYS)]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} with other shapes (e.g. {'; '.join(wrong_shape[:2])})")
    if problems:
        raise ModelFileError(
            f"{file}: the {what} does not match its expected architecture: {'; '.join(problems)}. "
            "If this is a non-standard model, put its LDM .yaml config next to it with the same name."
        )
    module.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()},
                           strict=False, assign=True)
    for name, buffer in list(module.named_buffers()):
        if buffer.is_meta:
            raise ModelFileError(f"{file}: the {what} has no value for buffer {name}")
    return module


def _unet_factory(config: dict, weights: dict, file: str, dtype: torch.dtype) -> Callable[[], torch.nn.Module]:
    from diffusers import UNet2DConditionModel

    return lambda: build_module(lambda: UNet2DConditionModel.from_config(config), weights, "UNet", file, dtype)


def _vae_factory(config: dict, weights: dict, file: str, dtype: torch.dtype) -> Callable[[], torch.nn.Module]:
    from diffusers import AutoencoderKL

    return lambda: build_module(lambda: AutoencoderKL.from_config(config), weights, "VAE", file, dtype)


def _text_module(spec: TextEncoderSpec, config: dict, weights: dict, file: str, dtype: torch.dtype):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel

    def make() -> torch.nn.Module:
        return cls(CLIPTextConfig(**config))

    with torch.device("meta"):
        flattened = not hasattr(make(), "text_model")
    if flattened:
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    return build_module(make, weights, "text encoder", file, dtype)


class _LazyStateDict:
    """Reads the file at most once per load call, and only if some component is not loaded yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._value: dict[str, torch.Tensor] | None = None

    def get(self) -> dict[str, torch.Tensor]:
        if self._value is None:
            self._value = read_state_dict(self.path)
        return self._value


@lru_cache(maxsize=256)
def _family_of(identity: tuple[str, int, int]) -> tuple[Family, dict | None]:
    path = Path(identity[0])
    ldm = ldm_configs.yaml_beside(path)
    family = detect_family(path, open_state_dict(path), ldm_configs.yaml_prediction(ldm))
    return family, ldm


def load_checkpoint(path: Path, name: str = "") -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """MODEL, CLIP and VAE handles for a single-file checkpoint or a diffusers folder."""
    if path.is_dir():
        from nodes.sd.diffusers_folders import load_diffusers_folder

        return load_diffusers_folder(path, name)
    identity = file_identity(path)
    family, ldm = _family_of(identity)
    lazy = _LazyStateDict(path)
    dtype = devices.default_dtype()
    file = path.name
    mm = manager()

    def unet() -> torch.nn.Module:
        sd = lazy.get()
        config = ldm_configs.unet_config(family, ldm, sd)
        return _unet_factory(config, conversion.unet_state_dict(sd, config), file, dtype)()

    def vae() -> torch.nn.Module:
        sd = lazy.get()
        config = ldm_configs.vae_config(family, ldm, sd)
        return _vae_factory(config, conversion.vae_state_dict(sd, config), file, devices.vae_dtype(
            sdxl=family.is_sdxl))()

    unet_record = mm.load((identity, "unet", dtype), f"{file} UNet", unet)
    vae_dtype = devices.vae_dtype(sdxl=family.is_sdxl)
    vae_record = mm.load((identity, "vae", vae_dtype), f"{file} VAE", vae)
    slots = []
    for index, spec in enumerate(family.text_encoders):
        def text(spec: TextEncoderSpec = spec, index: int = index) -> torch.nn.Module:
            sd = lazy.get()
            config = ldm_configs.text_encoder_config(family, spec, index, ldm, sd)
            weights = conversion.TEXT_CONVERTERS[spec.layout](sd, spec)
            return _text_module(spec, config, weights, file, dtype)

        record = mm.load((identity, f"text_encoder_{index}", dtype), f"{file} text encoder {index + 1}", text)
        slots.append(TextEncoderSlot(record, _tokenizer(spec), spec, spec.default_layer))
    scaling = float(vae_record.module.config.scaling_factor or family.scaling_factor)
    if ldm is None:
        scaling = family.scaling_factor
    return _handles(family, unet_record, tuple(slots), vae_record, scaling, name or file)


def _tokenizer(spec: TextEncoderSpec) -> Any:
    from nodes.sd.tokenizers import clip_tokenizer

    return clip_tokenizer(pad_with=spec.pad_with)


def _handles(
    family: Family, unet: LoadedModule, slots: tuple[TextEncoderSlot, ...], vae: LoadedModule, scaling: float,
    source: str,
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    latent_channels = int(vae.module.config.latent_channels)
    shift = float(getattr(vae.module.config, "shift_factor", None) or 0.0)
    return (
        ModelHandle(unet, family, family.prediction, latent_scale=scaling, latent_shift=shift, source=source),
        ClipHandle(slots, family, source=source),
        VaeHandle(vae, scaling, shift, latent_channels, source=source),
    )


def load_vae(path: Path, name: str = "") -> VaeHandle:
    """A standalone VAE: a single file (LDM or diffusers names) or a diffusers AutoencoderKL folder."""
    from diffusers import AutoencoderKL

    mm = manager()
    if path.is_dir():
        config_file = path / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        dtype = devices.vae_dtype(sdxl=abs(float(config.get("scaling_factor", 0.18215)) - 0.13025) < 1e-6)
        record = mm.load(
            (file_identity(config_file), "vae", dtype), f"{path.name} VAE",
            lambda: AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True),
        )
    else:
        identity = file_identity(path)
        family, config = _vae_file_family(path)
        dtype = devices.vae_dtype(sdxl=family.is_sdxl)

        def build() -> torch.nn.Module:
            sd = read_state_dict(path)
            if any(k.startswith(("encoder.down.", VAE_PREFIX)) for k in sd):
                weights = conversion.vae_state_dict(sd, config)
            else:
                weights = sd  # already diffusers names
            return _vae_factory(config, weights, path.name, dtype)()

        record = mm.load((identity, "vae", dtype), f"{path.name} VAE", build)
    scaling = float(record.module.config.scaling_factor)
    shift = float(getattr(record.module.config, "shift_factor", None) or 0.0)
    return VaeHandle(record, scaling, shift, int(record.module.config.latent_channels), source=name or path.name)


def _vae_file_family(path: Path) -> tuple[Family, dict]:
    """A standalone VAE file's config: its yaml if present, else SD1's or SDXL's (told apart by name
    or by the user's yaml; both share one architecture and differ only in scaling factor)."""
    ldm = ldm_configs.yaml_beside(path)
    family = FAMILIES["sdxl"] if "xl" in path.name.lower() else FAMILIES["sd1"]
    if ldm is not None:
        from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

        return family, create_vae_diffusers_config_from_ldm(ldm, {})
    return family, ldm_configs.shipped_config(family, "vae")
