"""Seeded tiny Stable Diffusion checkpoints in the real file layouts, for loader and parity tests.

``build(family, dest, formats)`` makes one model (sizes in :mod:`support.tiny_specs`) and writes it as

* ``"safetensors"``: ``<dest>/tiny_<family>.safetensors``, original single-file keys, with ``tiny_<family>.yaml``
  (an LDM/SGM config of the tiny sizes, A1111's convention) beside it;
* ``"ckpt"``: ``<dest>/tiny_<family>.ckpt``, ``torch.save({"state_dict": …})`` of the same keys (+ the yaml);
* ``"diffusers"``: ``<dest>/tiny_<family>/``, a pipeline folder from ``save_pretrained`` with tokenizers and scheduler.

The returned :class:`TinyCheckpoint` also holds the diffusers components, so tests can build the reference
diffusers pipeline on exactly the same weights. Treat the files as read-only (copy before corrupting).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from nodes.sd.ldm_layout import controlnet_to_ldm, pipeline_to_single_file
from nodes.sd.ldm_layout_yaml import ldm_yaml_config
from nodes.sd.tokenizers import clip_tokenizer
from support.tiny_specs import CONTROLNET_EMBEDDING_CHANNELS, TINY_SPECS, VAE, TinySpec, tiny_spec

FORMATS = ("safetensors", "ckpt", "diffusers")
CONFIG_ROOT = Path(__file__).resolve().parents[2] / "nodes" / "data" / "configs"
# Pad token per layout and tokenizer: OpenCLIP pads with "!" (id 0), OpenAI CLIP with <|endoftext|>. The real SD2
# repos say so in tokenizer/special_tokens_map.json, SDXL's in tokenizer_2/.
_PAD_WITH = {
    "sd1": {"tokenizer": "<|endoftext|>"},
    "sd2": {"tokenizer": "!"},
    "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
    "sdxl_refiner": {"tokenizer_2": "!"},
}


@dataclass
class TinyCheckpoint:
    """One tiny model: where its files are and the diffusers modules they were written from."""

    family: str
    spec: TinySpec
    paths: dict[str, Path]  # format → file or folder; "yaml" → the LDM config beside the single files
    components: dict[str, Any]  # diffusers pipeline components (unet, vae, text_encoder[_2], tokenizer[_2], scheduler)
    single_file: dict[str, torch.Tensor] = field(repr=False)  # the original-layout tensors written to the files
    ldm_config: dict[str, Any] = field(repr=False)  # the yaml's content

    @property
    def unet(self) -> Any:
        return self.components["unet"]

    @property
    def vae(self) -> Any:
        return self.components["vae"]

    @property
    def scheduler(self) -> Any:
        return self.components["scheduler"]

    def pipeline(self, **overrides: Any) -> Any:
        """A fresh diffusers reference pipeline on these modules (a new scheduler instance each call)."""
        import diffusers

        components = {**self.components, "scheduler": type(self.scheduler).from_config(self.scheduler.config)}
        return getattr(diffusers, self.spec.pipeline)(**{**self.pipeline_kwargs(components), **overrides})

    def pipeline_kwargs(self, components: dict[str, Any] | None = None) -> dict[str, Any]:
        components = components or self.components
        kwargs = {**components, **self.spec.pipeline_options}
        if self.spec.pipeline.startswith("StableDiffusionXL"):
            for name in ("text_encoder", "tokenizer"):
                kwargs.setdefault(name, None)
        else:
            kwargs.update(safety_checker=None, feature_extractor=None)
        return kwargs

    def link_into(self, directory: Path, formats: Iterable[str] = ("safetensors",), name: str | None = None) -> dict:
        """Symlink the chosen formats (single files with their yaml) into ``directory``; returns format → link."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = name or self.paths.get("safetensors", self.paths.get("ckpt", Path(f"tiny_{self.family}"))).stem
        links: dict[str, Path] = {}
        for fmt in formats:
            source = self.paths[fmt]
            target = directory / (stem if fmt == "diffusers" else f"{stem}{source.suffix}")
            target.symlink_to(source, target_is_directory=source.is_dir())
            links[fmt] = target
            if fmt != "diffusers" and "yaml" in self.paths and not (directory / f"{stem}.yaml").exists():
                (directory / f"{stem}.yaml").symlink_to(self.paths["yaml"])
        return links


def _distinct_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Make constant-initialised tensors (norm scales and shifts, zero convolutions) random.

    With every tensor distinct, a converter that swaps two same-shaped tensors (norm1/norm2, weight/bias of a
    norm) changes the numbers and fails a test instead of passing by coincidence.
    """
    with torch.no_grad():
        for parameter in module.parameters():
            flat = parameter.view(-1)
            if flat.numel() and bool((flat == flat[0]).all()):
                noise = torch.randn(parameter.shape, generator=generator) * 0.1
                parameter.copy_(parameter + noise.to(parameter.dtype))


def _scheduler(spec: TinySpec) -> Any:
    import diffusers

    config = json.loads((CONFIG_ROOT / spec.config_family / "scheduler" / "scheduler_config.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_config(config)


def _text_encoders(spec: TinySpec, generator: torch.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """(diffusers text encoders, single-file towers). They differ only for SD2, whose file has one block more."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    pipeline_modules: dict[str, Any] = {}
    towers: dict[str, Any] = {}
    for name, sizes in spec.text_encoders.items():
        with_projection = name == "text_encoder_2" or spec.layout == "sd2"
        cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
        tower = cls(CLIPTextConfig(**sizes)).eval()
        _distinct_parameters(tower, generator)
        towers[name] = tower
        if spec.layout == "sd2":
            # diffusers' SD2 text encoder is the tower without its last block (SD2 reads the penultimate output).
            truncated = CLIPTextModel(CLIPTextConfig(**{**sizes, "num_hidden_layers": sizes["num_hidden_layers"] - 1}))
            last = f"text_model.encoder.layers.{sizes['num_hidden_layers'] - 1}."
            weights = {
                key.removeprefix("text_model."): value
                for key, value in tower.state_dict().items()
                if key != "text_projection.weight" and not key.startswith(last)
            }
            truncated.load_state_dict(weights, strict=True)
            pipeline_modules[name] = truncated.eval()
        else:
            pipeline_modules[name] = tower
    return pipeline_modules, towers


def build_components(family: str, seed: int = 0) -> tuple[TinySpec, dict[str, Any], dict[str, Any]]:
    """(spec, diffusers pipeline components, single-file text towers) for a tiny family, seeded."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = tiny_spec(family)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**spec.unet).eval()
    _distinct_parameters(unet, generator)
    vae = AutoencoderKL(**VAE, scaling_factor=spec.scaling_factor).eval()
    _distinct_parameters(vae, generator)
    text_encoders, towers = _text_encoders(spec, generator)
    components: dict[str, Any] = {"unet": unet, "vae": vae, "scheduler": _scheduler(spec), **text_encoders}
    for tokenizer, pad_with in _PAD_WITH[spec.layout].items():
        components[tokenizer] = clip_tokenizer(pad_with)
    return spec, components, towers


def ldm_config_for(spec: TinySpec, components: dict[str, Any], towers: dict[str, Any]) -> dict[str, Any]:
    text_configs = {name: tower.config.to_dict() for name, tower in towers.items()}
    return ldm_yaml_config(
        spec.layout, components["unet"].config, components["vae"].config, text_configs, components["scheduler"].config
    )


def build(family: str, dest: Path, formats: Iterable[str] = ("safetensors",), seed: int = 0) -> TinyCheckpoint:
    """Build one tiny model of ``family`` (sd1, sd1_inpaint, sd2_v, sdxl/sdxl_base, sdxl_refiner) into ``dest``."""
    formats = tuple(formats)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; known: {FORMATS}")
    spec, components, towers = build_components(family, seed)
    single_file = pipeline_to_single_file({**components, **towers}, spec.layout)
    ldm_config = ldm_config_for(spec, components, towers)
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"tiny_{spec.family}"
    paths: dict[str, Path] = {}
    if "safetensors" in formats:
        from safetensors.torch import save_file

        paths["safetensors"] = dest / f"{stem}.safetensors"
        save_file({key: value.contiguous() for key, value in single_file.items()}, paths["safetensors"])
    if "ckpt" in formats:
        paths["ckpt"] = dest / f"{stem}.ckpt"
        torch.save({"state_dict": single_file}, paths["ckpt"])
    if "safetensors" in formats or "ckpt" in formats:
        paths["yaml"] = dest / f"{stem}.yaml"
        paths["yaml"].write_text(yaml.safe_dump(ldm_config, sort_keys=False))
    checkpoint = TinyCheckpoint(spec.family, spec, paths, components, single_file, ldm_config)
    if "diffusers" in formats:
        paths["diffusers"] = dest / stem
        checkpoint.pipeline().save_pretrained(paths["diffusers"], safe_serialization=True)
    return checkpoint


def write_config_dir(checkpoint: TinyCheckpoint, directory: Path) -> Path:
    """A weightless diffusers-format folder (model_index.json and every component's config/tokenizer files),
    the ``config=`` that diffusers' ``from_single_file`` needs for a non-standard model."""
    pipeline = checkpoint.pipeline()
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.save_config(directory)
    for name, component in pipeline.components.items():
        if component is None:
            continue
        if hasattr(component, "save_vocabulary"):
            component.save_pretrained(directory / name)
        elif hasattr(component, "config") and hasattr(component.config, "save_pretrained"):
            component.config.save_pretrained(directory / name)  # transformers config
        else:
            component.save_config(directory / name)  # diffusers model or scheduler
    return directory


@dataclass
class TinyControlNet:
    paths: dict[str, Path]  # "safetensors" (control_model.* keys), "diffusers" (config.json + weights)
    controlnet: Any
    single_file: dict[str, torch.Tensor] = field(repr=False)


def build_controlnet(
    dest: Path, formats: Iterable[str] = ("safetensors", "diffusers"), seed: int = 0
) -> TinyControlNet:
    """A tiny ControlNet for the tiny ``sd1`` UNet (built from that UNet, as real ControlNets start)."""
    from diffusers import ControlNetModel

    _, components, _ = build_components("sd1", seed)
    generator = torch.Generator().manual_seed(seed + 1)
    controlnet = ControlNetModel.from_unet(
        components["unet"], conditioning_embedding_out_channels=CONTROLNET_EMBEDDING_CHANNELS
    ).eval()
    _distinct_parameters(controlnet, generator)  # zero convolutions included: the control must have an effect
    single_file = controlnet_to_ldm(controlnet.state_dict(), controlnet.config)
    dest.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "safetensors" in formats:
        from safetensors.torch import save_file

        paths["safetensors"] = dest / "tiny_controlnet_sd1.safetensors"
        save_file({key: value.contiguous() for key, value in single_file.items()}, paths["safetensors"])
    if "diffusers" in formats:
        paths["diffusers"] = dest / "tiny_controlnet_sd1"
        controlnet.save_pretrained(paths["diffusers"], safe_serialization=True)
    return TinyControlNet(paths, controlnet, single_file)


CORRUPTIONS = ("truncated", "garbage", "bad_header")


def make_corrupt_file(source: Path, dest: Path, kind: str = "truncated") -> Path:
    """A broken copy of a model file: ``truncated`` (first half of the bytes), ``garbage`` (random bytes with the
    original suffix) or ``bad_header`` (a safetensors header length pointing past the end of the file)."""
    data = source.read_bytes()
    if kind == "truncated":
        broken = data[: len(data) // 2]
    elif kind == "garbage":
        broken = bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())
    elif kind == "bad_header":
        broken = (len(data) * 4).to_bytes(8, "little") + data[8:]
    else:
        raise ValueError(f"unknown corruption {kind!r}; known: {CORRUPTIONS}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(broken)
    return dest


__all__ = [
    "CORRUPTIONS", "FORMATS", "TINY_SPECS", "TinyCheckpoint", "TinyControlNet", "build", "build_components",
    "build_controlnet", "ldm_config_for", "make_corrupt_file", "write_config_dir",
]  # fmt: skip
