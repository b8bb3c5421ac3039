"""What every training script shares: set-up, seeded per-step randomness, EMA, resumable checkpoints, logging."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DEFAULT_WORK_DIR = Path(os.environ.get("DEMO_WORK_DIR", "/work/demo_work"))
CHECKPOINT_EVERY_S = 180.0


def arguments(description: str, **defaults: Any) -> argparse.Namespace:
    """Common command-line options; `defaults` adds script-specific ones (name=default, type from the default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="checkpoints, caches and logs")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    for name, value in defaults.items():
        kind = type(value) if value is not None else str
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return args


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The randomness of one training step depends only on (seed, step): resuming replays the same batches."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 31 + stream) % (2**63))


def optimizer_step(loss: torch.Tensor, optimizer: Any, scheduler: Any, parameters: list[torch.nn.Parameter],
                   clip_norm: float = 1.0) -> None:
    """One update, the same in every training here: backward, clip the gradient norm, step, advance the LR."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
    optimizer.step()
    scheduler.step()


class EMA:
    """Exponential moving average of parameters with the usual warm-up (decay grows with the step count)."""

    def __init__(self, parameters: Iterable[torch.nn.Parameter], decay: float) -> None:
        self.parameters = list(parameters)
        self.shadow = [p.detach().clone() for p in self.parameters]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            shadow.lerp_(param.detach(), 1 - decay)

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        for shadow, param in zip(self.shadow, parameters, strict=True):
            param.copy_(shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for shadow, saved in zip(self.shadow, state["shadow"], strict=True):
            shadow.copy_(saved)


class Checkpointer:
    """Saves {modules, optimizer, ema, step} atomically every few minutes; `resume` restores the latest."""

    def __init__(self, folder: Path, objects: dict[str, Any], every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.folder = folder
        self.path = folder / "checkpoint.pt"
        self.objects = objects
        self.every_s = every_s
        self.last = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)

    def resume(self) -> int:
        if not self.path.is_file():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name, obj in self.objects.items():
            obj.load_state_dict(state[name])
        return int(state["step"])

    def save(self, step: int) -> None:
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        state["step"] = step
        temporary = self.path.with_suffix(".tmp")
        torch.save(state, temporary)
        temporary.replace(self.path)
        self.last = time.monotonic()

    def maybe_save(self, step: int) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.save(step)


class Log:
    """Appends JSON lines (step, metrics, elapsed seconds across resumes) to <folder>/log.jsonl."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "log.jsonl"
        self.start = time.monotonic()
        self.previous_elapsed = 0.0
        if self.path.is_file():
            lines = self.path.read_text().strip().splitlines()
            if lines:
                self.previous_elapsed = json.loads(lines[-1]).get("elapsed_s", 0.0)

    @property
    def elapsed(self) -> float:
        return self.previous_elapsed + time.monotonic() - self.start

    def write(self, step: int, **metrics: float) -> None:
        record = {"step": step, "elapsed_s": round(self.elapsed, 1), **metrics}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def images_to_tensor(images: Any) -> torch.Tensor:
    """uint8 [B, H, W, 3] numpy → float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_images(x: torch.Tensor) -> Any:
    """float [B, 3, H, W] in [-1, 1] → uint8 [B, H, W, 3] numpy (rounded)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
