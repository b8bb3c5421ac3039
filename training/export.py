"""Export the trained demo models to the files diffgraph ships, in the formats users' own files have.

- ``checkpoints/demo.safetensors``: an SD1.x single-file checkpoint (original LDM key names, fp16) + ``demo.yaml``
  beside it (the v1-inference.yaml schema with the demo's sizes and VAE scale factor).
- ``controlnet/demo_canny_controlnet.safetensors``: lllyasviel's ``control_model.*`` layout + a cldm-style yaml.
- ``loras/demo_outline_lora.safetensors``: a kohya LoRA (``lora_unet_*`` / ``lora_te_*`` with ``.alpha``).

    python -m training.export [--work-dir /work/demo_work] [--out nodes/data/demo]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from training.common import DEFAULT_WORK_DIR
from training.models import SCHEDULE

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "nodes" / "data" / "demo"
# Paths inside the demo folder: the kinds nodes/__init__.py registers as built-in model roots.
CHECKPOINT = "checkpoints/demo.safetensors"
CONTROLNET = "controlnet/demo_canny_controlnet.safetensors"
LORA = "loras/demo_outline_lora.safetensors"
YAML_HEADER = (
    "# diffgraph's built-in demo model: Stable Diffusion 1.x architecture at small width, trained from scratch on\n"
    "# procedural shapes by training/ (see training/README.md). 64x64 images; LDM v1-inference.yaml schema.\n"
)
METADATA = {"format": "pt", "diffgraph.demo": "1", "source": "training/ in the diffgraph repository"}


def fp16(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}


def checkpoint_files(vae: Any, text_encoder: Any, unet: Any) -> tuple[dict[str, torch.Tensor], str]:
    """The single-file state dict and the yaml text for the SD1 checkpoint."""
    from nodes.sd.ldm_layout import pipeline_to_single_file
    from nodes.sd.ldm_layout_yaml import ldm_yaml_config

    state = pipeline_to_single_file({"unet": unet, "vae": vae, "text_encoder": text_encoder}, "sd1")
    text_configs = {"text_encoder": text_encoder.config.to_dict()}
    config = ldm_yaml_config("sd1", dict(unet.config), dict(vae.config), text_configs,
                             {**SCHEDULE, "prediction_type": "epsilon"})
    return fp16(state), YAML_HEADER + yaml.safe_dump(config, sort_keys=False)


def controlnet_files(controlnet: Any, checkpoint_yaml: str) -> tuple[dict[str, torch.Tensor], str]:
    """lllyasviel's layout, and a yaml in the schema of ControlNet's cldm_v15.yaml with the demo's sizes."""
    from nodes.sd.ldm_layout import controlnet_to_ldm

    state = controlnet_to_ldm(controlnet.state_dict(), controlnet.config)
    unet_params = yaml.safe_load(checkpoint_yaml)["model"]["params"]["unet_config"]["params"]
    control = {"image_size": 32, **copy.deepcopy(unet_params), "hint_channels": 3}
    config = {"model": {"target": "cldm.cldm.ControlLDM", "params": {
        "control_key": "hint", "only_mid_control": False,
        "control_stage_config": {"target": "cldm.cldm.ControlNet", "params": control},
    }}}
    header = "# diffgraph demo ControlNet (Canny edges), for demo.safetensors; ControlNet cldm_v15.yaml schema.\n"
    return fp16(state), header + yaml.safe_dump(config, sort_keys=False)


_KOHYA_MATRIX = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}


def kohya_lora(unet_lora: Mapping[str, torch.Tensor], text_lora: Mapping[str, torch.Tensor], unet_alpha: float,
               text_alpha: float) -> dict[str, torch.Tensor]:
    """peft ``<module>.lora_A/B.weight`` → kohya ``lora_<part>_<module with _>.lora_down/up.weight`` + ``.alpha``."""
    out: dict[str, torch.Tensor] = {}
    parts = (("lora_unet_", "", unet_lora, unet_alpha), ("lora_te_", "text_model.", text_lora, text_alpha))
    for head, module_prefix, state, alpha in parts:
        for key, tensor in state.items():
            module, kind = key.rsplit(".lora_", 1)
            if not module.startswith(module_prefix):
                module = module_prefix + module
            name = head + module.replace(".", "_")
            out[f"{name}.{_KOHYA_MATRIX[kind]}"] = tensor
            out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return fp16(out)


def load_trained(work_dir: Path) -> dict[str, Any]:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    modules: dict[str, Any] = {
        "vae": AutoencoderKL.from_pretrained(work_dir / "vae" / "final"),
        "text_encoder": CLIPTextModel.from_pretrained(work_dir / "unet" / "final" / "text_encoder"),
        "unet": UNet2DConditionModel.from_pretrained(work_dir / "unet" / "final" / "unet"),
    }
    if (work_dir / "controlnet" / "final").is_dir():
        modules["controlnet"] = ControlNetModel.from_pretrained(work_dir / "controlnet" / "final")
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modules = load_trained(args.work_dir)

    state, config_text = checkpoint_files(modules["vae"], modules["text_encoder"], modules["unet"])
    for name in (CHECKPOINT, CONTROLNET, LORA):
        (args.out / name).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out / CHECKPOINT, metadata=METADATA)
    (args.out / CHECKPOINT).with_suffix(".yaml").write_text(config_text)
    written = [args.out / CHECKPOINT]
    if "controlnet" in modules:
        state, control_text = controlnet_files(modules["controlnet"], config_text)
        save_file(state, args.out / CONTROLNET, metadata=METADATA)
        (args.out / CONTROLNET).with_suffix(".yaml").write_text(control_text)
        written.append(args.out / CONTROLNET)
    lora_dir = args.work_dir / "lora" / "final"
    if lora_dir.is_dir():
        unet_file, text_file = lora_dir / "unet_lora.safetensors", lora_dir / "text_encoder_lora.safetensors"
        alphas = [float(_metadata(f)["alpha"]) for f in (unet_file, text_file)]
        save_file(kohya_lora(load_file(unet_file), load_file(text_file), *alphas), args.out / LORA,
                  metadata={**METADATA, "ss_network_module": "networks.lora"})
        written.append(args.out / LORA)
    for path in written:
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {path.stat().st_size / 1e6:.2f} MB")
    print(f"total {sum(p.stat().st_size for p in written) / 1e6:.2f} MB")


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        return handle.metadata() or {}


if __name__ == "__main__":
    main()
