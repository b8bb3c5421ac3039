"""SD1.5-architecture txt2img: diffgraph's workflow vs diffusers' pipeline on the same reduced-width weights.

    python bench/sampling.py [--size 256] [--steps 20] [--rounds 3] [--threads 1] [--sampler-size 64] [--keep DIR]
    python bench/sampling.py --sdxl        # = bench/sampling_sdxl.py (base + refiner)
    python bench/sampling.py --adapters    # = bench/sampling_adapters.py (LoRA + ControlNet + IP-Adapter)

Built in-process with random weights (UNet block_out_channels (128, 256, 512, 512), the SD1.5 layout) and saved as a
single .safetensors file + LDM .yaml; diffusers loads the same file with `from_single_file`. Printed, not asserted:
1. ours / diffusers wall time: cold runs (imports + load + encode + 20 steps dpmpp_2m karras + decode), each in a
   fresh process, the two sides alternated; and warm runs (new seed) alternated in one process holding both; best of
   --rounds each (goal ≤ 1.00); peak RSS of each side's fresh processes (goal ≤ 1.1);
2. seed-only re-runs: model loads and text encodes (must be 0), and the re-run time relative to our sampler and VAE
   decode called directly, without the graph (goal ≤ 1.05);
3. samplers × schedules available, and each sampler's 20-step time relative to euler with its UNet calls per step.
Every process uses the same torch thread count (--threads); alternating the warm runs keeps a busy machine from
favouring either side.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT, NEGATIVE, CFG, SEED = "a photo of a red fox in the snow, detailed", "blurry", 7.0, 1
CHECKPOINT = "sd15_bench.safetensors"
TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 6, "num_attention_heads": 8,
        "vocab_size": 49408, "max_position_embeddings": 77}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "prediction_type": "epsilon"}


def build(root: Path) -> None:
    """The reduced-width SD1.5 model: single file + yaml in root/models/checkpoints, configs in root/config."""
    import torch
    import yaml
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodes.sd.ldm_layout import pipeline_to_single_file
    from nodes.sd.ldm_layout_yaml import ldm_yaml_config
    from nodes.sd.tokenizers import clip_tokenizer

    torch.manual_seed(0)
    text_config = CLIPTextConfig(**TEXT)
    components = {
        "unet": UNet2DConditionModel(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                     cross_attention_dim=TEXT["hidden_size"], attention_head_dim=8, sample_size=32),
        "vae": AutoencoderKL(block_out_channels=(64, 128, 256, 256), down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                             sample_size=256),
        "text_encoder": CLIPTextModel(text_config),
    }
    folder = root / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tensors = pipeline_to_single_file(components, "sd1")
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / CHECKPOINT)
    config = ldm_yaml_config("sd1", dict(components["unet"].config), dict(components["vae"].config),
                             {"text_encoder": text_config.to_dict()}, SCHEDULER)
    (folder / CHECKPOINT).with_suffix(".yaml").write_text(yaml.safe_dump(config))
    # diffusers' from_single_file needs a config folder for a non-standard model (no weights in it).
    pipe = StableDiffusionPipeline(**components, tokenizer=clip_tokenizer(), scheduler=DDIMScheduler(**SCHEDULER),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    config_dir = root / "config"
    pipe.save_config(config_dir)
    for name in ("unet", "vae", "scheduler"):
        getattr(pipe, name).save_config(config_dir / name)
    pipe.text_encoder.config.save_pretrained(config_dir / "text_encoder")
    pipe.tokenizer.save_pretrained(config_dir / "tokenizer")


def workflow(size: int, steps: int, seed: int) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["ckpt", 1]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "seed": seed, "steps": steps, "cfg": CFG, "sampler_name": "dpmpp_2m",
            "scheduler": "karras", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["empty", 0],
            "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


class Ours:
    """Our workflow through the executor (only the seed changes between runs), and our parts called directly."""

    def __init__(self, root: Path) -> None:
        from graphcore import folders
        from graphcore.executor import Executor
        from graphcore.registry import discover

        found = folders.configure(folders.Folders(root / "models", root / "in", root / "out", root / "tmp").create())
        self.root = root
        self.executor = Executor(discover(), folders=found)
        self.loads: list[int] = []
        self.encodes: list[int] = []
        self.direct: tuple | None = None

    def run(self, size: int, steps: int, seed: int) -> None:
        from nodes.sd.model_manager import manager

        before = manager().loads
        result = self.executor.run(workflow(size, steps, seed))
        if not result.ok:
            raise RuntimeError(result.error.exception_message)
        self.loads.append(manager().loads - before)
        self.encodes.append(sum(node in ("pos", "neg") for node in result.executed))

    def run_direct(self, size: int, steps: int, seed: int) -> tuple[float, float]:
        """Sampler and VAE decode called directly (no graph, no progress previews) on the same loaded modules."""
        import torch

        from nodes.sd.ksampler import SamplerSettings
        from nodes.sd.ksampler import run as sample
        from nodes.sd.vae_ops import decode
        from nodes.values import Latent

        model, vae, positive, negative = self._direct_inputs()
        latent = Latent(torch.zeros(1, 4, size // 8, size // 8))
        started = time.perf_counter()
        out = sample(None, model, positive, negative, latent, SamplerSettings(seed, steps, CFG, "dpmpp_2m", "karras"))
        sampled = time.perf_counter()
        decode(vae, out.samples)
        return sampled - started, time.perf_counter() - sampled

    def _direct_inputs(self) -> tuple:
        if self.direct is None:
            from nodes.sd.loading import load_checkpoint
            from nodes.sd.model_manager import manager
            from nodes.sd.text_encoding import encode

            loads = manager().loads
            model, clip, vae = load_checkpoint(self.root / "models" / "checkpoints" / CHECKPOINT)
            assert manager().loads == loads, "the direct calls must reuse the loaded modules"
            self.direct = (model, vae, (encode(clip, PROMPT),), (encode(clip, NEGATIVE),))
        return self.direct


class Diffusers:
    def __init__(self, root: Path) -> None:
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

        from nodes.sd.tokenizers import clip_tokenizer

        scheduler = DPMSolverMultistepScheduler(**SCHEDULER, use_karras_sigmas=True, final_sigmas_type="zero",
                                                timestep_spacing="linspace", solver_order=2)
        self.pipe = StableDiffusionPipeline.from_single_file(
            str(root / "models" / "checkpoints" / CHECKPOINT), config=str(root / "config"), local_files_only=True,
            tokenizer=clip_tokenizer(), scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        self.pipe.set_progress_bar_config(disable=True)

    def run(self, size: int, steps: int, seed: int) -> None:
        import torch

        with torch.no_grad():
            self.pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=CFG, height=size,
                      width=size, generator=torch.Generator().manual_seed(seed), output_type="pil")


def cold(side: str, root: Path, args: argparse.Namespace) -> dict:
    """A fresh process: imports + load + first run, then one warm run (for the peak RSS of normal use)."""
    started = time.perf_counter()
    runner = Ours(root) if side == "ours" else Diffusers(root)
    runner.run(args.size, args.steps, SEED)
    first = time.perf_counter() - started
    runner.run(args.size, args.steps, SEED + 1)
    extra = {"loads": runner.loads, "encodes": runner.encodes} if side == "ours" else {}
    return {"cold": first, **extra}


class ComputeClock:
    """Seconds spent inside the UNet and the VAE decoder: what is left of a run's wall time is overhead (graph,
    scheduler, previews, image conversion), measured within the same run and so immune to background load drift."""

    def __init__(self, unet, vae) -> None:
        self.seconds = 0.0
        self._started = 0.0
        for module in (unet, vae.decoder):
            module.register_forward_pre_hook(self._start)
            module.register_forward_hook(self._stop)

    def _start(self, *_) -> None:
        self._started = time.perf_counter()

    def _stop(self, *_) -> None:
        self.seconds += time.perf_counter() - self._started


def warm(root: Path, args: argparse.Namespace) -> dict:
    """Both sides loaded in one process; warm runs alternate so background load hits them alike."""
    ours, theirs = Ours(root), Diffusers(root)
    ours.run(args.size, args.steps, SEED)
    theirs.run(args.size, args.steps, SEED)
    model, vae = ours._direct_inputs()[:2]
    clocks = {"ours": ComputeClock(model.unet.module, vae.vae.module),
              "diffusers": ComputeClock(theirs.pipe.unet, theirs.pipe.vae)}
    times: dict[str, list[float]] = {"ours": [], "diffusers": [], "sample": [], "decode": [], "ours_overhead": [],
                                     "diffusers_overhead": []}
    for i in range(args.rounds):
        seed = SEED + 1 + i
        for name, runner in (("ours", ours), ("diffusers", theirs)):
            clocks[name].seconds = 0.0
            started = time.perf_counter()
            runner.run(args.size, args.steps, seed)
            times[name].append(time.perf_counter() - started)
            times[f"{name}_overhead"].append(times[name][-1] - clocks[name].seconds)
        sample_time, decode_time = ours.run_direct(args.size, args.steps, seed)
        times["sample"].append(sample_time)
        times["decode"].append(decode_time)
    return {"times": times, "loads": ours.loads[1:], "encodes": ours.encodes[1:]}


def samplers(root: Path, args: argparse.Namespace) -> dict:
    """Each sampler's run through our KSampler implementation, timed, with its UNet calls counted."""
    import torch

    from nodes.samplers.names import SAMPLER_NAMES, SCHEDULER_NAMES
    from nodes.sd.ksampler import SamplerSettings
    from nodes.sd.ksampler import run as sample
    from nodes.sd.loading import load_checkpoint
    from nodes.sd.text_encoding import encode
    from nodes.values import Latent

    model, clip, _ = load_checkpoint(root / "models" / "checkpoints" / CHECKPOINT)
    positive, negative = (encode(clip, PROMPT),), (encode(clip, NEGATIVE),)
    latent = Latent(torch.zeros(1, 4, args.sampler_size // 8, args.sampler_size // 8))
    calls = [0]
    model.unet.module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    sample(None, model, positive, negative, latent, SamplerSettings(SEED, 2, CFG, "euler", "karras"))  # warm-up
    rows = {}
    for name in SAMPLER_NAMES:
        calls[0] = 0
        started = time.perf_counter()
        sample(None, model, positive, negative, latent, SamplerSettings(SEED, args.steps, CFG, name, "karras"))
        rows[name] = {"time": time.perf_counter() - started, "calls": calls[0]}
    return {"samplers": rows, "schedules": len(SCHEDULER_NAMES)}


CHILDREN = {
    "cold_ours": lambda root, args: cold("ours", root, args),
    "cold_diffusers": lambda root, args: cold("diffusers", root, args),
    "warm": warm,
    "samplers": samplers,
}


def child(name: str, root: Path, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = CHILDREN[name](root, args)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(name: str, root: Path, argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv, "--child", name, str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, results: dict[str, dict]) -> None:
    ours_cold, theirs_cold, warm_runs = results["cold_ours"], results["cold_diffusers"], results["warm"]
    times = {kind: min(values) for kind, values in warm_runs["times"].items()}
    print(f"SD1.5-architecture (UNet 128/256/512/512) {args.size}x{args.size}, {args.steps} steps dpmpp_2m karras, "
          f"cfg {CFG}, {args.threads} thread(s)")
    print(f"  cold run, fresh process (imports+load+encode+sample+decode), best of {args.rounds} alternated: ours "
          f"{ours_cold['cold']:.2f} s, diffusers {theirs_cold['cold']:.2f} s, ratio "
          f"{ours_cold['cold'] / theirs_cold['cold']:.3f} (goal ≤ 1.00)")
    print(f"    all cold runs: ours {[round(t, 2) for t in ours_cold['all_cold']]}, "
          f"diffusers {[round(t, 2) for t in theirs_cold['all_cold']]}")
    print(f"  warm run, new seed, best of {args.rounds} alternated: ours {times['ours']:.2f} s, diffusers "
          f"{times['diffusers']:.2f} s, ratio {times['ours'] / times['diffusers']:.3f} (goal ≤ 1.00)")
    print(f"    all warm runs: { {k: [round(v, 2) for v in vs] for k, vs in warm_runs['times'].items()} }")
    print(f"  peak RSS, fresh process: ours {ours_cold['peak_mb']:.0f} MB, diffusers {theirs_cold['peak_mb']:.0f} MB, "
          f"ratio {ours_cold['peak_mb'] / theirs_cold['peak_mb']:.3f} (goal ≤ 1.1)")
    print(f"  seed-only re-runs: model loads {warm_runs['loads']}, text encodes {warm_runs['encodes']} (must be 0); "
          f"cold run: {ours_cold['loads'][0]} loads, {ours_cold['encodes'][0]} encodes")
    print(f"  time outside the UNet and VAE decoder per warm run (same runs, drift-free): ours "
          f"{times['ours_overhead']:.3f} s, diffusers {times['diffusers_overhead']:.3f} s")
    direct = times["sample"] + times["decode"]
    print(f"  re-run {times['ours']:.2f} s vs our sampler + decode called directly {direct:.2f} s (sample "
          f"{times['sample']:.2f} s, decode {times['decode']:.2f} s): ratio {times['ours'] / direct:.3f} (goal ≤ 1.05)")
    rows = results["samplers"]["samplers"]
    euler = rows["euler"]["time"]
    print(f"  samplers × schedules available: {len(rows)} × {results['samplers']['schedules']} = "
          f"{len(rows) * results['samplers']['schedules']}; {args.steps}-step runs at "
          f"{args.sampler_size}x{args.sampler_size}, karras, time relative to euler:")
    for name, row in rows.items():
        print(f"    {name:24s} {row['time'] / euler:5.2f}×  UNet calls {row['calls']:3d} "
              f"({row['calls'] / args.steps:.2f} per step)")


VARIANTS = {"--sdxl": "sampling_sdxl.py", "--adapters": "sampling_adapters.py"}


def main() -> None:
    variant = next((flag for flag in VARIANTS if flag in sys.argv[1:]), None)
    if variant:  # the same benchmark for other model families and adapters lives in its own script
        import runpy

        sys.argv = [VARIANTS[variant], *(a for a in sys.argv[1:] if a != variant)]
        runpy.run_path(str(Path(__file__).with_name(VARIANTS[variant])), run_name="__main__")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternated warm runs per side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampler-size", type=int, default=64, help="pixel side for the per-sampler table")
    parser.add_argument("--keep", type=Path, help="build the model here (or reuse it) instead of a temp folder")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args)
        return
    argv = [f"--size={args.size}", f"--steps={args.steps}", f"--rounds={args.rounds}", f"--threads={args.threads}",
            f"--sampler-size={args.sampler_size}"]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        if not (root / "models" / "checkpoints" / CHECKPOINT).is_file():
            build(root)
        colds: dict[str, list[dict]] = {"cold_ours": [], "cold_diffusers": []}
        for _ in range(args.rounds):  # fresh processes, alternated: the best cold time of each side
            for name in colds:
                colds[name].append(measure(name, root, argv))
        results = {name: _best_cold(runs) for name, runs in colds.items()}
        results.update((name, measure(name, root, argv)) for name in ("warm", "samplers"))
    report(args, results)


def _best_cold(runs: list[dict]) -> dict:
    best = min(runs, key=lambda run: run["cold"])
    return {**best, "all_cold": [run["cold"] for run in runs], "peak_mb": max(run["peak_mb"] for run in runs)}


if __name__ == "__main__":
    main()
