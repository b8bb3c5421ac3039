"""Train the demo ControlNet: Canny edge maps of the shapes → the shape drawn where the edges are.

diffusers' `ControlNetModel.from_unet` copies the trained UNet's encoder (zero-initialised output convs, the
standard 16-32-96-256 hint encoder); the text encoder and UNet stay frozen. Captions are often empty or without
position (the edges must carry shape and layout; the prompt still picks colour and background).

    python -m training.train_controlnet [--steps 1500] [--work-dir /work/demo_work]
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from tqdm import tqdm

from training import dataset
from training.common import EMA, Checkpointer, Log, arguments, optimizer_step, step_generator
from training.diffusion import (
    WeightedEpsilonLoss,
    cosine_with_warmup,
    encode_latents,
    load_base,
    token_ids,
    training_captions,
)
from training.generate import pipeline, pipeline_generator
from training.train_unet import DATA_SEED, save_grid

EMPTY_CAPTION = 0.3
DROP_POSITION = 0.5
VALIDATION_SEED = 4242


def hint_tensor(images: np.ndarray) -> torch.Tensor:
    """Canny maps of uint8 images as ControlNet input: float [B, 3, H, W] in [0, 1]."""
    edges = np.stack([dataset.canny(image) for image in images])
    return torch.from_numpy(edges).permute(0, 3, 1, 2).float() / 255.0


def edge_following_set(count: int, seed: int = VALIDATION_SEED) -> tuple[list[str], list, list[dataset.Spec]]:
    """Held-out triples drawn as reference images; prompts name colour, shape and background but no position."""
    prompts_attributes = dataset.evaluation_prompts(held_out=True)
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        shape, colour, position, background = prompts_attributes[i % len(prompts_attributes)]
        specs.append(dataset.make_spec(rng, (shape, colour, position), background))
    prompts = [dataset.caption(s, with_position=False) for s in specs]
    hints = [dataset.canny(dataset.render(s)) for s in specs]
    return prompts, hints, specs


def edge_scores(images: np.ndarray, specs: list[dataset.Spec]) -> dict[str, float]:
    """How often the generated shape sits where the edges are, has their shape, and the prompt's colour."""
    from training import checker

    results = [checker.analyse(image) for image in images]
    n = len(specs)
    return {
        "position": sum(r.position == s.position for r, s in zip(results, specs, strict=True)) / n,
        "shape": sum(r.shape == s.shape for r, s in zip(results, specs, strict=True)) / n,
        "colour": sum(r.colour == s.colour for r, s in zip(results, specs, strict=True)) / n,
    }


def validate(vae, text_encoder, unet, controlnet, folder, step: int, count: int = 40) -> dict[str, float]:
    from PIL import Image

    prompts, hints, specs = edge_following_set(count)
    generate = pipeline_generator(pipeline(vae, text_encoder, unet, controlnet=controlnet), steps=20, cfg=6.0)
    images = generate(prompts, range(count), image=[Image.fromarray(h) for h in hints])
    save_grid(np.concatenate([np.stack(hints[:10]), images[:30]]), folder / f"samples_{step:06d}.png")
    return {k: round(v, 3) for k, v in edge_scores(images, specs).items()}


def main() -> None:
    args = arguments(__doc__, steps=1500, batch_size=64, lr=5e-4, images=40000, ema=0.999, validate_every=500)
    from diffusers import ControlNetModel

    folder = args.work_dir / "controlnet"
    folder.mkdir(parents=True, exist_ok=True)
    vae, text_encoder, unet = load_base(args.work_dir)
    latents = encode_latents(args.work_dir, args.images, "filled", DATA_SEED)
    specs = [dataset.sample_spec(DATA_SEED, i) for i in range(args.images)]

    @functools.cache
    def context(caption: str) -> torch.Tensor:
        with torch.no_grad():
            return text_encoder(token_ids(caption)[None]).last_hidden_state[0]

    controlnet = ControlNetModel.from_unet(unet)
    parameters = list(controlnet.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(args.steps))
    ema = EMA(parameters, args.ema)
    checkpoints = Checkpointer(folder, {"controlnet": controlnet, "optimizer": optimizer, "scheduler": scheduler,
                                        "ema": ema})
    start = checkpoints.resume()
    log = Log(folder)
    loss_fn = WeightedEpsilonLoss()
    eval_controlnet = ControlNetModel.from_unet(unet).eval()

    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="ControlNet", dynamic_ncols=True)
    for step in progress:
        generator = step_generator(args.seed, step)
        indices = torch.randint(0, args.images, (args.batch_size,), generator=generator).tolist()
        batch_specs = [specs[i] for i in indices]
        captions = training_captions(args.seed, step, batch_specs, empty=EMPTY_CAPTION, drop_position=DROP_POSITION)
        hint = hint_tensor(np.stack([dataset.render(s) for s in batch_specs]))
        noisy, noise, timesteps = loss_fn.noisy(latents[indices].float(), generator)
        ctx = torch.stack([context(c) for c in captions])
        down, mid = controlnet(noisy, timesteps, ctx, controlnet_cond=hint, return_dict=False)
        prediction = unet(noisy, timesteps, ctx, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
        loss = loss_fn(prediction, noise, timesteps)
        optimizer_step(loss, optimizer, scheduler, parameters)
        ema.update(step)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.validate_every == 0 or step + 1 == args.steps:
            ema.copy_to(eval_controlnet.parameters())
            metrics = validate(vae, text_encoder, unet, eval_controlnet, folder, step + 1)
            log.write(step + 1, loss=round(loss.item(), 5), **metrics)
            progress.write(f"step {step + 1}: {metrics}")
        checkpoints.maybe_save(step + 1)
    checkpoints.save(args.steps)
    ema.copy_to(eval_controlnet.parameters())
    eval_controlnet.save_pretrained(folder / "final")
    print(f"saved {folder / 'final'} ({log.elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
