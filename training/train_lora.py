"""Train the demo style LoRA: the same captions, but the shapes drawn as outlines instead of filled.

peft adapters on the frozen UNet (attention, feed-forward and resnet convolutions — an outline is a spatial
pattern, so the 3x3 convs need a low-rank update too) and on the text encoder's attention and MLP. Exported to
kohya's `lora_unet_*` / `lora_te_*` names by training/export.py.

    python -m training.train_lora [--steps 1500] [--work-dir /work/demo_work]
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from training import checker, dataset
from training.common import Checkpointer, Log, arguments, optimizer_step, step_generator
from training.diffusion import (
    WeightedEpsilonLoss,
    cosine_with_warmup,
    encode_latents,
    load_base,
    token_ids,
    training_captions,
)
from training.generate import pipeline, pipeline_generator
from training.train_unet import save_grid, validation_set

DATA_SEED = 303
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def add_adapters(text_encoder, unet, unet_rank: int, text_rank: int) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=unet_rank, lora_alpha=unet_rank, target_modules=UNET_TARGETS), "style")
    text_encoder.add_adapter(LoraConfig(r=text_rank, lora_alpha=text_rank, target_modules=TEXT_TARGETS), "style")
    parameters = [p for m in (text_encoder, unet) for n, p in m.named_parameters() if "lora_" in n]
    for parameter in parameters:
        parameter.requires_grad_(True)
    return parameters


def outlined_fraction(images: np.ndarray) -> float:
    return sum(checker.analyse(image).style == "outlined" for image in images) / len(images)


def validate(vae, text_encoder, unet, folder, step: int) -> dict[str, float]:
    from training.generate import score

    prompts, attributes = validation_set()
    prompts, attributes = prompts[:40], attributes[:40]
    images = pipeline_generator(pipeline(vae, text_encoder, unet), steps=20, cfg=6.0)(prompts, range(len(prompts)))
    save_grid(images, folder / f"samples_{step:06d}.png")
    metrics = score(images, attributes)
    return {"outlined": round(outlined_fraction(images), 3), **{k: round(v, 3) for k, v in metrics.items()}}


class _Adapters(torch.nn.Module):
    """The LoRA parameters as one module, for the checkpointer."""

    def __init__(self, parameters: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(parameters)


def main() -> None:
    args = arguments(__doc__, steps=1500, batch_size=64, lr=1e-3, images=10000, unet_rank=8, text_rank=4,
                     validate_every=300)
    folder = args.work_dir / "lora"
    folder.mkdir(parents=True, exist_ok=True)
    vae, text_encoder, unet = load_base(args.work_dir)
    latents = encode_latents(args.work_dir, args.images, "outlined", DATA_SEED)
    specs = [dataset.sample_spec(DATA_SEED, i, "outlined") for i in range(args.images)]
    parameters = add_adapters(text_encoder, unet, args.unet_rank, args.text_rank)
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(args.steps))
    checkpoints = Checkpointer(folder, {"adapters": _Adapters(parameters), "optimizer": optimizer,
                                        "scheduler": scheduler})
    start = checkpoints.resume()
    log = Log(folder)
    loss_fn = WeightedEpsilonLoss()

    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="LoRA", dynamic_ncols=True)
    for step in progress:
        generator = step_generator(args.seed, step)
        indices = torch.randint(0, args.images, (args.batch_size,), generator=generator).tolist()
        captions = training_captions(args.seed, step, [specs[i] for i in indices])
        noisy, noise, timesteps = loss_fn.noisy(latents[indices].float(), generator)
        context = text_encoder(torch.stack([token_ids(c) for c in captions])).last_hidden_state
        loss = loss_fn(unet(noisy, timesteps, context).sample, noise, timesteps)
        optimizer_step(loss, optimizer, scheduler, parameters)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.validate_every == 0 or step + 1 == args.steps:
            metrics = validate(vae, text_encoder, unet, folder, step + 1)
            log.write(step + 1, loss=round(loss.item(), 5), **metrics)
            progress.write(f"step {step + 1}: {metrics}")
        checkpoints.maybe_save(step + 1)
    checkpoints.save(args.steps)
    from peft.utils import get_peft_model_state_dict

    final = folder / "final"
    final.mkdir(exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name="style").items()},
              final / "unet_lora.safetensors", metadata={"rank": str(args.unet_rank), "alpha": str(args.unet_rank)})
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(text_encoder, adapter_name="style").items()},
              final / "text_encoder_lora.safetensors",
              metadata={"rank": str(args.text_rank), "alpha": str(args.text_rank)})
    print(f"saved {final} ({log.elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
