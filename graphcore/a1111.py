"""AUTOMATIC1111 "parameters" text: parse it, build a txt2img API graph from it, and write it.

    a photo of a cat, (masterpiece:1.2)
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, Model: v1-5

The last line holds `Key: value` pairs (a value with a comma, colon or newline is a JSON string); the lines
before it are the prompt, then, from the line starting "Negative prompt:", the negative prompt.
Sampler names map onto ComfyUI's sampler_name + scheduler through the tables below. Torch-free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from graphcore.folders import MODEL_FILE_EXTENSIONS

# A1111 sampler label → (ComfyUI sampler_name, the schedule A1111 uses for it under "Automatic").
SAMPLERS: dict[str, tuple[str, str]] = {
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "LMS": ("lms", "normal"),
    "Heun": ("heun", "normal"),
    "DPM2": ("dpm_2", "karras"),
    "DPM2 a": ("dpm_2_ancestral", "karras"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "karras"),
    "DPM++ 2M": ("dpmpp_2m", "karras"),
    "DPM++ SDE": ("dpmpp_sde", "karras"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "exponential"),
    "DPM++ 2M SDE Heun": ("dpmpp_2m_sde_heun", "exponential"),
    "DPM++ 3M SDE": ("dpmpp_3m_sde", "exponential"),
    "DPM fast": ("dpm_fast", "normal"),
    "DPM adaptive": ("dpm_adaptive", "normal"),
    "DDIM": ("ddim", "ddim_uniform"),
    "DDPM": ("ddpm", "normal"),
    "UniPC": ("uni_pc", "normal"),
    "LCM": ("lcm", "normal"),
    "iPNDM": ("ipndm", "normal"),
    "DEIS": ("deis", "normal"),
}

# A1111 "Schedule type" label (also a suffix of pre-1.9 sampler names, "DPM++ 2M Karras") → ComfyUI scheduler.
SCHEDULES: dict[str, str | None] = {
    "Automatic": None,  # the sampler's own default (SAMPLERS' second column)
    "Karras": "karras",
    "Exponential": "exponential",
    "Uniform": "normal",
    "Normal": "normal",
    "Simple": "simple",
    "SGM Uniform": "sgm_uniform",
    "SGMUniform": "sgm_uniform",
    "DDIM": "ddim_uniform",
    "Beta": "beta",
    "KL Optimal": "kl_optimal",
}

# The reverse direction, for writing: first label of each value wins.
SAMPLER_LABELS = {comfy: label for label, (comfy, _) in reversed(SAMPLERS.items())}
SCHEDULE_LABELS = {comfy: label for label, comfy in reversed(SCHEDULES.items()) if comfy}

# A1111 hires-fix latent upscalers → ComfyUI latent upscale methods.
LATENT_UPSCALERS = {
    "Latent": "bilinear",
    "Latent (antialiased)": "bilinear",
    "Latent (bicubic)": "bicubic",
    "Latent (bicubic antialiased)": "bicubic",
    "Latent (nearest)": "nearest-exact",
    "Latent (nearest-exact)": "nearest-exact",
}

# Known keys → (field name in the parsed dict, converter). Everything else lands in "extra", untouched.
_SETTING_KEY = re.compile(r"\s*([^:,\"]+?)\s*:\s*")


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


KNOWN_KEYS: dict[str, tuple[str, Any]] = {
    "Steps": ("steps", int),
    "Sampler": ("sampler", str),
    "Schedule type": ("schedule_type", str),
    "CFG scale": ("cfg", float),
    "Seed": ("seed", int),
    "Size": ("size", _size),
    "Model": ("model", str),
    "Model hash": ("model_hash", str),
    "Denoising strength": ("denoise", float),
    "Clip skip": ("clip_skip", int),
    "Hires upscale": ("hires_upscale", float),
    "Hires resize": ("hires_resize", _size),
    "Hires steps": ("hires_steps", int),
    "Hires upscaler": ("hires_upscaler", str),
    "VAE": ("vae", str),
    "Version": ("version", str),
}
FIELD_KEYS = {field_name: key for key, (field_name, _) in KNOWN_KEYS.items()}


class A1111ParseError(ValueError):
    """The text is not A1111 parameters."""


# ------------------------------------------------------------------------------------------------ parsing


def parse_settings_line(line: str) -> list[tuple[str, str]]:
    """`Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2"` → [(key, value), …] (quoted values unquoted)."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(line):
        match = _SETTING_KEY.match(line, pos)
        if match is None:
            break
        key, pos = match.group(1), match.end()
        if line.startswith('"', pos):
            try:
                value, end = json.JSONDecoder().raw_decode(line, pos)
            except json.JSONDecodeError:
                value, end = None, -1
            if isinstance(value, str):
                pairs.append((key, value))
                comma = line.find(",", end)
                pos = len(line) if comma < 0 else comma + 1
                continue
        comma = line.find(",", pos)
        end = len(line) if comma < 0 else comma
        pairs.append((key, line[pos:end].strip()))
        pos = end + 1
    return pairs


def _convert(key: str, value: str, warnings: list[str]) -> tuple[str, Any] | None:
    field_name, converter = KNOWN_KEYS[key]
    try:
        return field_name, converter(value)
    except ValueError:
        warnings.append(f"{key}: {value!r} is not a valid value; kept as text")
        return None


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse A1111 parameters into a dict.

    Keys: "prompt", "negative_prompt", "settings" (every key/value pair in order, as text), "extra" (the pairs
    not understood), "warnings", the known settings typed (steps, sampler, schedule_type, cfg, seed, width,
    height, model, model_hash, denoise, clip_skip, hires_*, vae, version — only those present), and
    "sampler_name"/"scheduler", the ComfyUI names (None when the sampler has no ComfyUI counterpart).
    """
    if not isinstance(text, str) or not text.strip():
        raise A1111ParseError("empty parameters text")
    lines = text.strip().replace("\r\n", "\n").split("\n")
    settings_pairs = parse_settings_line(lines[-1])
    if len(settings_pairs) >= 3:
        lines = lines[:-1]
    else:
        settings_pairs = []
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:"):].lstrip()
        target.append(line)
    result: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
        "settings": dict(settings_pairs),
        "extra": {},
        "warnings": [],
    }
    for key, value in settings_pairs:
        converted = _convert(key, value, result["warnings"]) if key in KNOWN_KEYS else None
        if converted is None:
            result["extra"][key] = value
            continue
        name, typed = converted
        if name in ("size", "hires_resize"):
            prefix = "" if name == "size" else "hires_resize_"
            result[prefix + "width"], result[prefix + "height"] = typed
        else:
            result[name] = typed
    result["sampler_name"], result["scheduler"] = comfy_sampler(
        result.get("sampler", "Euler"), result.get("schedule_type"), result["warnings"]
    )
    return result


def comfy_sampler(label: str, schedule_type: str | None = None, warnings: list[str] | None = None
                  ) -> tuple[str | None, str]:
    """A1111 sampler label (+ "Schedule type") → ComfyUI (sampler_name, scheduler).

    Pre-1.9 labels carry the schedule as a suffix ("DPM++ 2M Karras"); ComfyUI's own names are accepted too,
    so text this module wrote reads back unchanged."""
    warnings = warnings if warnings is not None else []
    base, suffix_schedule = label.strip(), None
    if base not in SAMPLERS:
        for schedule_label in sorted(SCHEDULES, key=len, reverse=True):
            if base.endswith(" " + schedule_label) and base[: -len(schedule_label) - 1] in SAMPLERS:
                base, suffix_schedule = base[: -len(schedule_label) - 1], schedule_label
                break
    if base in SAMPLERS:
        sampler_name, default_schedule = SAMPLERS[base]
    elif re.fullmatch(r"[a-z0-9_]+", base):
        sampler_name, default_schedule = base, "normal"
    else:
        warnings.append(f"sampler {label!r} has no ComfyUI counterpart")
        sampler_name, default_schedule = None, "normal"
    wanted = (schedule_type or suffix_schedule or "Automatic").strip()
    if wanted in SCHEDULES:
        return sampler_name, SCHEDULES[wanted] or default_schedule
    if re.fullmatch(r"[a-z0-9_]+", wanted):
        return sampler_name, wanted
    warnings.append(f"schedule type {wanted!r} has no ComfyUI counterpart; using {default_schedule!r}")
    return sampler_name, default_schedule


# ------------------------------------------------------------------------------------------- graph building


def match_checkpoint(model: str, checkpoints: Sequence[str] | None) -> str | None:
    """The checkpoint file an A1111 "Model" name (a file name without extension) refers to, if listed."""
    wanted = model.strip().lower()
    for name in checkpoints or ():
        path = PurePosixPath(name)
        if wanted in (name.lower(), path.name.lower(), path.stem.lower(), str(path.with_suffix("")).lower()):
            return name
    return None


def txt2img_graph(
    params: Mapping[str, Any],
    *,
    checkpoints: Sequence[str] | None = None,
    filename_prefix: str = "diffgraph",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """An API-format txt2img graph (our built-in node names, ComfyUI input names) from parsed parameters.

    Hires fix becomes a second KSampler pass: latent upscalers upscale the latent, any other upscaler is
    replaced by a Lanczos image upscale between a decode and an encode (the upscale model is not guessed)."""
    warnings = warnings if warnings is not None else []
    warnings.extend(w for w in params.get("warnings", ()) if w not in warnings)
    model = str(params.get("model") or "")
    ckpt_name = match_checkpoint(model, checkpoints) if model else None
    if ckpt_name is None:
        ckpt_name = (model + ".safetensors") if model else "model.safetensors"
        if checkpoints is not None:
            warnings.append(f"checkpoint {model or '(none named)'!r} is not in the models folder")
    sampler_name = params.get("sampler_name") or "euler"
    if not params.get("sampler_name"):
        warnings.append(f"sampler {params.get('sampler')!r} replaced by 'euler'")
    seed = int(params.get("seed", 0))
    if seed < 0:
        warnings.append(f"seed {seed} (random in A1111) replaced by 0")
        seed = 0
    graph: dict[str, Any] = {
        "4": _node("LoadCheckpoint", "Load Checkpoint", ckpt_name=ckpt_name),
        "5": _node("EmptyLatent", "Empty Latent Image", width=int(params.get("width", 512)),
                   height=int(params.get("height", 512)), batch_size=1),
    }
    clip: list[Any] = ["4", 1]
    clip_skip = int(params.get("clip_skip", 1))
    if clip_skip > 1:
        graph["10"] = _node("CLIPSetLastLayer", "CLIP Set Last Layer", clip=clip, stop_at_clip_layer=-clip_skip)
        clip = ["10", 0]
    graph["6"] = _node("CLIPEncode", "Positive Prompt", text=params.get("prompt", ""), clip=clip)
    graph["7"] = _node("CLIPEncode", "Negative Prompt", text=params.get("negative_prompt", ""), clip=clip)
    sampler = {"seed": seed, "steps": int(params.get("steps", 20)), "cfg": float(params.get("cfg", 7.0)),
               "sampler_name": sampler_name, "scheduler": params.get("scheduler") or "normal",
               "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]}
    graph["3"] = _node("KSampler", "KSampler", **sampler, latent_image=["5", 0], denoise=1.0)
    latent: list[Any] = ["3", 0]
    if "hires_upscale" in params or "hires_resize_width" in params:
        latent = _hires_pass(graph, params, sampler, warnings)
    graph["8"] = _node("VAEDecode", "VAE Decode", samples=latent, vae=["4", 2])
    graph["9"] = _node("SaveImage", "Save Image", images=["8", 0], filename_prefix=filename_prefix)
    return graph


def _node(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def _hires_pass(graph: dict[str, Any], params: Mapping[str, Any], sampler: dict[str, Any],
                warnings: list[str]) -> list[Any]:
    upscaler = str(params.get("hires_upscaler", "Latent"))
    by_size = "hires_resize_width" in params
    size = {"width": params.get("hires_resize_width", 0), "height": params.get("hires_resize_height", 0)}
    if upscaler in LATENT_UPSCALERS:
        method = LATENT_UPSCALERS[upscaler]
        if by_size:
            graph["11"] = _node("LatentUpscale", "Hires Upscale", samples=["3", 0], upscale_method=method,
                                **size, crop="disabled")
        else:
            graph["11"] = _node("LatentUpscaleBy", "Hires Upscale", samples=["3", 0], upscale_method=method,
                                scale_by=float(params["hires_upscale"]))
        upscaled: list[Any] = ["11", 0]
    else:
        warnings.append(f"hires upscaler {upscaler!r} replaced by a Lanczos image upscale")
        graph["13"] = _node("VAEDecode", "Hires Decode", samples=["3", 0], vae=["4", 2])
        if by_size:
            graph["14"] = _node("ImageScale", "Hires Upscale", image=["13", 0], upscale_method="lanczos",
                                **size, crop="disabled")
        else:
            graph["14"] = _node("ImageScaleBy", "Hires Upscale", image=["13", 0], upscale_method="lanczos",
                                scale_by=float(params["hires_upscale"]))
        graph["11"] = _node("VAEEncode", "Hires Encode", pixels=["14", 0], vae=["4", 2])
        upscaled = ["11", 0]
    steps = int(params.get("hires_steps", 0)) or sampler["steps"]
    graph["12"] = _node("KSampler", "Hires KSampler", **{**sampler, "steps": steps}, latent_image=upscaled,
                        denoise=float(params.get("denoise", 0.7)))
    return ["12", 0]


# ------------------------------------------------------------------------------------------------ writing


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def model_label(ckpt_name: str) -> str:
    """How A1111 names a checkpoint: its file name without folder or model-file extension."""
    path = PurePosixPath(ckpt_name.replace("\\", "/"))
    return path.stem if path.suffix.lower() in MODEL_FILE_EXTENSIONS else path.name


def format_parameters(settings: Mapping[str, Any]) -> str:
    """A1111 parameters text from run settings: prompt, negative_prompt, steps, sampler_name, scheduler, cfg,
    seed, width, height, model, denoise, clip_skip (any may be missing) and "extra" {key: value}."""
    pairs: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if value is not None and value != "":
            pairs.append((key, _quote(value if isinstance(value, str) else str(value))))

    add("Steps", settings.get("steps"))
    sampler_name = settings.get("sampler_name")
    if sampler_name:
        add("Sampler", SAMPLER_LABELS.get(sampler_name, sampler_name))
        scheduler = settings.get("scheduler")
        if scheduler:
            add("Schedule type", SCHEDULE_LABELS.get(scheduler, scheduler))
    if settings.get("cfg") is not None:
        add("CFG scale", _number(settings["cfg"]))
    add("Seed", settings.get("seed"))
    if settings.get("width") and settings.get("height"):
        add("Size", f"{settings['width']}x{settings['height']}")
    if settings.get("model"):
        add("Model", model_label(str(settings["model"])))
    denoise = settings.get("denoise")
    if denoise is not None and float(denoise) < 1.0:
        add("Denoising strength", _number(denoise))
    if settings.get("clip_skip") and int(settings["clip_skip"]) > 1:
        add("Clip skip", settings["clip_skip"])
    for key, value in (settings.get("extra") or {}).items():
        add(key, value)
    lines = [str(settings.get("prompt") or "")]
    if settings.get("negative_prompt"):
        lines.append(f"Negative prompt: {settings['negative_prompt']}")
    lines.append(", ".join(f"{key}: {value}" for key, value in pairs))
    return "\n".join(lines)
