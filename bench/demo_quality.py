"""Quality of the built-in demo model (nodes/data/demo): does a picture match its prompt?

Generates every held-out caption combination (shape, colour, position never seen together in training) and
scores the images with the exact analytic checker (training/checker.py). Also: the ControlNet (does the shape
follow a given Canny edge map?) and the style LoRA (outlined shapes at strength 1; strength 0 = no LoRA).

    python bench/demo_quality.py [--generator diffgraph-euler] [--steps 20] [--cfg 6] [--seeds 1]

The generation function is pluggable: `--generator package.module:function` names a factory
`function(folder: Path, steps: int, cfg: float) -> Generator`, where a Generator maps (prompts, seeds) to
uint8 images [B, 64, 64, 3] (see training/generate.py). The default runs diffgraph's own workflow
(training/diffgraph_generate.py); `diffusers-*` run diffusers' pipeline on the same files, for comparison.
Goal: colour ≥ 0.90, shape ≥ 0.80, position ≥ 0.80.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training import dataset  # noqa: E402
from training.demo_files import load_controlnet, load_lora, load_modules  # noqa: E402
from training.diffgraph_generate import diffgraph_dpmpp_2m_karras, diffgraph_generator  # noqa: E402
from training.export import DEFAULT_OUT  # noqa: E402
from training.generate import Generator, pipeline, pipeline_generator, score  # noqa: E402

GOALS = {"colour": 0.90, "shape": 0.80, "position": 0.80}


def _scheduler(name: str):
    from diffusers import DPMSolverMultistepScheduler

    from training.generate import euler_scheduler
    from training.models import SCHEDULE

    if name == "euler":
        return euler_scheduler()
    return DPMSolverMultistepScheduler(**SCHEDULE, prediction_type="epsilon", timestep_spacing="linspace",
                                       steps_offset=1)


def diffusers_factory(scheduler: str) -> Callable[[Path, int, float], Generator]:
    def factory(folder: Path, steps: int, cfg: float) -> Generator:
        vae, text_encoder, unet = load_modules(folder)
        return pipeline_generator(pipeline(vae, text_encoder, unet, _scheduler(scheduler)), steps=steps, cfg=cfg)

    return factory


GENERATORS: dict[str, Callable[[Path, int, float], Generator]] = {
    "diffgraph-euler": diffgraph_generator,
    "diffgraph-dpmpp_2m": diffgraph_dpmpp_2m_karras,
    "diffusers-euler": diffusers_factory("euler"),
    "diffusers-dpmpp_2m": diffusers_factory("dpmpp_2m"),
}


def resolve_generator(name: str) -> Callable[[Path, int, float], Generator]:
    if name in GENERATORS:
        return GENERATORS[name]
    module, _, function = name.partition(":")
    if not function:
        raise SystemExit(f"--generator: {name!r} is neither one of {sorted(GENERATORS)} nor 'module:function'")
    return getattr(importlib.import_module(module), function)


def prompt_set(held_out: bool, seeds: int, limit: int | None) -> tuple[list[str], list[int], list[tuple]]:
    attributes = dataset.evaluation_prompts(held_out=held_out)
    if limit:
        attributes = [attributes[i] for i in np.linspace(0, len(attributes) - 1, limit).round().astype(int)]
    attributes = [a for a in attributes for _ in range(seeds)]
    prompts = [dataset.full_caption(*a) for a in attributes]
    return prompts, list(range(len(prompts))), attributes


def report(title: str, metrics: dict[str, float], count: int, seconds: float) -> None:
    cells = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    print(f"{title:<36} n={count:<4} {cells}   ({seconds / count:.2f} s/image)")


def base_quality(args: argparse.Namespace) -> None:
    generate = resolve_generator(args.generator)(args.folder, args.steps, args.cfg)
    for title, held_out, limit in (("held-out prompts", True, args.limit), ("training prompts (sample)", False, 60)):
        prompts, seeds, attributes = prompt_set(held_out, args.seeds, limit)
        start = time.perf_counter()
        images = generate(prompts, seeds)
        metrics = score(images, attributes)
        report(title, metrics, len(images), time.perf_counter() - start)
        if held_out:
            verdict = ", ".join(f"{k} {'ok' if metrics[k] >= v else 'BELOW'} (goal {v})" for k, v in GOALS.items())
            print(f"{'':<36} {verdict}")


def controlnet_quality(args: argparse.Namespace) -> None:
    from PIL import Image

    from training.train_controlnet import edge_following_set, edge_scores

    vae, text_encoder, unet = load_modules(args.folder)
    controlnet = load_controlnet(unet, args.folder)
    generate = pipeline_generator(pipeline(vae, text_encoder, unet, controlnet=controlnet), args.steps, args.cfg)
    prompts, hints, specs = edge_following_set(args.controlnet_count)
    hint_images = [Image.fromarray(h) for h in hints]
    start = time.perf_counter()
    images = generate(prompts, range(len(prompts)), image=hint_images)
    report("ControlNet, prompt without position", edge_scores(images, specs), len(images), time.perf_counter() - start)
    # The prompt names the opposite position: the edges should still win.
    opposite = {name: next(n for n, c in dataset.POSITIONS.items() if c == (2 - r, 2 - k))
                for name, (r, k) in dataset.POSITIONS.items()}
    conflicting = [dataset.caption(dataset.Spec(s.shape, s.colour, opposite[s.position], s.background)) for s in specs]
    keep = [i for i, s in enumerate(specs) if s.position != "center"]
    start = time.perf_counter()
    images = generate([conflicting[i] for i in keep], keep, image=[hint_images[i] for i in keep])
    report("ControlNet, prompt says opposite", edge_scores(images, [specs[i] for i in keep]), len(keep),
           time.perf_counter() - start)


def lora_quality(args: argparse.Namespace) -> None:
    from training.train_lora import outlined_fraction

    vae, text_encoder, unet = load_modules(args.folder)
    pipe = pipeline(vae, text_encoder, unet)
    prompts, seeds, attributes = prompt_set(True, 1, args.limit)
    generate = pipeline_generator(pipe, args.steps, args.cfg)
    without = generate(prompts, seeds)
    patched = load_lora(pipe, args.folder)
    start = time.perf_counter()
    styled = generate(prompts, seeds)
    seconds = time.perf_counter() - start
    pipe.set_adapters(["style"], adapter_weights=[0.0])
    at_zero = generate(prompts[:16], seeds[:16])
    print(f"LoRA: {patched} modules patched (kohya file via diffusers load_lora_weights)")
    report("no LoRA", {"outlined": outlined_fraction(without), **score(without, attributes)}, len(without), 0.0)
    report("LoRA strength 1", {"outlined": outlined_fraction(styled), **score(styled, attributes)}, len(styled),
           seconds)
    difference = np.abs(at_zero.astype(int) - without[:16].astype(int)).max()
    changed = np.abs(styled.astype(int) - without.astype(int)).mean()
    print(f"{'LoRA strength 0 vs no LoRA':<36} max |Δ| {difference}/255")
    print(f"{'LoRA strength 1 vs no LoRA':<36} mean |Δ| {changed:.1f}/255")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="diffgraph-euler", help=f"{sorted(GENERATORS)} or module:function")
    parser.add_argument("--folder", type=Path, default=DEFAULT_OUT, help="where the demo files are")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=6.0)
    parser.add_argument("--seeds", type=int, default=1, help="images per held-out prompt")
    parser.add_argument("--limit", type=int, default=None, help="use only this many held-out prompts")
    parser.add_argument("--controlnet-count", type=int, default=116)
    parser.add_argument("--skip-controlnet", action="store_true")
    parser.add_argument("--skip-lora", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"demo model quality: {args.generator}, {args.steps} steps, cfg {args.cfg}, files in {args.folder}")
    base_quality(args)
    if not args.skip_controlnet:
        controlnet_quality(args)
    if not args.skip_lora:
        lora_quality(args)


if __name__ == "__main__":
    main()
