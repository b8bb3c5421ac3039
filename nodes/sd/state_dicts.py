"""Reading weight files safely and recognising what they contain.

Only safetensors and `torch.load(weights_only=True)`: a pickle that needs code to load is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from nodes.sd.families import FAMILIES, Family


class ModelFileError(ValueError):
    """A model file that cannot be used, with a message naming the file and what was expected."""


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors or weights-only pickle file, on the CPU."""
    if not path.is_file():
        raise ModelFileError(f"{path.name}: file not found ({path})")
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".sft"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(f"{path.name}: not a readable .safetensors file ({exc})") from None
    if suffix in PICKLE_SUFFIXES:
        import pickle

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's own message suggests weights_only=False, i.e. running the file's code: never say that.
            raise ModelFileError(
                f"{path.name}: refused — it holds pickled Python objects other than tensors, which could run code "
                "when loaded. Only plain-tensor .ckpt files load; use a .safetensors version of this model."
            ) from None
        except Exception as exc:  # RuntimeError for truncated or non-zip files, …
            raise ModelFileError(
                f"{path.name}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                "Expected a PyTorch .ckpt of plain tensors, or a .safetensors file."
            ) from None
        return _tensors_only(data, path)
    raise ModelFileError(f"{path.name}: unsupported file type {suffix!r} (expected .safetensors or .ckpt)")


class LazySafetensors(Mapping):
    """The keys of a .safetensors file; a tensor is read only when asked for."""

    def __init__(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                self._keys = list(handle.keys())
                self._keyset = frozenset(self._keys)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(f"{path.name}: not a readable .safetensors file ({exc})") from None

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        if key not in self._keys:
            raise KeyError(key)
        with safe_open(str(self.path), framework="pt", device="cpu") as handle:
            return handle.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keyset


def open_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Keys and lazily read tensors for .safetensors; the whole (weights-only) pickle otherwise."""
    if not path.is_file():
        raise ModelFileError(f"{path.name}: file not found ({path})")
    if path.suffix.lower() in (".safetensors", ".sft"):
        return LazySafetensors(path)
    return read_state_dict(path)


def _tensors_only(data: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise ModelFileError(f"{path.name}: expected a mapping of tensors, found {type(data).__name__}")
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


def has_prefix(state_dict: Mapping[str, object], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in state_dict)


def _not_a_checkpoint(path: Path, state_dict: Mapping[str, object]) -> ModelFileError:
    keys = list(state_dict)
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k or ".lora_A." in k for k in keys):
        return ModelFileError(f"{path.name}: this is a LoRA, not a checkpoint — put it in loras/ and use a LoRA node")
    if any(k.startswith("control_model.") or k.startswith("input_hint_block.") for k in keys):
        return ModelFileError(
            f"{path.name}: this is a ControlNet, not a checkpoint — put it in controlnet/ and use ControlNetLoader"
        )
    if any(k.startswith(("encoder.conv_in", "decoder.conv_in")) for k in keys):
        return ModelFileError(f"{path.name}: this is a VAE only, not a checkpoint — put it in vae/ and use VAELoader")
    if any(k.startswith(("image_proj.", "ip_adapter.")) for k in keys):
        return ModelFileError(f"{path.name}: this is an IP-Adapter — put it in ipadapter/ and use IPAdapterLoader")
    shown = ", ".join(keys[:4]) or "no tensors"
    return ModelFileError(
        f"{path.name}: unknown model family — none of the SD1.x/SD2.x/SDXL checkpoint layouts "
        f"(expected keys under {UNET_PREFIX!r}; found {shown}…)"
    )


# (marker key, family without variants); checked in order.
_TEXT_ENCODER_MARKERS = (
    ("conditioner.embedders.1.model.ln_final.weight", "sdxl"),
    ("conditioner.embedders.0.model.ln_final.weight", "sdxl_refiner"),
    ("cond_stage_model.model.ln_final.weight", "sd2"),
    ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "sd1"),
    ("cond_stage_model.transformer.final_layer_norm.weight", "sd1"),
)
_INPAINT_VARIANT = {"sd1": "sd1_inpaint", "sd2": "sd2_inpaint", "sdxl": "sdxl_inpaint"}


def unet_in_channels(state_dict: Mapping[str, torch.Tensor]) -> int:
    return int(state_dict[UNET_PREFIX + "input_blocks.0.0.weight"].shape[1])


def detect_family(path: Path, state_dict: Mapping[str, torch.Tensor], prediction: str | None = None) -> Family:
    """The family of a single-file checkpoint from its keys and shapes (prediction from yaml if given)."""
    if UNET_PREFIX + "input_blocks.0.0.weight" not in state_dict:
        raise _not_a_checkpoint(path, state_dict)
    base = next((family for marker, family in _TEXT_ENCODER_MARKERS if marker in state_dict), None)
    if base is None:
        raise ModelFileError(
            f"{path.name}: a UNet without a text encoder this program knows (SD1 CLIP-L, SD2 OpenCLIP-H, "
            "SDXL CLIP-L + bigG, refiner bigG); cannot tell the family"
        )
    name = base
    if unet_in_channels(state_dict) == 9:
        if base not in _INPAINT_VARIANT:
            raise ModelFileError(f"{path.name}: a 9-channel (inpainting) UNet in a {base} file is not supported")
        name = _INPAINT_VARIANT[base]
    if prediction is None and "v_pred" in state_dict:
        prediction = "v_prediction"
    if prediction is None and name == "sd2":
        prediction = _sd2_prediction_heuristic(state_dict)
    if prediction == "v_prediction" and name == "sd2":
        name = "sd2_v"
    family = FAMILIES[name]
    if prediction and prediction != family.prediction:
        from nodes.sd.families import with_prediction

        family = with_prediction(family, prediction)
    return family


def _sd2_prediction_heuristic(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SD2 768-v and 512-ε files share one layout. As ComfyUI does, look at a norm bias that is spread
    out in v-prediction models; a yaml with `parameterization: "v"` beside the file overrides this."""
    bias = state_dict.get(UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias")
    if bias is not None and torch.std(bias.float(), unbiased=False) > 0.09:
        return "v_prediction"
    return "epsilon"
