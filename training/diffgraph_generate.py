"""Generate with diffgraph itself: every prompt is an API-format workflow run by the engine on the demo files
(LoadCheckpoint → CLIPEncode ×2 → EmptyLatent → KSampler → VAEDecode → PreviewImage), and the PNGs it writes are
read back as uint8. This is what a user's `diffgraph run workflows/txt2img.json` does, so bench/demo_quality.py
`--generator diffgraph` scores the product, not a re-implementation of it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.generate import Generator

CHECKPOINT_NAME = "demo.safetensors"
LORA_NAME = "demo_outline_lora.safetensors"


def txt2img_workflow(prompt: str, seed: int, steps: int = 20, cfg: float = 6.0, negative: str = "",
                     sampler: str = "euler", scheduler: str = "normal", lora_strength: float | None = None,
                     batch: int = 1) -> dict[str, Any]:
    """The demo txt2img graph; with `lora_strength` the outline LoRA sits between the checkpoint and its users."""
    model, clip = ["ckpt", 0], ["ckpt", 1]
    workflow: dict[str, Any] = {
        "ckpt": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "pos": {"class_type": "CLIPEncode", "inputs": {"text": prompt, "clip": clip}},
        "neg": {"class_type": "CLIPEncode", "inputs": {"text": negative, "clip": clip}},
        "empty": {"class_type": "EmptyLatent", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
            "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["empty", 0], "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    if lora_strength is not None:
        workflow["lora"] = {"class_type": "LoRA", "inputs": {
            "model": model, "clip": clip, "lora_name": LORA_NAME, "strength_model": lora_strength,
            "strength_clip": lora_strength}}
        workflow["pos"]["inputs"]["clip"] = workflow["neg"]["inputs"]["clip"] = ["lora", 1]
        workflow["sample"]["inputs"]["model"] = ["lora", 0]
    return workflow


class DiffgraphRunner:
    """One executor (so the checkpoint is loaded once) and the folders it reads from and writes to."""

    def __init__(self, models_dir: Path | None = None) -> None:
        from graphcore import folders
        from graphcore.executor import Executor
        from graphcore.registry import discover

        self._temp = tempfile.TemporaryDirectory(prefix="diffgraph-demo-")
        root = Path(self._temp.name)
        self.folders = folders.configure(folders.Folders(
            models_dir=models_dir or root / "models", input_dir=root / "input", output_dir=root / "output",
            temp_dir=root / "temp").create())
        self.executor = Executor(discover())

    def images(self, workflow: dict[str, Any]) -> np.ndarray:
        """Run the workflow; the uint8 images [B, H, W, 3] of every PreviewImage/SaveImage node, in node order."""
        from PIL import Image

        result = self.executor.run(workflow)
        if not result.ok:
            error = result.error
            raise RuntimeError(f"{error.node_type} #{error.node_id}: {error.exception_message}" if error
                               else result.status)
        pictures = []
        for output in result.outputs.values():
            for item in output.get("images", []):
                base = self.folders.temp_dir if item["type"] == "temp" else self.folders.output_dir
                with Image.open(base / item["subfolder"] / item["filename"]) as image:
                    pictures.append(np.asarray(image.convert("RGB")))
        return np.stack(pictures)


def diffgraph_generator(folder: Path, steps: int, cfg: float, sampler: str = "euler",
                        scheduler: str = "normal") -> Generator:
    """bench/demo_quality.py's factory signature. The packaged demo files are found without configuration; another
    `folder` with a checkpoints/ sub-folder (e.g. a fresh export) is used as the models folder."""
    from nodes import DEMO_DIR

    own_folder = folder.resolve() != DEMO_DIR.resolve() and (folder / "checkpoints").is_dir()
    runner = DiffgraphRunner(folder if own_folder else None)

    def generate(prompts: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
        return np.concatenate([runner.images(txt2img_workflow(p, int(s), steps, cfg, sampler=sampler,
                                                              scheduler=scheduler))
                               for p, s in zip(prompts, seeds, strict=True)])

    return generate


def diffgraph_dpmpp_2m_karras(folder: Path, steps: int, cfg: float) -> Generator:
    return diffgraph_generator(folder, steps, cfg, "dpmpp_2m", "karras")
