"""Train the demo VAE (SD1 AutoencoderKL layout, f = 8, 4 latent channels) on the procedural shapes.

Full 64x64 resolution, L1 + MSE with the shape's pixels weighted up (a shape is ~8% of the image but all of
its meaning), a tiny KL term as in SD. Filled and outlined shapes (the LoRA's style) are both seen.

    python -m training.train_vae [--steps 2400] [--work-dir /work/demo_work]
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import checker, dataset
from training.common import Checkpointer, Log, arguments, images_to_tensor, step_generator, tensor_to_images
from training.models import build_vae

DATA_SEED = 101
VALIDATION_SEED = 999


def batch(step: int, size: int, outlined_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    specs = [dataset.sample_styled(DATA_SEED, step * size + i, outlined_fraction) for i in range(size)]
    images = np.stack([dataset.render(s) for s in specs])
    background = np.array([s.bg_rgb for s in specs], np.float32)[:, None, None, :]
    foreground = (np.abs(images.astype(np.float32) - background).max(axis=-1) > 8).astype(np.float32)
    # Dilate: the pixels just outside an edge matter as much as those inside it.
    mask = F.max_pool2d(torch.from_numpy(foreground)[:, None], kernel_size=5, stride=1, padding=2)
    return images_to_tensor(images), mask


def loss_fn(vae, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, fg_weight: float, kl_weight: float):
    posterior = vae.encode(x).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    weight = 1.0 + fg_weight * mask
    error = reconstruction - x
    pixel = ((error.abs() + error.square()) * weight).mean() / weight.mean()
    return pixel + kl_weight * posterior.kl().mean(), pixel


@torch.no_grad()
def validate(vae) -> dict[str, float]:
    """PSNR and how often the analytic checker still reads every attribute correctly after a round trip."""
    specs = [dataset.sample_styled(VALIDATION_SEED, i, 0.33) for i in range(192)]
    images = np.stack([dataset.render(s) for s in specs])
    x = images_to_tensor(images)
    reconstruction = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = (reconstruction - x).square().mean().item() / 4.0  # in [0, 1] units
    decoded = tensor_to_images(reconstruction)
    hits = {"shape": 0, "colour": 0, "position": 0, "style": 0}
    for spec, image in zip(specs, decoded, strict=True):
        result = checker.analyse(image)
        hits["shape"] += result.shape == spec.shape
        hits["colour"] += result.colour == spec.colour
        hits["position"] += result.position == spec.position
        hits["style"] += result.style == spec.style
    return {"psnr": round(10 * math.log10(1.0 / mse), 2), **{k: round(v / len(specs), 3) for k, v in hits.items()}}


@torch.no_grad()
def latent_scale(vae, count: int = 1024) -> float:
    """1 / std of the latents, as SD's 0.18215: the UNet then sees unit-variance latents."""
    images = np.stack([dataset.render(dataset.sample_styled(DATA_SEED + 1, i, 0.25)) for i in range(count)])
    latents = torch.cat([vae.encode(images_to_tensor(images[i : i + 128])).latent_dist.mode() for i in
                         range(0, count, 128)])
    return float(1.0 / latents.std())


def main() -> None:
    args = arguments(__doc__, steps=2400, batch_size=32, lr=1e-3, outlined_fraction=0.25, fg_weight=10.0,
                     kl_weight=1e-7, validate_every=200)
    folder = args.work_dir / "vae"
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = 100

    def lr_at(step: int) -> float:
        progress = min(1.0, step / args.steps)
        return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    checkpoints = Checkpointer(folder, {"vae": vae, "optimizer": optimizer, "scheduler": scheduler})
    start = checkpoints.resume()
    log = Log(folder)
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="VAE", dynamic_ncols=True)
    for step in progress:
        x, mask = batch(step, args.batch_size, args.outlined_fraction)
        loss, pixel = loss_fn(vae, x, mask, step_generator(args.seed, step), args.fg_weight, args.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        progress.set_postfix(loss=f"{pixel.item():.4f}")
        if (step + 1) % args.validate_every == 0 or step + 1 == args.steps:
            metrics = validate(vae)
            log.write(step + 1, loss=round(pixel.item(), 5), **metrics)
            progress.write(f"step {step + 1}: {metrics}")
        checkpoints.maybe_save(step + 1)
    checkpoints.save(args.steps)
    vae.register_to_config(scaling_factor=latent_scale(vae))
    vae.save_pretrained(folder / "final")
    print(f"saved {folder / 'final'} (scaling_factor {vae.config.scaling_factor:.4f}, {log.elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
