"""Train the demo text encoder + UNet together (SD1 layout, ε-prediction, standard DDPM schedule).

- Data: latents of procedural images (encoded once with the trained VAE and cached), captions drawn per step
  (sometimes without position or background; 10% empty so classifier-free guidance works).
- Loss: ε-MSE weighted by 1/ᾱ_t (see diffusion.WeightedEpsilonLoss).
- EMA of both modules; the EMA weights are what gets exported.

    python -m training.train_unet [--steps 6000] [--work-dir /work/demo_work]
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from training import dataset
from training.common import EMA, Checkpointer, Log, arguments, optimizer_step, step_generator
from training.diffusion import (
    WeightedEpsilonLoss,
    cosine_with_warmup,
    encode_latents,
    load_vae,
    token_ids,
    training_captions,
)
from training.generate import pipeline, pipeline_generator, score
from training.models import build_text_encoder, build_unet

DATA_SEED = 202
VALIDATION_PROMPTS = 60


def validation_set() -> tuple[list[str], list[tuple[str, str, str, str]]]:
    prompts = dataset.evaluation_prompts(held_out=True)
    picked = [prompts[i] for i in np.linspace(0, len(prompts) - 1, VALIDATION_PROMPTS).round().astype(int)]
    return [dataset.full_caption(*p) for p in picked], picked


def save_grid(images: np.ndarray, path, columns: int = 10) -> None:
    rows = len(images) // columns
    grid = images[: rows * columns].reshape(rows, columns, 64, 64, 3).transpose(0, 2, 1, 3, 4)
    Image.fromarray(grid.reshape(rows * 64, columns * 64, 3)).save(path)


def validate(vae, text_encoder, unet, folder, step: int) -> dict[str, float]:
    prompts, attributes = validation_set()
    images = pipeline_generator(pipeline(vae, text_encoder, unet), steps=20, cfg=6.0)(prompts, range(len(prompts)))
    save_grid(images, folder / f"samples_{step:06d}.png")
    return {k: round(v, 3) for k, v in score(images, attributes).items()}


def main() -> None:
    # lr_floor 1.0: constant LR after warm-up (EMA does the averaging), so a run stopped at step N equals a run
    # with --steps N, and a finished run can be extended.
    args = arguments(__doc__, steps=6000, batch_size=64, lr=5e-4, lr_floor=1.0, images=40000, ema=0.999,
                     validate_every=500)
    folder = args.work_dir / "unet"
    folder.mkdir(parents=True, exist_ok=True)
    latents = encode_latents(args.work_dir, args.images, "filled", DATA_SEED)
    specs = [dataset.sample_spec(DATA_SEED, i) for i in range(args.images)]
    vae = load_vae(args.work_dir)

    text_encoder, unet = build_text_encoder(), build_unet()
    parameters = list(text_encoder.parameters()) + list(unet.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(args.steps, args.lr_floor))
    ema = EMA(parameters, args.ema)
    checkpoints = Checkpointer(folder, {"text_encoder": text_encoder, "unet": unet, "optimizer": optimizer,
                                        "scheduler": scheduler, "ema": ema})
    start = checkpoints.resume()
    log = Log(folder)
    loss_fn = WeightedEpsilonLoss()
    eval_te, eval_unet = copy.deepcopy(text_encoder).eval(), copy.deepcopy(unet).eval()

    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="TE+UNet", dynamic_ncols=True)
    for step in progress:
        generator = step_generator(args.seed, step)
        indices = torch.randint(0, args.images, (args.batch_size,), generator=generator).tolist()
        captions = training_captions(args.seed, step, [specs[i] for i in indices])
        noisy, noise, timesteps = loss_fn.noisy(latents[indices].float(), generator)
        context = text_encoder(torch.stack([token_ids(c) for c in captions])).last_hidden_state
        loss = loss_fn(unet(noisy, timesteps, context).sample, noise, timesteps)
        optimizer_step(loss, optimizer, scheduler, parameters)
        ema.update(step)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.validate_every == 0 or step + 1 == args.steps:
            ema.copy_to(list(eval_te.parameters()) + list(eval_unet.parameters()))
            metrics = validate(vae, eval_te, eval_unet, folder, step + 1)
            log.write(step + 1, loss=round(loss.item(), 5), **metrics)
            progress.write(f"step {step + 1}: {metrics}")
        checkpoints.maybe_save(step + 1)
    checkpoints.save(args.steps)
    ema.copy_to(list(eval_te.parameters()) + list(eval_unet.parameters()))
    eval_te.save_pretrained(folder / "final" / "text_encoder")
    eval_unet.save_pretrained(folder / "final" / "unet")
    print(f"saved {folder / 'final'} ({log.elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
