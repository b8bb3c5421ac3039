"""Where a safety checker's files are (torch-free: used while validating a workflow)."""

from __future__ import annotations

from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors")


def checker_folders(path: Path) -> tuple[Path, Path | None]:
    """(folder holding the checker's config.json, folder holding preprocessor_config.json or None).

    `path` is a checker folder, or a whole diffusers pipeline folder with safety_checker/ and feature_extractor/."""
    if (path / "model_index.json").is_file() and not (path / "config.json").is_file():
        model_dir, candidates = path / "safety_checker", [path / "feature_extractor"]
    else:
        model_dir, candidates = path, [path / "feature_extractor", path]
    processor_dir = next((c for c in candidates if (c / "preprocessor_config.json").is_file()), None)
    return model_dir, processor_dir


def folder_problem(path: Path) -> str | None:
    """Why `path` is not a usable safety checker folder, or None."""
    model_dir, _ = checker_folders(path)
    if not (model_dir / "config.json").is_file():
        return f"{path.name}: no safety checker config.json in {model_dir}"
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        return f"{path.name}: no weights ({' or '.join(WEIGHT_FILES)}) in {model_dir}"
    return None
